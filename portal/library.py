"""The server import folder (PORTAL_IMPORT_DIR): which files a `local` campaign may read."""
from __future__ import annotations

import os
import stat
from pathlib import Path


class NotImportable(ValueError):
    """str(e) says, in words for a person, why the path cannot be used."""


def resolve(import_dir: str, relative: str) -> Path:
    """The real path of a regular file inside import_dir, or NotImportable.

    Checked on the resolved path, so `..`, absolute paths and symlinks that lead
    outside the folder are all refused, whatever their spelling.
    """
    if not relative or "\x00" in relative:
        raise NotImportable("Give the path of an image inside the import folder.")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise NotImportable("The path must be relative to the import folder, not absolute.")
    if ".." in Path(relative).parts:
        raise NotImportable("The path must stay inside the import folder ('..' is not allowed).")
    root = os.path.realpath(import_dir)
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, target]) != root:
        raise NotImportable("The path leads outside the import folder.")
    try:
        mode = os.stat(target).st_mode
    except OSError:
        raise NotImportable(f"There is no file '{relative}' in the import folder.") from None
    if not stat.S_ISREG(mode):
        raise NotImportable(f"'{relative}' is not a file.")
    return Path(target)


def read(import_dir: str, relative: str, limit: int) -> bytes:
    """Read an importable file, refusing one larger than limit bytes."""
    path = resolve(import_dir, relative)
    # O_NOFOLLOW: the resolved path must not have been swapped for a symlink since.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NotImportable(f"'{relative}' is larger than the {limit // (1024 * 1024)} MB limit.")
    return data


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def listing(import_dir: str, folder: str = "") -> tuple[list[str], list[dict]]:
    """Sub-folders and importable images directly inside `folder` (relative), sorted by name.

    Symlinks are followed only when they stay inside the import folder, like resolve().
    """
    root = os.path.realpath(import_dir)
    base = _folder(root, folder)
    folders, images = [], []
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name.lower())
    except FileNotFoundError:
        return [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        relative = os.path.relpath(os.path.join(base, entry.name), root)
        real = os.path.realpath(entry.path)
        if os.path.commonpath([root, real]) != root:
            continue
        if os.path.isdir(real):
            folders.append(relative)
        elif os.path.isfile(real) and entry.name.lower().endswith(IMAGE_SUFFIXES):
            images.append({"path": relative, "name": entry.name, "bytes": os.path.getsize(real)})
    return folders, images


def _folder(root: str, folder: str) -> str:
    if not folder:
        return root
    if "\x00" in folder or os.path.isabs(folder) or ".." in Path(folder).parts:
        raise NotImportable("The folder must be a path inside the import folder.")
    real = os.path.realpath(os.path.join(root, folder))
    if os.path.commonpath([root, real]) != root or not os.path.isdir(real):
        raise NotImportable(f"There is no folder '{folder}' in the import folder.")
    return real
