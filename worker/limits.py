"""A memory ceiling for each worker pool child (RELIABILITY.md §3).

With a ceiling, an allocation that would not fit fails inside the child (Python raises
MemoryError, so does numpy; Pillow, OpenCV and libvips report their failed allocation), the
task records the campaign as failed, and the child lives on. Without one, a render that grows
past the machine's memory wakes the kernel's OOM killer, which kills the child mid-task (or a
neighbour) and leaves the campaign to the reconciler. Celery's `worker_max_memory_per_child`
is the other half: it replaces a child whose resident size grew past ~1 GB *after* a task.

The ceiling is RLIMIT_DATA, not RLIMIT_AS. Since Linux 4.7 RLIMIT_DATA counts every private
writable mapping (heap, anonymous mmap: where decoded pixels live) and nothing else. RLIMIT_AS
also counts what costs no memory: shared libraries, reserved-but-unused address space (glibc
reserves 64 MiB per malloc arena, i.e. per thread that allocates; OpenCV, OpenBLAS and libvips
start threads), so it varies with the thread count, not the picture. Measured on this code:
a pool child starts with ~340 MiB of data (~630 MiB of address space); see the README.
"""
from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Never set a ceiling this close to what the child already holds: it could not run a task at all.
HEADROOM_MB = 64


def data_in_use_mb(status_path: str = "/proc/self/status") -> int | None:
    """VmData of this process in MiB (what RLIMIT_DATA is compared with), None if unknown."""
    try:
        with open(status_path) as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def apply_memory_limit(megabytes: int) -> int | None:
    """Set this process's RLIMIT_DATA to `megabytes` MiB (0 or less: no limit); the MiB set.

    Never above the hard limit, and never below what is in use plus HEADROOM_MB (a warning
    says so): a ceiling the child is already at would fail every task, not the large ones.
    """
    if megabytes <= 0:
        return None
    in_use = data_in_use_mb()
    wanted = megabytes
    if in_use is not None and megabytes < in_use + HEADROOM_MB:
        wanted = in_use + HEADROOM_MB
        log.warning("memory limit %s MiB is below the %s MiB this worker child already uses; "
                    "using %s MiB", megabytes, in_use, wanted)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = wanted << 20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    log.info("memory limit of this worker child: %s MiB of data (%s MiB in use)", limit >> 20, in_use)
    return limit >> 20
