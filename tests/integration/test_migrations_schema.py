"""`flask db upgrade` on an empty database gives exactly the models' schema (MariaDB and SQLite)."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from it_stack import (clean_env, create_database, drop_database, flask_cli, mysql_execute, mysql_url,
                      require_services, run_cli)

from portal.models import db

pytestmark = pytest.mark.timeout(180)


def upgrade_and_diff(url: str, instance: Path) -> tuple[list, set[str], str]:
    env = clean_env(DATABASE_URL=url, PORTAL_SECRET_KEY=secrets.token_urlsafe(32),
                    PORTAL_INSTANCE_DIR=str(instance), PORTAL_STORAGE_DIR=str(instance / "storage"),
                    PORTAL_IMPORT_DIR=str(instance / "import"))
    run_cli(flask_cli("db", "upgrade"), env)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
            tables = set(sa.inspect(conn).get_table_names())
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    return diff, tables, version


def head_revision() -> str:
    versions = Path(__file__).resolve().parents[2] / "migrations" / "versions"
    revisions = {}
    for path in versions.glob("*.py"):
        scope: dict = {}
        exec(compile(path.read_text(), str(path), "exec"), scope)  # noqa: S102 - our own migrations
        revisions[scope["revision"]] = scope["down_revision"]
    heads = set(revisions) - {down for down in revisions.values() if down}
    assert len(heads) == 1, f"the migrations have {len(heads)} heads: {heads}"
    return heads.pop()


def test_upgrade_on_empty_mariadb_matches_the_models(tmp_path):
    require_services(need_redis=False)
    database = create_database("portal_it_schema")
    try:
        diff, tables, version = upgrade_and_diff(mysql_url(database), tmp_path)
        datetimes = mysql_execute(
            "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME), DATETIME_PRECISION FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND DATA_TYPE = 'datetime'", args=(database,))
    finally:
        drop_database(database)
    assert tables == {"alembic_version", "users", "campaigns", "variants"}
    assert version == head_revision()
    assert diff == [], "MariaDB schema after `flask db upgrade` differs from the models:\n" + \
        "\n".join(map(repr, diff))
    # compare_metadata does not see DATETIME precision; leases and "newest first" need microseconds.
    expected = {f"{t.name}.{c.name}" for t in db.metadata.tables.values() for c in t.columns
                if isinstance(c.type, sa.DateTime)}
    assert {name for name, _ in datetimes} == expected
    assert all(precision == 6 for _, precision in datetimes), f"not DATETIME(6): {datetimes}"


def test_upgrade_on_empty_sqlite_matches_the_models(tmp_path):
    path = tmp_path / "empty.db"
    diff, tables, version = upgrade_and_diff(f"sqlite:///{path}", tmp_path)
    assert path.is_file()
    assert tables == {"alembic_version", "users", "campaigns", "variants"}
    assert version == head_revision()
    assert diff == [], "SQLite schema after `flask db upgrade` differs from the models:\n" + \
        "\n".join(map(repr, diff))
