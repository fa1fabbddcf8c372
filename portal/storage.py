"""The one place that knows the disk layout.

    <root>/campaigns/<id>/source               an uploaded original (never served)
    <root>/campaigns/<id>/source.preview.jpg   re-encoded, oriented copy for drawing crop boxes
    <root>/campaigns/<id>/<1x1|9x16|16x9>.jpg  a rendered variant
    <root>/campaigns/<id>/<slug>.preview.jpg   its small gallery preview
    <root>/library-thumbs/<sha256>.jpg        cached thumbnails of import-folder images
    <root>/incoming/.tmp-*                     uploads while their request is parsed

Paths are built from a campaign id (32 hex digits) and a ratio from a fixed set, never from
anything a client typed. Every write goes to a temporary name first and is renamed into place,
so a reader never sees half a file and a re-run simply replaces the previous output.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from flask import current_app

SLUGS = {"1:1": "1x1", "9:16": "9x16", "16:9": "16x9"}
_ID = re.compile(r"[0-9a-f]{32}")
_CHUNK = 1 << 20  # an upload is copied a MiB at a time, never held whole in memory
TEMP_PREFIX = ".tmp-"  # every temporary name in storage starts so (leftovers are swept by it)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV}
INCOMING_MAX_AGE = 3600  # seconds: an older file in incoming/ was left by a killed process


class Storage:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def campaign_dir(self, campaign_id: str) -> Path:
        if not _ID.fullmatch(campaign_id):
            raise ValueError("not a campaign id")
        return self.root / "campaigns" / campaign_id

    def source_path(self, campaign_id: str) -> Path:
        return self.campaign_dir(campaign_id) / "source"

    def source_preview_path(self, campaign_id: str) -> Path:
        return self.campaign_dir(campaign_id) / "source.preview.jpg"

    def variant_path(self, campaign_id: str, ratio: str, preview: bool = False) -> Path:
        slug = SLUGS[ratio]  # KeyError for anything outside the fixed set
        return self.campaign_dir(campaign_id) / (f"{slug}.preview.jpg" if preview else f"{slug}.jpg")

    def library_thumb_path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError("not a thumbnail key")
        return self.root / "library-thumbs" / f"{key}.jpg"

    def write(self, path: Path, data: bytes) -> None:
        """Write atomically: temp file in the same folder, fsync, rename."""
        self._write_atomically(path, [data])

    def incoming_dir(self) -> Path:
        # Absolute, as the names of tempfile's files are: PORTAL_STORAGE_DIR may be relative.
        return Path(os.path.abspath(self.root / "incoming"))

    def incoming_file(self):
        """A file for an upload being received, on the storage's disk, gone when closed."""
        folder = self.incoming_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(dir=folder, prefix=TEMP_PREFIX)

    def sweep_incoming(self, max_age: float = INCOMING_MAX_AGE) -> int:
        """Remove what killed processes left in incoming/; returns how many files."""
        removed, cutoff = 0, time.time() - max_age
        for path in self.incoming_dir().glob(TEMP_PREFIX + "*"):
            with contextlib.suppress(FileNotFoundError):  # its request closed it meanwhile
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def save_upload(self, campaign_id: str, stream, limit: int) -> int:
        """Put an uploaded file in place; returns its size. One received into incoming_file() is
        linked into place (no copy), any other stream is copied a chunk at a time."""
        if self._is_incoming(stream):
            return self._link_upload(campaign_id, stream, limit)
        size = 0

        def chunks():
            nonlocal size
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ValueError("upload larger than the limit")
                yield chunk

        self._write_atomically(self.source_path(campaign_id), chunks())
        return size

    def _is_incoming(self, stream) -> bool:
        name = getattr(stream, "name", None)
        return isinstance(name, str) and Path(name).parent == self.incoming_dir()

    def _link_upload(self, campaign_id: str, stream, limit: int) -> int:
        stream.flush()
        size = os.fstat(stream.fileno()).st_size
        if size > limit:
            raise ValueError("upload larger than the limit")
        path = self.source_path(campaign_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.fsync(stream.fileno())
            os.link(stream.name, path)  # the temporary name goes when the request closes the file
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            stream.seek(0)  # a file system without hard links (some network mounts): copy it
            self._write_atomically(path, iter(lambda: stream.read(_CHUNK), b""))
        return size

    def _write_atomically(self, path: Path, chunks) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:  # buffered: its write() always writes the whole chunk
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, campaign_id: str) -> None:
        shutil.rmtree(self.campaign_dir(campaign_id), ignore_errors=True)

    def size_of(self, campaign_id: str) -> int:
        folder = self.campaign_dir(campaign_id)
        return sum(p.stat().st_size for p in folder.iterdir()) if folder.is_dir() else 0


def storage() -> Storage:
    """The storage of the current app (web request or worker task)."""
    return current_app.extensions["storage"]
