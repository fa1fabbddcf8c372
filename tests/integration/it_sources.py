"""Fixtures and helpers of test_sources_e2e.py: the remote-source fakes as their own process, and
two stacks started as a deployment starts them, pointed at those fakes.

  fakes            `python -m tests.fakes.run --cert-dir DIR` (Dropbox + Firefly over HTTPS)
  remote_stack     `flask bootstrap`, gunicorn, `celery worker --concurrency 2`, `celery beat`
                   against a fresh MariaDB database and Redis db 14 (db 15 is the main stack's),
                   with Dropbox app credentials (the official SDK runs in the worker) and Firefly
  placeholder_stack `python -m portal.serve` (SQLite, filesystem broker) with no FIREFLY_* at all

Both stacks start side by side (the machine has 2 cores; start-up is most of the wall time).
The test module imports the fixtures from here (non-root conftest files may not declare
pytest_plugins, and conftest.py belongs to the main suite).
"""
from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from it_stack import (
    BRIEF, PYTHON, SIGN_IN, Api, Proc, Stack, clean_env, create_database, drop_database, flask_cli, free_port,
    gunicorn_args, mysql_url, require_services, run_cli, stop_all, wait_http,
)

from tests.fakes import dropbox_fake, firefly_fake
from tests.fakes.server import RemoteFake

REDIS_DB = 14  # this module's own: the main stack flushes db 15
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
CONCURRENCY = 2  # worker pool processes of remote_stack: each keeps its own IMS token
FIREFLY_DEADLINE = 5  # FIREFLY_DEADLINE_SECONDS: a job that never finishes fails after this
MAX_ATTEMPTS = 3
FORMATS = {"1:1": (1080, 1080), "9:16": (1080, 1920), "16:9": (1920, 1080)}
# Every secret the stacks are given or the fakes hand out, as text that must never reach a log.
SECRETS = {
    "Dropbox app secret": dropbox_fake.APP_SECRET,
    "Dropbox Basic credentials": base64.b64encode(
        f"{dropbox_fake.APP_KEY}:{dropbox_fake.APP_SECRET}".encode()).decode(),
    "Firefly client secret": firefly_fake.CLIENT_SECRET,
    "a Bearer header": "Bearer ",
    "a link key": "rlkey=",
}


def flush_redis_db() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    finally:
        client.close()


def _without_remote_settings(env: dict[str, str]) -> dict[str, str]:
    """No Dropbox/Firefly setting or CA override leaks in from the outer environment."""
    return {k: v for k, v in env.items() if not k.startswith(("DROPBOX_", "FIREFLY_"))}


# ---------------------------------------------------------------------------- the fakes

@dataclass
class Fakes:
    proc: Proc
    ca: str
    dropbox_url: str
    dropbox_host: str  # localhost:<port>, as an allow-list entry
    firefly_url: str
    firefly_host: str
    dropbox: RemoteFake = field(init=False)
    firefly: RemoteFake = field(init=False)

    def __post_init__(self) -> None:
        self.dropbox = RemoteFake(self.dropbox_url, self.ca)
        self.firefly = RemoteFake(self.firefly_url, self.ca)


def start_fakes(cert_dir: Path, logs: Path) -> Fakes:
    proc = Proc("fakes", [PYTHON, "-m", "tests.fakes.run", "--cert-dir", str(cert_dir)],
                _without_remote_settings(clean_env()), logs, split_stderr=True)
    line = proc.wait_for_output(r"(?m)^\{.*\}$", 30).group(0)
    info = json.loads(line)
    return Fakes(proc, info["dropbox"]["ca"], info["dropbox"]["url"], info["dropbox"]["host"],
                 info["firefly"]["url"], info["firefly"]["host"])


# ---------------------------------------------------------------------------- the stacks

def remote_env(tmp: Path, fakes: Fakes, database: str, admin_password: str) -> dict[str, str]:
    return {
        **_without_remote_settings(clean_env()),
        "DATABASE_URL": mysql_url(database),
        "CELERY_BROKER_URL": REDIS_URL,
        "PORTAL_STORAGE_DIR": str(tmp / "storage"),
        "PORTAL_IMPORT_DIR": str(tmp / "import"),
        "PORTAL_INSTANCE_DIR": str(tmp / "instance"),
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_ADMIN_USER": "admin",
        "PORTAL_ADMIN_PASSWORD": admin_password,
        "PORTAL_RECONCILE_SECONDS": "2",
        "PORTAL_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "PORTAL_REMOTE_TIMEOUT": "3",
        "PORTAL_FETCH_ALLOW_PRIVATE": "1",
        # Dropbox with app credentials: the official SDK, its hosts read at import (PROTOCOLS §B7.1).
        "DROPBOX_APP_KEY": dropbox_fake.APP_KEY,
        "DROPBOX_APP_SECRET": dropbox_fake.APP_SECRET,
        "DROPBOX_API_HOST": fakes.dropbox_host,
        "DROPBOX_API_CONTENT_HOST": fakes.dropbox_host,
        "REQUESTS_CA_BUNDLE": fakes.ca,  # §B7.4; the code passes the CA itself as well
        "PORTAL_DROPBOX_LINK_HOSTS": fakes.dropbox_host,
        "PORTAL_DROPBOX_CONTENT_HOSTS": fakes.dropbox_host,
        "PORTAL_DROPBOX_CA_BUNDLE": fakes.ca,
        # Adobe Firefly (IMS, API and the pre-signed image host are all the one fake).
        "FIREFLY_CLIENT_ID": firefly_fake.CLIENT_ID,
        "FIREFLY_CLIENT_SECRET": firefly_fake.CLIENT_SECRET,
        "FIREFLY_IMS_URL": f"{fakes.firefly_url}/ims/token/v3",
        "FIREFLY_API_BASE": fakes.firefly_url,
        "FIREFLY_IMAGE_HOSTS": fakes.firefly_host,
        "FIREFLY_CA_BUNDLE": fakes.ca,
        "FIREFLY_DEADLINE_SECONDS": str(FIREFLY_DEADLINE),
    }


