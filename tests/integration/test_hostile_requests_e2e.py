"""Hostile requests against the real stacks (gunicorn, worker, beat; SQLite and MariaDB), counted
per family: bodies over the limit, cross-site posts carrying Basic credentials, path traversal,
SSRF targets in Dropbox links, markup in every text field, secrets in the logs.
(Password guessing is its own suite.) The narrower single checks live in test_validation_e2e.py,
test_access_e2e.py and the unit tests; this is the systematic, end-to-end sweep.

Every refused case is also checked to leave nothing behind: no campaign row, no stored file.
The module's teardown prints the number of cases per family.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets

import it_images
import pytest
import requests
from it_requests import (
    CASES, Listener, RawResponse, count, csrf_token, log_files, markup_problems, raw, stored_state,
)
from it_stack import ARTIFACTS, BRIEF, MAX_UPLOAD_MB, PASSWORDS, Stack
from test_validation_e2e import assert_error

pytestmark = pytest.mark.timeout(300)
OVER = (MAX_UPLOAD_MB + 1) * 1024 * 1024
AI = {"source_type": "ai_generated", "ai_prompt": "A beach at dawn"}


@contextlib.contextmanager
def nothing_stored(stack: Stack):
    before = stored_state(stack)
    yield
    after = stored_state(stack)
    assert after[0] == before[0], f"a refused request created campaigns: {after[0] - before[0]}"
    assert after[1] == before[1], f"a refused request left files: {sorted(after[1] - before[1])}"


def browser(stack: Stack) -> tuple[requests.Session, str]:
    """A signed-in session with the new-campaign form's cookie and CSRF token, as a browser has."""
    session = requests.Session()
    session.auth = ("alice", PASSWORDS["alice"])
    page = session.get(stack.base_url + "/campaigns/new", timeout=30)
    assert page.status_code == 200, page.text[:300]
    return session, csrf_token(page.text)


def completed(stack: Stack, **fields) -> dict:
    polled = stack.api("alice").submit_and_wait(it_images.small_photo(seed=4, size=(640, 480)), **fields)
    assert polled.body["status"] == "completed", polled.body
    return polled.body


def assert_page_error(r, status: int) -> None:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("text/html"), r.headers["Content-Type"]
    assert r.headers.get("Content-Security-Policy"), "no CSP on an error page"
    assert "Traceback" not in r.text


# ---------------------------------------------------------------------------- bodies over the limit

def test_bodies_over_the_limit_are_413_and_store_nothing(stack: Stack):
    api = stack.api("alice")
    session, token = browser(stack)
    photo = it_images.small_photo(seed=1, size=(320, 240))
    huge_file = b"\xff\xd8\xff\xe0" + os.urandom(OVER)
    # A body refused before it is read is not drained (gunicorn drains at most 64 KiB): the server
    # closes that connection after its answer, and a kept-alive client racing that close sees
    # "Remote end closed connection". Each request here has its connection to itself.
    close = {"Connection": "close"}
    with nothing_stored(stack):
        # API: a JSON brief larger than the limit.
        assert_error(api.post("/api/campaigns", data=json.dumps({**BRIEF, "description": "x" * OVER,
                                                                "image_metadata": AI}),
                              headers={"Content-Type": "application/json", **close}), 413, "too_large")
        # API: one text field past the form-memory cap (the whole body is far below the upload limit).
        assert_error(api.post("/api/campaigns", data={**BRIEF, "description": "x" * 600_000}, headers=close,
                              files={"image": ("a.jpg", photo, "image/jpeg")}), 413, "too_large")
        # API: more form parts than allowed.
        parts = {f"field{i}": "x" for i in range(1100)}
        assert_error(api.post("/api/campaigns", data={**BRIEF, **parts}, headers=close,
                              files={"image": ("a.jpg", photo, "image/jpeg")}), 413, "too_large")
        # API: a Content-Length that announces more than the limit (refused before reading).
        lying = raw(stack, "POST", "/api/campaigns", body=b"{}", headers={
            "Content-Type": "application/json", "Content-Length": str(10 * OVER)})
        assert lying.status == 413 and json.loads(lying.body)["error"] == "too_large", lying.text[:200]
        # API: a chunked body (no Content-Length) that grows past the limit.
        def chunks():
            for _ in range(MAX_UPLOAD_MB + 2):
                yield b"\xff" * (1024 * 1024)
        chunked = api.post("/api/campaigns", data=chunks(), headers={
            "Content-Type": "multipart/form-data; boundary=xyz", **close})
        assert_error(chunked, 413, "too_large")
        # Forms: the upload through the page, as a plain post and as htmx sends it.
        form = {**BRIEF, "csrf_token": token, "source_type": "upload"}
        for headers in (close, {"HX-Request": "true", **close}):
            r = session.post(stack.base_url + "/campaigns/new", data=form, headers=headers, timeout=60,
                             files={"image": ("huge.jpg", huge_file, "image/jpeg")})
            assert_page_error(r, 413)
            assert "Too large" in r.text
        # Forms: a text field past the form-memory cap.
        r = session.post(stack.base_url + "/campaigns/new", data={**form, "description": "x" * 600_000},
                         files={"image": ("a.jpg", photo, "image/jpeg")}, headers=close, timeout=60)
        assert_page_error(r, 413)
    count("bodies over the limit", 8)


