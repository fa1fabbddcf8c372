"""Small builders shared by the unit tests."""
from __future__ import annotations

import base64
import io

from PIL import Image

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw"}


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
