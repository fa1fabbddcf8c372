"""The worker's per-child memory ceiling (worker/limits.py, PORTAL_WORKER_MEMORY_MB), end to end.

An own embedded portal with a low ceiling: a render that needs more memory than it allows ends
`failed` with a readable reason (not lost, not stuck, no dead child) and the next campaign
completes in the same children. On the shared stacks (default ceiling): every pool child has
the ceiling, and a 24 MP photo and the heaviest input the caps admit (a 64 MP WebP) still render.
"""
from __future__ import annotations

import functools
import io
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import it_hostile
import pytest
from it_stack import BRIEF, Api, Stack, stop_all
from PIL import Image, ImageDraw, ImageFilter
from test_failures_e2e import assert_readable

from portal.config import from_environment

pytestmark = pytest.mark.timeout(600)

# A pool child holds ~340 MiB of data before its first task (measured: README, worker/limits.py);
# small renders need ~10 MiB more, a 64 MP picture at least its 192 MiB of pixels more.
LOW_LIMIT_MB = 480


def default_limit_mb() -> int:
    """The ceiling the shared stacks run with: the code's default (clean_env drops PORTAL_*)."""
    saved = os.environ.pop("PORTAL_WORKER_MEMORY_MB", None)
    try:
        return from_environment()["WORKER_MEMORY_MB"]
    finally:
        if saved is not None:
            os.environ["PORTAL_WORKER_MEMORY_MB"] = saved


# ---------------------------------------------------------------------------- processes

