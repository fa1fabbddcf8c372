"""Dependencies down, end to end: gunicorn on a private MariaDB and a private Redis
(tests/integration/it_private.py) that these tests stop, stall and start again. Never the
machine's shared servers.

While the database is unreachable, every page and API route answers 503 with Retry-After
(JSON in the API's error shape, a page saying what is wrong for people, htmx included) -- but
for those that need no database, which may answer as usual while the signed-in account is
still cached (PORTAL_AUTH_CACHE_SECONDS) -- and
the browser's polled status panel shows that notice; /healthz stays 200 and /readyz names the
dependency. With the broker down, a submit still gets 202 and the campaign completes once the
broker is back. Nothing is ever a 500 or a traceback.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import it_images
import pytest
import requests
from it_private import PrivateMariaDB, PrivateRedis, require_binaries
from it_stack import (
    BRIEF, PASSWORDS, PYTHON, Api, Proc, clean_env, create_users_commands, flask_cli, free_port,
    gunicorn_args, run_cli, run_clis, stop_all, wait_http,
)

pytestmark = pytest.mark.timeout(600)
CHROMIUM = "/usr/bin/chromium"
# A request may wait once for the pool's read timeout (10 s) on a stalled server; far beyond
# that is a hang. A bound on a hang, not a performance figure.
HANG = 40


@dataclass
class DownStack:
    base_url: str
    db: PrivateMariaDB
    redis: PrivateRedis
    env: dict
    logs: Path
    tmp: Path
    procs: list[Proc]
    alice: Api
    campaign_id: str = ""

    def readyz(self) -> requests.Response:
        return requests.get(self.base_url + "/readyz", timeout=HANG)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs.glob("*.log"))


@pytest.fixture(scope="module")
def down(tmp_path_factory):
    require_binaries("mariadbd", "mariadb-install-db", "redis-server")
    tmp = tmp_path_factory.mktemp("deps_down")
    for folder in ("storage", "import", "instance", "logs"):
        (tmp / folder).mkdir()
    (tmp / "import" / "beach.jpg").write_bytes(it_images.small_photo(seed=8))
    db, redis = PrivateMariaDB(tmp / "mariadb"), PrivateRedis(tmp / "redis")
    procs: list[Proc] = []
    try:
        db.start()
        redis.start()
        env = clean_env(
            DATABASE_URL=db.url(db.create_database("portal")), CELERY_BROKER_URL=redis.url(),
            PORTAL_STORAGE_DIR=str(tmp / "storage"), PORTAL_IMPORT_DIR=str(tmp / "import"),
            PORTAL_INSTANCE_DIR=str(tmp / "instance"), PORTAL_SECRET_KEY=secrets.token_urlsafe(48),
            PORTAL_ADMIN_USER="admin", PORTAL_ADMIN_PASSWORD="admin-" + secrets.token_hex(8),
            PORTAL_RECONCILE_SECONDS="2", PORTAL_REENQUEUE_SECONDS="5")
        run_cli(flask_cli("bootstrap"), env)
        run_clis(create_users_commands(), env)
        port = free_port()
        procs.append(Proc("gunicorn", gunicorn_args(port, tmp / "gunicorn.ctl"), env, tmp / "logs"))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/readyz", 60, procs)
        stack = DownStack(base, db, redis, env, tmp / "logs", tmp, procs, Api(base, "alice", PASSWORDS["alice"]))
        # A pending campaign (no worker yet): its page polls the status panel.
        r = stack.alice.create({**BRIEF, "name": "Outage <b>test</b>",
                                "image_metadata": {"source_type": "local", "source_path": "beach.jpg"}})
        assert r.status_code == 202, r.text
        stack.campaign_id = r.json()["id"]
        yield stack
    finally:
        stop_all(procs)
        db.close()
        redis.close()


@contextlib.contextmanager
def database(stack: DownStack, how: str):
    """The database stopped (SIGTERM) or stalled (SIGSTOP) inside the block, serving after it."""
    if how == "stopped":
        stack.db.stop()
    else:
        stack.db.pause()
    try:
        yield
    finally:
        if how == "stopped":
            stack.db.start()
        else:
            stack.db.resume()
    wait_http(stack.base_url + "/readyz", 60, stack.procs)
    serving(stack)


def serving(stack: DownStack, timeout: float = 90) -> None:
    """Every gunicorn worker serves again: each may fail fast for up to 5 s after its own last
    failure, so wait for successes on fresh connections (any worker) spanning more than that."""
    deadline, first_ok = time.monotonic() + timeout, None
    while first_ok is None or time.monotonic() - first_ok < 7:
        status = requests.get(stack.base_url + "/api/me", auth=("alice", PASSWORDS["alice"]),
                              headers={"Connection": "close"}, timeout=HANG).status_code
        assert status in (200, 503) and time.monotonic() < deadline, f"/api/me still {status}"
        first_ok = (first_ok or time.monotonic()) if status == 200 else None
        time.sleep(0.2)


def routes(campaign_id: str) -> list[tuple[str, str, dict]]:
    """(method, path, requests kwargs): every page, fragment and API route, and unknown ones."""
    c = f"/campaigns/{campaign_id}"
    htmx = {"headers": {"HX-Request": "true"}}
    return [
        ("GET", "/", {}), ("GET", "/?status=failed&q=x", htmx), ("GET", "/campaigns/new", {}),
        ("GET", "/library/picker", htmx), ("GET", "/gallery", {}), ("GET", c, {}),
        ("GET", f"{c}/status", htmx), ("GET", f"{c}/delete", {}), ("GET", "/no-such-page", {}),
        ("GET", "/api/me", {}), ("GET", "/api/campaigns", {}), ("GET", f"/api{c}", {}),
        ("POST", "/api/campaigns", {"json": {**BRIEF, "image_metadata": {
            "source_type": "ai_generated", "ai_prompt": "A beach"}}}),
        ("POST", "/api/campaigns", {"data": BRIEF,
                                    "files": {"image": ("a.jpg", it_images.small_photo(), "image/jpeg")}}),
        ("PATCH", f"/api{c}", {"json": {"focal_x": 0.5, "focal_y": 0.5}}),
        ("DELETE", f"/api{c}", {}), ("POST", f"/api{c}/retry", {}),
        ("GET", f"/api{c}/variants/1x1", {}), ("GET", f"/api{c}/variants/9x16/preview", {}),
        ("GET", f"/api{c}/variants.zip", {}), ("GET", f"/api{c}/source", {}),
        ("GET", "/api/library", {}), ("GET", "/api/library/thumbnail?path=beach.jpg", {}),
        ("GET", "/api/openapi.json", {}), ("GET", "/api/docs", {}), ("GET", "/api/nothing", {}),
    ]


# Routes that need no database once the signed-in account is cached (PORTAL_AUTH_CACHE_SECONDS,
# 5 s by default): within that time they may answer as usual; after it, 503 like the rest.
NEEDS_NO_DATABASE = {"/campaigns/new": 200, "/api/me": 200, "/no-such-page": 404, "/api/nothing": 404,
                     "/api/openapi.json": 200, "/api/docs": 200, "/library/picker": 200, "/api/library": 200,
                     "/api/library/thumbnail?path=beach.jpg": 200}


def assert_503_unless_cached(r: requests.Response, method: str, path: str) -> None:
    if r.status_code != 503 and method == "GET" and path in NEEDS_NO_DATABASE:
        assert r.status_code == NEEDS_NO_DATABASE[path], f"{method} {path}: {r.status_code} {r.text[:300]}"
        assert "Traceback" not in r.text
        return
    assert_503(r, method, path)


def assert_503(r: requests.Response, method: str, path: str) -> None:
    where = f"{method} {path}"
    assert r.status_code == 503, f"{where}: {r.status_code} {r.text[:300]}"
    assert r.headers.get("Retry-After", "").isdigit() and int(r.headers["Retry-After"]) > 0, where
    assert "Traceback" not in r.text, where
    if path.startswith("/api"):
        assert r.headers["Content-Type"].startswith("application/json"), where
        body = r.json()
        assert body["error"] == "unavailable" and "database" in body["message"], (where, body)
    else:
        assert r.headers["Content-Type"].startswith("text/html"), where
        assert "Temporarily unavailable" in r.text and "database is not reachable" in r.text, where
        assert r.headers["Content-Security-Policy"], where


def _form_session(stack: DownStack) -> tuple[requests.Session, str]:
    """A browser-like session holding the new-campaign form's CSRF token (fetched while up)."""
    session = requests.Session()
    session.auth = ("alice", PASSWORDS["alice"])
    page = session.get(stack.base_url + "/campaigns/new", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    assert page.status_code == 200 and token, page.text[:300]
    return session, token.group(1)


@pytest.mark.parametrize("how", ["stopped", "stalled"])
def test_every_route_answers_503_with_retry_after_while_the_database_is_down(down: DownStack, how):
    session, token = _form_session(down)
    answered, slowest = 0, 0.0
    with database(down, how):
        for method, path, kwargs in routes(down.campaign_id):
            started = time.perf_counter()
            r = down.alice.request(method, path, timeout=HANG, **kwargs)
            slowest = max(slowest, time.perf_counter() - started)
            assert_503_unless_cached(r, method, path)
            answered += 1
        # A form post carrying its CSRF token reaches the login check, which needs the database.
        r = session.post(down.base_url + "/campaigns/new", timeout=HANG,
                         data={**BRIEF, "csrf_token": token, "source_type": "local", "library_path": "beach.jpg"})
        assert_503(r, "POST", "/campaigns/new")
        # Probes and the page's own files do not need the database.
        assert requests.get(down.base_url + "/healthz", timeout=HANG).json() == {"status": "ok"}
        ready = down.readyz()
        assert ready.status_code == 503 and ready.headers["Retry-After"], ready.text
        assert ready.json()["down"] == ["database"] and ready.json()["checks"]["broker"] == "ok", ready.text
        assert "database" in ready.json()["message"]
        for asset in ("portal.css", "portal.js", "htmx-2.0.11.min.js"):
            assert requests.get(f"{down.base_url}/static/{asset}", timeout=HANG).status_code == 200, asset
    print(f"\n[deps-down] database {how}: {answered + 1} routes answered 503 with Retry-After "
          f"(or, needing no database, as usual; slowest {slowest:.1f} s)")
    # Back: the same requests work again and nothing was lost.
    campaign = down.alice.campaign(down.campaign_id)
    assert campaign["name"] == "Outage <b>test</b>"
    assert down.alice.get("/").status_code == 200
    assert "Traceback" not in down.log_text()


def test_a_database_restart_between_requests_is_invisible(down: DownStack):
    """Pooled connections to the old server fail their pre-ping and are replaced at once: the
    first request after a restart is answered normally, not refused as if the server were down."""
    for _ in range(4):  # a pooled connection in each gunicorn worker
        assert down.alice.get("/api/me").status_code == 200
    down.db.stop()
    down.db.start()
    statuses = [down.alice.get("/api/me", timeout=HANG).status_code for _ in range(6)]
    assert statuses == [200] * 6, statuses


def test_broker_down_submit_is_202_and_the_campaign_completes_once_it_is_back(down: DownStack):
    down.redis.stop()
    try:
        r = down.alice.upload(it_images.small_photo(seed=9), name="Sent while Redis was down")
        assert r.status_code == 202, r.text
        campaign_id = r.json()["id"]
        ready = down.readyz()
        assert ready.status_code == 503 and ready.json()["down"] == ["broker"], ready.text
        assert down.alice.campaign(campaign_id)["status"] == "pending"
        assert requests.get(down.base_url + "/", auth=("alice", PASSWORDS["alice"]), timeout=HANG).status_code == 200
    finally:
        down.redis.start()
    # The row is the outbox: a worker and the reconciler started now still finish it.
    worker = Proc("worker", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "worker", "--loglevel=INFO",
                             "--concurrency", "1"], down.env, down.logs)
    beat = Proc("beat", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "beat", "--loglevel=INFO",
                         "--schedule", str(down.tmp / "beat")], down.env, down.logs)
    down.procs += [worker, beat]
    done = down.alice.wait(campaign_id, timeout=180, interval=0.5)
    assert done.body["status"] == "completed", done.body
    assert len(done.body["variants"]) == 3
    assert "Traceback" not in down.log_text()


