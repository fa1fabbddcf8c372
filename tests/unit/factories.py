"""Small builders shared by the unit tests."""
from __future__ import annotations

import base64
import io

from pathlib import Path

from PIL import Image
from werkzeug.security import generate_password_hash

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw"}
# Cheap hashes: the real scrypt default would cost ~0.1 s per user per test.
HASHES = {name: generate_password_hash(pw, "pbkdf2:sha256:1000") for name, pw in PASSWORDS.items()}


def app_settings(folder: Path) -> dict:
    """create_app() settings of a test app kept in `folder`: SQLite, memory broker, temp storage."""
    return {
        "TESTING": True, "SECRET_KEY": "test", "INSTANCE_DIR": str(folder),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'test.db'}",
        "CELERY_BROKER_URL": "memory://", "STORAGE_DIR": str(folder / "storage"),
        "IMPORT_DIR": str(folder / "import"), "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        "PROHIBITED_WORDS": ["violence"], "WTF_CSRF_ENABLED": False,
    }


def build_app(folder: Path, **settings):
    """A test app kept in `folder` (settings over app_settings), its tables and the three users."""
    from portal import create_app
    from portal.models import User, db

    (folder / "import").mkdir(parents=True, exist_ok=True)
    app = create_app({**app_settings(folder), **settings})
    with app.app_context():
        db.create_all()
        add_users(db, User)
    return app


def add_users(db, user_model) -> None:
    """alice and bob, and root the admin, with the passwords in PASSWORDS."""
    for name, password_hash in HASHES.items():
        db.session.add(user_model(username=name, password_hash=password_hash, is_admin=name == "root"))
    db.session.commit()


def basic(user: str) -> dict:
    token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def jpeg_bytes(size=(800, 600), color=(200, 40, 40), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", **save)
    return buf.getvalue()


def brief(**overrides) -> dict:
    body = {"description": "Summer 2025 Marketing Campaign", "target_market": "Young adults aged 18-35",
            "campaign_message": "Make this summer unforgettable!",
            "products_description": "Premium beach products",
            "image_metadata": {"source_type": "local", "source_path": "beach.jpg"}}
    body.update(overrides)
    return body
