"""The JSON API through the Flask test client: status codes, bodies, ownership."""
from __future__ import annotations

import errno
import io
import os

import pymysql
import pytest
import sqlalchemy as sa
from urllib3 import encode_multipart_formdata

from portal import create_app
from portal.models import Campaign, db
from factories import app_settings, basic, brief, jpeg_bytes


@pytest.fixture
def beach(app):
    path = app.config["IMPORT_DIR"] + "/beach.jpg"
    with open(path, "wb") as f:
        f.write(jpeg_bytes())
    return path


def create(client, user="alice", **overrides):
    return client.post("/api/campaigns", json=brief(**overrides), headers=basic(user))


def upload(client, data: bytes, filename="photo.jpg", user="alice", **fields):
    # Encoded here, not by the test client: it spools a body over 500 kB to a temporary file it
    # never closes.
    body, content_type = encode_multipart_formdata({
        "description": "Launch", "target_market": "Everyone", "campaign_message": "Hello",
        "products_description": "Shoes", **fields, "image": (filename, data, "image/jpeg")})
    return client.post("/api/campaigns", data=body, headers=basic(user), content_type=content_type)


def test_local_campaign_is_accepted_as_pending_with_links(client, beach):
    response = create(client)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending"
    assert body["links"]["self"] == f"/api/campaigns/{body['id']}"
    assert response.headers["Location"] == body["links"]["self"]
    campaign = client.get(body["links"]["self"], headers=basic("alice")).get_json()
    assert campaign["description"] == "Summer 2025 Marketing Campaign"
    assert campaign["name"] == "Summer 2025 Marketing Campaign"
    assert campaign["image_metadata"]["source_path"] == "beach.jpg"
    assert campaign["variants"] == []
    assert campaign["processed_images"] == {"ratio_1_1": None, "ratio_9_16": None, "ratio_16_9": None}


def test_row_is_committed_and_marked_enqueued(client, beach):
    campaign_id = create(client).get_json()["id"]
    row = db.session.get(Campaign, campaign_id)
    assert row.status == "pending" and row.enqueued_at is not None


def test_upload_is_stored_under_the_campaign_id(client, app):
    response = upload(client, jpeg_bytes(), filename="../../etc/passwd.jpg")
    assert response.status_code == 202
    campaign_id = response.get_json()["id"]
    stored = app.extensions["storage"].source_path(campaign_id)
    assert stored.read_bytes()[:3] == b"\xff\xd8\xff"
    assert db.session.get(Campaign, campaign_id).source_filename == "../../etc/passwd.jpg"


def big_jpeg() -> bytes:
    """A JPEG over the 512 KiB at which an upload is received on the storage disk."""
    data = jpeg_bytes(size=(1200, 900), color=(90, 140, 200))
    return data + b"\0" * (600 * 1024)  # bytes after the end marker: still a JPEG to every decoder


def test_a_large_upload_is_received_on_the_storage_disk_and_linked_into_place(client, app, monkeypatch):
    data, store, inodes = big_jpeg(), app.extensions["storage"], []
    make = store.incoming_file

    def incoming_file():
        received = make()
        inodes.append(os.fstat(received.fileno()).st_ino)
        return received

    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    monkeypatch.setattr(store, "incoming_file", incoming_file)
    response = upload(client, data)
    assert response.status_code == 202, response.get_data(as_text=True)
    stored = store.source_path(response.get_json()["id"])
    assert stored.read_bytes() == data
    assert [stored.stat().st_ino] == inodes  # the received file itself, not a copy
    assert list((store.root / "incoming").iterdir()) == []  # its temporary name went with the request


def test_a_refused_large_upload_leaves_nothing_in_incoming(client, app):
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    response = upload(client, b"GIF89a" + b"\0" * (600 * 1024))
    assert response.status_code == 415
    assert list((app.extensions["storage"].root / "incoming").iterdir()) == []
    assert db.session.query(Campaign).count() == 0


def test_a_full_disk_while_an_upload_is_received_is_503(client, app, monkeypatch):
    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    monkeypatch.setattr(app.extensions["storage"], "incoming_file", Full)
    response = upload(client, big_jpeg())
    assert response.status_code == 503 and response.headers["Retry-After"], response.get_data(as_text=True)
    assert "storage is full" in response.get_json()["message"]
    assert db.session.query(Campaign).count() == 0


@pytest.mark.parametrize("data", [b"GIF89a" + b"\0" * 100, b"<html><body>hi</body></html>", b""])
def test_upload_that_is_not_an_image_gets_415(client, app, data):
    response = upload(client, data, filename="photo.jpg")
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert response.get_json()["fields"] == {"image": "The file is not a JPEG, PNG or WebP image."}
    assert db.session.query(Campaign).count() == 0