def start_placeholder(tmp: Path, logs: Path, admin_password: str) -> tuple[Proc, str, dict[str, str]]:
    """`python -m portal.serve` with no FIREFLY_* (nor DROPBOX_*): ai_generated gets the placeholder."""
    port = free_port()
    env = {
        **_without_remote_settings(clean_env()),
        "PORT": str(port),
        "PORTAL_INSTANCE_DIR": str(tmp / "instance"),
        "PORTAL_STORAGE_DIR": str(tmp / "storage"),
        "PORTAL_IMPORT_DIR": str(tmp / "import"),
        "PORTAL_ADMIN_PASSWORD": admin_password,
        "PORTAL_RECONCILE_SECONDS": "2",
        "PORTAL_WORKER_CONCURRENCY": "1",
    }
    proc = Proc("placeholder-serve", [PYTHON, "-m", "portal.serve"], env, logs, split_stderr=True)
    return proc, f"http://127.0.0.1:{port}", env


@dataclass
class Stacks:
    fakes: Fakes
    remote: Stack
    placeholder: Stack


@pytest.fixture(scope="module", name="source_stacks")
def fixture_source_stacks(tmp_path_factory):
    require_services()
    tmp = tmp_path_factory.mktemp("sources")
    logs = tmp / "logs"
    remote_dir, placeholder_dir = tmp / "remote", tmp / "placeholder"
    for folder in (logs, *(d / sub for d in (remote_dir, placeholder_dir)
                           for sub in ("storage", "import", "instance"))):
        folder.mkdir(parents=True)
    procs: list[Proc] = []
    fakes: Fakes | None = None
    database = None
    stacks = None
    try:
        fakes = start_fakes(tmp / "tls", logs)
        # The embedded stack bootstraps and starts on its own while the MariaDB one is set up.
        placeholder_password = "admin-" + secrets.token_hex(8)
        serve, placeholder_base, placeholder_env = start_placeholder(placeholder_dir, logs, placeholder_password)
        procs.append(serve)

        database = create_database("portal_src")
        flush_redis_db()
        admin_password = "admin-" + secrets.token_hex(8)
        env = remote_env(remote_dir, fakes, database, admin_password)
        out = run_cli(flask_cli("bootstrap"), env)
        assert admin_password not in out, "bootstrap printed the password it was given"
        port = free_port()
        remote_procs = [
            Proc("web", gunicorn_args(port, remote_dir / "gunicorn.ctl"), env, logs),
            Proc("worker", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "worker", "--loglevel=INFO",
                            "--concurrency", str(CONCURRENCY)], env, logs),
            Proc("beat", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "beat", "--loglevel=INFO",
                          "--schedule", str(remote_dir / "beat")], env, logs),
        ]
        procs += remote_procs
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", 60, remote_procs)
        wait_http(base + "/readyz", 30, remote_procs)
        remote_procs[1].wait_for_output(r"celery@\S+ ready\.", 60)
        remote_procs[2].wait_for_output(r"beat: Starting", 30)
        remote = Stack("remote-sources", base, admin_password, remote_dir / "storage", remote_dir / "import", env,
                       remote_procs, logs, mysql_url(database), notes={"database": database})

        serve.wait_for_output(SIGN_IN.pattern, 90)
        wait_http(placeholder_base + "/healthz", 60, [serve])
        wait_http(placeholder_base + "/readyz", 30, [serve])
        serve.wait_for_output(r"celery@\S+ ready\.", 60, stderr=True)
        placeholder = Stack("placeholder", placeholder_base, placeholder_password, placeholder_dir / "storage",
                            placeholder_dir / "import", placeholder_env, [serve], logs,
                            f"sqlite:///{placeholder_dir / 'instance' / 'portal.db'}")
        stacks = Stacks(fakes, remote, placeholder)
        yield stacks
    finally:
        if stacks is not None:
            stacks.remote.close()
            stacks.placeholder.close()
        stop_all(procs)
        if fakes is not None:
            stop_all([fakes.proc], timeout=10)
        if database is not None:
            drop_database(database)
        with contextlib.suppress(Exception):
            flush_redis_db()


