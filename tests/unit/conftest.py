"""Fast tests: a temp SQLite file, temp folders, an in-memory broker; no services."""
from __future__ import annotations

import pytest

from portal import create_app
from werkzeug.security import generate_password_hash

from portal.models import User, db

from factories import PASSWORDS

# Cheap hashes: the real scrypt default would cost ~0.1 s per user per test.
HASHES = {name: generate_password_hash(pw, "pbkdf2:sha256:1000") for name, pw in PASSWORDS.items()}


@pytest.fixture
def app(tmp_path):
    (tmp_path / "import").mkdir()
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test", "INSTANCE_DIR": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
        "CELERY_BROKER_URL": "memory://", "STORAGE_DIR": str(tmp_path / "storage"),
        "IMPORT_DIR": str(tmp_path / "import"), "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        "PROHIBITED_WORDS": ["violence"], "WTF_CSRF_ENABLED": False,
    })
    with app.app_context():
        db.create_all()
        for name, password_hash in HASHES.items():
            db.session.add(User(username=name, password_hash=password_hash, is_admin=name == "root"))
        db.session.commit()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()