def test_upload_over_the_limit_gets_413_and_stores_nothing(client, app):
    app.config["MAX_CONTENT_LENGTH"] = 100 * 1024
    response = upload(client, b"\xff\xd8\xff" + b"\0" * (200 * 1024))
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"
    assert db.session.query(Campaign).count() == 0


@pytest.mark.parametrize("overrides, field", [
    ({"image_metadata": {"source_type": "local"}}, "image_metadata.source_path"),
    ({"image_metadata": {"source_type": "dropbox"}}, "image_metadata.source_path"),
    ({"image_metadata": {"source_type": "ai_generated"}}, "image_metadata.ai_prompt"),
    ({"image_metadata": {"source_type": "ftp", "source_path": "x"}}, "image_metadata.source_type"),
    ({"description": ""}, "description"),
    ({"target_market": "x" * 201}, "target_market"),
    ({"focal_x": 1.5}, "focal_x"),
    ({"image_metadata": {"source_type": "local", "source_path": "../secret.jpg"}}, "image_metadata.source_path"),
    ({"image_metadata": {"source_type": "local", "source_path": "/etc/passwd"}}, "image_metadata.source_path"),
    ({"image_metadata": {"source_type": "local", "source_path": "missing.jpg"}}, "image_metadata.source_path"),
    ({"image_metadata": {"source_type": "dropbox", "source_path": "https://www.dropbox.com.evil.example/s/a/x.jpg"}},
     "image_metadata.source_path"),
    ({"image_metadata": {"source_type": "dropbox", "source_path": "https://www.dropbox.com/scl/fo/abc/folder"}},
     "image_metadata.source_path"),
])
def test_invalid_brief_gets_422_naming_the_field(client, beach, overrides, field):
    response = create(client, **overrides)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "validation_error"
    assert field in body["fields"], body


def test_missing_fields_are_all_named(client):
    response = client.post("/api/campaigns", json={}, headers=basic("alice"))
    assert response.status_code == 422
    assert set(response.get_json()["fields"]) >= {
        "description", "target_market", "campaign_message", "products_description", "image_metadata"}


def test_prohibited_word_names_field_and_word(client, beach):
    response = create(client, campaign_message="Pure VIOLENCE on the beach")
    assert response.status_code == 422
    assert response.get_json()["fields"] == {
        "campaign_message": "Contains the prohibited word 'violence'."}


def test_symlink_leaving_the_import_folder_is_refused(client, app, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes())
    (tmp_path / "import" / "link.jpg").symlink_to(secret)
    response = create(client, image_metadata={"source_type": "local", "source_path": "link.jpg"})
    assert response.status_code == 422


