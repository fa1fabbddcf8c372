"""Every main page on a desktop and a phone: screenshots, no sideways scrolling, nothing broken.

Screenshots go to test-artifacts/screenshots/<page>-<size>.png for a person to look at.
"""
from __future__ import annotations

import pytest
from br_pages import Watch
from it_images import small_photo
from it_stack import ARTIFACTS
from it_stack import UNREACHABLE_DROPBOX
from playwright.sync_api import Page, expect

SHOTS = ARTIFACTS / "screenshots"
SIZES = {"1280x900": (1280, 900), "390x844": (390, 844)}
PAGES = {  # name -> (path, what must be on screen)
    "dashboard": ("/", "#campaign-list"),
    "new-campaign": ("/campaigns/new", "#campaign-form"),
    "campaign": ("/campaigns/{id}", "#status-panel .variants"),
    "gallery": ("/gallery", "#gallery-grid .tile"),
}

_ALL_IMAGES_LOADED = """() => [...document.images].filter(i => i.getAttribute("src") && i.checkVisibility())
    .every(i => i.complete && i.naturalWidth > 0)"""
# How wide the document is, and the first elements that stick out on the right.
_OVERFLOW = """() => ({
    scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
    wide: [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
        .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '.' + e.className)),
})"""


@pytest.fixture(scope="module")
def everyday_campaigns(api, completed_campaign) -> None:
    """What a real list holds: a name taken from a long description, and a failed campaign."""
    description = "Summer 2025 marketing campaign for premium beach products, aimed at young adults aged 18-35"
    polled = api.submit_and_wait(small_photo(51), description=description)
    assert polled.body["status"] == "completed" and polled.body["name"] == description, polled.body
    failed = api.create({"description": "A Dropbox source", "target_market": "Everyone",
                         "campaign_message": "Hello", "products_description": "Shoes",
                         "image_metadata": {"source_type": "dropbox", "source_path": UNREACHABLE_DROPBOX}})
    assert failed.status_code == 202, failed.text
    assert api.wait(failed.json()["id"]).body["status"] == "failed"


@pytest.mark.parametrize("name", PAGES)
def test_page_on_desktop_and_phone(page: Page, completed_campaign, everyday_campaigns, name: str):
    path, landmark = PAGES[name]
    path = path.format(id=completed_campaign["id"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    watch = Watch().attach(page)
    sideways = []
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.goto(path)
        expect(page.locator(landmark).first).to_be_visible()
        # Lazy images load once scrolled to; a screenshot should show them.
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        page.wait_for_function(_ALL_IMAGES_LOADED, timeout=10_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=SHOTS / f"{name}-{size}.png", full_page=True)
        overflow = page.evaluate(_OVERFLOW)
        if overflow["scroll"] > overflow["inner"] + 1:
            sideways.append(f"{name} scrolls sideways at {size}: {overflow}")
    assert watch.problems() == [], watch.problems()
    assert not sideways, "\n".join(sideways)
