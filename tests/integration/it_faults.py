"""Helpers of test_faults_e2e.py: a whole stack on PRIVATE servers that tests may break.

    FaultStack   private MariaDB + private Redis (it_private), the Dropbox/Firefly fakes
                 (it_sources), `flask bootstrap`, gunicorn, `celery worker --concurrency 2`,
                 `celery beat`; storage on a tmpfs the disk-full test can fill
    hold()       Firefly jobs stay "running" until release(): a run that is deterministically
                 busy (stage fetching), so a test can kill, stop or duplicate it mid-run
    Traffic      a user submitting and polling in a thread, every HTTP answer recorded
    Checker      the invariant of RELIABILITY.md, read from the database and the storage folder

Short timeouts (lease, reconciler, re-enqueue) keep each fault's recovery within seconds.
The machine's own MariaDB and Redis are never touched.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import it_images
import requests
from it_private import PrivateMariaDB, PrivateRedis
from it_sources import Fakes, remote_env, start_fakes
from it_stack import (
    BRIEF, PASSWORDS, PYTHON, Api, Proc, Stack, create_users_commands, flask_cli, free_port,
    gunicorn_args, run_cli, run_clis, stop_all, wait_http,
)
from PIL import Image
from test_failures_e2e import assert_readable

DATABASE = "portal"
LEASE_SECONDS = 6  # heartbeat every 1.5 s; a silent run is taken over after this
RECONCILE_SECONDS = 1
REENQUEUE_SECONDS = 6
MAX_ATTEMPTS = 3
TASK_TIME_LIMIT = 60
VISIBILITY_TIMEOUT = 90  # > TASK_TIME_LIMIT, as in production
STORAGE_MB = 256  # the tmpfs the disk-full test fills up
SETTLE = 60  # seconds any campaign may take to end after a fault is repaired (bounded, generous)
FORMATS = {"1:1": (1080, 1080), "9:16": (1080, 1920), "16:9": (1920, 1080)}
SLUGS = {"1:1": "1x1", "9:16": "9x16", "16:9": "16x9"}
TASK_NAME = "worker.tasks.process_campaign"
LEFTOVER = re.compile(r"^\.(tmp-|attempt-)")


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """The first truthy value of predicate(), polled; TimeoutError saying what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


# ---------------------------------------------------------------------------- the stack

