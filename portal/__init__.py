"""The campaign portal: create_app() builds the Flask app; nothing happens at import time."""
from __future__ import annotations

import time
from pathlib import Path
from threading import Lock

import pymysql
import sqlalchemy as sa
from flask import Flask, has_request_context
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from . import config, logs, read_only
from .mysql_connection import SkipIdleRollback
from .request_body import Request

ROOT = Path(__file__).resolve().parent.parent
migrate = Migrate(render_as_batch=True)  # SQLite needs batch mode for ALTER
csrf = CSRFProtect()


def create_app(test_config: dict | None = None) -> Flask:
    # static_folder=None: the route is added below as a public view (see _public_static).
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=None)
    app.request_class = Request
    app.config.from_mapping(config.from_environment())
    if test_config:
        app.config.update(test_config)
    app.instance_path = app.config["INSTANCE_DIR"]
    app.config["SECRET_KEY"] = _secret_key(app)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # a page left open for hours still works
    logs.configure(app.config["LOG_LEVEL"])  # request_id= on every line (portal/logs.py)

    from worker.celery_app import celery_init_app

    from . import api, auth, cli, errors, health, library_api, metrics, security, views  # noqa: F401
    from .models import db
    from .storage import Storage

    db.init_app(app)
    app.teardown_appcontext(_release_session)  # runs before Flask-SQLAlchemy's own (reverse order)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    app.extensions["storage"] = Storage(app.config["STORAGE_DIR"])
    celery_init_app(app)
    logs.init_app(app)  # request id and metrics hooks before CSRF and login: refused requests get them too
    metrics.init_app(app)
    csrf.init_app(app)
    csrf.exempt(api.bp)  # scripts send no token; api.refuse_cross_site guards it instead
    app.before_request(auth.require_login)
    _public_static(app, auth.public)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    errors.init_app(app)
    security.init_app(app)
    cli.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            _sqlite_pragmas(db.engine)
    elif app.config["SQLALCHEMY_DATABASE_URI"].startswith("mysql"):
        with app.app_context():
            read_only.init_app(app, app.config["SQLALCHEMY_ENGINE_OPTIONS"])
            app.extensions["db_breaker"] = _fail_fast(read_only.engines())
    return app


def _release_session(_error: BaseException | None = None) -> None:
    """End the request's session without raising: on a stalled or dropped connection the rollback
    fails, and an exception from teardown makes gunicorn answer 500 after we answered 503."""
    from .models import db

    try:
        db.session.remove()
    except sa.exc.SQLAlchemyError:
        db.session.invalidate()  # drop the connection instead of rolling it back
        db.session.remove()


def _public_static(app: Flask, public) -> None:
    """Our own CSS, JS and icons need no login: the 503 page of a database outage (auth cannot
    check anyone then) must still be styled, and an open page's script must keep working."""
    app.static_folder = str(ROOT / "static")

    @public
    def static(filename: str):
        return app.send_static_file(filename)

    app.add_url_rule(f"{app.static_url_path}/<path:filename>", endpoint="static", view_func=static)


def _secret_key(app: Flask) -> str:
    """From the environment, else the embedded runner's instance/secret_key; never a default."""
    if app.config.get("SECRET_KEY"):
        return app.config["SECRET_KEY"]
    kept = Path(app.instance_path) / "secret_key"
    if kept.is_file():
        return kept.read_text().strip()
    raise RuntimeError("PORTAL_SECRET_KEY is not set. Set it to a long random string "
                       "(or start the embedded portal with `python -m portal.serve`).")


def _engine_options(uri: str) -> dict:
    if uri.startswith("mysql"):
        # Fail fast instead of hanging on a dead server; recycle before MariaDB's wait_timeout.
        # PyMySQL waits read_timeout for the handshake and for a reply, so a stalled (SIGSTOPped)
        # server costs a request up to read_timeout once; _fail_fast spares the rest.
        # No pool_pre_ping: _fail_fast checks each checked-out connection without a round trip.
        # READ COMMITTED: no gap locks, so concurrent workers do not deadlock on the variants index.
        return {"pool_recycle": 1800, "pool_timeout": 5,
                "isolation_level": "READ COMMITTED",
                "connect_args": {"connect_timeout": 3, "read_timeout": 10, "write_timeout": 10,
                                 "charset": "utf8mb4"}}
    if uri.startswith("sqlite"):
        # The web app and the worker are separate processes sharing one file: wait for locks.
        return {"connect_args": {"timeout": 15}}
    return {"pool_pre_ping": True}


def _sqlite_pragmas(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the worker's writes
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


class _Breaker:
    """After a connection to the database failed, web requests fail at once (503) for a few
    seconds instead of each waiting for its own timeout; then one request tries again."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.until, self.lock = seconds, 0.0, Lock()

    def allow(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if self.until == 0.0:
                return True
            if now < self.until:
                return False
            self.until = now + self.seconds  # this request probes; the others fail fast meanwhile
            return True

    def failed(self) -> None:
        with self.lock:
            self.until = time.monotonic() + self.seconds

    def succeeded(self) -> None:
        with self.lock:
            self.until = 0.0


class DatabaseUnreachable(pymysql.err.OperationalError):
    """Raised instead of connecting while the breaker is open; the 503 handler answers it."""


def _fail_fast(engines: list[sa.Engine], seconds: float = 5.0) -> _Breaker:
    """One breaker for every engine of the database (the default one and the read-only one)."""
    breaker = _Breaker(seconds)
    for engine in engines:
        _watch(engine, breaker)
    return breaker


def _watch(engine: sa.Engine, breaker: _Breaker) -> None:
    @sa.event.listens_for(engine, "do_connect")
    def _before_connect(_dialect, _record, _cargs, _cparams):
        # Web requests only: the worker and beat keep their own retry logic and timing.
        if has_request_context() and not breaker.allow():
            raise DatabaseUnreachable(2003, "The database failed a moment ago; not trying again yet.")

    @sa.event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):  # after the breaker's check above
        return SkipIdleRollback(*cargs, **cparams)

    @sa.event.listens_for(engine, "connect")
    def _connected(_dbapi_connection, _record):
        breaker.succeeded()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, _record, _proxy):
        # Instead of pool_pre_ping's round trip: a pooled connection a restart closed is seen
        # by its socket, and the pool replaces it (DisconnectionError) before any statement.
        if dbapi_connection.closed_by_server():
            raise sa.exc.DisconnectionError("The database closed this pooled connection.")

    @sa.event.listens_for(engine, "handle_error")
    def _errored(context: sa.engine.ExceptionContext):
        error = context.original_exception
        if isinstance(error, DatabaseUnreachable):
            return
        if context.is_disconnect or (context.connection is None and
                                     isinstance(context.sqlalchemy_exception, sa.exc.OperationalError)):
            breaker.failed()
