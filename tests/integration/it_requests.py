"""Helpers of test_hostile_requests_e2e.py: raw HTTP (no client-side URL clean-up), a listener
that counts every connection made to it, what a stack has stored, and an HTML sink check.
"""
from __future__ import annotations

import base64
import http.client
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from it_stack import PASSWORDS, Api, Stack

# Per family of hostile input: how many cases were sent (summed over both stacks).
CASES: Counter[str] = Counter()


def count(family: str, n: int = 1) -> None:
    CASES[family] += n


# ---------------------------------------------------------------------------- raw HTTP

@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def basic_header(user: str, stack: Stack) -> str:
    password = stack.admin_password if user == "admin" else PASSWORDS[user]
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def raw(stack: Stack, method: str, target: str, user: str | None = "alice", headers: dict | None = None,
        body: bytes | None = None, timeout: float = 30) -> RawResponse:
    """Send exactly `target` as the request line (requests and urllib3 would remove ../ first)."""
    parts = urlsplit(stack.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        sent = dict(headers or {})
        if user is not None:
            sent.setdefault("Authorization", basic_header(user, stack))
        if body is not None:
            sent.setdefault("Content-Length", str(len(body)))
        for key, value in sent.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


# ---------------------------------------------------------------------------- SSRF listener

class Listener:
    """Accepts TCP connections on 127.0.0.1 (and ::1 when available) on one port; counts them.

    Whatever is sent to it, a TLS hello or an HTTP request, it counts the connection and closes it.
    """

    def __init__(self) -> None:
        self.connections = 0
        self._sockets: list[socket.socket] = []
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.bind(("127.0.0.1", 0))
        self.port = v4.getsockname()[1]
        self._sockets.append(v4)
        try:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::1", self.port))
            self._sockets.append(v6)
        except OSError:
            pass
        self._lock = threading.Lock()
        self._threads = []
        for sock in self._sockets:
            sock.listen(16)
            sock.settimeout(0.2)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)
        self._stop = False

    def _serve(self, sock: socket.socket) -> None:
        while not getattr(self, "_stop", False):
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        for thread in self._threads:
            thread.join(timeout=2)
        for sock in self._sockets:
            sock.close()


# ---------------------------------------------------------------------------- what is stored

def stored_state(stack: Stack) -> tuple[frozenset[str], frozenset[str]]:
    """(every campaign id, as the admin lists them; every path under the storage folder)."""
    admin = Api(stack.base_url, "admin", stack.admin_password)  # a fresh connection, not a kept-alive one
    try:
        ids = frozenset(admin.all_campaign_ids())
    finally:
        admin.close()
    files = frozenset(str(p.relative_to(stack.storage_dir)) for p in stack.storage_dir.rglob("*")
                      if "library-thumbs" not in p.parts)
    return ids, files


# ---------------------------------------------------------------------------- HTML sinks

class _Sinks(HTMLParser):
    """Every place in a page where markup from a user could run or load something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.problems.append(f"<{tag} {name}=...> (an inline event handler)")
            if name.lower() in ("href", "src", "action", "formaction") and value and \
                    value.strip().lower().startswith(("javascript:", "data:text")):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag == "script":
            self._in_script = True
            if not dict(attrs).get("src"):
                self.problems.append("an inline <script>")
        if tag in ("iframe", "object", "embed", "base"):
            self.problems.append(f"<{tag}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append("script content")


def markup_problems(page: str) -> list[str]:
    """Inline handlers, inline scripts, javascript: URLs, frames: none is ever in our pages."""
    parser = _Sinks()
    parser.feed(page)
    parser.close()
    return parser.problems


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_files(stack: Stack) -> dict[Path, str]:
    return {p: p.read_text(errors="replace") for p in sorted(stack.log_dir.glob("*.log"))}
