"""What another site can make the signed-in browser do, and what a hostile brief can make it run."""
from __future__ import annotations

import html
import json
import time
from pathlib import Path

import pytest
import requests
from br_pages import Watch
from it_images import small_photo
from it_stack import PYTHON, Proc, clean_env, free_port, stop_all
from playwright.sync_api import Page, expect

FIELDS = {
    "description": "Cross-site forged campaign", "target_market": "Victims",
    "campaign_message": "Forged", "products_description": "Nothing",
    "source_type": "dropbox", "dropbox_url": "https://www.dropbox.com/forged", "source_path": "https://www.dropbox.com/forged",
}
AUTO_SUBMIT = "document.forms[0].submit();\n"
NO_CORS_FETCH = """
const body = new FormData();
for (const [k, v] of Object.entries(JSON.parse(document.body.dataset.fields))) body.append(k, v);
fetch(document.body.dataset.target, {method: "POST", body, mode: "no-cors", credentials: "include"})
  .then(() => { window.__sent = true; }, () => { window.__sent = true; });
"""


def _form_page(action: str) -> str:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in FIELDS.items())
    return (f'<!doctype html><title>Win a prize</title><form method="post" enctype="multipart/form-data" '
            f'action="{action}">{inputs}</form><script src="auto.js"></script>')


@pytest.fixture
def other_site(tmp_path: Path, portal):
    """A different origin on another loopback port, serving pages that post to the portal.

    Same host, other port: same-site but cross-origin, the case a SameSite check would miss.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "auto.js").write_text(AUTO_SUBMIT)
    (site / "fetch.js").write_text(NO_CORS_FETCH)
    (site / "new.html").write_text(_form_page(portal.base_url + "/campaigns/new"))
    (site / "api.html").write_text(_form_page(portal.base_url + "/api/campaigns"))
    (site / "fetch.html").write_text(
        f'<!doctype html><body data-target="{portal.base_url}/api/campaigns" '
        f'data-fields="{html.escape(json.dumps(FIELDS))}"><script src="fetch.js"></script></body>')
    port = free_port()
    proc = Proc("other-site", [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(site)], clean_env(), tmp_path)
    try:
        _wait_up(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all([proc], timeout=5)


def _wait_up(port: int, proc: Proc) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/auto.js", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError("the other site did not start\n" + proc.tail())


def _total(api) -> int:
    return api.get("/api/campaigns", params={"per_page": 1}).json()["total"]


def test_other_sites_cannot_post_with_the_cached_credentials(page: Page, portal, api, other_site):
    before = _total(api)
    page.goto("/")  # the browser now holds alice's Basic credentials for the portal
    expect(page.locator(".who")).to_contain_text("alice")

    with page.expect_response(lambda r: r.url.endswith("/campaigns/new") and r.request.method == "POST") as form:
        page.goto(other_site + "/new.html")
    assert form.value.request.headers.get("origin") == other_site
    assert form.value.status == 400, form.value.status  # no CSRF token: refused
    expect(page.locator("main")).to_contain_text("CSRF")

    with page.expect_response(lambda r: r.url.endswith("/api/campaigns") and r.request.method == "POST") as posted:
        page.goto(other_site + "/api.html")
    assert posted.value.status == 403, posted.value.status
    expect(page.locator("body")).to_contain_text("Cross-site requests are not allowed.")

    with page.expect_response(lambda r: r.url.endswith("/api/campaigns") and r.request.method == "POST") as fetched:
        page.goto(other_site + "/fetch.html")
    assert fetched.value.status == 403, fetched.value.status

    assert _total(api) == before, "a page on another site created a campaign"
    # The browser did send alice's cached credentials with them: they were refused for being
    # cross-site, not for lacking a password. The form post shows them; the API posts got 403, which
    # only a signed-in request can get (login is checked before the cross-site guard; else 401).
    assert form.value.request.all_headers().get("authorization", "").startswith("Basic ")
    anonymous = requests.post(portal.base_url + "/api/campaigns", json={}, headers={"Origin": other_site},
                              timeout=10)
    assert anonymous.status_code == 401, anonymous.status_code


XSS_IMG = "<img src=x onerror=window.__xss=1>"
XSS_SCRIPT = "<script>window.__xss=1</script>"


def test_hostile_brief_text_is_shown_literally(page: Page, api):
    # The CSP (script-src 'self') would stop these payloads running even if they were not
    # escaped, so window.__xss alone could not fail: the text must also read back literally.
    name = f"Hostile {XSS_IMG}"
    polled = api.submit_and_wait(small_photo(41), name=name, description=f"Hello {XSS_SCRIPT} there",
                                 target_market=f"Everyone {XSS_IMG}")
    assert polled.body["status"] == "completed", polled.body
    campaign_id = polled.body["id"]
    watch = Watch().attach(page)

    pages = {"/": ".row-title", f"/campaigns/{campaign_id}": "h1",
             f"/gallery?campaign={campaign_id}": ".tile-title"}
    for path, shown in pages.items():
        page.goto(path)
        expect(page.locator(shown).filter(has_text="Hostile").first).to_have_text(name)
        assert page.evaluate("typeof window.__xss") == "undefined", path
        # Nothing of the brief became markup: no img with src=x, no inline script.
        assert page.locator("img[src='x']").count() == 0, path
        assert page.locator("script:not([src])").count() == 0, path

    page.goto(f"/campaigns/{campaign_id}")
    expect(page.locator("h1")).to_have_text(name)
    assert name in page.title()
    brief = page.locator(".brief")
    expect(brief).to_contain_text(f"Hello {XSS_SCRIPT} there")
    expect(brief).to_contain_text(f"Everyone {XSS_IMG}")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert watch.problems() == []  # no blocked inline script, no request for "x"