def test_broker_stalled_submit_is_still_202_and_completes_after(down: DownStack):
    """Redis SIGSTOPped: publishing waits for its socket timeouts, then gives up; the row stays."""
    down.redis.pause()
    try:
        ready = down.readyz()
        assert ready.status_code == 503 and ready.json()["down"] == ["broker"], ready.text
        r = down.alice.post("/api/campaigns", timeout=120, json={
            **BRIEF, "name": "Sent while Redis was stalled",
            "image_metadata": {"source_type": "local", "source_path": "beach.jpg"}})
        assert r.status_code == 202, r.text
    finally:
        down.redis.resume()
    done = down.alice.wait(r.json()["id"], timeout=180, interval=0.5)
    assert done.body["status"] == "completed", done.body
    assert "Traceback" not in down.log_text()


def test_the_polled_status_panel_shows_a_notice_while_the_database_is_down(down: DownStack, playwright):
    if not Path(CHROMIUM).is_file():
        if os.environ.get("PORTAL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import expect

    # A campaign that stays pending: the worker (if started above) is stopped first.
    workers = [p for p in down.procs if p.name in ("worker", "beat")]
    stop_all(workers)
    down.procs[:] = [p for p in down.procs if p not in workers]
    r = down.alice.create({**BRIEF, "name": "Polling through an outage",
                           "image_metadata": {"source_type": "local", "source_path": "beach.jpg"}})
    assert r.status_code == 202, r.text
    # pytest-playwright's Playwright: the browser suite's event loop may still be running in this process.
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"])
    try:
        context = browser.new_context(http_credentials={"username": "alice", "password": PASSWORDS["alice"]})
        page = context.new_page()
        violations = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{down.base_url}/campaigns/{r.json()['id']}")
        panel = page.locator("#status-panel")
        expect(panel).to_be_visible()
        flash = page.locator("#flash")
        with database(down, "stopped"):
            expect(flash).to_be_visible(timeout=30_000)
            expect(flash).to_contain_text("database is not reachable")
            expect(page.locator("body.degraded")).to_have_count(1)
            expect(panel).to_be_visible()  # the last panel stays; nothing blank, no error page
        # Back: the next poll succeeds and the notice goes.
        expect(flash).to_be_hidden(timeout=30_000)
        expect(page.locator("body.degraded")).to_have_count(0)
        assert violations == []
    finally:
        browser.close()
