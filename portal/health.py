"""Liveness and readiness, reachable without logging in."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from .auth import public
from .models import db

bp = Blueprint("health", __name__)
PROBE_TIMEOUT = 2  # seconds, for each dependency


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
    down = [name for name, v in checks.items() if v != "ok"]
    response = jsonify(status="ready" if ready else "unavailable", checks=checks, down=down,
                       message="Ready." if ready else f"Not ready: {' and '.join(down)} unreachable.")
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
    """On MySQL/MariaDB a fresh connection with 2-second timeouts, not the pool's: a stalled
    server must not hold the probe for the pool's read timeout, and connecting is what is probed."""
    url = sa.make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "mysql":
        try:
            db.session.execute(sa.text("SELECT 1"))
        finally:
            db.session.rollback()
        return
    engine = current_app.extensions.get("readyz_engine")
    if engine is None:
        timeouts = {k: PROBE_TIMEOUT for k in ("connect_timeout", "read_timeout", "write_timeout")}
        engine = current_app.extensions.setdefault(
            "readyz_engine", sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=timeouts))
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    breaker = current_app.extensions.get("db_breaker")
    if breaker is not None:  # the server answers again: let requests connect without waiting
        breaker.succeeded()


def _ping_broker() -> None:
    celery = current_app.extensions["celery"]
    options = dict(celery.conf.broker_transport_options or {})
    if celery.conf.broker_url.startswith(("redis", "rediss")):  # a stalled Redis: wait 2 s, not 5
        options.update(socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT)
    with celery.connection_for_write(transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=PROBE_TIMEOUT)
