"""The minimal HTML pages: login, plain form posts, escaping, CSRF."""
from __future__ import annotations

import io
import re

from portal.models import Campaign, db
from factories import basic, jpeg_bytes

FORM = {"description": "Launch", "target_market": "Everyone", "campaign_message": "Hello",
        "products_description": "Shoes", "source_type": "upload"}


def test_pages_need_login(client):
    response = client.get("/")
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_plain_form_post_creates_and_redirects(client):
    response = client.post("/campaigns/new", headers=basic("alice"), content_type="multipart/form-data",
                           data={**FORM, "image": (io.BytesIO(jpeg_bytes()), "a.jpg")})
    assert response.status_code == 303
    campaign = db.session.execute(db.select(Campaign)).scalar_one()
    assert response.headers["Location"] == f"/campaigns/{campaign.id}"
    page = client.get(response.headers["Location"], headers=basic("alice"))
    assert page.status_code == 200 and b"Launch" in page.data


def test_invalid_form_is_422_with_the_message_and_what_was_typed(client):
    response = client.post("/campaigns/new", headers=basic("alice"),
                           data={**FORM, "description": "", "target_market": "Kept <b>value</b>"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "This field must not be empty." in html
    assert "Kept &lt;b&gt;value&lt;/b&gt;" in html and "<b>value</b>" not in html


def test_markup_in_the_brief_is_escaped_on_every_page(client, app):
    evil = '<script>alert(1)</script>'
    client.post("/campaigns/new", headers=basic("alice"), content_type="multipart/form-data",
                data={**FORM, "name": evil, "description": evil,
                      "image": (io.BytesIO(jpeg_bytes()), "a.jpg")})
    campaign = db.session.execute(db.select(Campaign)).scalar_one()
    for path in ("/", f"/campaigns/{campaign.id}"):
        html = client.get(path, headers=basic("alice")).get_data(as_text=True)
        assert evil not in html and "&lt;script&gt;" in html


def test_security_headers_on_pages(client):
    response = client.get("/", headers=basic("alice"))
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_form_post_without_csrf_token_is_refused(app, client):
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post("/campaigns/new", headers=basic("alice"), data=FORM)
    assert response.status_code == 400
    assert db.session.query(Campaign).count() == 0
    form = client.get("/campaigns/new", headers=basic("alice")).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = client.post("/campaigns/new", headers=basic("alice"), content_type="multipart/form-data",
                           data={**FORM, "csrf_token": token,
                                 "image": (io.BytesIO(jpeg_bytes()), "a.jpg")})
    assert response.status_code == 303


HTMX = {"HX-Request": "true"}


def _campaign(app, status="pending", **fields) -> Campaign:
    from portal.models import User

    owner = db.session.execute(db.select(User).filter_by(username="alice")).scalar_one()
    row = Campaign(owner_id=owner.id, name="Spring", description="d", target_market="t", campaign_message="m",
                   products_description="p", source_type="upload", status=status, **fields)
    db.session.add(row)
    db.session.commit()
    return row


def test_htmx_gets_the_region_alone_and_caches_are_told(client, app):
    _campaign(app)
    page = client.get("/", headers=basic("alice"))
    fragment = client.get("/", headers={**basic("alice"), **HTMX})
    assert b"<html" in page.data and b"<html" not in fragment.data
    assert fragment.get_data(as_text=True).lstrip().startswith('<section id="campaign-list"')
    assert "HX-Request" in page.headers["Vary"] and "HX-Request" in fragment.headers["Vary"]


def test_status_panel_polls_until_done_then_answers_286(client, app):
    row = _campaign(app, status="processing", stage="rendering", progress=30)
    url = f"/campaigns/{row.id}/status"
    polling = client.get(url, headers={**basic("alice"), **HTMX})
    assert polling.status_code == 200
    assert 'hx-trigger="every 2s"' in polling.get_data(as_text=True)
    assert 'value="30"' in polling.get_data(as_text=True)
    row.status, row.error_message = "failed", "The image file is damaged"
    db.session.commit()
    done = client.get(url, headers={**basic("alice"), **HTMX})
    assert done.status_code == 286
    html = done.get_data(as_text=True)
    assert "hx-trigger" not in html and "The image file is damaged" in html and "Retry" in html


def test_retry_from_the_panel_returns_a_polling_panel(client, app):
    row = _campaign(app, status="failed", error_message="broken")
    response = client.post(f"/campaigns/{row.id}/retry", headers={**basic("alice"), **HTMX})
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in response.get_data(as_text=True)
    plain = client.post(f"/campaigns/{_campaign(app, status='failed').id}/retry", headers=basic("alice"))
    assert plain.status_code == 303


def test_htmx_form_post_redirects_with_hx_redirect(client):
    response = client.post("/campaigns/new", headers={**basic("alice"), **HTMX},
                           content_type="multipart/form-data",
                           data={**FORM, "image": (io.BytesIO(jpeg_bytes()), "a.jpg")})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("/campaigns/")


def test_htmx_invalid_form_is_a_422_fragment(client):
    response = client.post("/campaigns/new", headers={**basic("alice"), **HTMX},
                           data={**FORM, "campaign_message": "violence sells"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<form id="campaign-form"')
    assert "Contains the prohibited word &#39;violence&#39;." in html


def test_a_file_that_is_not_an_image_is_refused_next_to_the_file_field(client):
    response = client.post("/campaigns/new", headers={**basic("alice"), **HTMX}, content_type="multipart/form-data",
                           data={**FORM, "image": (io.BytesIO(b"%PDF-1.7 not an image"), "a.jpg")})
    assert response.status_code == 415
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<form id="campaign-form"')
    assert "The file is not a JPEG, PNG or WebP image." in html
    assert db.session.query(Campaign).count() == 0


def test_library_source_from_the_form(client, app):
    import os

    os.makedirs(app.config["IMPORT_DIR"] + "/summer")
    with open(app.config["IMPORT_DIR"] + "/summer/beach.jpg", "wb") as f:
        f.write(jpeg_bytes())
    picker = client.get("/library/picker?folder=summer", headers={**basic("alice"), **HTMX})
    assert 'value="summer/beach.jpg"' in picker.get_data(as_text=True)
    with client.get("/api/library/thumbnail?path=summer/beach.jpg", headers=basic("alice")) as thumb:
        assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert client.get("/api/library/thumbnail?path=../x.jpg", headers=basic("alice")).status_code == 404
    response = client.post("/campaigns/new", headers=basic("alice"),
                           data={**FORM, "source_type": "local", "library_path": "summer/beach.jpg"})
    assert response.status_code == 303
    assert db.session.execute(db.select(Campaign)).scalar_one().source_path == "summer/beach.jpg"


def test_library_api_lists_and_refuses_escapes(client, app):
    with open(app.config["IMPORT_DIR"] + "/a.png", "wb") as f:
        f.write(b"\x89PNG")
    body = client.get("/api/library", headers=basic("alice")).get_json()
    assert [i["path"] for i in body["images"]] == ["a.png"]
    assert client.get("/api/library?folder=../..", headers=basic("alice")).status_code == 422


def test_gallery_lists_previews_of_completed_campaigns_only(client, app):
    from portal.models import Variant

    done = _campaign(app, status="completed")
    _campaign(app, status="failed")
    for position, (ratio, w, h) in enumerate([("1:1", 1080, 1080), ("9:16", 1080, 1920)]):
        db.session.add(Variant(campaign_id=done.id, ratio=ratio, position=position, width=w, height=h, bytes=1,
                               crop_x=0, crop_y=0, crop_w=10, crop_h=10, crop_reason="centre"))
    db.session.commit()
    html = client.get("/gallery?ratio=9:16", headers=basic("alice")).get_data(as_text=True)
    assert f"/api/campaigns/{done.id}/variants/9x16/preview" in html
    assert "1x1/preview" not in html
    assert client.get("/gallery", headers=basic("bob")).get_data(as_text=True).count("/preview") == 0


def test_delete_asks_first(client, app):
    row = _campaign(app)
    confirm = client.get(f"/campaigns/{row.id}/delete", headers=basic("alice"))
    assert confirm.status_code == 200 and b"Delete campaign" in confirm.data
    assert db.session.get(Campaign, row.id) is not None
    response = client.post(f"/campaigns/{row.id}/delete", headers=basic("alice"))
    assert response.status_code == 303 and db.session.get(Campaign, row.id) is None


def test_pages_link_to_each_other_keeping_the_filters(client, app):
    for _ in range(app.config["PAGE_SIZE"] + 1):
        _campaign(app)
    first = client.get("/?status=pending", headers=basic("alice")).get_data(as_text=True)
    assert "Page 1 of 2" in first and 'href="/?page=2&amp;status=pending"' in first and "Newer" not in first
    assert '<option value="pending" selected>' in first  # the filter shows what it filters by
    second = client.get("/?status=pending&page=2", headers=basic("alice")).get_data(as_text=True)
    assert "Page 2 of 2" in second and 'href="/?page=1&amp;status=pending"' in second and "Older" not in second
