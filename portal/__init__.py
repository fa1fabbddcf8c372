"""The campaign portal: create_app() builds the Flask app; nothing happens at import time."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from . import config, logs

ROOT = Path(__file__).resolve().parent.parent
migrate = Migrate(render_as_batch=True)  # SQLite needs batch mode for ALTER
csrf = CSRFProtect()


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
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
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    app.extensions["storage"] = Storage(app.config["STORAGE_DIR"])
    celery_init_app(app)
    logs.init_app(app)  # request id and metrics hooks before CSRF and login: refused requests get them too
    metrics.init_app(app)
    csrf.init_app(app)
    csrf.exempt(api.bp)  # scripts send no token; api.refuse_cross_site guards it instead
    app.before_request(auth.require_login)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    errors.init_app(app)
    security.init_app(app)
    cli.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            _sqlite_pragmas(db.engine)
    return app


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
        # READ COMMITTED: no gap locks, so concurrent workers do not deadlock on the variants index.
        return {"pool_pre_ping": True, "pool_recycle": 1800, "pool_timeout": 5,
                "isolation_level": "READ COMMITTED",
                "connect_args": {"connect_timeout": 3, "read_timeout": 15, "write_timeout": 15,
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