def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def data_limit_mb(pid: int) -> int | None:
    """The soft RLIMIT_DATA of a process in MiB, None if unlimited."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max data size"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft) >> 20
    raise AssertionError(f"no data limit line for {pid}")


def limited_pool_children(root_pid: int) -> dict[int, int]:
    """{pid: MiB} of the processes under root_pid's Celery worker that carry a data limit: the
    pool children (the worker's main process and its embedded beat have none)."""
    result, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        kids = children(pid)
        todo += kids
        if "celery" in cmdline(pid) and " worker" in cmdline(pid):
            for kid in kids:
                limit = data_limit_mb(kid)
                if limit is not None:
                    result[kid] = limit
    return result


def wait_for_limited_children(root_pid: int, count: int = 2, timeout: float = 90) -> dict[int, int]:
    """The pool children once `count` of them have applied their ceiling (worker_process_init
    runs after the worker already said it is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        found = limited_pool_children(root_pid)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def worker_root(stack: Stack) -> int:
    proc = next(p for p in stack.procs if p.name in ("worker", "serve"))
    return proc.pid


# ---------------------------------------------------------------------------- inputs

def photo_24mp() -> bytes:
    """A 6000x4000 camera-like JPEG (~3-5 MB)."""
    w, h = 6000, 4000
    small = Image.new("RGB", (600, 400))
    draw, rnd = ImageDraw.Draw(small), random.Random(24)
    for _ in range(120):
        x, y, s = rnd.randrange(600), rnd.randrange(400), rnd.randrange(10, 120)
        draw.ellipse((x, y, x + s, y + s), fill=tuple(rnd.randrange(256) for _ in range(3)))
    im = small.filter(ImageFilter.GaussianBlur(2)).resize((w, h), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


@functools.cache
def webp_64mp() -> bytes:
    """An 8000x8000 WebP: the input the default caps admit that needs the most memory to render
    (measured: 1.0-1.5 GiB more than the child holds at start)."""
    im = Image.linear_gradient("L").resize((8000, 8000)).convert("RGB")
    out = io.BytesIO()
    im.save(out, "WEBP", quality=60, method=0)
    return out.getvalue()


def png_64mp() -> bytes:
    """An all-black 8000x8000 PNG (64 MP, the default cap): ~190 KB that decode to 192 MiB."""
    return it_hostile.png_declaring(8000, 8000, it_hostile.zeros_stream(8000 * (8000 * 3 + 1)))


# ---------------------------------------------------------------------------- low ceiling

@dataclass
class LowLimitRun:
    limits_before: dict[int, int]
    limits_after: dict[int, int]
    big: dict
    small: dict
    worker_log: str


@pytest.fixture(scope="module")
def low_limit_run(tmp_path_factory) -> LowLimitRun:
    portal = it_hostile.start_portal(tmp_path_factory.mktemp("low_memory") / "portal",
                                     PORTAL_WORKER_MEMORY_MB=str(LOW_LIMIT_MB))
    api = Api(portal.base_url, "admin", portal.password)
    try:
        before = wait_for_limited_children(portal.proc.pid)
        r = api.upload(png_64mp(), filename="huge.png", content_type="image/png")
        assert r.status_code == 202, r.text
        big = api.wait(r.json()["id"], timeout=240).body
        small = api.submit_and_wait(it_hostile.small_jpeg(seed=11), timeout=120).body
        after = limited_pool_children(portal.proc.pid)
        applied = re.findall(r"memory limit of this worker child: .*", portal.proc.errors())
        print(f"\n[memory] ceiling {LOW_LIMIT_MB} MiB: {applied}; 64 MP PNG -> {big['status']}: "
              f"{big['error_message']!r}; then a small JPEG -> {small['status']}")
        return LowLimitRun(before, after, big, small, portal.proc.errors())
    finally:
        api.close()
        stop_all([portal.proc])


def test_every_pool_child_has_the_configured_ceiling(low_limit_run: LowLimitRun):
    assert len(low_limit_run.limits_before) == 2, low_limit_run.limits_before  # PORTAL_WORKER_CONCURRENCY
    assert set(low_limit_run.limits_before.values()) == {LOW_LIMIT_MB}, low_limit_run.limits_before
    applied = re.findall(r"memory limit of this worker child: (\d+) MiB of data \((\d+) MiB in use\)",
                         low_limit_run.worker_log)
    assert applied and all(int(limit) == LOW_LIMIT_MB for limit, _ in applied), applied


def test_a_render_over_the_ceiling_fails_cleanly(low_limit_run: LowLimitRun):
    big = low_limit_run.big
    assert big["status"] == "failed", (
        f"the 64 MP render fitted in {LOW_LIMIT_MB} MiB: lower LOW_LIMIT_MB or use a larger input; {big}")
    assert big["attempt"] == 1, "the failed render was retried (a crashed child, not a clean failure)"
    assert_readable(big["error_message"])
    assert "damaged" not in big["error_message"], "an out-of-memory error was blamed on the file"
    assert "MemoryError" in low_limit_run.worker_log or "out of memory" in low_limit_run.worker_log


def test_the_reason_says_the_image_was_too_large(low_limit_run: LowLimitRun):
    assert re.search(r"too large|memory", low_limit_run.big["error_message"] or "", re.I), \
        low_limit_run.big["error_message"]


def test_the_children_survive_and_serve_the_next_campaign(low_limit_run: LowLimitRun):
    small = low_limit_run.small
    assert small["status"] == "completed" and len(small["variants"]) == 3, small
    assert low_limit_run.limits_after == low_limit_run.limits_before, "a pool child died or was replaced"
    for sign in ("WorkerLostError", "exited with 'signal", "SIGKILL"):
        assert sign not in low_limit_run.worker_log, sign


# ---------------------------------------------------------------------------- default ceiling

@pytest.mark.parametrize(("name", "make", "size"), [
    ("photo-24mp.jpg", photo_24mp, (6000, 4000)),
    ("largest-64mp.webp", webp_64mp, (8000, 8000)),
], ids=["24mp-jpeg", "64mp-webp-at-the-cap"])
def test_under_the_default_ceiling_large_pictures_render(stack: Stack, name, make, size):
    limits = wait_for_limited_children(worker_root(stack))
    assert len(limits) == 2 and set(limits.values()) == {default_limit_mb()}, limits
    folder = Path(stack.import_dir) / "memory"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(make())
    api = stack.api("alice")
    r = api.create({**BRIEF, "image_metadata": {"source_type": "local", "source_path": f"memory/{name}"}})
    assert r.status_code == 202, r.text
    final = api.wait(r.json()["id"], timeout=300).body
    assert final["status"] == "completed", final["error_message"]
    assert (final["source"]["width"], final["source"]["height"]) == size
    assert {(v["width"], v["height"]) for v in final["variants"]} == {(1080, 1080), (1080, 1920), (1920, 1080)}
    assert limited_pool_children(worker_root(stack)) == limits, "a pool child died or was replaced"
