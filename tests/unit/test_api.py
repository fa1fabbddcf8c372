"""The JSON API through the Flask test client: status codes, bodies, ownership."""
from __future__ import annotations

import io

import pytest

from portal.models import Campaign, db
from factories import basic, brief, jpeg_bytes


@pytest.fixture
def beach(app):
    path = app.config["IMPORT_DIR"] + "/beach.jpg"
    with open(path, "wb") as f:
        f.write(jpeg_bytes())
    return path


def create(client, user="alice", **overrides):
    return client.post("/api/campaigns", json=brief(**overrides), headers=basic(user))


def upload(client, data: bytes, filename="photo.jpg", user="alice", **fields):
    form = {"description": "Launch", "target_market": "Everyone", "campaign_message": "Hello",
            "products_description": "Shoes", **fields, "image": (io.BytesIO(data), filename)}
    return client.post("/api/campaigns", data=form, headers=basic(user),
                       content_type="multipart/form-data")


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


@pytest.mark.parametrize("data", [b"GIF89a" + b"\0" * 100, b"<html><body>hi</body></html>", b""])
def test_upload_that_is_not_an_image_gets_415(client, app, data):
    response = upload(client, data, filename="photo.jpg")
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert db.session.query(Campaign).count() == 0


def test_upload_over_the_limit_gets_413_and_stores_nothing(client, app):
    # Under the test client's 500 kB spool threshold, so it keeps no temp file open.
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
    assert client.get(f"/api/campaigns/{campaign_id}", headers=basic("root")).status_code == 200
    assert client.get("/api/campaigns", headers=basic("root")).get_json()["total"] == 1


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
