"""The real stack for the load benchmarks (bench/api.py, bench/queue.py).

gunicorn with the production settings (docker-compose.yml: 4 workers x 4 threads, access log),
optionally Celery workers, MariaDB on 127.0.0.1:3306 (root, no password) in a throw-away
database, Redis on 127.0.0.1:6379 in one db number of its own (flushed with FLUSHDB at start
and end, never FLUSHALL; db 15 belongs to the integration tests).
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
GUNICORN_WORKERS, GUNICORN_THREADS = 4, 4  # docker-compose.yml / Dockerfile
USER = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mysql(sql: str) -> None:
    conn = pymysql.connect(**MYSQL, connect_timeout=3, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _flushdb(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    finally:
        client.close()


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of a process and its live children (gunicorn master + workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    pids, total = {root_pid}, 0
    for pid, (ppid, _) in stats.items():
        if ppid == root_pid:
            pids.add(pid)
    for pid in pids:
        total += stats.get(pid, (0, 0))[1]
    return total / tick


def pids_of(name: str) -> list[int]:
    out = subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def services_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the machine's MariaDB and Redis servers."""
    return {"MariaDB": sum(tree_cpu_seconds(p) for p in pids_of("mariadbd") or pids_of("mysqld")),
            "Redis": sum(tree_cpu_seconds(p) for p in pids_of("redis-server"))}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class Proc:
    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path, cwd: Path = ROOT) -> None:
        self.name, self.log = name, log_dir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log.read_text(errors="replace")):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not print {pattern!r}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class Stack:
    """A database, a Redis db, folders, a user; then gunicorn / workers on demand. Use with `with`."""

    def __init__(self, redis_db: int, name: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"portal-{name}-"))
        self.database = f"portal_{name}_{secrets.token_hex(4)}"
        self.redis_url = f"redis://127.0.0.1:6379/{redis_db}"
        self.password = "bench-" + secrets.token_hex(8)
        self.procs: list[Proc] = []
        self.pids: dict[str, int] = {}  # gunicorn name -> master pid
        self._kept = None  # query(keep=True)'s connection
        for folder in ("storage", "import", "instance", "logs", "metrics"):
            (self.tmp / folder).mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PORTAL_", "CELERY_", "GUNICORN_", "FLASK_", "PROMETHEUS_"))
                    and k != "DATABASE_URL"}
        self.env.update(
            PYTHONUNBUFFERED="1",
            DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:3306/{self.database}?charset=utf8mb4",
            CELERY_BROKER_URL=self.redis_url,
            PORTAL_SECRET_KEY=secrets.token_urlsafe(48),
            PORTAL_STORAGE_DIR=str(self.tmp / "storage"), PORTAL_IMPORT_DIR=str(self.tmp / "import"),
            PORTAL_INSTANCE_DIR=str(self.tmp / "instance"),
            PROMETHEUS_MULTIPROC_DIR=str(self.tmp / "metrics"),  # as docker-compose.yml sets it
            PORTAL_ADMIN_PASSWORD="admin-" + secrets.token_hex(8))

    @property
    def import_dir(self) -> Path:
        return self.tmp / "import"

    def __enter__(self) -> Stack:
        _mysql(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        _flushdb(self.redis_url)
        self._flask("bootstrap")
        self._flask("users", "create", USER, "--password", self.password)
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self._kept:
            self._kept.close()
        with contextlib.suppress(Exception):
            _mysql(f"DROP DATABASE IF EXISTS `{self.database}`")
        with contextlib.suppress(Exception):
            _flushdb(self.redis_url)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _flask(self, *args: str) -> None:
        subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                       check=True, capture_output=True, timeout=120)

    def gunicorn(self, name: str, app: str, workers: int = GUNICORN_WORKERS, threads: int = GUNICORN_THREADS,
                 extra: tuple[str, ...] = (), cwd: Path = ROOT) -> str:
        """Start gunicorn serving `app` (e.g. wsgi:app) from the checkout `cwd`; its base URL once it answers."""
        port = free_port()
        args = [PYTHON, "-m", "gunicorn", "-c", "python:portal.gunicorn_conf", app,
                "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                "--threads", str(threads), "--access-logfile", str(self.tmp / "logs" / f"{name}.access.log"),
                "--control-socket", str(self.tmp / f"{name}.ctl"), *extra]
        self.procs.append(Proc(name, args, self.env, self.tmp / "logs", cwd))
        self.pids[name] = self.procs[-1].popen.pid
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/healthz", timeout=2).status_code in (200, 404):
                    return base
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not start:\n{self.procs[-1].log.read_text()[-3000:]}")

    def worker(self, concurrency: int) -> None:
        proc = Proc("worker", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "worker", "--loglevel=INFO",
                               "--concurrency", str(concurrency)], self.env, self.tmp / "logs")
        self.procs.append(proc)
        self.pids["worker"] = proc.popen.pid
        proc.wait_for(r"celery@\S+ ready\.", 90)

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = (USER, self.password)
        return s

    def query(self, sql: str, args: tuple = (), keep: bool = False) -> list[tuple]:
        """Rows of one autocommit query; keep=True reuses one connection (for polling loops)."""
        conn = self._kept if keep and self._kept else pymysql.connect(
            **MYSQL, database=self.database, connect_timeout=3, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            if keep:
                self._kept = conn
            else:
                conn.close()
