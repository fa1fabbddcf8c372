"""Helpers of the integration suite: processes, the HTTP client, the services.

Kept out of conftest.py so test modules can import them by a name that no other
test folder uses (it_*), under pytest's default rootdir-style imports.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
REDIS_DB = 15  # reserved for these tests: flushed at start and end
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
PASSWORDS = {"alice": "alice-" + secrets.token_hex(8), "bob": "bob-" + secrets.token_hex(8)}
MAX_UPLOAD_MB = 8  # small, so the 413 test sends only 9 MB
ARTIFACTS = ROOT / "test-artifacts"
SIGN_IN = re.compile(r"Sign in as 'admin'(?: with password '([^']+)')?")

# The standard brief of the original design; tests add image_metadata and their own bits.
BRIEF = {
    "description": "Summer 2025 Marketing Campaign",
    "target_market": "Young adults aged 18-35",
    "campaign_message": "Make this summer unforgettable!",
    "products_description": "Premium beach products",
}


# ---------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Dropbox's hosts plus one under .invalid (RFC 2606: never resolves), so a test can submit an
# accepted Dropbox link whose download fails the same way on every machine, online or not.
UNREACHABLE_DROPBOX = "https://dropbox.invalid/s/abc123/beach.jpg?dl=0"
LINK_HOSTS = "www.dropbox.com,dropbox.com,dl.dropboxusercontent.com,dl.dropbox.com,dropbox.invalid"


def clean_env(**settings: str) -> dict[str, str]:
    """The outer environment minus anything that configures the portal, plus `settings`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PORTAL_", "CELERY_", "GUNICORN_", "FLASK_", "DROPBOX_", "FIREFLY_"))
           and k not in ("DATABASE_URL", "PORT")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PORTAL_DROPBOX_LINK_HOSTS"] = LINK_HOSTS
    env.update(settings)
    return env


class Proc:
    """One child process (and its process group), its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path,
                 split_stderr: bool = False) -> None:
        self.name, self.args = name, args
        self.log = log_dir / f"{name}.log"
        self.err_log = log_dir / f"{name}.err.log" if split_stderr else self.log
        with open(self.log, "wb") as out:
            if split_stderr:
                with open(self.err_log, "wb") as err:
                    self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                                  stdout=out, stderr=err, start_new_session=True)
            else:
                self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def errors(self) -> str:
        return self.err_log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = ""
        for path in dict.fromkeys((self.log, self.err_log)):
            if path.exists():
                body = path.read_text(errors="replace").splitlines()[-lines:]
                text += f"----- {self.name}: {path.name} (last {len(body)} lines)\n" + "\n".join(body) + "\n"
        return text

    def wait_for_output(self, pattern: str, timeout: float, stderr: bool = False) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.errors() if stderr else self.output())
            if found:
                return found
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}) before printing "
                                   f"{pattern!r}\n{self.tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not print {pattern!r} within {timeout} s\n{self.tail()}")

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def reap(self, timeout: float) -> None:
        """Wait for the process; SIGKILL its process group if it is still there after timeout."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.popen.wait(timeout=10)
        self._kill_group()  # leftovers (gunicorn/celery children) of a parent that died first

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def stop_all(procs: list[Proc], timeout: float = 30) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.reap(timeout)


def run_cli(args: list[str], env: dict, timeout: float = 90) -> str:
    """Run a one-off command (flask CLI); its output, or a failure that shows it."""
    done = subprocess.run(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run_clis(commands: list[list[str]], env: dict, timeout: float = 90) -> None:
    """Several one-off commands at once (each pays Python's start-up; the machine has 2 cores)."""
    running = [subprocess.Popen(c, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for c in commands]
    problems = []
    for command, proc in zip(commands, running, strict=True):
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            problems.append(f"{' '.join(command)} exited {proc.returncode}\n{out}")
    if problems:
        raise RuntimeError("\n".join(problems))


def flask_cli(*args: str) -> list[str]:
    return [PYTHON, "-m", "flask", "--app", "wsgi", *args]


def create_users_commands() -> list[list[str]]:
    return [flask_cli("users", "create", name, "--password", pw) for name, pw in PASSWORDS.items()]


def wait_http(url: str, timeout: float, procs: list[Proc], want: int = 200) -> dict:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}) while waiting "
                                   f"for {url}\n{proc.tail()}")
        try:
            with requests.get(url, timeout=5) as r:
                if r.status_code == want:
                    return r.json()
                last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            last = type(e).__name__
        time.sleep(0.2)
    tails = "".join(p.tail() for p in procs)
    raise TimeoutError(f"{url} did not answer {want} within {timeout} s (last: {last})\n{tails}")


# ---------------------------------------------------------------------------- HTTP client

