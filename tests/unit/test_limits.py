"""worker.limits: the per-child memory ceiling turns an allocation that does not fit into
MemoryError (the process lives on), and is never set where the child could not work at all."""
from __future__ import annotations

import logging
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from worker import limits

ROOT = Path(__file__).resolve().parents[2]


def run_limited(code: str, megabytes: int) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter after apply_memory_limit(megabytes) (never in pytest's own)."""
    script = f"from worker import limits\nprint('set', limits.apply_memory_limit({megabytes}))\n{code}"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_an_allocation_over_the_ceiling_raises_memoryerror_and_the_process_goes_on():
    code = """
import numpy
from PIL import Image
small = bytearray(50 << 20)  # under the ceiling: fine
for name, allocate in [("bytes", lambda: bytearray(1 << 30)),
                       ("numpy", lambda: numpy.ones((1 << 30,), dtype=numpy.uint8)),
                       ("pillow", lambda: Image.new("RGB", (16000, 16000)))]:
    try:
        allocate()
    except MemoryError:
        print(name, "MemoryError")
again = bytearray(50 << 20)  # and the process still works afterwards
print("alive", len(small) + len(again))
"""
    in_use = limits.data_in_use_mb()
    assert in_use is not None
    done = run_limited(code, 600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "set 600", lines
    assert lines[1:] == ["bytes MemoryError", "numpy MemoryError", "pillow MemoryError", f"alive {100 << 20}"], done


def test_without_a_ceiling_the_same_allocation_succeeds():
    done = subprocess.run([sys.executable, "-c", "print(len(bytearray(1 << 30)))"],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(1 << 30), done.stderr  # so the test above is about the ceiling


@pytest.mark.parametrize("megabytes", [0, -1])
def test_zero_or_less_sets_nothing(monkeypatch, megabytes):
    monkeypatch.setattr(resource, "setrlimit", lambda *a: pytest.fail("setrlimit called"))
    assert limits.apply_memory_limit(megabytes) is None


@pytest.fixture
def captured(monkeypatch):
    calls = []
    monkeypatch.setattr(resource, "setrlimit", lambda which, pair: calls.append((which, pair)))
    return calls


def test_the_ceiling_is_rlimit_data_in_bytes(monkeypatch, captured):
    monkeypatch.setattr(limits, "data_in_use_mb", lambda: 300)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert limits.apply_memory_limit(2048) == 2048
    assert captured == [(resource.RLIMIT_DATA, (2048 << 20, resource.RLIM_INFINITY))]


def test_a_ceiling_below_what_is_in_use_is_raised_with_a_warning(monkeypatch, captured, caplog):
    monkeypatch.setattr(limits, "data_in_use_mb", lambda: 330)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    with caplog.at_level(logging.INFO, logger="worker.limits"):
        assert limits.apply_memory_limit(100) == 330 + limits.HEADROOM_MB
    assert captured[0][1][0] == (330 + limits.HEADROOM_MB) << 20
    assert any(r.levelno == logging.WARNING and "below" in r.getMessage() for r in caplog.records)


def test_the_hard_limit_is_never_exceeded(monkeypatch, captured):
    monkeypatch.setattr(limits, "data_in_use_mb", lambda: 100)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (512 << 20, 512 << 20))
    assert limits.apply_memory_limit(4096) == 512
    assert captured == [(resource.RLIMIT_DATA, (512 << 20, 512 << 20))]


def test_data_in_use_is_read_from_proc(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmSize:\t  900000 kB\nVmData:\t  340992 kB\nVmRSS:\t 100 kB\n")
    assert limits.data_in_use_mb(str(status)) == 333
    assert limits.data_in_use_mb(str(tmp_path / "missing")) is None
    assert limits.data_in_use_mb() > 0  # this process, really
