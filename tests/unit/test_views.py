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
