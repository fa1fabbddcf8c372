"""Integration fixtures: the real processes, started exactly as a deployment starts them.

Two stacks, each started once per session and shared by every test:

  embedded_stack  `python -m portal.serve` (SQLite, filesystem broker, worker + beat, gunicorn)
  mariadb_stack   `flask bootstrap`, gunicorn, `celery worker`, `celery beat` against
                  MariaDB (a fresh database) and Redis (db 15, reserved for these tests)

Tests talk to them over HTTP only (requests + Basic auth). `stack` is parametrised over
both; tests that only make sense on one stack ask for it by name.

MariaDB or Redis unreachable: the mariadb tests are skipped, unless
PORTAL_REQUIRE_SERVICES=1 (CI), where they fail.
"""
from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parents[1]), str(HERE)):  # the product packages; the it_* helpers beside this file
    if _path not in sys.path:
        sys.path.insert(0, _path)

from it_stack import (  # noqa: E402
    ARTIFACTS, MAX_UPLOAD_MB, PYTHON, REDIS_URL, SIGN_IN, Proc, Stack, clean_env, create_database,
    create_users_commands, drop_database, flask_cli, flush_redis, free_port, gunicorn_args,
    mysql_url, require_services, run_cli, run_clis, stop_all, wait_http,
)


@pytest.fixture(scope="session")
def mariadb_stack(tmp_path_factory):
    require_services()
    tmp = tmp_path_factory.mktemp("mariadb_stack")
    logs = tmp / "logs"
    for folder in ("storage", "import", "instance", "logs"):
        (tmp / folder).mkdir()
    database = create_database()
    flush_redis()
    admin_password = "admin-" + secrets.token_hex(8)
    env = clean_env(
        DATABASE_URL=mysql_url(database),
        CELERY_BROKER_URL=REDIS_URL,
        PORTAL_STORAGE_DIR=str(tmp / "storage"),
        PORTAL_IMPORT_DIR=str(tmp / "import"),
        PORTAL_INSTANCE_DIR=str(tmp / "instance"),
        PORTAL_SECRET_KEY=secrets.token_urlsafe(48),
        PORTAL_ADMIN_USER="admin",
        PORTAL_ADMIN_PASSWORD=admin_password,
        PORTAL_RECONCILE_SECONDS="2",
        PORTAL_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
    )
    procs: list[Proc] = []
    stack = None
    try:
        out = run_cli(flask_cli("bootstrap"), env)
        assert "password" not in out.lower(), "bootstrap printed a password it was given: " + out
        run_clis(create_users_commands(), env)
        port = free_port()
        procs += [
            Proc("gunicorn", gunicorn_args(port, tmp / "gunicorn.ctl"), env, logs),
            Proc("worker", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "worker",
                            "--loglevel=INFO", "--concurrency", "2"], env, logs),
            Proc("beat", [PYTHON, "-m", "celery", "-A", "wsgi:celery_app", "beat", "--loglevel=INFO",
                          "--schedule", str(tmp / "beat")], env, logs),
        ]
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", 60, procs)
        wait_http(base + "/readyz", 30, procs)
        procs[1].wait_for_output(r"celery@\S+ ready\.", 60)
        procs[2].wait_for_output(r"beat: Starting", 30)
        stack = Stack("mariadb", base, admin_password, tmp / "storage", tmp / "import", env, procs,
                      logs, mysql_url(database), notes={"database": database})
        yield stack
    finally:
        if stack is not None:
            stack.close()
        else:
            stop_all(procs)
        drop_database(database)
        flush_redis()



def start_embedded(name: str, tmp: Path, logs: Path) -> tuple[Proc, str]:
    port = free_port()
    env = clean_env(
        PORT=str(port),
        PORTAL_INSTANCE_DIR=str(tmp / "instance"),
        PORTAL_STORAGE_DIR=str(tmp / "storage"),
        PORTAL_IMPORT_DIR=str(tmp / "import"),
        PORTAL_RECONCILE_SECONDS="2",
        PORTAL_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
    )
    return Proc(name, [PYTHON, "-m", "portal.serve"], env, logs, split_stderr=True), f"http://127.0.0.1:{port}"


def wait_embedded_ready(proc: Proc, base: str) -> re.Match:
    banner = proc.wait_for_output(SIGN_IN.pattern, 90)
    wait_http(base + "/healthz", 60, [proc])
    wait_http(base + "/readyz", 30, [proc])
    proc.wait_for_output(r"celery@\S+ ready\.", 60, stderr=True)
    return banner


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory):
    """`python -m portal.serve` started twice on one instance folder; the second run is kept.

    notes: first_stdout / second_stdout, to check that the password is printed only once.
    """
    tmp = tmp_path_factory.mktemp("embedded_stack")
    logs = tmp / "logs"
    logs.mkdir()
    procs: list[Proc] = []
    stack = None
    try:
        first, base = start_embedded("serve-first", tmp, logs)
        procs.append(first)
        banner = wait_embedded_ready(first, base)
        password = banner.group(1)
        assert password, "the first start printed no admin password:\n" + first.output()
        stop_all([first])
        first_stdout = first.output()

        second, base = start_embedded("serve", tmp, logs)
        procs.append(second)
        wait_embedded_ready(second, base)
        run_clis(create_users_commands(), _cli_env(tmp))
        stack = Stack("embedded", base, password, tmp / "storage", tmp / "import", _cli_env(tmp),
                      [second], logs, f"sqlite:///{tmp / 'instance' / 'portal.db'}",
                      notes={"first_stdout": first_stdout, "second_stdout": second.output(),
                             "first_returncode": first.popen.returncode, "instance": tmp / "instance"})
        yield stack
    finally:
        if stack is not None:
            stack.close()
        else:
            stop_all(procs)


def _cli_env(tmp: Path) -> dict[str, str]:
    """What `flask ...` needs to act on the embedded stack's instance (SQLite, secret key)."""
    return clean_env(PORTAL_INSTANCE_DIR=str(tmp / "instance"), PORTAL_STORAGE_DIR=str(tmp / "storage"),
                     PORTAL_IMPORT_DIR=str(tmp / "import"))


@pytest.fixture(scope="session", params=["embedded", "mariadb"])
def stack(request) -> Stack:
    """Each end-to-end test runs once on each stack."""
    return request.getfixturevalue(f"{request.param}_stack")


# ---------------------------------------------------------------------------- reporting

@pytest.fixture(scope="session")
def timings():
    """Record a measured figure: printed (-s shows it) and kept in test-artifacts/timings.txt."""
    lines: dict[str, str] = {}
    path = ARTIFACTS / "timings.txt"

    def record(key: str, line: str) -> None:
        lines[key] = line
        print(f"\n[timing] {line}")
        ARTIFACTS.mkdir(exist_ok=True)
        path.write_text("".join(f"{v}\n" for _, v in sorted(lines.items())))

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in dict.fromkeys(v for v in funcargs.values() if isinstance(v, Stack)):
            report.sections.append((f"{value.name} stack logs", value.tails()))
    return report