@pytest.fixture(scope="module", name="fakes")
def fixture_fakes(source_stacks) -> Fakes:
    return source_stacks.fakes


@pytest.fixture(scope="module", name="remote_stack")
def fixture_remote_stack(source_stacks) -> Stack:
    return source_stacks.remote


@pytest.fixture(scope="module", name="placeholder_stack")
def fixture_placeholder_stack(source_stacks) -> Stack:
    return source_stacks.placeholder


# ---------------------------------------------------------------------------- driving campaigns

@dataclass
class Seen:
    """One observed state of a campaign while it was polled."""
    at: float  # seconds since polling began
    status: str
    stage: str | None
    attempt: int
    error_message: str | None


@dataclass
class Watched:
    body: dict  # the final (completed or failed) campaign
    seen: list[Seen]  # every distinct (status, stage, attempt, error_message), in order
    seconds: float

    def states(self) -> list[tuple[str, str | None]]:
        return [(s.status, s.stage) for s in self.seen]

    def waiting(self) -> list[Seen]:
        return [s for s in self.seen if (s.status, s.stage) == ("pending", "waiting to retry")]


def submit(api: Api, image_metadata: dict, **fields) -> str:
    body = {**BRIEF, **fields, "image_metadata": image_metadata,
            "generate_by_ai": image_metadata["source_type"] == "ai_generated"}
    r = api.create(body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending", r.text
    return r.json()["id"]


def dropbox_campaign(api: Api, link: str) -> str:
    return submit(api, {"source_type": "dropbox", "source_path": link})


def firefly_campaign(api: Api, prompt: str = "A sunlit beach at dawn, photo") -> str:
    return submit(api, {"source_type": "ai_generated", "ai_prompt": prompt})


def watch(api: Api, campaign_id: str, timeout: float = 30, interval: float = 0.05) -> Watched:
    """Poll (as the portal page does, only faster) until completed or failed, recording each change."""
    started = time.perf_counter()
    seen: list[Seen] = []
    while True:
        body = api.campaign(campaign_id)
        now = time.perf_counter() - started
        state = Seen(now, body["status"], body["stage"], body["attempt"], body["error_message"])
        if not seen or (seen[-1].status, seen[-1].stage, seen[-1].attempt, seen[-1].error_message) != (
                state.status, state.stage, state.attempt, state.error_message):
            seen.append(state)
        if body["status"] in ("completed", "failed"):
            return Watched(body, seen, now)
        if now > timeout:
            raise AssertionError(f"campaign {campaign_id} still {body['status']} after {timeout} s; seen {seen}")
        time.sleep(interval)


def watch_all(api: Api, ids: list[str], timeout: float = 30) -> list[Watched]:
    return [watch(api, campaign_id, timeout) for campaign_id in ids]


def log_texts(stack: Stack) -> dict[str, str]:
    """Every log file of a stack's processes (stdout and stderr), by file name."""
    texts = {}
    for proc in stack.procs:
        for path in dict.fromkeys((proc.log, proc.err_log)):
            if path.exists():
                texts[path.name] = path.read_text(errors="replace")
    return texts


def leaks(text: str, extra: dict[str, str] | None = None) -> list[str]:
    """Names of the secrets found in text."""
    return [name for name, value in {**SECRETS, **(extra or {})}.items() if value and value in text]


TECHNICAL = re.compile(r"Traceback|File \"|line \d+|Error\(|Exception|<[a-z_.]+ object|\.py\b|https?://")


def assert_readable(message: str | None) -> None:
    """A sentence for a marketer: no traceback, repr, URL (query strings may hold keys) or secret."""
    assert message, "a failed campaign must say why"
    assert not TECHNICAL.search(message), f"technical text shown to the user: {message!r}"
    assert "\n" not in message.strip() and len(message) < 300, message
    assert not leaks(message), f"{leaks(message)} in the message {message!r}"


@pytest.fixture(scope="module", name="remote_calls")
def fixture_remote_calls() -> dict[str, int]:
    """Requests each fake route received over the whole module (the fakes' logs are reset per test)."""
    return {}


@pytest.fixture(autouse=True, name="fresh_fakes")
def fixture_fresh_fakes(fakes: Fakes, remote_calls: dict[str, int]):
    """Each test starts with no scripted failure, empty request logs and a quick Firefly."""
    for fake in (fakes.dropbox, fakes.firefly):
        fake.reset()
    fakes.firefly.configure(job_outcome="succeeded", polls_to_finish=0, unsafe_words=[])
    yield
    for name, fake in (("dropbox", fakes.dropbox), ("firefly", fakes.firefly)):
        for route, count in fake.calls().items():
            key = f"{name}.{route}"
            remote_calls[key] = remote_calls.get(key, 0) + count
