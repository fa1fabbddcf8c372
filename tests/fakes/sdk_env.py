"""Point the official Dropbox SDK at a local fake, in this process.

The SDK fixes its hosts when dropbox/session.py is first imported (PROTOCOLS.md §B7.1), so
this must run before anything imports `dropbox`: call sdk_port() at the top of a test module
(collection time, before any test runs). It picks a free port, imports the SDK with
DROPBOX_API_HOST=DROPBOX_API_CONTENT_HOST=localhost:<port>, then restores the environment;
start the DropboxFake on that port. Later calls return the same port. If the SDK was imported
earlier with other hosts it raises, rather than letting tests talk to the real Dropbox.
"""
from __future__ import annotations

import os
import re
import socket
import sys

_KEYS = ("DROPBOX_API_HOST", "DROPBOX_API_CONTENT_HOST")
_port: int | None = None


def sdk_port() -> int:
    global _port
    if _port is not None:
        return _port
    if "dropbox" in sys.modules:
        from dropbox import session

        found = re.fullmatch(r"localhost:(\d+)", session.API_HOST)
        if not found or session.API_CONTENT_HOST != session.API_HOST:
            raise RuntimeError(f"dropbox was imported before sdk_port() with hosts {session.API_HOST!r} / "
                               f"{session.API_CONTENT_HOST!r}; set DROPBOX_API_HOST and DROPBOX_API_CONTENT_HOST "
                               "to localhost:<port> before the first import")
        _port = int(found[1])
        return _port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = {key: os.environ.get(key) for key in _KEYS}
    os.environ.update(dict.fromkeys(_KEYS, f"localhost:{port}"))
    try:
        import dropbox  # noqa: F401 - the import is the point: it reads the variables now
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    _port = port
    return port
