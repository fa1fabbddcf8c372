"""Moving the focal point and setting crops by hand: PATCH, then a new run re-renders."""
from __future__ import annotations

import pytest

from portal.models import Campaign, Variant, db
from worker import pipeline
from factories import basic, brief, jpeg_bytes


@pytest.fixture
def done(app, client):
    """A completed 1600x1200 campaign of alice's."""
    with open(app.config["IMPORT_DIR"] + "/beach.jpg", "wb") as f:
        f.write(jpeg_bytes((1600, 1200)))
    campaign_id = client.post("/api/campaigns", json=brief(), headers=basic("alice")).get_json()["id"]
    pipeline.process(campaign_id, "task-1")
    return campaign_id


def patch(client, campaign_id, body, user="alice"):
    return client.patch(f"/api/campaigns/{campaign_id}", json=body, headers=basic(user))


def boxes(campaign_id) -> dict:
    rows = db.session.execute(db.select(Variant).filter_by(campaign_id=campaign_id)).scalars()
    return {v.ratio: ((v.crop_x, v.crop_y, v.crop_w, v.crop_h), v.crop_reason) for v in rows}


def test_moving_the_focal_point_renders_again_around_it(client, done):
    assert boxes(done)["1:1"] == ((200, 0, 1200, 1200), "auto")
    response = patch(client, done, {"focal_x": 1.0, "focal_y": 0.5})
    assert response.status_code == 202 and response.get_json()["status"] == "pending"
    pipeline.process(done, "task-2")
    after = boxes(done)
    assert after["1:1"] == ((400, 0, 1200, 1200), "focal")
    assert after["9:16"][1] == after["16:9"][1] == "focal"
    body = client.get(f"/api/campaigns/{done}", headers=basic("alice")).get_json()
    assert (body["status"], body["focal_x"], body["focal_y"]) == ("completed", 1.0, 0.5)


def test_a_manual_crop_re_renders_only_its_ratio(app, client, done):
    store = app.extensions["storage"]
    before = {r: store.variant_path(done, r).stat().st_mtime_ns for r in ("1:1", "9:16", "16:9")}
    response = patch(client, done, {"crops": {"9:16": {"x": 0, "y": 0, "w": 675, "h": 1200}}})
    assert response.status_code == 202
    assert db.session.get(Campaign, done).rerender_ratios == ["9:16"]
    pipeline.process(done, "task-2")
    after = boxes(done)
    assert after["9:16"] == ((0, 0, 675, 1200), "manual")
    assert after["1:1"] == ((200, 0, 1200, 1200), "auto")
    mtimes = {r: store.variant_path(done, r).stat().st_mtime_ns for r in before}
    assert mtimes["1:1"] == before["1:1"] and mtimes["16:9"] == before["16:9"]
    assert mtimes["9:16"] != before["9:16"]
    assert db.session.get(Campaign, done).rerender_ratios is None

    # The focal point moves the automatic crops but never the manual one.
    patch(client, done, {"focal_x": 0.0, "focal_y": 0.0})
    assert db.session.get(Campaign, done).rerender_ratios == ["1:1", "16:9"]
    pipeline.process(done, "task-3")
    assert boxes(done)["9:16"] == ((0, 0, 675, 1200), "manual")
    assert boxes(done)["1:1"] == ((0, 0, 1200, 1200), "focal")

    # null goes back to the automatic choice.
    patch(client, done, {"crops": {"9:16": None}})
    pipeline.process(done, "task-4")
    assert boxes(done)["9:16"][1] == "focal"


@pytest.mark.parametrize("body, field", [
    ({"focal_x": 0.5}, "focal_x"),
    ({"focal_x": 2, "focal_y": 0.5}, "focal_x"),
    ({}, "body"),
    ({"crops": {"4:3": {"x": 0, "y": 0, "w": 10, "h": 10}}}, "crops.4:3"),
    ({"crops": {"1:1": {"x": 500, "y": 0, "w": 1200, "h": 1200}}}, "crops.1:1"),
    ({"crops": {"1:1": {"x": 0, "y": 0, "w": 1200, "h": 600}}}, "crops.1:1"),
])
def test_invalid_patch_is_422_naming_the_field(client, done, body, field):
    response = patch(client, done, body)
    assert response.status_code == 422
    assert field in response.get_json()["fields"], response.get_json()
    assert db.session.get(Campaign, done).status == "completed"


def test_patch_while_running_is_409_and_others_get_404(client, done):
    assert patch(client, done, {"focal_x": 0.1, "focal_y": 0.1}, user="bob").status_code == 404
    patch(client, done, {"focal_x": 0.1, "focal_y": 0.1})
    assert patch(client, done, {"focal_x": 0.2, "focal_y": 0.2}).status_code == 409
