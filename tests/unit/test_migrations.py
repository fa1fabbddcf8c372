"""Upgrading an empty database yields exactly the models' schema (SQLite here; MariaDB in integration)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from portal import create_app
from portal.models import db


def test_upgrade_of_an_empty_sqlite_database_matches_the_models(tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "INSTANCE_DIR": str(tmp_path),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'm.db'}",
                      "CELERY_BROKER_URL": "memory://"})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        db.engine.dispose()
    assert diff == []
