"""The new-campaign form: drag and drop, the checks made before sending, errors in place, keyboard."""
from __future__ import annotations

import io

from br_pages import CAMPAIGN_URL, Watch, campaign_id_of, drop_file, fill_brief, mark_page, still_marked
from br_stack import MAX_UPLOAD_MB, paused_worker
from it_images import small_photo
from PIL import Image
from playwright.sync_api import Page, expect

# Records, inside the page, each badge text the status panel shows (it is swapped, so re-query).
_RECORD_BADGES = """() => {
    window.__badges = [];
    const note = () => {
        const badge = document.querySelector('#status-panel .badge');
        const text = badge ? badge.textContent.trim() : null;
        if (text && window.__badges[window.__badges.length - 1] !== text) window.__badges.push(text);
        if (document.querySelector('#status-panel progress')) window.__sawProgress = true;
    };
    note();
    new MutationObserver(note).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def campaign_count(api) -> int:
    r = api.get("/api/campaigns", params={"per_page": 1})
    assert r.status_code == 200, r.text
    return r.json()["total"]


def test_drop_preview_submit_and_live_status(page: Page, portal, api):
    page.goto("/campaigns/new")
    watch = Watch().attach(page)
    fill_brief(page)
    drop_file(page, small_photo(1, (1600, 1200)), "beach.jpg", "image/jpeg")

    # The preview is local: it is shown, with the image's size, before anything is sent.
    expect(page.locator(".dz-preview")).to_be_visible()
    expect(page.locator(".dz-info")).to_contain_text("beach.jpg · 1600×1200 px")
    expect(page.locator(".dz-error")).to_be_hidden()
    assert watch.requests_to(r"/campaigns", method="POST") == [], "the drop sent something"

    with paused_worker(portal):  # a busy worker: the campaign is still pending when we land
        page.get_by_role("button", name="Create campaign").click()
        page.wait_for_url(CAMPAIGN_URL)
        mark_page(page)
        page.evaluate(_RECORD_BADGES)
        expect(page.locator("#status-panel .badge")).to_have_text("pending")
        expect(page.locator("#status-panel progress")).to_be_visible()

    panel = page.locator("#status-panel")
    expect(panel.locator(".badge")).to_have_text("completed", timeout=30_000)
    assert still_marked(page), "the page was reloaded: the status must be swapped in place"
    assert page.evaluate("window.__sawProgress") is True
    badges = page.evaluate("window.__badges")
    assert badges[0] == "pending" and badges[-1] == "completed", badges

    images = panel.locator(".variants img")
    expect(images).to_have_count(3)
    for i in range(3):
        image = images.nth(i)
        expect(image).to_be_visible()
        image.evaluate("img => img.decode()")
        width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert width > 0 and height > 0, f"variant {i} did not load"
    expect(panel).to_contain_text("1080×1080")
    expect(panel).to_contain_text("1080×1920")
    expect(panel).to_contain_text("1920×1080")
    assert api.campaign(campaign_id_of(page))["image_metadata"]["filename"] == "beach.jpg"
    posts = watch.requests_to(r"/campaigns/new$", method="POST")
    assert len(posts) == 1 and "beach.jpg" in (posts[0].post_data_buffer or b"").decode("latin-1")


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(out, "GIF")
    return out.getvalue()


def test_wrong_type_and_too_large_are_refused_before_sending(page: Page, api):
    before = campaign_count(api)
    page.goto("/campaigns/new")
    watch = Watch().attach(page)
    fill_brief(page)
    zone, error = page.locator(".dropzone"), page.locator(".dz-error")
    limit = int(zone.get_attribute("data-max-bytes"))
    assert limit == MAX_UPLOAD_MB * 1024 * 1024
    expect(zone).to_contain_text(f"up to {MAX_UPLOAD_MB} MB")

    drop_file(page, _gif(), "anim.gif", "image/gif")
    expect(error).to_be_visible()
    expect(error).to_have_text("“anim.gif” is not a JPEG, PNG or WebP image.")
    expect(page.locator(".dz-preview")).to_be_hidden()
    assert page.eval_on_selector("#f-image", "i => i.files.length") == 0

    drop_file(page, None, "x.jpg", "image/jpeg", size=limit + 1024 * 1024)
    expect(error).to_have_text(f"“x.jpg” is {MAX_UPLOAD_MB + 1}.0 MB; the limit is {MAX_UPLOAD_MB}.0 MB.")
    expect(page.locator(".dz-preview")).to_be_hidden()
    assert page.eval_on_selector("#f-image", "i => i.files.length") == 0

    page.wait_for_timeout(500)
    assert watch.requests_to(r"/campaigns", method="POST") == [], "a refused file was sent"
    assert campaign_count(api) == before


def test_invalid_brief_is_shown_in_place_and_keeps_the_file(page: Page, api):
    before = campaign_count(api)
    page.goto("/campaigns/new")
    url = page.url
    mark_page(page)
    fill_brief(page, description="", campaign_message="Pure violence on the beach")
    drop_file(page, small_photo(2, (1600, 1200)), "keep-me.jpg", "image/jpeg")
    expect(page.locator(".dz-info")).to_contain_text("keep-me.jpg · 1600×1200 px")

    with page.expect_response(lambda r: r.url.endswith("/campaigns/new") and r.request.method == "POST") as done:
        page.get_by_role("button", name="Create campaign").click()
    assert done.value.status == 422

    expect(page.locator("#f-description ~ #description-error")).to_have_text("This field must not be empty.")
    expect(page.locator("#f-description")).to_have_attribute("aria-invalid", "true")
    # Both problems at once, each next to its field. Soft: a known product bug (the prohibited
    # words are checked only once every field is present), the rest of the test still runs.
    expect.soft(page.locator(".error.summary")).to_have_text("Please correct the 2 fields marked below.",
                                                       timeout=1000)
    expect.soft(page.locator("#f-campaign_message ~ #campaign_message-error")).to_have_text(
        "Contains the prohibited word 'violence'.", timeout=1000)
    # What was typed is kept, the page was not reloaded, the URL did not change.
    expect(page.locator("#f-campaign_message")).to_have_value("Pure violence on the beach")
    expect(page.locator("#f-target_market")).to_have_value("Young adults aged 18-35")
    expect(page.locator("#f-name")).to_have_value("Browser summer launch")
    assert page.url == url
    assert still_marked(page)
    # hx-preserve kept the drop zone: the chosen file and its preview are still there.
    assert page.eval_on_selector("#f-image", "i => i.files.length && i.files[0].name") == "keep-me.jpg"
    expect(page.locator(".dz-preview")).to_be_visible()
    expect(page.locator(".dz-info")).to_contain_text("keep-me.jpg")
    assert campaign_count(api) == before

    # Fixing the fields and sending again works, with the kept file.
    page.fill("#f-description", "Fixed description")
    page.fill("#f-campaign_message", "Sunny days")
    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_url(CAMPAIGN_URL)
    body = api.campaign(campaign_id_of(page))
    assert body["image_metadata"]["filename"] == "keep-me.jpg"
    assert body["description"] == "Fixed description"


def _focus_ring(page: Page, selector: str) -> dict:
    """The outline a person sees when the element at `selector` has keyboard focus."""
    return page.eval_on_selector(selector, """el => {
        const s = getComputedStyle(el), r = el.getBoundingClientRect();
        return {style: s.outlineStyle, width: parseFloat(s.outlineWidth), w: r.width, h: r.height,
                clip: s.clip, opacity: s.opacity};
    }""")


def _visible_ring(ring: dict) -> bool:
    return (ring["style"] != "none" and ring["width"] > 0 and ring["w"] >= 8 and ring["h"] >= 8
            and ring["opacity"] != "0" and "rect(0px, 0px, 0px, 0px)" not in ring["clip"])


def test_keyboard_reaches_sources_file_and_button_with_a_visible_focus(page: Page):
    page.goto("/campaigns/new")
    reached: list[str] = []
    file_focus = None
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")
        reached.append(focused)
        if focused == "src-upload":
            label_ring = _focus_ring(page, "label[for=src-upload]")
            assert label_ring["style"] != "none", "the focused source choice shows no outline"
        if focused == "f-image":
            # The file input itself is visually hidden: what shows its focus must be visible.
            file_focus = {"input": _focus_ring(page, "#f-image"), "zone": _focus_ring(page, ".dropzone")}
        if focused == "Create campaign":
            assert _visible_ring(_focus_ring(page, "button[type=submit]"))
            break
    assert "src-upload" in reached, reached
    assert "f-image" in reached, reached
    assert reached.index("src-upload") < reached.index("f-image") < reached.index("Create campaign")
    # Arrow keys move between the source choices and show that choice's panel.
    page.focus("#src-upload")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "src-local"
    expect(page.locator(".panel-local")).to_be_visible()
    expect(page.locator(".panel-upload")).to_be_hidden()
    # Last, as it is a known product bug: the focused file input shows no outline anywhere.
    assert _visible_ring(file_focus["input"]) or _visible_ring(file_focus["zone"]), (
        f"keyboard focus on the file input is invisible: {file_focus}")
