"""The other sources: the server library picker, and a source that fails (Dropbox) with Retry."""
from __future__ import annotations

from br_pages import CAMPAIGN_URL, Watch, campaign_id_of, fill_brief, mark_page, still_marked
from br_stack import paused_worker
from it_stack import UNREACHABLE_DROPBOX
from playwright.sync_api import Page, expect

# The stack accepts links on dropbox.invalid, which never resolves: the same failure everywhere.
DROPBOX_REASON = "The host dropbox.invalid does not exist."


def _loaded(images) -> list[tuple[int, int]]:
    return images.evaluate_all("""imgs => Promise.all(imgs.map(i => i.decode().then(
        () => [i.naturalWidth, i.naturalHeight], () => [0, 0])))""")


def test_pick_from_the_server_library(page: Page, api):
    page.goto("/campaigns/new")
    watch = Watch().attach(page)
    mark_page(page)
    fill_brief(page, name="Library pick")
    page.get_by_text("Server library", exact=True).click()
    picker = page.locator("#library-picker")
    expect(picker).to_be_visible()
    expect(page.locator(".panel-upload")).to_be_hidden()

    # The top of the import folder: the sub-folder and the one image there, with its thumbnail.
    expect(picker.locator(".library-item")).to_have_count(1)
    expect(picker.locator(".library-item")).to_contain_text("top.jpg")
    assert all(w > 0 and h > 0 for w, h in _loaded(picker.locator(".library-item img")))

    picker.get_by_role("link", name="summer").click()
    expect(picker.locator(".crumbs")).to_contain_text("Import folder / summer")
    items = picker.locator(".library-item")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("beach.jpg")
    expect(items.nth(1)).to_contain_text("pier.jpg")
    sizes = _loaded(items.locator("img"))
    assert len(sizes) == 2 and all(w > 0 and h > 0 for w, h in sizes), sizes
    thumbs = [r.url for r in watch.requests_to(r"/api/library/thumbnail")]
    assert thumbs and all("path=" in url for url in thumbs)
    assert still_marked(page), "opening a folder reloaded the page instead of swapping the picker"
    assert page.url.endswith("/campaigns/new")

    items.filter(has_text="pier.jpg").click()
    expect(page.locator("input[name=library_path][value='summer/pier.jpg']")).to_be_checked()
    expect(items.filter(has_text="pier.jpg")).to_have_css("border-color", "rgb(51, 71, 214)")

    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_url(CAMPAIGN_URL)
    campaign_id = campaign_id_of(page)
    expect(page.locator(".brief")).to_contain_text("Server library: summer/pier.jpg")
    expect(page.locator("#status-panel .badge")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#status-panel .variants img")).to_have_count(3)
    body = api.campaign(campaign_id)
    assert body["image_metadata"]["source_type"] == "local"
    assert body["image_metadata"]["source_path"] == "summer/pier.jpg"
    assert body["source"] == {"width": 1200, "height": 900}


def test_failed_source_shows_reason_and_retry(page: Page, portal, api):
    page.goto("/campaigns/new")
    fill_brief(page, name="Dropbox failure")
    page.get_by_text("Dropbox link", exact=True).click()
    page.fill("#f-dropbox", UNREACHABLE_DROPBOX)
    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_url(CAMPAIGN_URL)
    campaign_id = campaign_id_of(page)
    panel = page.locator("#status-panel")
    expect(panel.locator(".badge")).to_have_text("failed", timeout=30_000)
    expect(panel.locator(".reason")).to_have_text(DROPBOX_REASON)

    # The dashboard lists it as failed, with the reason.
    page.goto("/")
    row = page.locator(".campaign-row", has=page.get_by_role("link", name="Dropbox failure"))
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("failed")
    expect(row.locator(".row-error")).to_have_text(DROPBOX_REASON)

    # The campaign page: the reason and Retry; Retry swaps the panel back to work, then failed again.
    row.get_by_role("link", name="Dropbox failure").click()
    page.wait_for_url(f"**/campaigns/{campaign_id}")
    mark_page(page)
    expect(panel.locator(".reason")).to_have_text(DROPBOX_REASON)
    retry = panel.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    with paused_worker(portal):
        with page.expect_response(f"**/campaigns/{campaign_id}/retry") as answer:
            retry.click()
        assert answer.value.status == 200
        expect(panel.locator(".badge")).to_have_text("pending")
        expect(panel.locator(".reason")).to_have_count(0)
        expect(panel.get_by_role("button", name="Retry")).to_have_count(0)
    expect(panel.locator(".badge")).to_have_text("failed", timeout=30_000)
    expect(panel.locator(".reason")).to_have_text(DROPBOX_REASON)
    expect(panel.get_by_role("button", name="Retry")).to_be_visible()
    assert still_marked(page), "the panel must be swapped in place, not the page reloaded"
    assert page.url.endswith(f"/campaigns/{campaign_id}")
    assert api.campaign(campaign_id)["status"] == "failed"
