"""The portal the browser tests drive: `python -m portal.serve`, started once per session.

Built from the integration suite's it_stack utilities (processes, clean environment,
CLI runs, the requests client), so it starts exactly as a person's `make run` does.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from it_images import small_photo
from it_stack import (
    PYTHON, SIGN_IN, Proc, Stack, clean_env, create_users_commands, free_port, run_clis, stop_all,
    wait_http,
)

MAX_UPLOAD_MB = 8  # the drop zone's data-max-bytes; a 9 MB file is "too large"
LIBRARY = {"top.jpg": 11, "summer/beach.jpg": 12, "summer/pier.jpg": 13}  # import folder: name -> seed


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        PORTAL_INSTANCE_DIR=str(tmp / "instance"),
        PORTAL_STORAGE_DIR=str(tmp / "storage"),
        PORTAL_IMPORT_DIR=str(tmp / "import"),
        PORTAL_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
        **extra,
    )


def fill_import_folder(folder: Path) -> None:
    for name, seed in LIBRARY.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(small_photo(seed, (1200, 900)))


def start_portal(tmp: Path) -> Stack:
    """Start the embedded portal with a known admin password and the users alice and bob."""
    logs = tmp / "logs"
    logs.mkdir()
    (tmp / "import").mkdir()
    fill_import_folder(tmp / "import")
    admin_password = "admin-" + secrets.token_hex(8)
    port = free_port()
    env = _env(tmp, PORT=str(port), PORTAL_ADMIN_PASSWORD=admin_password)
    proc = Proc("serve", [PYTHON, "-m", "portal.serve"], env, logs, split_stderr=True)
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for_output(SIGN_IN.pattern, 90)
        wait_http(base + "/healthz", 60, [proc])
        wait_http(base + "/readyz", 30, [proc])
        proc.wait_for_output(r"celery@\S+ ready\.", 60, stderr=True)
        run_clis(create_users_commands(), _env(tmp))
    except BaseException:
        stop_all([proc])
        raise
    return Stack("embedded", base, admin_password, tmp / "storage", tmp / "import", _env(tmp), [proc],
                 logs, f"sqlite:///{tmp / 'instance' / 'portal.db'}")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def worker_pids(stack: Stack) -> list[int]:
    """The Celery worker (with its beat) and its pool children, all started by our serve process."""
    found, todo = [], [c for c in _children(stack.procs[0].pid) if "celery" in _cmdline(c)]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += _children(pid)
    return found


@contextlib.contextmanager
def paused_worker(stack: Stack) -> Iterator[None]:
    """Hold the worker still (SIGSTOP), as a busy worker would: new campaigns stay pending.

    It first waits until no campaign is pending or processing (the admin sees them all), so
    the worker is idle, never stopped inside a task. (Its beat's reconciler runs every 30 s,
    in transactions of milliseconds: a pause inside one is possible but unlikely.)
    """
    wait_idle(stack)
    pids = worker_pids(stack)
    assert pids, "found no celery process under the portal's serve process"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def wait_idle(stack: Stack, timeout: float = 30) -> None:
    admin = stack.api("admin")
    deadline = time.monotonic() + timeout
    while True:
        busy = {status: admin.get("/api/campaigns", params={"status": status, "per_page": 1}).json()["total"]
                for status in ("pending", "processing")}
        if not any(busy.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker is still busy after {timeout} s: {busy}")
        time.sleep(0.1)
