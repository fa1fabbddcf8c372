"""Queue benchmark: campaigns per minute through the real stack against render-only throughput.

    .venv/bin/python bench/queue.py                  # ~3-4 min on 2 cores
    .venv/bin/python bench/queue.py --workers 2 --burst 40 --steady 20

Measured in one run, on the same generated 12 MP JPEGs (nothing is downloaded):
  1. single render: worker.imaging.render (as worker/pipeline.py calls it) in this process, warm;
  2. render-only throughput: the same call in N processes at once, nothing else;
  3. end to end: gunicorn + MariaDB + Redis + `celery worker --concurrency N`, a burst of uploads
     over HTTP, campaigns/min from the first submission to the last `finished_at`;
  4. unsaturated: one upload every 1.5x the single render time; p50/p95 from the 202 to the
     row's `finished_at`.
See bench/README.md ("Queue benchmark").
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named queue.py: keep its folder from shadowing the standard library's `queue`.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests" / "integration")]
sys.path.append(str(HERE))

import argparse  # noqa: E402
import base64  # noqa: E402
import http.client  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import it_images  # noqa: E402
from benchstack import USER, Stack, services_cpu_seconds, tree_cpu_seconds, uptime  # noqa: E402
from PIL import Image  # noqa: E402
from urllib3 import encode_multipart_formdata  # noqa: E402

from worker import cropping, imaging  # noqa: E402

REDIS_DB = 12
BRIEF = {"description": "Queue benchmark", "target_market": "Young adults aged 18-35",
         "campaign_message": "Make this summer unforgettable!", "products_description": "Premium beach products"}
E2E_GOAL, P95_GOAL = 0.8, 3.0


def make_inputs(count: int) -> list[bytes]:
    """The integration suite's camera-like 12 MP JPEG, and flipped/rotated re-encodes of it."""
    base = it_images.photo_12mp()
    im = Image.open(io.BytesIO(base))
    im.load()
    out = [base]
    for op in (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_180, Image.Transpose.FLIP_TOP_BOTTOM):
        if len(out) >= count:
            break
        buf = io.BytesIO()
        im.transpose(op).save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out[:count]


def render(data: bytes) -> None:
    imaging.render(data, place=cropping.place)  # what worker/pipeline.py does for a new campaign


