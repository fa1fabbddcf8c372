"""GET and HEAD requests read through autocommit, read-only connections (MySQL/MariaDB only).

A request's session on the ordinary engine opens a transaction with its first SELECT, so it
must end with a ROLLBACK: a round trip per request that can change nothing, since GET and HEAD
never write (HTTP's safe methods). On a connection in autocommit mode each SELECT is its own
transaction and there is nothing to end. READ COMMITTED already gave every statement a fresh
view, so a reader sees exactly what it saw before.

The connections are also SET SESSION TRANSACTION READ ONLY: a write slipped into a GET handler
fails loudly (MySQL error 1792) instead of committing statement by statement. Everything else
— the form and API writes, the worker, the CLI — keeps the transactional engine.
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import Flask, current_app, has_request_context, request
from flask_sqlalchemy.session import Session

SAFE_METHODS = ("GET", "HEAD")


def init_app(app: Flask, options: dict) -> None:
    """For a MySQL database, the read-only engine: the default engine's URL and options
    (timeouts, recycling), autocommit. SQLite keeps its one engine. Not a Flask-SQLAlchemy bind:
    those are global to the extension, and every app made later would expect one."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if not uri.startswith("mysql"):
        return
    engine = sa.create_engine(uri, **{**options, "isolation_level": "AUTOCOMMIT"})

    @sa.event.listens_for(engine, "connect")
    def _read_only(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")

    app.extensions["read_only_engine"] = engine


def engines() -> list[sa.Engine]:
    """Every engine of the current app: the default one, and the read-only one if there is one."""
    from .models import db

    extra = current_app.extensions.get("read_only_engine")
    return [db.engine] + ([extra] if extra is not None else [])


class RoutingSession(Session):
    """Flask-SQLAlchemy's session, on the read-only engine while a GET or HEAD request is served."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and has_request_context() and request.method in SAFE_METHODS:
            engine = current_app.extensions.get("read_only_engine")
            if engine is not None:
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
