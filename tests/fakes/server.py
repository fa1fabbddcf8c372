"""What every fake shares: a WSGI app served over TLS on 127.0.0.1, a script of injected
failures, a request log, and a JSON control endpoint so another process can steer it.

Control protocol (test-only; the fakes bind 127.0.0.1): POST {base}/__control with
    {"method": "<name in CONTROL>", "args": [...], "kwargs": {...}}
answers {"result": <JSON>} or 400 {"error": "..."}. Bytes travel as {"__bytes__": "<base64>"}.
RemoteFake(base_url, ca) wraps that as ordinary method calls.
"""
from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .tls import TLSFiles, make_tls


@dataclass
class Scripted:
    """One injected answer. status None: answer normally, only after `delay` and/or truncated."""

    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: bool = False


class FakeService:
    """Subclasses set ROUTES (names that can be scripted) and implement route_of() and dispatch()."""

    ROUTES: frozenset[str] = frozenset()
    CONTROL: frozenset[str] = frozenset({"fail_next", "slow_next", "truncate_next", "reset", "calls", "configure"})
    CONFIGURABLE: frozenset[str] = frozenset()  # attributes configure() may set

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.server = None
        self.thread: threading.Thread | None = None
        self.base_url = ""
        self.reset()

    # -- steering (in-process, or through /__control) ------------------------------------

    def reset(self) -> None:
        """Forget the script and the request log (state such as links and tokens is kept)."""
        with self.lock:
            self.script: dict[str, deque[Scripted]] = defaultdict(deque)
            self.log: list[dict[str, Any]] = []

    def fail_next(self, route: str, status: int = 500, *, json_body: Any = None, body: str | bytes | None = None,
                  content_type: str | None = None, headers: dict[str, str] | None = None, times: int = 1,
                  delay: float = 0.0) -> None:
        """The next `times` requests to route get this answer instead of the real one.
        json_body is sent with Content-Type exactly application/json unless content_type says otherwise."""
        if route not in self.ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {sorted(self.ROUTES)}")
        all_headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", content_type or "application/json")
        else:
            data = body.encode() if isinstance(body, str) else (body or b"")
            all_headers.setdefault("Content-Type", content_type or "text/plain; charset=utf-8")
        with self.lock:
            for _ in range(times):
                self.script[route].append(Scripted(status, data, all_headers, delay))

    def slow_next(self, route: str, delay: float, times: int = 1) -> None:
        """The next requests to route are answered normally, after `delay` seconds."""
        with self.lock:
            for _ in range(times):
                self.script[route].append(Scripted(None, delay=delay))

    def truncate_next(self, route: str, times: int = 1) -> None:
        """The next answers on route promise the full Content-Length but stop halfway, then close."""
        with self.lock:
            for _ in range(times):
                self.script[route].append(Scripted(None, truncate=True))

    def calls(self, route: str | None = None) -> Any:
        """How many requests reached route (or a dict for all routes), injected ones included."""
        with self.lock:
            counts: dict[str, int] = defaultdict(int)
            for entry in self.log:
                counts[entry["route"]] += 1
            return counts.get(route, 0) if route else dict(counts)

    def requests_to(self, route: str) -> list[dict[str, Any]]:
        """Logged requests to route: method, path, query, headers (in-process only)."""
        with self.lock:
            return [entry for entry in self.log if entry["route"] == route]

    def configure(self, **attrs: Any) -> None:
        for name, value in attrs.items():
            if name not in self.CONFIGURABLE:
                raise ValueError(f"cannot configure {name!r}; one of {sorted(self.CONFIGURABLE)}")
            setattr(self, name, value)

    # -- WSGI -----------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path == "/__control" and request.method == "POST":
            return self._control(request)(environ, start_response)
        route = self.route_of(request)
        with self.lock:
            self.log.append({"route": route, "method": request.method, "path": request.path,
                             "query": request.query_string.decode(), "headers": dict(request.headers),
                             "json": _json_body(request)})
            scripted = self.script[route].popleft() if route and self.script[route] else None
        if scripted and scripted.delay:
            time.sleep(scripted.delay)
        if scripted and scripted.status is not None:
            response = Response(scripted.body, scripted.status, headers=scripted.headers)
        else:
            response = self.dispatch(route, request)
            if scripted and scripted.truncate:
                response = _truncated(response)
        return response(environ, start_response)

    def route_of(self, request: Request) -> str | None:
        raise NotImplementedError

    def dispatch(self, route: str | None, request: Request) -> Response:
        raise NotImplementedError

    def _control(self, request: Request) -> Response:
        try:
            call = json.loads(request.get_data(), object_hook=_decode_bytes)
            method = call["method"]
            if method not in self.CONTROL:
                raise ValueError(f"unknown control method {method!r}")
            result = getattr(self, method)(*call.get("args", []), **call.get("kwargs", {}))
            return Response(json.dumps({"result": result}, default=_encode_bytes), 200,
                            content_type="application/json")
        except (ValueError, KeyError, TypeError) as e:
            return Response(json.dumps({"error": f"{type(e).__name__}: {e}"}), 400, content_type="application/json")

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, tls: TLSFiles, port: int = 0, host: str = "127.0.0.1") -> FakeService:
        self.server = make_server(host, port, self, threaded=True, ssl_context=tls.server_context(),
                                  request_handler=_QuietHandler)
        self.port = self.server.server_port
        self.base_url = f"https://localhost:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"{type(self).__name__}:{self.port}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None

    @property
    def host(self) -> str:
        """host:port as an allow-list entry."""
        return f"localhost:{self.port}"


