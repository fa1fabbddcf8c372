"""Bad requests are refused with the right status and a JSON body naming what is wrong,
and leave nothing behind (no campaign row, no stored file)."""
from __future__ import annotations

import os

import it_images
import pytest
from it_stack import BRIEF, MAX_UPLOAD_MB, Stack

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def nothing_left_behind(stack: Stack):
    """The refused requests of a test create no campaign and no storage folder."""
    admin = stack.api("admin")
    before = set(admin.all_campaign_ids())
    folder = stack.storage_dir / "campaigns"
    files_before = set(folder.iterdir()) if folder.is_dir() else set()
    yield
    assert set(admin.all_campaign_ids()) == before, "a refused request created a campaign"
    files_after = set(folder.iterdir()) if folder.is_dir() else set()
    assert files_after == files_before, f"a refused request left files: {files_after - files_before}"


def assert_error(r, status: int, error: str) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
    body = r.json()
    assert body["error"] == error and body["message"], body
    return body


def test_local_source_without_source_path_is_422_naming_the_field(stack: Stack, nothing_left_behind):
    api = stack.api("alice")
    body = assert_error(api.create({**BRIEF, "image_metadata": {"source_type": "local"}}),
                        422, "validation_error")
    assert "image_metadata.source_path" in body["fields"], body
    assert "source_path" in body["fields"]["image_metadata.source_path"]


def test_local_source_outside_the_import_folder_is_422(stack: Stack, nothing_left_behind):
    api = stack.api("alice")
    for path in ("../../etc/passwd", "/etc/passwd", "missing/nothing-here.jpg"):
        r = api.create({**BRIEF, "image_metadata": {"source_type": "local", "source_path": path}})
        body = assert_error(r, 422, "validation_error")
        assert "image_metadata.source_path" in body["fields"], (path, body)


def test_missing_brief_fields_are_422_each_named(stack: Stack, nothing_left_behind):
    api = stack.api("alice")
    r = api.create({"description": "", "image_metadata": {"source_type": "ai_generated", "ai_prompt": "x"}})
    fields = assert_error(r, 422, "validation_error")["fields"]
    assert {"description", "target_market", "campaign_message", "products_description"} <= set(fields)


@pytest.mark.parametrize("field,text,word", [
    ("description", "Summer sale with a free weapon", "weapon"),
    ("campaign_message", "No more VIOLENCE, just sun!", "violence"),
])
def test_prohibited_word_is_422_naming_the_field_and_the_word(stack: Stack, nothing_left_behind,
                                                             field, text, word):
    api = stack.api("alice")
    body = {**BRIEF, field: text, "image_metadata": {"source_type": "ai_generated", "ai_prompt": "A beach"}}
    fields = assert_error(api.create(body), 422, "validation_error")["fields"]
    assert list(fields) == [field], fields
    assert word in fields[field].lower(), fields
    # The same word in an upload's form fields is refused too, before anything is stored.
    r = api.upload(it_images.small_photo(), **{field: text})
    assert word in assert_error(r, 422, "validation_error")["fields"][field].lower()


@pytest.mark.parametrize("name,data,content_type", [
    ("animation.gif", it_images.gif_bytes(), "image/gif"),
    ("notes.txt", b"just some text, not an image\n" * 20, "text/plain"),
    ("disguised.jpg", b"GIF89a" + b"\x00" * 200, "image/jpeg"),  # the name and type lie
], ids=["gif", "text", "gif-named-jpg"])
def test_upload_that_is_not_jpeg_png_or_webp_is_415(stack: Stack, nothing_left_behind, name, data, content_type):
    r = stack.api("alice").upload(data, filename=name, content_type=content_type)
    assert_error(r, 415, "unsupported_media_type")


def test_upload_over_the_limit_is_413(stack: Stack, nothing_left_behind):
    oversized = b"\xff\xd8\xff\xe0" + os.urandom((MAX_UPLOAD_MB + 1) * 1024 * 1024)
    r = stack.api("alice").upload(oversized, filename="huge.jpg")
    assert_error(r, 413, "too_large")


def test_upload_without_a_file_is_422(stack: Stack, nothing_left_behind):
    api = stack.api("alice")
    r = api.post("/api/campaigns", data={**BRIEF, "source_type": "upload"})
    fields = assert_error(r, 422, "validation_error")["fields"]
    assert "image" in fields, fields