@dataclass(eq=False)
class FaultStack:
    tmp: Path
    db: PrivateMariaDB
    redis: PrivateRedis
    fakes: Fakes
    env: dict[str, str]
    stack: Stack  # it_stack's view: api(), tails(), storage_dir, import_dir
    web: Proc
    worker: Proc
    beat: Proc
    retired: list[Proc] = field(default_factory=list)  # killed or stopped processes, for their logs
    _workers: int = 0

    # -- processes

    def start_worker(self) -> Proc:
        self._workers += 1
        name = f"worker{self._workers}"
        proc = Proc(name, [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "worker", "--loglevel=INFO",
                           "--concurrency", "2", "-n", f"{name}@%h"], self.env, self.stack.log_dir)
        proc.wait_for_output(r"celery@\S+ ready\.|\S+@\S+ ready\.", 90)
        if self.worker is not None and self.worker is not proc:
            self.retired.append(self.worker)
        self.worker = proc
        self._sync_procs()
        return proc

    def start_beat(self) -> Proc:
        proc = Proc(f"beat-{secrets.token_hex(2)}", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "beat",
                                                 "--loglevel=INFO", "--schedule", str(self.tmp / "beat")],
                    self.env, self.stack.log_dir)
        proc.wait_for_output(r"beat: Starting", 60)
        self.retired.append(self.beat)
        self.beat = proc
        self._sync_procs()
        return proc

    def _sync_procs(self) -> None:
        self.stack.procs[:] = [self.web, self.worker, self.beat]

    def pool_children(self) -> list[int]:
        path = Path(f"/proc/{self.worker.pid}/task/{self.worker.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []

    def kill_worker(self) -> None:
        """SIGKILL the worker's main process and its pool children at once (a lost machine or OOM)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.popen.wait(timeout=30)

    def repair(self) -> None:
        """Whatever a failed test left broken: servers up and running, worker and beat alive."""
        for server in (self.db, self.redis):
            server.resume()
            if not server.running:
                server.start()
        for pid in self.pool_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.worker.popen.poll() is not None:
            self.start_worker()
        if self.beat.popen.poll() is not None:
            self.start_beat()
        release(self.fakes)
        self.fakes.firefly.reset()
        self.fakes.dropbox.reset()
        # After a database outage the web fails fast (503) for a few seconds more: wait it out.
        wait_until(lambda: self.alice().get("/api/campaigns").status_code == 200, 60, "the web answers again", 0.5)

    # -- reading the truth

    def sql(self, query: str, *args) -> list[tuple]:
        return self.db.execute(query, DATABASE, args)

    def row(self, campaign_id: str) -> dict:
        rows = self.db.execute(
            "SELECT status, stage, attempt, task_id, error_message, source_type, heartbeat_at, enqueued_at "
            "FROM campaigns WHERE id = %s", DATABASE, (campaign_id,))
        assert rows, f"campaign {campaign_id} is not in the database"
        keys = ("status", "stage", "attempt", "task_id", "error_message", "source_type", "heartbeat_at",
                "enqueued_at")
        return dict(zip(keys, rows[0], strict=True))

    def worker_logs(self) -> str:
        workers = [p for p in (*self.retired, self.worker) if p is not None and p.name.startswith("worker")]
        return "".join(p.output() for p in workers)

    def started(self, campaign_id: str, attempt: int = 1, timeout: float = 60) -> tuple[str, int]:
        """(task id, pool process id) of the run that claimed this attempt, from the worker's log."""
        pattern = re.compile(rf"campaign {campaign_id}: attempt {attempt} started by task (\S+) in process (\d+)")
        found = wait_until(lambda: pattern.search(self.worker_logs()), timeout,
                           f"attempt {attempt} of {campaign_id} started")
        return found.group(1), int(found.group(2))

    def alice(self) -> Api:
        return self.stack.api("alice")

    def owner_id(self, username: str = "alice") -> int:
        return self.sql("SELECT id FROM users WHERE username = %s", username)[0][0]

    def close(self) -> None:
        release(self.fakes)
        self.stack.close()
        stop_all([p for p in self.retired if p is not None])


def _mount_tmpfs(folder: Path, megabytes: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}M", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return done.returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def fault_stack(tmp: Path):
    """The whole private stack, started once per module; everything stopped and unmounted after."""
    logs = tmp / "logs"
    for folder in (logs, tmp / "import", tmp / "instance"):
        folder.mkdir(parents=True)
    storage = tmp / "storage"
    tmpfs = _mount_tmpfs(storage, STORAGE_MB)
    db, redis_server = PrivateMariaDB(tmp / "mariadb"), PrivateRedis(tmp / "redis")
    fakes: Fakes | None = None
    procs: list[Proc] = []
    faults: FaultStack | None = None
    try:
        fakes = start_fakes(tmp / "tls", logs)
        db.start()
        redis_server.start()
        db.create_database(DATABASE)
        admin_password = "admin-" + secrets.token_hex(8)
        env = {**remote_env(tmp, fakes, DATABASE, admin_password),
               "DATABASE_URL": db.url(DATABASE), "CELERY_BROKER_URL": redis_server.url(),
               "PORTAL_STORAGE_DIR": str(storage),
               "PORTAL_LEASE_SECONDS": str(LEASE_SECONDS), "PORTAL_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
               "PORTAL_REENQUEUE_SECONDS": str(REENQUEUE_SECONDS), "PORTAL_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
               "PORTAL_TASK_TIME_LIMIT": str(TASK_TIME_LIMIT), "PORTAL_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
               "FIREFLY_DEADLINE_SECONDS": "120"}
        run_cli(flask_cli("bootstrap"), env)
        run_clis(create_users_commands(), env)
        port = free_port()
        web = Proc("web", gunicorn_args(port, tmp / "gunicorn.ctl"), env, logs)
        procs.append(web)
        base = f"http://127.0.0.1:{port}"
        stack = Stack("faults", base, admin_password, storage, tmp / "import", env, procs, logs, db.url(DATABASE),
                      notes={"tmpfs": tmpfs})
        beat = Proc("beat", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "beat", "--loglevel=INFO",
                             "--schedule", str(tmp / "beat")], env, logs)
        procs.append(beat)
        faults = FaultStack(tmp, db, redis_server, fakes, env, stack, web, None, beat)  # type: ignore[arg-type]
        faults.start_worker()
        wait_http(base + "/healthz", 60, [web])
        wait_http(base + "/readyz", 30, [web])
        faults.beat.wait_for_output(r"beat: Starting", 60)
        yield faults
    finally:
        if faults is not None:
            faults.close()
        else:
            stop_all(procs)
        if fakes is not None:
            stop_all([fakes.proc], timeout=10)
        redis_server.close()
        db.close()
        if tmpfs:
            _unmount(storage)


