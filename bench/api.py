"""API load benchmark: the portal under gunicorn against a bare Flask route, same settings, same run.

    .venv/bin/python bench/api.py                 # ~2.5 min: 8 wrk runs of 12 s + start-up
    .venv/bin/python bench/api.py --duration 20 --connections 50 --workers 4 --threads 4
    .venv/bin/python bench/api.py --other /tmp/base   # then an A/B of the GETs against another checkout

Starts the real app (MariaDB throw-away database, Redis db 13, no Celery worker: the POSTs'
tasks wait in the queue) and bench/floor_app.py under the same gunicorn settings, creates a user
and a few campaigns, then runs wrk (50 connections on loopback, HTTP Basic on every request)
against each route and prints p50/p99 (from wrk's Lua done(), bench/wrk_report.lua), req/s,
errors, and the ratios to the floor. With --other (a second checkout, e.g. `git worktree add
/tmp/base HEAD~3`, run with this checkout's Python against the same database), the GET routes are
then measured again in rounds alternating the two checkouts, with the CPU of gunicorn, MariaDB
and Redis per request: on two shared cores only such interleaved figures compare two versions.
See bench/README.md ("API load benchmark").
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py would shadow the standard library's `queue`: this folder goes last on the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path[:0] = [str(HERE.parent)]
sys.path.append(str(HERE))

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchstack import (GUNICORN_THREADS, GUNICORN_WORKERS, USER, Stack, services_cpu_seconds,  # noqa: E402
                        tree_cpu_seconds, uptime)
from PIL import Image  # noqa: E402

LUA = HERE / "wrk_report.lua"
REDIS_DB = 13
BRIEF = {"description": "Summer 2025 Marketing Campaign", "target_market": "Young adults aged 18-35",
         "campaign_message": "Make this summer unforgettable!",
         "products_description": "Premium beach products",
         "image_metadata": {"source_type": "local", "source_path": "beach.jpg"}}
GOALS = {"p50": 2.0, "p99": 2.0}  # each within 2x of the floor; POST: p50 within 4x
POST_P50_GOAL = 4.0


def wrk(url: str, seconds: int, connections: int, threads: int, auth: str | None,
        headers: dict | None = None, method: str | None = None, body: bytes | None = None) -> dict:
    env = dict(os.environ)
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA)]
    for key, value in ({"Authorization": auth} if auth else {}).items() | (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    with tempfile.NamedTemporaryFile(suffix=".body") as f:
        if method:
            env["WRK_METHOD"] = method
        if body is not None:
            f.write(body)
            f.flush()
            env["WRK_BODY_FILE"], env["WRK_CONTENT_TYPE"] = f.name, "application/json"
        out = subprocess.run([*args, url], capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    result = json.loads(line.removeprefix("WRK_RESULT "))
    non2xx = next((ln for ln in out.stdout.splitlines() if "Non-2xx or 3xx" in ln), None)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["non2xx"] = int(non2xx.split(":")[1]) if non2xx else 0
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def clean(result: dict, what: str) -> dict:
    """The result, or RuntimeError if any request failed: where only 2xx answers time the right thing."""
    if result["errors"] or result["non2xx"]:
        raise RuntimeError(f"{what}: {result['errors']} errors, {result['non2xx']} non-2xx")
    return result


def setup_campaigns(stack: Stack, base: str, count: int) -> list[str]:
    Image.new("RGB", (1600, 1200), (180, 120, 60)).save(stack.import_dir / "beach.jpg", quality=90)
    session = stack.session()
    ids = []
    for n in range(count):
        r = session.post(base + "/api/campaigns", json={**BRIEF, "name": f"Bench {n}"}, timeout=30)
        r.raise_for_status()
        ids.append(r.json()["id"])
    for path in (f"/api/campaigns/{ids[0]}", "/api/campaigns", f"/campaigns/{ids[0]}/status"):
        r = session.get(base + path, headers={"HX-Request": "true"}, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=12, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=GUNICORN_WORKERS, help="gunicorn workers (both apps)")
    parser.add_argument("--threads", type=int, default=GUNICORN_THREADS, help="gunicorn threads (both apps)")
    parser.add_argument("--campaigns", type=int, default=25,
                        help="campaigns created before the runs (more than a page: the list is full and counted)")
    parser.add_argument("--other", type=Path, help="a second checkout: A/B of the GET routes, rounds interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per route and checkout (with --other)")
    parser.add_argument("--auth-cache-seconds", type=int, default=None,
                        help="PORTAL_AUTH_CACHE_SECONDS for the portal (0: a users query on every request)")
    opts = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {uptime()}", flush=True)
    with Stack(REDIS_DB, "apibench") as stack:
        gunicorn = {"workers": opts.workers, "threads": opts.threads}
        if opts.auth_cache_seconds is not None:
            stack.env["PORTAL_AUTH_CACHE_SECONDS"] = str(opts.auth_cache_seconds)
        base = stack.gunicorn("portal", "wsgi:app", **gunicorn)
        # The floor's authenticated rungs check the bench user's name and password.
        stack.env.update(FLOOR_USER=USER, FLOOR_PASSWORD=stack.password)
        floor_base = stack.gunicorn("floor", "bench.floor_app:app", **gunicorn)
        ids = setup_campaigns(stack, base, opts.campaigns)
        auth = "Basic " + base64.b64encode(f"{USER}:{stack.password}".encode()).decode()
        run = dict(seconds=opts.duration, connections=opts.connections, threads=opts.wrk_threads, auth=auth)
        print(f"gunicorn --workers {opts.workers} --threads {opts.threads} (both apps); wrk -c{opts.connections} "
              f"-t{opts.wrk_threads} -d{opts.duration}s; warming up...", flush=True)
        wrk(f"{base}/api/campaigns/{ids[0]}", **{**run, "seconds": 3})  # every worker verifies once
        # Threads connect on first use; a rung answering 401/404 would time the wrong thing.
        clean(wrk(f"{floor_base}/floor/row/{ids[0]}", **{**run, "seconds": 3}), "the floor's row rung")
        body = json.dumps({**BRIEF, "name": "Bench POST"}).encode()
        cases = [
            ("floor: bare Flask JSON", "floor", lambda: wrk(f"{floor_base}/floor", **run)),
            ("floor + Basic auth (constant-time compare)", "floor", lambda: wrk(f"{floor_base}/floor/auth", **run)),
            ("floor + auth + one PyMySQL SELECT of the row", "floor",
             lambda: wrk(f"{floor_base}/floor/row/{ids[0]}", **run)),
            ("GET /api/campaigns/<id>", "portal", lambda: wrk(f"{base}/api/campaigns/{ids[0]}", **run)),
            ("GET /api/campaigns", "portal", lambda: wrk(f"{base}/api/campaigns", **run)),
            ("GET /campaigns/<id>/status (htmx)", "portal",
             lambda: wrk(f"{base}/campaigns/{ids[0]}/status", headers={"HX-Request": "true"}, **run)),
            ("POST /api/campaigns (local, 202)", "portal",
             lambda: wrk(f"{base}/api/campaigns", method="POST", body=body, **run)),
            ("floor again (drift check)", "floor", lambda: wrk(f"{floor_base}/floor", **run)),
        ]
        results = []
        for name, server, measure in cases:
            cpu = tree_cpu_seconds(stack.pids[server])
            r = measure()
            r["cpu_ms"] = (tree_cpu_seconds(stack.pids[server]) - cpu) * 1000 / max(r["requests"], 1)
            results.append((name, r))
            print(f"  {name}: p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms, "
                  f"{r['rps']:.0f} req/s, errors {r['errors']}, gunicorn CPU {r['cpu_ms']:.2f} ms/req", flush=True)
            time.sleep(1)
        pending = stack.query("SELECT COUNT(*) FROM campaigns")[0][0]
        if opts.other:
            other = stack.gunicorn("other", "wsgi:app", cwd=opts.other.resolve(), **gunicorn)
            pair = {"this": ("portal", base), "other": ("other", other)}
            ab = compare(stack, pair, ids[0], {**run, "seconds": min(opts.duration, 8)}, opts.rounds)
    print_table(results, opts)
    if opts.other:
        print_comparison(ab, opts)
    print(f"\ncampaigns in the database after the POST run: {pending}; {uptime()}")
    return 0


def compare(stack: Stack, bases: dict[str, tuple[str, str]], campaign_id: str, run: dict, rounds: int) -> dict:
    """bases: label -> (gunicorn name in the stack, base URL). Returns route -> label -> [(p50 ms,
    CPU ms per request of gunicorn + MariaDB + Redis, MariaDB commands per request)], one per round."""
    routes = {"GET /api/campaigns/<id>": f"/api/campaigns/{campaign_id}", "GET /api/campaigns": "/api/campaigns",
              "GET /campaigns/<id>/status (htmx)": f"/campaigns/{campaign_id}/status"}
    for _, base in bases.values():  # warm: every worker has signed in once
        wrk(base + routes["GET /api/campaigns/<id>"], **{**run, "seconds": 3})
    found: dict = {route: {name: [] for name in bases} for route in routes}
    for n in range(rounds):
        for route, path in routes.items():
            for name, (server, base) in (list(bases.items()) if n % 2 == 0 else list(bases.items())[::-1]):
                commands = mariadb_commands(stack)
                before = tree_cpu_seconds(stack.pids[server]) + sum(services_cpu_seconds().values())
                r = clean(wrk(base + path, headers={"HX-Request": "true"}, **run), f"{name} {route}")
                after = tree_cpu_seconds(stack.pids[server]) + sum(services_cpu_seconds().values())
                commands = mariadb_commands(stack) - commands
                requests = max(r["requests"], 1)
                found[route][name].append((r["p50_us"] / 1000, (after - before) * 1000 / requests, commands / requests))
                print(f"  A/B round {n + 1} {route} {name}: p50 {found[route][name][-1][0]:.1f} ms, "
                      f"{found[route][name][-1][1]:.2f} ms CPU/req, {commands / requests:.2f} MariaDB commands/req",
                      flush=True)
    return found


def mariadb_commands(stack: Stack) -> int:
    """Statements (ROLLBACK included) and pings MariaDB has served so far: one round trip each."""
    rows = stack.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_admin_commands')", keep=True)
    return sum(int(value) for _, value in rows)


def print_comparison(found: dict, opts) -> None:
    print(f"\nA/B, rounds interleaved: this checkout against {opts.other} (medians over {opts.rounds} rounds; "
          "CPU = gunicorn + MariaDB + Redis per request)\n")
    print("| route | this p50 ms | other p50 ms | this CPU ms/req | other CPU ms/req | CPU this / other | "
          "MariaDB commands/req this / other |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for route, by_name in found.items():
        p50, cpu, commands = ({name: statistics.median(v[i] for v in values) for name, values in by_name.items()}
                              for i in range(3))
        print(f"| {route} | {p50['this']:.1f} | {p50['other']:.1f} | {cpu['this']:.2f} | {cpu['other']:.2f} | "
              f"{cpu['this'] / cpu['other']:.2f} | {commands['this']:.2f} / {commands['other']:.2f} |")


def print_table(results: list[tuple[str, dict]], opts) -> None:
    floor = results[0][1]
    print("\n| route | p50 ms | p99 ms | req/s | errors (non-2xx/3xx) | gunicorn CPU ms/req | p50 / floor | "
          "p99 / floor | goal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, r in results:
        p50, p99 = r["p50_us"] / floor["p50_us"], r["p99_us"] / floor["p99_us"]
        if name.startswith("floor"):
            goal = ""
        elif name.startswith("POST"):
            goal = "met" if p50 <= POST_P50_GOAL and r["errors"] == 0 else "MISS"
            goal += f" (p50 <= {POST_P50_GOAL:g}x, no errors)"
        else:
            ok = p50 <= GOALS["p50"] and p99 <= GOALS["p99"] and r["errors"] == 0
            goal = ("met" if ok else "MISS") + " (p50, p99 <= 2x, no errors)"
        print(f"| {name} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | {r['rps']:.0f} | "
              f"{r['errors']} ({r['non2xx']}) | {r['cpu_ms']:.2f} | {p50:.2f} | {p99:.2f} | {goal} |")


if __name__ == "__main__":
    sys.exit(main())
