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


def test_upgrading_sqlite_keeps_every_row(tmp_path):
    """Batch migrations rebuild tables; the children of a rebuilt table must survive."""
    from flask_migrate import downgrade

    app = create_app({"TESTING": True, "SECRET_KEY": "t", "INSTANCE_DIR": str(tmp_path),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'k.db'}",
                      "CELERY_BROKER_URL": "memory://"})
    with app.app_context():
        upgrade(revision="0001")
        with db.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO users (id, username, password_hash, is_admin, created_at) "
                                 "VALUES (1, 'a', 'x', 0, '2026-01-01')")
            conn.exec_driver_sql(
                "INSERT INTO campaigns (id, owner_id, name, description, target_market, campaign_message, "
                "products_description, generate_by_ai, source_type, status, progress, attempt, created_at, "
                "updated_at) VALUES ('c1', 1, 'n', 'd', 't', 'm', 'p', 0, 'upload', 'completed', 100, 1, "
                "'2026-01-01', '2026-01-01')")
            conn.exec_driver_sql(
                "INSERT INTO variants (campaign_id, ratio, position, width, height, bytes, crop_x, crop_y, "
                "crop_w, crop_h, crop_reason, created_at) VALUES ('c1', '1:1', 0, 1080, 1080, 1, 0, 0, 1, 1, "
                "'centre', '2026-01-01')")
        upgrade()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM variants").scalar() == 1
        downgrade(revision="0001")
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM variants").scalar() == 1
        db.engine.dispose()