def single_render(inputs: list[bytes], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one render in this warm process."""
    for data in inputs:
        render(data)
    walls, cpus = [], []
    for i in range(runs):
        w, c = time.perf_counter(), time.process_time()
        render(inputs[i % len(inputs)])
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def _render_child(inputs, count, offset, barrier, results) -> None:
    render(inputs[offset % len(inputs)])  # warm: imports, cascades, thread pools
    barrier.wait()
    start = time.perf_counter()
    for i in range(count):
        render(inputs[(offset + i) % len(inputs)])
    results.put((start, time.perf_counter()))


def render_only(inputs: list[bytes], processes: int, total: int) -> float:
    """Campaigns per minute of `processes` processes rendering `total` images between them."""
    ctx = mp.get_context("spawn")  # fork after OpenCV/OpenMP threads ran here can deadlock
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    share = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    children = [ctx.Process(target=_render_child, args=(inputs, share[i], i, barrier, results))
                for i in range(processes)]
    for child in children:
        child.start()
    spans = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join()
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return total / elapsed * 60


class Submitter:
    def __init__(self, stack: Stack, base: str, inputs: list[bytes]) -> None:
        self.stack, self.inputs = stack, inputs
        self.address = urlsplit(base).hostname, urlsplit(base).port
        self.auth = "Basic " + base64.b64encode(f"{USER}:{stack.password}".encode()).decode()
        # The client shares the two cores with the stack it measures, so it does as little as it
        # can per upload: multipart bodies built once per input, sent with http.client on a kept
        # connection (~2 ms of CPU per 4.8 MB upload, measured alone). With requests, and a new
        # database connection per poll, the client took 26-42 ms per campaign of the two cores.
        self.bodies = [encode_multipart_formdata({**BRIEF, "name": f"Queue bench {i}",
                                                  "image": ("photo.jpg", data, "image/jpeg")})
                       for i, data in enumerate(inputs)]
        self.local = threading.local()

    def upload(self, n: int) -> tuple[str, float]:
        """Upload one campaign; its id and the wall-clock time (epoch s) of the 202."""
        body, content_type = self.bodies[n % len(self.bodies)]
        for tries_left in (1, 0):
            conn = getattr(self.local, "conn", None) or http.client.HTTPConnection(*self.address, timeout=60)
            self.local.conn = conn
            try:
                conn.request("POST", "/api/campaigns", body=body,
                             headers={"Content-Type": content_type, "Authorization": self.auth})
                r = conn.getresponse()
                payload = r.read()
                break
            except (http.client.HTTPException, ConnectionError):  # the server closed a kept connection
                conn.close()
                self.local.conn = None
                if not tries_left:
                    raise
        if r.status != 202:
            raise RuntimeError(f"upload {n}: {r.status} {payload[:300]!r}")
        return json.loads(payload)["id"], time.time()

    def wait(self, ids: list[str], timeout: float) -> dict[str, tuple[str, float | None]]:
        """Poll the database until every campaign is completed or failed: id -> (status, finished epoch)."""
        deadline = time.monotonic() + timeout
        marks = ",".join(["%s"] * len(ids))
        while True:
            # One query a quarter second, on a connection kept open: the times measured come from
            # the rows (finished_at), so polling less often changes no figure, only the client's CPU.
            rows = self.stack.query(f"SELECT id, status, finished_at FROM campaigns WHERE id IN ({marks})",
                                    tuple(ids), keep=True)
            done = {i: (s, f.replace(tzinfo=timezone.utc).timestamp() if f else None)
                    for i, s, f in rows if s in ("completed", "failed")}
            if len(done) == len(ids):
                return done
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(ids) - len(done)} campaigns not finished after {timeout} s")
            time.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def cpu_by_part(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each part of the stack, and of this process (the uploading client)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"celery worker": tree_cpu_seconds(stack.pids["worker"]),
            "gunicorn": tree_cpu_seconds(stack.pids["portal"]),
            **services_cpu_seconds(),
            "bench client": own.ru_utime + own.ru_stime}


def burst(sub: Submitter, count: int, start_n: int) -> dict:
    cpu_before = cpu_by_part(sub.stack)
    t0 = time.time()
    with ThreadPoolExecutor(4) as pool:  # a few clients at once, as a burst would arrive
        accepted = list(pool.map(sub.upload, range(start_n, start_n + count)))
    submitted = time.time()
    done = sub.wait([i for i, _ in accepted], timeout=60 + count * 10)
    latencies = [done[i][1] - at for i, at in accepted if done[i][1]]
    last = max(f for _, f in done.values() if f)
    cpu_after = cpu_by_part(sub.stack)
    return {"cpu_ms": {k: (cpu_after[k] - cpu_before[k]) * 1000 / count for k in cpu_before},
            "per_min": count / (last - t0) * 60, "seconds": last - t0, "submit_s": submitted - t0,
            "failed": sum(s != "completed" for s, _ in done.values()),
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}


def steady(sub: Submitter, count: int, interval: float, start_n: int) -> dict:
    accepted = []
    t0 = time.monotonic()
    for k in range(count):
        time.sleep(max(0.0, t0 + k * interval - time.monotonic()))
        accepted.append(sub.upload(start_n + k))
    done = sub.wait([i for i, _ in accepted], timeout=120 + count * 10)
    latencies = [done[i][1] - at for i, at in accepted if done[i][1]]
    return {"failed": sum(s != "completed" for s, _ in done.values()),
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "max": max(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Celery --concurrency and render-only processes")
    parser.add_argument("--burst", type=int, default=40, help="uploads in the saturated burst")
    parser.add_argument("--steady", type=int, default=20, help="uploads at the unsaturated rate")
    parser.add_argument("--inputs", type=int, default=4, help="distinct 12 MP JPEGs")
    opts = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {uptime()}", flush=True)
    inputs = make_inputs(opts.inputs)
    print(f"inputs: {len(inputs)} x 4000x3000 JPEG, {statistics.mean(map(len, inputs)) / 1e6:.1f} MB each",
          flush=True)
    single_wall, single_cpu = single_render(inputs, runs=5)
    print(f"single render: {single_wall * 1000:.0f} ms wall, {single_cpu * 1000:.0f} ms CPU", flush=True)
    render_rate = render_only(inputs, opts.workers, opts.burst)
    print(f"render-only, {opts.workers} processes: {render_rate:.1f} campaigns/min", flush=True)

    with Stack(REDIS_DB, "queuebench") as stack:
        base = stack.gunicorn("portal", "wsgi:app")
        stack.worker(opts.workers)
        sub = Submitter(stack, base, inputs)
        warm = [sub.upload(n)[0] for n in range(opts.workers * 2)]  # every pool child renders once
        sub.wait(warm, timeout=300)
        print(f"stack up ({uptime()}); burst of {opts.burst}...", flush=True)
        b = burst(sub, opts.burst, start_n=100)
        print(f"  {b['per_min']:.1f} campaigns/min ({b['seconds']:.1f} s, uploads took {b['submit_s']:.1f} s)",
              flush=True)
        interval = 1.5 * single_wall
        print(f"unsaturated: {opts.steady} uploads, one every {interval * 1000:.0f} ms...", flush=True)
        s = steady(sub, opts.steady, interval, start_n=1000)
    render_rate_after = render_only(inputs, opts.workers, opts.burst)

    e2e_ratio = b["per_min"] / max(render_rate, render_rate_after)  # the stricter of the two
    p95_ratio = s["p95"] / single_wall
    print(f"\nmeasured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {uptime()}")
    print("\n| measure | value | goal |\n| --- | ---: | --- |")
    print(f"| single render (median of 5, warm), wall / CPU | {single_wall * 1000:.0f} / "
          f"{single_cpu * 1000:.0f} ms | |")
    print(f"| render-only, {opts.workers} processes (before / after the stack) | "
          f"{render_rate:.1f} / {render_rate_after:.1f} per min | |")
    print(f"| end to end, burst of {opts.burst} uploads, {opts.workers} worker processes | "
          f"{b['per_min']:.1f} per min | |")
    print(f"| end to end / render-only (the faster of the two) | {e2e_ratio:.2f} | >= {E2E_GOAL} "
          f"{'met' if e2e_ratio >= E2E_GOAL else 'MISS'} |")
    print(f"| burst: 202 -> completed p50 / p95 | {b['p50']:.2f} / {b['p95']:.2f} s | (saturated) |")
    print(f"| unsaturated (one per {interval:.2f} s): 202 -> completed p50 / p95 / max | "
          f"{s['p50']:.2f} / {s['p95']:.2f} / {s['max']:.2f} s | |")
    print(f"| unsaturated p95 / single render | {p95_ratio:.2f} | < {P95_GOAL} "
          f"{'met' if p95_ratio < P95_GOAL else 'MISS'} |")
    print(f"| campaigns failed (burst + unsaturated) | {b['failed'] + s['failed']} | 0 |")
    print("\nCPU per campaign during the burst, by part (ms; the render itself is "
          f"{single_cpu * 1000:.0f} ms of the worker's):\n\n| part | CPU ms per campaign |\n| --- | ---: |")
    for part, ms in b["cpu_ms"].items():
        print(f"| {part} | {ms:.0f} |")
    print(f"| all | {sum(b['cpu_ms'].values()):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