def test_malformed_json_gets_400(client):
    response = client.post("/api/campaigns", data="{nope", headers={
        **basic("alice"), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"


def test_without_credentials_every_api_route_is_401_json(client):
    for path in ("/api/campaigns", "/api/campaigns/abc", "/api/me", "/api/openapi.json", "/api/nowhere"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_wrong_password_is_401(client):
    response = client.get("/api/me", headers={"Authorization": "Basic YWxpY2U6bm9wZQ=="})
    assert response.status_code == 401


def test_other_users_campaign_is_404_everywhere(client, beach):
    campaign_id = create(client, user="alice").get_json()["id"]
    for method, path in [("get", ""), ("delete", ""), ("post", "/retry"), ("get", "/variants/1x1"),
                         ("get", "/variants.zip"), ("get", "/source")]:
        response = getattr(client, method)(f"/api/campaigns/{campaign_id}{path}", headers=basic("bob"))
        assert response.status_code == 404, (method, path)
    assert client.get("/api/campaigns", headers=basic("bob")).get_json()["total"] == 0
    assert db.session.get(Campaign, campaign_id) is not None


def test_admin_sees_everyones_campaigns(client, beach):
    campaign_id = create(client, user="alice").get_json()["id"]
    others = [create(client, user=user).get_json()["id"] for user in ("alice", "bob")]
    assert client.get(f"/api/campaigns/{campaign_id}", headers=basic("root")).status_code == 200
    # Unfiltered, the count once lost its FROM clause and said 1 whatever the number of rows.
    page = client.get("/api/campaigns?per_page=2", headers=basic("root")).get_json()
    assert (page["total"], page["pages"]) == (3, 2)
    rest = client.get("/api/campaigns?per_page=2&page=2", headers=basic("root")).get_json()
    assert {c["id"] for c in page["items"] + rest["items"]} == {campaign_id, *others}


def test_list_is_newest_first_paginated_and_filtered(client, beach):
    ids = [create(client).get_json()["id"] for _ in range(5)]
    page = client.get("/api/campaigns?per_page=2", headers=basic("alice")).get_json()
    assert [c["id"] for c in page["items"]] == ids[::-1][:2]
    assert (page["total"], page["pages"], page["links"]["prev"]) == (5, 3, None)
    assert page["links"]["next"] == "/api/campaigns?per_page=2&page=2"
    last = client.get("/api/campaigns?per_page=2&page=3", headers=basic("alice")).get_json()
    assert [c["id"] for c in last["items"]] == [ids[0]]
    db.session.get(Campaign, ids[1]).status = "failed"
    db.session.commit()
    failed = client.get("/api/campaigns?status=failed", headers=basic("alice")).get_json()
    assert [c["id"] for c in failed["items"]] == [ids[1]]


def test_totals_are_exact_and_counted_only_for_full_pages(client, app, beach):
    for _ in range(4):
        create(client)
    counts = []
    with app.app_context():
        engine = db.engine

    def seen(_conn, _cursor, statement, *_args):
        if "count(" in statement.lower():
            counts.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        def total(query: str) -> tuple[int, int, int]:
            before = len(counts)
            page = client.get(f"/api/campaigns?{query}", headers=basic("alice")).get_json()
            return page["total"], len(page["items"]), len(counts) - before

        assert total("per_page=10") == (4, 4, 0)  # room left on page 1: the rows are the total
        assert total("per_page=3&page=2") == (4, 1, 0)  # the last page, partly filled
        assert total("per_page=3") == (4, 3, 1)  # full: there may be more, so counted
        assert total("per_page=2&page=2") == (4, 2, 1)  # full and exactly the last
        assert total("per_page=2&page=5") == (4, 0, 1)  # past the end
        assert client.get("/api/campaigns", headers=basic("bob")).get_json()["total"] == 0
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)


def test_page_size_is_capped(client, app, beach):
    create(client)
    page = client.get("/api/campaigns?per_page=100000", headers=basic("alice")).get_json()
    assert page["per_page"] == app.config["MAX_PAGE_SIZE"]


@pytest.mark.parametrize("query", ["status=lost", "page=0", "page=x", "per_page=-1"])
def test_bad_list_query_is_422(client, query):
    response = client.get(f"/api/campaigns?{query}", headers=basic("alice"))
    assert response.status_code == 422


def test_retry_only_for_failed_campaigns(client, beach):
    campaign_id = create(client).get_json()["id"]
    assert client.post(f"/api/campaigns/{campaign_id}/retry", headers=basic("alice")).status_code == 409
    row = db.session.get(Campaign, campaign_id)
    row.status, row.error_message, row.attempt = "failed", "broken", 3
    db.session.commit()
    response = client.post(f"/api/campaigns/{campaign_id}/retry", headers=basic("alice"))
    assert response.status_code == 202
    db.session.refresh(row)
    assert (row.status, row.error_message, row.attempt) == ("pending", None, 0)


def test_files_are_409_until_completed(client, beach):
    campaign_id = create(client).get_json()["id"]
    assert client.get(f"/api/campaigns/{campaign_id}/variants/1x1", headers=basic("alice")).status_code == 409
    assert client.get(f"/api/campaigns/{campaign_id}/variants.zip", headers=basic("alice")).status_code == 409


def test_delete_removes_row_and_files(client, app):
    campaign_id = upload(client, jpeg_bytes()).get_json()["id"]
    folder = app.extensions["storage"].campaign_dir(campaign_id)
    assert folder.is_dir()
    assert client.delete(f"/api/campaigns/{campaign_id}", headers=basic("alice")).status_code == 204
    assert client.get(f"/api/campaigns/{campaign_id}", headers=basic("alice")).status_code == 404
    assert not folder.exists()


def test_cross_site_post_with_credentials_is_refused(client, beach):
    response = client.post("/api/campaigns", json=brief(), headers={
        **basic("alice"), "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert db.session.query(Campaign).count() == 0


def test_unknown_method_keeps_allow_header(client):
    response = client.put("/api/campaigns", headers=basic("alice"))
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["error"] == "method_not_allowed"


def test_health_needs_no_login_and_ready_checks_dependencies(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "broker": "ok"}


def test_ready_is_503_when_the_broker_is_unreachable(app):
    app.extensions["celery"].conf.broker_url = "redis://127.0.0.1:1/0"
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok" and checks["broker"].startswith("unavailable")


def test_broker_down_still_answers_202_and_keeps_the_row(app, beach):
    app.extensions["celery"].conf.broker_url = "redis://127.0.0.1:1/0"
    response = create(app.test_client())
    assert response.status_code == 202
    row = db.session.get(Campaign, response.get_json()["id"])
    assert row.status == "pending" and row.enqueued_at is None


def test_openapi_document_and_docs_page(client):
    spec = client.get("/api/openapi.json", headers=basic("alice")).get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/campaigns/{campaign_id}/variants.zip" in spec["paths"]
    assert "image_metadata" in spec["components"]["schemas"]["CampaignIn"]["properties"]
    page = client.get("/api/docs", headers=basic("alice"))
    assert page.status_code == 200 and b"POST /api/campaigns" in page.data


def test_firefly_options_are_validated_and_stored(client):
    meta = {"source_type": "ai_generated", "ai_prompt": "A beach at dawn",
            "ai_options": {"contentClass": "art", "negativePrompt": "people", "seeds": [7]}}
    response = create(client, image_metadata=meta, generate_by_ai=True)
    assert response.status_code == 202
    body = client.get(response.get_json()["links"]["self"], headers=basic("alice")).get_json()
    assert body["image_metadata"]["ai_options"] == {"contentClass": "art", "negativePrompt": "people", "seeds": [7]}
    bad = create(client, image_metadata={**meta, "ai_options": {"contentClass": "cartoon", "size": 1}})
    assert bad.status_code == 422
    assert {"image_metadata.ai_options.contentClass", "image_metadata.ai_options.size"} <= set(
        bad.get_json()["fields"])


# --- The database unreachable: 503 + Retry-After everywhere, never a 500 (RELIABILITY.md §2) ----

@pytest.fixture
def db_down_app(tmp_path):
    """An app whose MySQL server refuses connections (nothing listens on port 1)."""
    (tmp_path / "import").mkdir()
    settings = app_settings(tmp_path) | {"SQLALCHEMY_DATABASE_URI": "mysql+pymysql://u:p@127.0.0.1:1/portal"}
    app = create_app(settings)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_database_down_api_is_503_json_with_retry_after(db_down_app):
    client = db_down_app.test_client()
    for method, path in [("GET", "/api/me"), ("GET", "/api/campaigns"), ("POST", "/api/campaigns"),
                         ("DELETE", "/api/campaigns/" + "a" * 32), ("GET", "/api/nowhere")]:
        response = client.open(path, method=method, headers=basic("alice"), json=brief())
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert int(response.headers["Retry-After"]) > 0
        body = response.get_json()
        assert body["error"] == "unavailable" and "database" in body["message"], body


def test_database_down_pages_say_so_in_words_and_stay_styled(db_down_app):
    client = db_down_app.test_client()
    for path, headers in [("/", {}), ("/campaigns/new", {}), ("/gallery", {}),
                          ("/campaigns/" + "a" * 32 + "/status", {"HX-Request": "true"})]:
        response = client.get(path, headers=basic("alice") | headers)
        html = response.get_data(as_text=True)
        assert response.status_code == 503 and response.headers["Retry-After"], path
        assert response.mimetype == "text/html" and "Temporarily unavailable" in html
        assert 'id="error-message"' in html and "database is not reachable" in html
        assert "Traceback" not in html
    # The page's own CSS and script need no login, so they load while nobody can be checked.
    for asset in ("portal.css", "portal.js"):
        with client.get(f"/static/{asset}") as response:
            assert response.status_code == 200, asset
    assert client.get("/static/../portal/__init__.py").status_code == 404


def test_database_down_fails_fast_after_the_first_failure(db_down_app, monkeypatch):
    """After one failed connection, requests are answered at once without connecting again."""
    attempts = []
    reach = pymysql.connections.Connection.connect

    def counted(connection, *args, **kwargs):
        attempts.append(1)
        return reach(connection, *args, **kwargs)

    monkeypatch.setattr(pymysql.connections.Connection, "connect", counted)
    client = db_down_app.test_client()
    for _ in range(5):
        assert client.get("/api/me", headers=basic("alice")).status_code == 503
    assert len(attempts) == 1, attempts  # the breaker refused the other four without a connection


def test_database_down_readyz_names_it_and_healthz_stays_up(db_down_app):
    client = db_down_app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    body = ready.get_json()
    assert body["down"] == ["database"] and "database" in body["message"], body
    assert body["checks"]["database"].startswith("unavailable") and body["checks"]["broker"] == "ok"


def test_every_api_operation_documents_503_with_retry_after(client):
    spec = client.get("/api/openapi.json", headers=basic("alice")).get_json()
    operations = [op for item in spec["paths"].values() for m, op in item.items() if m != "parameters"]
    assert operations
    for operation in operations:
        unavailable = operation["responses"]["503"]
        assert "Retry-After" in unavailable["headers"]
        assert unavailable["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_static_files_are_public_but_pages_are_not(client):
    with client.get("/static/portal.css") as response:
        assert response.status_code == 200
    assert client.get("/").status_code == 401
