"""Fast tests: a temp SQLite file, temp folders, an in-memory broker; no services."""
from __future__ import annotations

import pytest

from portal import create_app
from portal.models import User, db

from factories import add_users, app_settings


@pytest.fixture
def app(tmp_path):
    (tmp_path / "import").mkdir()
    app = create_app(app_settings(tmp_path))
    with app.app_context():
        db.create_all()
        add_users(db, User)
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()