# ---------------------------------------------------------------------------- steering a run

def hold(fakes: Fakes) -> None:
    """Firefly jobs keep running (polled every second) until release(): a run busy for as long as we like."""
    fakes.firefly.configure(job_outcome="succeeded", polls_to_finish=10**9)


def release(fakes: Fakes) -> None:
    fakes.firefly.configure(polls_to_finish=0)


def firefly_campaign(api: Api, prompt: str = "A quiet harbour at dawn, photo") -> str:
    body = {**BRIEF, "generate_by_ai": True, "image_metadata": {"source_type": "ai_generated", "ai_prompt": prompt}}
    r = api.create(body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def upload_campaign(api: Api, seed: int) -> str:
    r = api.upload(it_images.small_photo(seed=seed), filename=f"photo-{seed}.jpg")
    assert r.status_code == 202, r.text
    return r.json()["id"]


def send_duplicate(faults: FaultStack, campaign_id: str, task_id: str | None = None) -> str:
    """Publish the campaign's task once more, straight to the broker (a duplicate delivery)."""
    from celery import Celery

    app = Celery("duplicates", broker=faults.redis.url(), set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    task_id = task_id or f"duplicate-{secrets.token_hex(6)}"
    try:
        app.send_task(TASK_NAME, args=[campaign_id], task_id=task_id)
    finally:
        app.close()
    return task_id


# ---------------------------------------------------------------------------- user traffic

@dataclass
class Answer:
    what: str
    status: int | None  # None: no answer at all (connection refused, timed out)
    retry_after: str | None
    seconds: float
    problem: str = ""


class Traffic:
    """One user submitting campaigns and polling lists while a dependency fails; every answer kept."""

    def __init__(self, base_url: str, timeout: float = 60) -> None:
        self.api = Api(base_url, "alice", PASSWORDS["alice"])
        self.timeout = timeout
        self.answers: list[Answer] = []
        self.created: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._seed = 1000

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout * 2)
        self.api.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._seed += 1
            self._one("submit", lambda: self.api.post(
                "/api/campaigns", data={**BRIEF}, timeout=self.timeout,
                files={"image": ("t.jpg", it_images.small_photo(seed=self._seed, size=(800, 600)), "image/jpeg")}))
            self._one("list", lambda: self.api.get("/api/campaigns", timeout=self.timeout))
            if self.created:
                self._one("poll", lambda: self.api.get(f"/api/campaigns/{self.created[-1]}", timeout=self.timeout))
            self._stop.wait(0.2)

    def _one(self, what: str, call) -> None:
        started = time.monotonic()
        try:
            r = call()
        except requests.RequestException as e:
            self.answers.append(Answer(what, None, None, time.monotonic() - started, type(e).__name__))
            return
        answer = Answer(what, r.status_code, r.headers.get("Retry-After"), time.monotonic() - started)
        if r.status_code >= 500 and "Traceback" in r.text:
            answer.problem = "traceback in the body"
        self.answers.append(answer)
        if what == "submit" and r.status_code == 202:
            self.created.append(r.json()["id"])

    def count(self, status: int, what: str | None = None) -> int:
        return sum(1 for a in self.answers if a.status == status and (what is None or a.what == what))

    def wait_for(self, status: int, what: str, timeout: float = 60) -> None:
        before = self.count(status, what)
        wait_until(lambda: self.count(status, what) > before, timeout, f"a {status} answer to {what}")

    def bad_answers(self) -> list[Answer]:
        """Unanswered requests, tracebacks, and any 5xx but 503 with Retry-After."""
        return [a for a in self.answers if a.status is None or a.problem
                or (a.status >= 500 and not (a.status == 503 and a.retry_after))]

    def assert_no_server_errors(self) -> None:
        bad = self.bad_answers()
        assert not bad, f"{len(bad)} bad answers of {len(self.answers)}: {bad[:10]}"


# ---------------------------------------------------------------------------- the invariant

class Checker:
    """RELIABILITY.md's invariant, read from the database and the storage folder."""

    def __init__(self, faults: FaultStack) -> None:
        self.faults = faults
        self.storage = faults.stack.storage_dir

    def wait_done(self, ids: list[str] | None = None, timeout: float = SETTLE) -> dict[str, dict]:
        """Every campaign (the given ones, or all in the database) completed or failed within timeout."""
        def unfinished() -> list[tuple]:
            rows = self.faults.sql("SELECT id, status, stage, attempt FROM campaigns")
            return [r for r in rows if r[1] not in ("completed", "failed") and (ids is None or r[0] in ids)]

        try:
            wait_until(lambda: not unfinished(), timeout, "every campaign ends completed or failed", 0.2)
        except TimeoutError:
            raise AssertionError(f"campaigns still unfinished after {timeout} s: {unfinished()}\n"
                                 f"{self.faults.stack.tails()}") from None
        wanted = ids if ids is not None else [r[0] for r in self.faults.sql("SELECT id FROM campaigns")]
        return {campaign_id: self.faults.row(campaign_id) for campaign_id in wanted}

    def check(self, ids: list[str] | None = None, timeout: float = SETTLE) -> dict[str, dict]:
        rows = self.wait_done(ids, timeout)
        for campaign_id, row in rows.items():
            if row["status"] == "completed":
                self.check_completed(campaign_id, row)
            else:
                self.check_failed(campaign_id, row)
        self.check_no_leftovers(list(rows))
        return rows

    def ids(self) -> set[str]:
        return {r[0] for r in self.faults.sql("SELECT id FROM campaigns")}

    def files(self, campaign_id: str) -> set[str]:
        folder = self.storage / "campaigns" / campaign_id
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def check_completed(self, campaign_id: str, row: dict) -> None:
        variants = self.faults.sql("SELECT ratio, width, height, bytes FROM variants WHERE campaign_id = %s",
                                   campaign_id)
        assert sorted((r, w, h) for r, w, h, _ in variants) == sorted((r, *s) for r, s in FORMATS.items()), \
            f"completed campaign {campaign_id} has variant rows {variants}"
        expected = {"source.preview.jpg"} | {f"{s}.jpg" for s in SLUGS.values()} | {
            f"{s}.preview.jpg" for s in SLUGS.values()}
        if row["source_type"] == "upload":
            expected.add("source")
        assert self.files(campaign_id) == expected, f"completed campaign {campaign_id}: files {self.files(campaign_id)}"
        folder = self.storage / "campaigns" / campaign_id
        for ratio, width, height, size in variants:
            path = folder / f"{SLUGS[ratio]}.jpg"
            assert path.stat().st_size == size, f"{campaign_id} {ratio}: row says {size} bytes, file has another size"
            with Image.open(path) as im:
                im.load()  # fully decodable: not half-written
                assert (im.format, im.size) == ("JPEG", (width, height)), (campaign_id, ratio, im.format, im.size)

    def check_failed(self, campaign_id: str, row: dict) -> None:
        assert_readable(row["error_message"])
        assert self.faults.sql("SELECT COUNT(*) FROM variants WHERE campaign_id = %s", campaign_id)[0][0] == 0
        allowed = {"source"} if row["source_type"] == "upload" else set()
        assert self.files(campaign_id) <= allowed, f"failed campaign {campaign_id} left {self.files(campaign_id)}"

    def check_no_leftovers(self, ids: list[str] | None = None) -> None:
        """No temp file or staging folder in these campaigns' folders (or anywhere in storage)."""
        root = self.storage / "campaigns"
        folders = [root / i for i in ids] if ids is not None else [root, self.storage / "incoming"]
        found = [str(p) for f in folders if f.is_dir() for p in f.rglob("*") if LEFTOVER.match(p.name)]
        assert not found, f"temp or staged files left in storage: {found}"

    def hashes(self, campaign_id: str) -> dict[str, int]:
        import hashlib

        folder = self.storage / "campaigns" / campaign_id
        return {p.name: int(hashlib.sha256(p.read_bytes()).hexdigest()[:15], 16) for p in sorted(folder.iterdir())}
