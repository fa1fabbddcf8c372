"""The crop editor: click the source to set the focal point, drag one format's box by hand."""
from __future__ import annotations

from it_images import small_photo
from playwright.sync_api import Page, expect


def _fresh_campaign(api, name: str) -> dict:
    polled = api.submit_and_wait(small_photo(7), name=name)
    assert polled.body["status"] == "completed", polled.body
    return polled.body


def _boxes(api, campaign_id: str) -> dict:
    body = api.wait(campaign_id, timeout=60).body
    assert body["status"] == "completed", body
    return {v["ratio"]: (v["crop"], v["crop_reason"]) for v in body["variants"]}


def test_clicking_the_source_moves_the_focal_point_and_renders_again(page: Page, api):
    campaign = _fresh_campaign(api, "Focal click")
    page.goto(f"/campaigns/{campaign['id']}")
    svg = page.locator("svg.crops")
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.02, box["y"] + box["height"] * 0.5)  # near the left edge
    expect(page.locator("#status-panel.completed svg.crops circle.focal")).to_be_visible(timeout=30_000)
    after = _boxes(api, campaign["id"])
    width = campaign["source"]["width"]
    for ratio, (crop, reason) in after.items():
        assert reason == "focal", (ratio, reason)
        if crop["w"] < width:
            assert crop["x"] == 0, (ratio, crop)  # pushed against the left edge
    body = api.wait(campaign["id"]).body
    assert body["focal_x"] < 0.05 and abs(body["focal_y"] - 0.5) < 0.05


def test_dragging_one_box_re_renders_only_that_format(page: Page, api):
    campaign = _fresh_campaign(api, "Drag a box")
    before = _boxes(api, campaign["id"])
    page.goto(f"/campaigns/{campaign['id']}")
    page.get_by_role("button", name="9:16").click()
    rect = page.locator("rect.crop.editing")
    expect(rect).to_have_attribute("data-ratio", "9:16")
    rect.scroll_into_view_if_needed()
    b = rect.bounding_box()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2 - 400, b["y"] + b["height"] / 2, steps=6)  # far left: clamped at 0
    page.mouse.up()
    expect(page.get_by_role("button", name="Automatic 9:16")).to_be_visible(timeout=30_000)
    after = _boxes(api, campaign["id"])
    crop, reason = after["9:16"]
    assert reason == "manual" and crop["x"] == 0
    assert (crop["w"], crop["h"]) == (before["9:16"][0]["w"], before["9:16"][0]["h"])  # aspect and size kept
    assert after["1:1"] == before["1:1"] and after["16:9"] == before["16:9"]

    page.get_by_role("button", name="Automatic 9:16").click()
    expect(page.get_by_role("button", name="Automatic 9:16")).to_have_count(0, timeout=30_000)
    assert _boxes(api, campaign["id"])["9:16"] == before["9:16"]