class RemoteFake:
    """Steer a fake in another process: RemoteFake(url, ca).fail_next("generate", 429, headers=...)."""

    def __init__(self, base_url: str, ca: str) -> None:
        self.base_url, self.ca = base_url.rstrip("/"), ca

    def __getattr__(self, method: str):
        def call(*args: Any, **kwargs: Any) -> Any:
            payload = json.dumps({"method": method, "args": args, "kwargs": kwargs}, default=_encode_bytes)
            with requests.Session() as session:
                session.trust_env = False
                r = session.post(f"{self.base_url}/__control", data=payload, verify=self.ca, timeout=10,
                                 headers={"Content-Type": "application/json"})
            if r.status_code != 200:
                raise RuntimeError(f"control {method} failed: {r.text}")
            return r.json()["result"]

        return call


def _encode_bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__}")


def _decode_bytes(obj: dict) -> Any:
    return base64.b64decode(obj["__bytes__"]) if set(obj) == {"__bytes__"} else obj


def _json_body(request: Request) -> Any:
    """A JSON request body, parsed, for assertions; None for anything else (forms stay unread)."""
    if request.mimetype != "application/json":
        return None
    try:
        return json.loads(request.get_data(cache=True))
    except ValueError:
        return None


def _truncated(response: Response) -> Response:
    data = response.get_data()
    headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(data))))
    # An iterable body keeps werkzeug from correcting Content-Length; the dev server always closes.
    return Response(iter([data[: len(data) // 2]]), response.status_code, headers=headers)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # the request log is in FakeService.log; query strings may hold rlkeys

    def log_error(self, *args: Any) -> None:
        pass  # clients that hang up or reject our certificate are part of the tests


def serve_main(factory, argv: list[str] | None = None) -> None:
    """`python -m tests.fakes.<fake> --cert-dir DIR [--port N]`: serve until SIGTERM/SIGINT.
    Prints one JSON line when ready: {"url", "host", "ca", "port"}."""
    parser = argparse.ArgumentParser(description=factory.__doc__)
    parser.add_argument("--cert-dir", required=True, help="where ca.pem/server.pem are made or reused")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    tls = make_tls(args.cert_dir)
    fake = factory().start(tls, args.port, args.host)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"url": fake.base_url, "host": fake.host, "port": fake.port,
                      "ca": tls.ca}), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    sys.exit(0)
