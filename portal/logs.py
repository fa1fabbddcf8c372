"""Structured log lines with a request id, carried from the web request into the task's log lines.

Web: `X-Request-ID` is taken from the request when it is a sane token, else generated; it is
echoed in the response and set in a contextvar that `RequestIdFilter` puts on every record
(format: `... request_id=<id>: message`). Enqueuing passes it as the Celery message header
`request_id`; in the worker the task_prerun/task_postrun signals set and clear the same contextvar.
Nothing here logs headers or bodies, so Authorization and passwords never reach the logs.
"""
from __future__ import annotations

import contextvars
import logging
import re
import uuid

from flask import Flask, g, request

HEADER = "X-Request-ID"
FORMAT = "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s: %(message)s"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NONE = "-"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default=_NONE)


def current_request_id() -> str | None:
    value = request_id_var.get()
    return None if value == _NONE else value


def sane(value: str | None) -> str | None:
    """The value if it is a short token of [A-Za-z0-9._-], else None (never logged raw)."""
    return value if value and _SANE.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record passing the handler (`-` outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def configure(level: str | int) -> None:
    """basicConfig with the request-id format, and the filter on every root handler (idempotent)."""
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


def init_app(app: Flask) -> None:
    """Register before authentication, so a refused request still gets (and logs) its id."""
    app.before_request(_start)
    app.after_request(_echo)
    app.teardown_request(_end)


def _start() -> None:
    rid = sane(request.headers.get(HEADER)) or new_request_id()
    g.request_id = rid
    g._request_id_token = request_id_var.set(rid)


def _echo(response):
    rid = g.get("request_id")
    if rid:
        response.headers[HEADER] = rid
    return response


def _end(_exc) -> None:
    token = g.pop("_request_id_token", None)
    if token is not None:
        try:
            request_id_var.reset(token)
        except ValueError:  # set in another context (should not happen); just clear it
            request_id_var.set(_NONE)


# Worker side: called from celery's task_prerun / task_postrun signals (worker/celery_app.py).

def task_started(task) -> contextvars.Token:
    req = getattr(task, "request", None)
    headers = getattr(req, "headers", None) or {}
    rid = sane(getattr(req, "request_id", None) or headers.get("request_id")) or getattr(req, "id", None)
    return request_id_var.set(rid or _NONE)


def task_finished(token: contextvars.Token | None) -> None:
    if token is None:
        request_id_var.set(_NONE)
        return
    try:
        request_id_var.reset(token)
    except ValueError:
        request_id_var.set(_NONE)
