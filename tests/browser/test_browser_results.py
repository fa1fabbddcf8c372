"""Finished campaigns: the gallery, downloads, the status polling that stops, deleting."""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from br_pages import Watch, mark_page, still_marked
from br_stack import paused_worker
from it_images import small_photo
from it_stack import UNREACHABLE_DROPBOX
from PIL import Image
from playwright.sync_api import Page, expect

SIZES = {"1x1": (1080, 1080), "9x16": (1080, 1920), "16x9": (1920, 1080)}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG", im.format
        return im.size


def test_gallery_shows_previews_filters_and_downloads(page: Page, completed_campaign):
    watch = Watch().attach(page)
    page.goto("/gallery")
    tiles = page.locator("#gallery-grid .tile")
    expect(tiles.first).to_be_visible()
    sources = tiles.locator("img").evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert len(sources) >= 3
    assert all(s.endswith("/preview") for s in sources), sources
    images = [r.url for r in watch.requests if "/variants/" in r.url]
    assert images and all(u.endswith("/preview") for u in images), f"full-size files fetched: {images}"

    mark_page(page)
    page.select_option("#g-ratio", "9:16")
    expect(page).to_have_url(re.compile(r"/gallery\?ratio=9%3A16(&|$)"))
    expect(tiles.first).to_contain_text("9:16 · 1080×1920")
    classes = tiles.evaluate_all("ts => ts.map(t => t.className)")
    assert classes and all(c == "tile r9x16" for c in classes), classes
    expect(page.locator("#gallery-grid")).not_to_contain_text("1:1 ·")
    expect(page.locator("#gallery-grid")).not_to_contain_text("16:9 ·")
    assert still_marked(page), "the filter reloaded the page instead of swapping the grid"

    tile = tiles.filter(has_text=completed_campaign["name"])
    with page.expect_download() as download_info:
        tile.get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.suggested_filename.endswith("-9x16.jpg"), download.suggested_filename
    assert _jpeg_size(Path(download.path()).read_bytes()) == (1080, 1920)


def test_campaign_page_zip_holds_the_three_formats(page: Page, completed_campaign):
    page.goto(f"/campaigns/{completed_campaign['id']}")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download all (ZIP)").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(download.path()) as archive:
        names = sorted(archive.namelist())
        assert len(names) == 3, names
        sizes = {name.rsplit("-", 1)[1].removesuffix(".jpg"): _jpeg_size(archive.read(name))
                 for name in names}
    assert sizes == SIZES


def _status_responses(watch: Watch) -> list[int]:
    return [r.status for r in watch.responses if r.url.endswith("/status")]


def test_polling_stops_when_the_campaign_is_done(page: Page, portal, api, completed_campaign):
    # A finished campaign's page never polls.
    watch = Watch().attach(page)
    page.goto(f"/campaigns/{completed_campaign['id']}")
    expect(page.locator("#status-panel .badge")).to_have_text("completed")
    page.wait_for_timeout(5000)
    assert watch.requests_to(r"/status$") == [], "a completed campaign's page polls its status"

    # A pending one polls until it completes: the last answer is 286, then nothing more.
    with paused_worker(portal):
        r = api.upload(small_photo(31), name="Polling campaign")
        assert r.status_code == 202, r.text
        campaign_id = r.json()["id"]
        page.goto(f"/campaigns/{campaign_id}")
        expect(page.locator("#status-panel .badge")).to_have_text("pending")
        watch.clear()
        with page.expect_response(f"**/campaigns/{campaign_id}/status") as first:
            pass
        assert first.value.status == 200
    expect(page.locator("#status-panel .badge")).to_have_text("completed", timeout=30_000)
    page.wait_for_timeout(200)  # the 286 response event may trail the swap slightly
    statuses = _status_responses(watch)
    assert statuses and statuses[-1] == 286, statuses
    assert all(s == 200 for s in statuses[:-1]), statuses
    count = len(watch.requests_to(r"/status$"))
    page.wait_for_timeout(4500)  # more than two polling intervals
    assert len(watch.requests_to(r"/status$")) == count, "polling went on after the 286"
    assert watch.problems() == []


def test_delete_asks_then_removes(page: Page, api, base_url):
    r = api.create({"name": "Delete me", "description": "To be deleted", "target_market": "Nobody",
                    "campaign_message": "Bye", "products_description": "None",
                    "image_metadata": {"source_type": "dropbox", "source_path": UNREACHABLE_DROPBOX}})
    assert r.status_code == 202, r.text
    campaign_id = r.json()["id"]
    page.goto(f"/campaigns/{campaign_id}")
    page.get_by_role("link", name="Delete…").click()
    page.wait_for_url(f"**/campaigns/{campaign_id}/delete")
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete “Delete me”?")
    assert api.get(f"/api/campaigns/{campaign_id}").status_code == 200, "deleted before confirming"

    # Cancel goes back and keeps it.
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(f"**/campaigns/{campaign_id}")
    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("button", name="Delete campaign").click()
    page.wait_for_url(base_url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")
    expect(page.get_by_role("link", name="Delete me")).to_have_count(0)
    assert api.get(f"/api/campaigns/{campaign_id}").status_code == 404