# ---------------------------------------------------------------------------- cross-site posts

FOREIGN = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # a sibling origin (other port or sub-domain) is still another site
    {"Origin": "https://evil.test"},
    {"Origin": "null"},  # sandboxed frames and data: pages
    {"Origin": "http://127.0.0.1:1"},
    {"Origin": "https://evil.test", "Sec-Fetch-Site": "same-origin"},  # a foreign Origin wins
]


def test_cross_site_posts_with_basic_credentials_are_refused(stack: Stack):
    api = stack.api("alice")
    target = completed(stack, name="Cross-site target")
    cid = target["id"]
    # Control: the same request from the portal's own pages is accepted.
    ok = api.post("/api/campaigns", json={**BRIEF, "image_metadata": AI},
                  headers={"Origin": stack.base_url, "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 202, ok.text
    api.delete(f"/api/campaigns/{ok.json()['id']}")
    session, _token = browser(stack)
    n = 0
    with nothing_stored(stack):
        for headers in FOREIGN:
            attempts = [
                ("POST", "/api/campaigns", {"json": {**BRIEF, "image_metadata": AI}}),
                ("POST", "/api/campaigns", {"data": {**BRIEF, "source_type": "upload"},  # a CORS-"simple" post
                                            "files": {"image": ("a.jpg", it_images.small_photo(), "image/jpeg")}}),
                ("POST", "/api/campaigns", {"data": json.dumps({**BRIEF, "image_metadata": AI}),
                                            "headers": {"Content-Type": "text/plain"}}),
                ("PATCH", f"/api/campaigns/{cid}", {"json": {"focal_x": 0.1, "focal_y": 0.1}}),
                ("POST", f"/api/campaigns/{cid}/retry", {}),
                ("DELETE", f"/api/campaigns/{cid}", {}),
            ]
            for method, path, kwargs in attempts:
                extra = kwargs.pop("headers", {})
                r = api.request(method, path, headers={**headers, **extra}, **kwargs)
                body = assert_error(r, 403, "forbidden")
                assert "Cross-site" in body["message"], body
                n += 1
        # Forms: Basic credentials alone (what another site's form gets) are not enough.
        foreign = requests.Session()
        foreign.auth = ("alice", PASSWORDS["alice"])
        form = {**BRIEF, "source_type": "ai_generated", "ai_prompt": "A forged beach"}
        for who, data in ((foreign, form), (foreign, {**form, "csrf_token": "forged"}),
                          (session, form), (session, {**form, "csrf_token": _token + "x"})):
            for path in ("/campaigns/new", f"/campaigns/{cid}/retry", f"/campaigns/{cid}/recrop",
                         f"/campaigns/{cid}/delete"):
                r = who.post(stack.base_url + path, data={**data, "focal_x": "0.2", "focal_y": "0.2"},
                             headers={"Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"}, timeout=30)
                assert_page_error(r, 400)
                assert "CSRF" in r.text or "expired" in r.text, r.text[:300]
                n += 1
    after = api.campaign(cid)
    assert after["status"] == "completed" and after["focal_x"] is None and after["finished_at"] == target["finished_at"]
    count("cross-site posts", n)


# ---------------------------------------------------------------------------- path traversal

def _traversal_paths(stack: Stack) -> list[str]:
    inside = stack.import_dir / "beach.jpg"
    return [
        "../../etc/passwd", "/etc/passwd", "..", "../", "./../beach.jpg", "summer/../../../etc/passwd",
        "escape.jpg", "secret.jpg", "outside/passwd", "outside/hostname", "beach.jpg\x00.png", "beach.jpg\x00",
        "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc%2fpasswd", "..\\..\\etc\\passwd", "\\etc\\passwd",
        "file:///etc/passwd", "~/../../etc/passwd", "/proc/self/environ", str(inside), "//etc/passwd",
        "C:\\Windows\\win.ini", ".", "outside",
    ]


@pytest.fixture
def import_folder(stack: Stack):
    """The import folder with a real image, and symlinks out of it (to a file, an image, a folder)."""
    folder = stack.import_dir
    (folder / "beach.jpg").write_bytes(it_images.small_photo(seed=6, size=(640, 480)))
    outside_image = stack.storage_dir.parent / "outside.jpg"
    outside_image.write_bytes(it_images.small_photo(seed=7, size=(640, 480)))
    links = {"escape.jpg": "/etc/passwd", "secret.jpg": str(outside_image), "outside": "/etc"}
    for name, target in links.items():
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
        (folder / name).symlink_to(target)
    yield folder
    for name in links:
        (folder / name).unlink()


def _no_leak(text: str) -> None:
    assert "root:" not in text and "SECRET_KEY" not in text and "import os" not in text, text[:300]


def test_path_traversal_in_every_path_field_and_route_is_refused(stack: Stack, import_folder):
    api = stack.api("alice")
    target = completed(stack, name="Traversal target")
    cid = target["id"]
    session, token = browser(stack)
    n = 0
    with nothing_stored(stack):
        for path in _traversal_paths(stack):
            # The JSON API and the multipart API: 422 naming the field.
            r = api.create({**BRIEF, "image_metadata": {"source_type": "local", "source_path": path}})
            body = assert_error(r, 422, "validation_error")
            assert "image_metadata.source_path" in body["fields"], (path, body)
            r = api.post("/api/campaigns", data={**BRIEF, "source_type": "local", "source_path": path})
            assert "image_metadata.source_path" in assert_error(r, 422, "validation_error")["fields"], path
            # The form's library field.
            r = session.post(stack.base_url + "/campaigns/new", timeout=30, data={
                **BRIEF, "csrf_token": token, "source_type": "local", "library_path": path})
            assert r.status_code == 422 and "import folder" in r.text, (path, r.status_code)
            # The library's thumbnail and listing.
            r = api.get("/api/library/thumbnail", params={"path": path})
            assert r.status_code in (404, 422) and r.headers["Content-Type"].startswith("application/json"), path
            r = api.get("/api/library", params={"folder": path})
            assert r.status_code == 422 or path == ".", (path, r.status_code, r.text[:200])  # "." is the folder itself
            if r.status_code == 200:  # symlinks that lead out are not even listed
                listed = {i["path"] for i in r.json()["images"]} | set(r.json()["folders"])
                assert "beach.jpg" in listed and not listed & {"escape.jpg", "secret.jpg", "outside"}, listed
            _no_leak(r.text)
            n += 5
        # The picker fragment with a hostile folder: a 422 page, never a listing of /etc.
        for folder in ("../..", "/etc", "outside", "..%2f.."):
            r = session.get(stack.base_url + "/library/picker", params={"folder": folder},
                            headers={"HX-Request": "true"}, timeout=30)
            assert r.status_code == 422 and "passwd" not in r.text, (folder, r.status_code)
            n += 1
        # Routes, sent byte for byte (no client-side clean-up of ../ or %2e%2e).
        routes = [
            "/api/campaigns/..%2f..%2fetc%2fpasswd", "/api/campaigns/../../etc/passwd",
            f"/api/campaigns/{cid}/variants/..%2fsource", f"/api/campaigns/{cid}/variants/../source",
            f"/api/campaigns/{cid}/variants/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            f"/api/campaigns/{cid}/variants/..%2f..%2f..%2fwsgi.py/preview",
            f"/api/campaigns/{cid}/variants/1x1%00.jpg", f"/api/campaigns/{cid}/variants/..%5csource",
            f"/api/campaigns/{cid}/variants/1x1%2f..%2f..%2fsource", f"/api/campaigns/{cid}%2f..%2f..",
            f"/api/campaigns/..%2f{cid}/variants.zip", f"/api/campaigns/{cid}/../{cid}/source/../../source",
            "/api/library/thumbnail?path=..%2f..%2fetc%2fpasswd", "/api/library/thumbnail?path=%2fetc%2fpasswd",
            "/api/library/thumbnail?path=escape.jpg", "/api/library/thumbnail?path=secret.jpg",
            "/api/library/thumbnail?path=beach.jpg%00.png", "/api/library?folder=..%2f..",
            "/static/..%2fportal%2f__init__.py", "/static/../wsgi.py", "/static/%2e%2e/wsgi.py",
            "/static/..%5c..%5cwsgi.py", "/campaigns/..%2f..%2fetc%2fpasswd", f"/campaigns/{cid}/..%2f..%2fstatus",
        ]
        for route in routes:
            r: RawResponse = raw(stack, "GET", route)
            assert r.status in (400, 404, 422), (route, r.status, r.text[:200])
            assert not r.body.startswith(b"\xff\xd8"), f"{route} served an image"
            _no_leak(r.text)
            n += 1
        # Ratio values that look like paths: refused by name, in the API and in the crop form.
        for ratio in ("../x", "..", "1:1/../../source", "/etc/passwd"):
            box = {"x": 0, "y": 0, "w": 10, "h": 10}
            r = api.request("PATCH", f"/api/campaigns/{cid}", json={"crops": {ratio: box}})
            assert_error(r, 422, "validation_error")
            r = session.post(f"{stack.base_url}/campaigns/{cid}/recrop", timeout=30, headers={"HX-Request": "true"},
                             data={"csrf_token": token, "ratio": ratio, "x": "0", "y": "0", "w": "10", "h": "10"})
            assert r.status_code == 422, (ratio, r.status_code)
            r = session.post(f"{stack.base_url}/campaigns/{cid}/recrop", timeout=30, headers={"HX-Request": "true"},
                             data={"csrf_token": token, "reset": ratio})
            assert r.status_code == 422, (ratio, r.status_code)
            r = session.get(stack.base_url + "/gallery", params={"ratio": ratio}, timeout=30)
            assert r.status_code == 200 and "passwd" not in r.text  # an unknown ratio is just no filter
            n += 4
    assert api.campaign(cid)["crop_overrides"] is None
    count("path traversal", n)


def test_dropbox_account_path_traversal_is_refused_at_submit(stack: Stack):
    api = stack.api("alice")
    with nothing_stored(stack):
        for path in ("/../../../etc/passwd", "/photos/../x.jpg", "//etc/passwd", "/a/./b.jpg", "/a\\..\\b.jpg"):
            r = api.create({**BRIEF, "image_metadata": {"source_type": "dropbox", "source_path": path}})
            assert r.status_code == 422, (path, r.status_code, r.text[:200])
            assert r.json()["fields"]["image_metadata.source_path"] == "A Dropbox path looks like /Folder/photo.jpg."
    count("path traversal", 5)


# ---------------------------------------------------------------------------- SSRF

def _ssrf_links(port: int) -> list[str]:
    p = port
    return [
        f"https://127.0.0.1:{p}/s/abc/x.jpg", f"https://localhost:{p}/s/abc/x.jpg", f"https://[::1]:{p}/s/abc/x.jpg",
        f"https://[::ffff:127.0.0.1]:{p}/s/abc/x.jpg", f"https://[::ffff:7f00:1]:{p}/s/abc/x.jpg",
        f"https://2130706433:{p}/s/abc/x.jpg", f"https://0x7f000001:{p}/s/abc/x.jpg", f"https://0177.0.0.1:{p}/s/abc/x.jpg",
        f"https://127.1:{p}/s/abc/x.jpg", f"https://0:{p}/s/abc/x.jpg", f"https://0.0.0.0:{p}/s/abc/x.jpg",
        "https://10.0.0.1/s/abc/x.jpg", "https://169.254.169.254/latest/meta-data/", "https://[fe80::1]/s/abc/x.jpg",
        "https://192.168.0.1/s/abc/x.jpg", "https://172.16.0.1/s/abc/x.jpg", "https://100.64.0.1/s/abc/x.jpg",
        "https://[fd00::1]/s/abc/x.jpg", "https://metadata.google.internal/computeMetadata/v1/",
        "https://dropbox.com.evil.test/s/abc/x.jpg", "https://www.dropbox.com.evil.test/s/abc/x.jpg",
        "https://evil-dropbox.com/s/abc/x.jpg", "https://wwwdropbox.com/s/abc/x.jpg", "https://www.dropb0x.com/s/abc/x.jpg",
        "https://WWW.DROPBOX.COM.EVIL.TEST/s/abc/x.jpg", "https://www.dropbox.com./s/abc/x.jpg",
        f"https://www.dropbox.com@127.0.0.1:{p}/s/abc/x.jpg", f"https://www.dropbox.com:pw@127.0.0.1:{p}/s/abc/x.jpg",
        f"https://127.0.0.1:{p}#@www.dropbox.com/s/abc/x.jpg", f"https://127.0.0.1:{p}\\@www.dropbox.com/s/abc/x.jpg",
        f"https://127.0.0.1:{p}?@www.dropbox.com/s/abc/x.jpg", f"https://www.dropbox.com:{p}/s/abc/x.jpg",
        "http://www.dropbox.com/s/abc/x.jpg", f"http://127.0.0.1:{p}/s/abc/x.jpg", "ftp://www.dropbox.com/s/abc/x.jpg",
        "file:///etc/passwd", f"gopher://127.0.0.1:{p}/_x", f"//127.0.0.1:{p}/s/abc/x.jpg",
        f"https://www.dropbox.com%2e127.0.0.1.nip.io:{p}/s/abc/x.jpg", f"https://www.dropbox.com\t@127.0.0.1:{p}/s/abc/x.jpg",
        "https://xn--www.dropbox.com-/s/abc/x.jpg", f"https://www.dropbox.com%00.127.0.0.1:{p}/s/abc/x.jpg",
        f"https://[::ffff:127.0.0.1]:{p}@www.dropbox.com/s/abc/x.jpg",
    ]


def test_ssrf_targets_in_dropbox_links_are_refused_and_never_contacted(stack: Stack):
    """Refused at submit (422 naming the field), also the spelling that starts like a Dropbox
    account path ("//host/..."). The listener hears nothing."""
    api = stack.api("alice")
    session, token = browser(stack)
    listener = Listener()
    n = 0
    try:
        links = _ssrf_links(listener.port)
        with nothing_stored(stack):
            for link in links:
                r = api.create({**BRIEF, "image_metadata": {"source_type": "dropbox", "source_path": link}})
                assert r.status_code == 422, (link, r.status_code, r.text[:200])
                assert r.json()["fields"].get("image_metadata.source_path"), (link, r.text)
                r = session.post(stack.base_url + "/campaigns/new", timeout=30, data={
                    **BRIEF, "csrf_token": token, "source_type": "dropbox", "dropbox_url": link})
                assert r.status_code == 422, (link, r.status_code)
                assert "Traceback" not in r.text and markup_problems(r.text) == []
                n += 2
        assert listener.connections == 0, f"{listener.connections} connection(s) reached the listener"
    finally:
        listener.close()
    count("SSRF targets", n)


# ---------------------------------------------------------------------------- markup

PAYLOAD = "<script>alert('x')</script><img src=x onerror=alert(1)>\"' onmouseover=alert(2) {{7*7}}"
RAW_MARKS = ("<script>alert", "<img src=x", "onerror=alert(1)>")


def _markup_brief() -> dict:
    return {"name": "N " + PAYLOAD[:100], "description": "D " + PAYLOAD, "target_market": "T " + PAYLOAD[:150],
            "campaign_message": "M " + PAYLOAD, "products_description": "P " + PAYLOAD}


def _check_page(r, where: str) -> None:
    assert r.headers.get("Content-Security-Policy", "").startswith("default-src 'self'"), where
    assert r.headers.get("X-Content-Type-Options") == "nosniff", where
    for mark in RAW_MARKS:
        assert mark not in r.text, f"{where}: raw {mark!r} in the page"
    assert markup_problems(r.text) == [], (where, markup_problems(r.text))


def test_markup_in_every_text_field_is_escaped_everywhere(stack: Stack):
    api = stack.api("alice")
    session, token = browser(stack)
    upload = completed(stack, filename="<img src=x onerror=alert(1)>.jpg", **_markup_brief())
    r = api.create({**_markup_brief(), "image_metadata": {"source_type": "ai_generated", "ai_prompt": PAYLOAD}})
    assert r.status_code == 202, r.text
    generated = api.wait(r.json()["id"], timeout=120).body
    n = 0
    # JSON gives the text back exactly, as JSON, never sniffable as HTML.
    for campaign in (upload, generated):
        r = api.get(f"/api/campaigns/{campaign['id']}")
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        body = r.json()
        for field, value in _markup_brief().items():
            assert body[field] == value, field
            n += 1
    assert api.campaign(generated["id"])["image_metadata"]["ai_prompt"] == PAYLOAD
    assert api.campaign(upload["id"])["image_metadata"]["filename"] == "<img src=x onerror=alert(1)>.jpg"
    n += 2
    # Every page and fragment that shows them.
    htmx = {"HX-Request": "true"}
    quoted = requests.utils.quote(PAYLOAD)
    pages = [("/", {}), ("/", htmx), ("/?q=" + quoted, {}), ("/gallery", {}),
             ("/gallery?campaign=" + upload["id"], htmx), ("/campaigns/new?folder=" + quoted, {}),
             ("/library/picker?folder=" + quoted, htmx), ("/api/docs", {})]
    for campaign in (upload, generated):
        c = f"/campaigns/{campaign['id']}"
        pages += [(c, {}), (f"{c}/status", htmx), (f"{c}/status", {}), (f"{c}/delete", {})]
    for path, headers in pages:
        r = session.get(stack.base_url + path, headers=headers, timeout=30)
        assert r.status_code in (200, 286, 422), (path, r.status_code)
        _check_page(r, path)
        n += 1
    shown = session.get(f"{stack.base_url}/campaigns/{upload['id']}", timeout=30).text
    assert "&lt;script&gt;alert(" in shown and "{{7*7}}" in shown  # shown as text, not run, not templated
    # Refused input echoed back: the form re-rendered with the brief, the field errors and the source.
    for source in ({"source_type": "local", "library_path": PAYLOAD},
                   {"source_type": "dropbox", "dropbox_url": "https://dropbox.invalid/s/a b/" + PAYLOAD},
                   {"source_type": "ai_generated", "ai_prompt": PAYLOAD + " violence"}):
        for headers in ({}, htmx):
            r = session.post(stack.base_url + "/campaigns/new", data={**_markup_brief(), "csrf_token": token, **source},
                             headers=headers, timeout=30)
            assert r.status_code == 422, (source, r.status_code)
            _check_page(r, f"form {source['source_type']}")
            n += 1
    # Downloads: the file names come from the campaign name, never with markup or quotes.
    r = api.get(f"/api/campaigns/{upload['id']}/variants/1x1")
    disposition = r.headers["Content-Disposition"]
    assert r.status_code == 200 and not set("<>\"'") & set(disposition.split("filename=", 1)[1].strip('"')), disposition
    n += 1
    count("markup in text fields", n)


# ---------------------------------------------------------------------------- logs

def test_zz_logs_never_contain_a_password_a_token_or_a_link_key(stack: Stack):
    """Runs after the others on this stack, so their requests are in the logs too."""
    api = stack.api("alice")
    link_key = "rlk" + secrets.token_hex(8)
    token = "tok" + secrets.token_hex(12)
    link = f"https://dropbox.invalid/scl/fi/abc123/beach.jpg?rlkey={link_key}&dl=0"
    r = api.create({**BRIEF, "image_metadata": {"source_type": "dropbox", "source_path": link}})
    assert r.status_code == 202, r.text
    failed = api.wait(r.json()["id"], timeout=120).body
    assert failed["status"] == "failed" and link_key not in failed["error_message"], failed
    wrong = "wrong-" + secrets.token_hex(6)
    assert stack.api(None).get("/api/me", auth=("alice", wrong)).status_code == 401
    assert stack.api(None).get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    secrets_ = {"alice's password": PASSWORDS["alice"], "bob's password": PASSWORDS["bob"],
                "a wrong password": wrong, "a bearer token": token, "a link key": link_key,
                "Basic credentials": base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode(),
                "an Authorization header": "Authorization", "rlkey": "rlkey="}
    if stack.env.get("PORTAL_SECRET_KEY"):
        secrets_["the secret key"] = stack.env["PORTAL_SECRET_KEY"]
    logs = log_files(stack)
    assert logs, f"no logs in {stack.log_dir}"
    for path, text in logs.items():
        for what, secret in secrets_.items():
            assert secret not in text, f"{path.name} contains {what}"
        # The admin password appears only in the first start's banner (printed once, by design).
        admin_lines = [line for line in text.splitlines() if stack.admin_password in line]
        assert all("Sign in as 'admin' with password" in line for line in admin_lines), path.name
    count("secrets in logs", len(secrets_) + 1)


@pytest.fixture(scope="module", autouse=True)
def _report():
    """The number of cases per family, summed over the stacks that ran (printed with -s, and kept
    in test-artifacts/hostile-requests.txt)."""
    yield
    width = max(map(len, CASES), default=10)
    table = "".join(f"  {k:<{width}}  {v}\n" for k, v in sorted(CASES.items()))
    print("\n[hostile] cases per family:\n" + table)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "hostile-requests.txt").write_text(table)