class Api:
    """A user's view of a stack: requests + Basic auth, every response read and closed."""

    def __init__(self, base_url: str, username: str | None, password: str | None) -> None:
        self.base_url, self.username = base_url, username
        self.session = requests.Session()
        if username is not None:
            self.session.auth = (username, password)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        with self.session.request(method, self.base_url + path, **kwargs) as response:
            _ = response.content  # read it all, so the connection goes back to the pool
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def upload(self, data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg",
               **fields) -> requests.Response:
        form = {**BRIEF, **{k: str(v) for k, v in fields.items()}}
        return self.post("/api/campaigns", data=form, files={"image": (filename, data, content_type)})

    def create(self, body: dict) -> requests.Response:
        return self.post("/api/campaigns", json=body)

    def campaign(self, campaign_id: str) -> dict:
        r = self.get(f"/api/campaigns/{campaign_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, campaign_id: str, timeout: float = 60, interval: float = 0.05) -> Polled:
        """Poll until completed or failed; every distinct (status, stage, progress) seen."""
        started = time.perf_counter()
        seen: list[tuple[str, str | None, int]] = []
        while True:
            body = self.campaign(campaign_id)
            step = (body["status"], body["stage"], body["progress"])
            if not seen or seen[-1] != step:
                seen.append(step)
            if body["status"] in ("completed", "failed"):
                return Polled(body, seen, time.perf_counter() - started)
            if time.perf_counter() - started > timeout:
                raise AssertionError(f"campaign {campaign_id} still {body['status']} after {timeout} s; "
                                     f"seen {seen}")
            time.sleep(interval)

    def submit_and_wait(self, data: bytes, timeout: float = 60, **fields) -> Polled:
        r = self.upload(data, **fields)
        assert r.status_code == 202, r.text
        return self.wait(r.json()["id"], timeout=timeout)

    def all_campaign_ids(self) -> list[str]:
        ids, page = [], 1
        while True:
            r = self.get("/api/campaigns", params={"page": page, "per_page": 100})
            assert r.status_code == 200, r.text
            body = r.json()
            ids += [c["id"] for c in body["items"]]
            if page >= body["pages"]:
                return ids
            page += 1

    def close(self) -> None:
        self.session.close()


@dataclass
class Polled:
    body: dict
    seen: list[tuple[str, str | None, int]]
    seconds: float


@dataclass(eq=False)  # compared (and hashed) by identity
class Stack:
    name: str
    base_url: str
    admin_password: str
    storage_dir: Path
    import_dir: Path
    env: dict[str, str]
    procs: list[Proc]
    log_dir: Path
    database_url: str
    notes: dict = field(default_factory=dict)
    _apis: dict = field(default_factory=dict)

    def api(self, username: str | None) -> Api:
        """'alice', 'bob', 'admin', or None for no credentials; one kept-alive session each."""
        if username not in self._apis:
            password = self.admin_password if username == "admin" else PASSWORDS.get(username or "")
            self._apis[username] = Api(self.base_url, username, password)
        return self._apis[username]

    def campaign_dir(self, campaign_id: str) -> Path:
        return self.storage_dir / "campaigns" / campaign_id

    def tails(self) -> str:
        return "".join(p.tail() for p in self.procs)

    def close(self) -> None:
        for api in self._apis.values():
            api.close()
        self._apis.clear()
        stop_all(self.procs)


# ---------------------------------------------------------------------------- services

def services_problem(need_redis: bool = True) -> str | None:
    """Why MariaDB (and Redis) cannot be used here, or None."""
    import pymysql
    import redis

    try:
        conn = pymysql.connect(**MYSQL, connect_timeout=3)
        conn.close()
    except pymysql.MySQLError as e:
        return f"MariaDB is not reachable at {MYSQL['host']}:{MYSQL['port']} as root: {e}"
    if need_redis:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            client.ping()
        except redis.RedisError as e:
            return f"Redis is not reachable at {REDIS_URL}: {e}"
        finally:
            client.close()
    return None


def require_services(need_redis: bool = True) -> None:
    problem = services_problem(need_redis)
    if problem is None:
        return
    if os.environ.get("PORTAL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"PORTAL_REQUIRE_SERVICES=1 but {problem}", pytrace=False)
    pytest.skip(f"{problem} (set PORTAL_REQUIRE_SERVICES=1 to make this a failure)")


def mysql_execute(sql: str, database: str | None = None, args: tuple = (), port: int = MYSQL["port"]
                  ) -> list[tuple]:
    import pymysql

    conn = pymysql.connect(**{**MYSQL, "port": port}, database=database, connect_timeout=3, read_timeout=10,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def create_database(prefix: str = "portal_it") -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    mysql_execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    return name


def drop_database(name: str) -> None:
    mysql_execute(f"DROP DATABASE IF EXISTS `{name}`")


def mysql_url(database: str) -> str:
    return f"mysql+pymysql://root@127.0.0.1:3306/{database}?charset=utf8mb4"


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    finally:
        client.close()


# ---------------------------------------------------------------------------- stacks

def gunicorn_args(port: int, control_socket: Path, workers: int = 2) -> list[str]:
    # Each gunicorn gets its own control socket: the default (~/.gunicorn/gunicorn.ctl) is
    # shared by every gunicorn of the user on this machine.
    return [PYTHON, "-m", "gunicorn", "-c", "python:portal.gunicorn_conf", "wsgi:app", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", "4", "--control-socket", str(control_socket)]
