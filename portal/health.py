"""Liveness and readiness, reachable without logging in."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from .auth import public
from .models import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz():
    """The process answers; touches no dependency."""
    return jsonify(status="ok")


@bp.get("/readyz")
@public
def readyz():
    """Database and broker both answer, each within a couple of seconds."""
    checks = {"database": _check(_ping_database), "broker": _check(_ping_broker)}
    ready = all(v == "ok" for v in checks.values())
    response = jsonify(status="ready" if ready else "unavailable", checks=checks)
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = "5"
    return response


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as e:  # a readiness probe reports any failure instead of raising it
        return f"unavailable: {type(e).__name__}"


def _ping_database() -> None:
    try:
        db.session.execute(sa.text("SELECT 1"))
    finally:
        db.session.rollback()


def _ping_broker() -> None:
    with current_app.extensions["celery"].connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
