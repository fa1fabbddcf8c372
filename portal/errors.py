"""Errors that answer in the client's language: JSON under /api, a page elsewhere. Never a traceback."""
from __future__ import annotations

import errno
import json
import logging

import sqlalchemy as sa
from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .auth import auth
from .models import db
from .schemas import Invalid

log = logging.getLogger(__name__)
STORAGE_FULL_RETRY_AFTER = 60  # seconds

_NAMES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
          422: "validation_error", 429: "too_many_requests", 500: "internal_error",
          503: "unavailable"}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def error_response(status: int, message: str, fields: dict | None = None,
                   headers: dict | None = None) -> Response:
    if wants_json():
        body = {"error": _NAMES.get(status, "error"), "message": message}
        if fields:
            body["fields"] = fields
        response = Response(json.dumps(body), status=status, mimetype="application/json")
    else:
        html = render_template("error.html", status=status, message=message, fields=fields or {})
        response = Response(html, status=status, mimetype="text/html")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _http_error(e: HTTPException) -> Response:
    response = error_response(e.code or 500, e.description or e.name)
    for key, value in e.get_headers():
        if key.lower() != "content-type":  # keep Allow, Retry-After, WWW-Authenticate
            response.headers[key] = value
    return response


def _invalid(e: Invalid) -> Response:
    return error_response(e.status, e.message, fields=e.fields)


def _database_down(e: Exception) -> Response:
    try:
        db.session.rollback()
    except sa.exc.SQLAlchemyError:  # the connection is already gone: drop it, nothing is left to undo
        db.session.invalidate()
    log.warning("database unavailable: %s", type(e).__name__)
    return error_response(503, "The portal's database is not reachable right now, so nothing can be "
                          "shown or saved; try again in a few seconds.", headers={"Retry-After": "5"})


def _os_error(e: OSError) -> Response:
    """A full storage disk (an upload being received or stored) is 503: someone has to free space."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        log.error("upload not stored: the storage folder is full")
        return error_response(503, "The portal's storage is full; try again later.",
                              headers={"Retry-After": str(STORAGE_FULL_RETRY_AFTER)})
    return _crash(InternalServerError(original_exception=e))


def _crash(e: InternalServerError) -> Response:
    db.session.rollback()
    original = getattr(e, "original_exception", None)
    if original is not None:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
    return error_response(500, "Something went wrong on our side; the error has been logged.")


@auth.error_handler
def _unauthorized(status: int) -> Response:
    message = "Sign in with your portal user name and password."
    return error_response(status, message if status == 401 else "Not allowed.")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Invalid, _invalid)
    app.register_error_handler(sa.exc.OperationalError, _database_down)
    app.register_error_handler(sa.exc.InterfaceError, _database_down)
    app.register_error_handler(sa.exc.TimeoutError, _database_down)
    app.register_error_handler(OSError, _os_error)
    app.register_error_handler(InternalServerError, _crash)
