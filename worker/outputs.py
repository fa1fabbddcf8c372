"""A run's output files: written into its own staging folder, moved into place when it finishes.

Each attempt writes into `<campaign>/.attempt-<n>/`; only the attempt whose fenced finish
commits moves its files next to the source (worker/pipeline.py `_finish`), so a stale run
never replaces the outputs of the one the row says completed.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from portal.storage import TEMP_PREFIX, storage

from . import sources

if TYPE_CHECKING:  # only for the annotation: leases and the reconciler need no libvips
    from .imaging import Rendering

STAGING = ".attempt-"  # <campaign>/.attempt-<n>/: one run's outputs until its fenced finish


class StorageFull(sources.TransientSourceError):
    """The disk of the storage folder is full: not the marketer's fault, worth retrying later."""


def remove_leftovers(campaign_id: str) -> None:
    """Temp files and staged outputs of earlier attempts: they died, or are fenced off from now on.

    A stale run that wakes later may write into its staging folder again; its finish is then
    fenced and it removes the folder itself (pipeline._superseded)."""
    folder = storage().campaign_dir(campaign_id)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(STAGING):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(TEMP_PREFIX):
            path.unlink(missing_ok=True)


def staging_dir(campaign_id: str, attempt: int) -> Path:
    return storage().campaign_dir(campaign_id) / f"{STAGING}{attempt}"


def save(campaign_id: str, attempt: int, rendering: Rendering) -> None:
    """Write every output into this attempt's staging folder; publish() moves them into place.

    A full disk is a StorageFull (retried later) and leaves nothing half-written behind."""
    store, staging = storage(), staging_dir(campaign_id, attempt)
    files = {store.source_preview_path(campaign_id): rendering.source_preview}
    for variant in rendering.variants:
        files[store.variant_path(campaign_id, variant.ratio)] = variant.jpeg
        files[store.variant_path(campaign_id, variant.ratio, preview=True)] = variant.preview
    try:
        for final, data in files.items():
            store.write(staging / final.name, data)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull("The portal's storage is full, so the images could not be saved.") from None
        raise


def publish(campaign_id: str, attempt: int) -> None:
    """Move this attempt's staged outputs into place (renames within one folder: atomic, no space)."""
    staging = staging_dir(campaign_id, attempt)
    if not staging.is_dir():
        return
    for staged in sorted(staging.iterdir()):
        os.replace(staged, staging.parent / staged.name)
    staging.rmdir()


def discard(campaign_id: str, attempt: int) -> None:
    """This attempt's staged outputs, which will never go live."""
    shutil.rmtree(staging_dir(campaign_id, attempt), ignore_errors=True)
