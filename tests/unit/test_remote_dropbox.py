"""worker.remote.dropbox_source against the local Dropbox fake, the official SDK included.

sdk_port() runs at collection, before any test imports `dropbox`, so the SDK's hosts point
at the fake (PROTOCOLS.md §B7.1); the fake is then started on that port.
"""
from __future__ import annotations

import dataclasses
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.dropbox_fake import APP_KEY, APP_SECRET, REFRESH_TOKEN, DropboxFake, jpeg
from tests.fakes.sdk_env import sdk_port
from tests.fakes.tls import make_tls
from worker.remote import SourceError, TransientSourceError
from worker.remote.dropbox_source import (
    FOLDER, NOT_AN_IMAGE, NOT_DOWNLOADABLE, NOT_FOUND, ONLY_DROPBOX, PATH_NEEDS_TOKEN, PRIVATE, DropboxSettings,
    direct_link, fetch_dropbox, validate_account_path, validate_link,
)

SDK_PORT = sdk_port()
IMAGE = jpeg(80, 60)
SECRETS = (APP_SECRET, REFRESH_TOKEN, "sl.", "Bearer", "Basic ")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    tls = make_tls(tmp_path_factory.mktemp("dropbox-tls"))
    fake = DropboxFake().start(tls, SDK_PORT)
    fake.tls = tls
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh_script(fake):
    fake.reset()
    fake.configure(app_key=APP_KEY, app_secret=APP_SECRET, token_ttl=14400)


@pytest.fixture
def anonymous(fake) -> DropboxSettings:
    """No credentials at all: the tokenless link path."""
    return DropboxSettings(link_hosts=frozenset({fake.host}), ca_bundle=fake.tls.ca, timeout=2, allow_private=True,
                           max_bytes=1024 * 1024)


@pytest.fixture
def app_auth(anonymous) -> DropboxSettings:
    return dataclasses.replace(anonymous, app_key=APP_KEY, app_secret=APP_SECRET)


@pytest.fixture
def user_auth(anonymous) -> DropboxSettings:
    return dataclasses.replace(anonymous, app_key=APP_KEY, app_secret=APP_SECRET, refresh_token=REFRESH_TOKEN)


def fails(exc_type, call, *args, secrets: tuple[str, ...] = ()) -> pytest.ExceptionInfo:
    """The raised exception, whose message must name no secret, token or rlkey."""
    with pytest.raises(exc_type) as info:
        call(*args)
    message = str(info.value)
    for secret in (*SECRETS, *secrets):
        assert secret not in message, f"{secret!r} leaked into {message!r}"
    assert "rlkey" not in message and "?" not in message, message
    return info


def rlkey_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["rlkey"][0]


def api_error(tag: dict) -> dict:
    return {"error_summary": f"{tag['.tag']}/..", "error": tag}


# -- success paths ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["scl", "s"])
def test_tokenless_link_downloads_through_the_direct_link(fake, anonymous, kind):
    link = fake.add_link("Spring sale.jpg", IMAGE, kind=kind)
    assert fetch_dropbox(link, anonymous) == IMAGE
    (hit,) = fake.requests_to("link")
    sent = parse_qs(hit["query"])
    assert sent["dl"] == ["1"]
    if kind == "scl":  # every parameter kept: rlkey grants access, st rides along
        original = parse_qs(urlsplit(link).query)
        assert sent["rlkey"] == original["rlkey"] and sent["st"] == original["st"]
    assert fake.calls("content") == 1 and fake.calls("get_shared_link_file") == 0


@pytest.mark.parametrize("kind", ["scl", "s"])
def test_app_key_and_secret_read_links_with_basic_auth(fake, app_auth, kind):
    link = fake.add_link("photo.jpg", IMAGE, kind=kind)
    assert fetch_dropbox(link, app_auth) == IMAGE
    (call,) = fake.requests_to("get_shared_link_file")
    assert call["headers"]["Authorization"].startswith("Basic ")
    assert "Content-Type" not in call["headers"]
    assert json.loads(call["headers"]["Dropbox-Api-Arg"]) == {"url": link}  # passed unchanged, dl=0 and all
    assert fake.calls("token") == 0


def test_refresh_token_reads_links_with_a_fresh_bearer_token(fake, user_auth):
    link = fake.add_link("photo.jpg", IMAGE)
    assert fetch_dropbox(link, user_auth) == IMAGE
    (call,) = fake.requests_to("get_shared_link_file")
    assert call["headers"]["Authorization"].startswith("Bearer sl.")
    assert fake.calls("token") == 1


def test_access_token_alone_reads_links(fake, anonymous):
    settings = dataclasses.replace(anonymous, access_token=fake.issue_token())
    link = fake.add_link("photo.jpg", IMAGE)
    assert fetch_dropbox(link, settings) == IMAGE


def test_real_dropbox_hosts_are_accepted_by_default(fake, app_auth):
    link = fake.add_link("photo.jpg", IMAGE, host="www.dropbox.com")
    settings = dataclasses.replace(app_auth, link_hosts=DropboxSettings().link_hosts)
    assert fetch_dropbox(link, settings) == IMAGE  # the SDK sends it to the fake, which knows the link


@pytest.mark.parametrize("path", ["/Campaigns/spring.jpg", "/Фото/img é.jpg"])
def test_path_downloads_with_a_refresh_token(fake, user_auth, path):
    fake.add_file(path, IMAGE)
    assert fetch_dropbox(path, user_auth) == IMAGE
    (call,) = fake.requests_to("download")
    assert call["headers"]["Dropbox-Api-Arg"].isascii()
    assert json.loads(call["headers"]["Dropbox-Api-Arg"]) == {"path": path}


def test_path_downloads_with_an_access_token(fake, anonymous):
    fake.add_file("/a.jpg", IMAGE)
    settings = dataclasses.replace(anonymous, access_token=fake.issue_token())
    assert fetch_dropbox("/a.jpg", settings) == IMAGE
    assert fake.calls("token") == 0


def test_an_expired_token_is_refreshed_once_and_the_call_retried(fake, user_auth):
    fake.add_file("/a.jpg", IMAGE)
    fake.fail_next("download", 401, json_body=api_error({".tag": "expired_access_token"}))
    assert fetch_dropbox("/a.jpg", user_auth) == IMAGE
    assert fake.calls("token") == 2 and fake.calls("download") == 2


def test_direct_link_keeps_every_parameter_and_forces_download():
    link = "https://www.dropbox.com/scl/fi/abc/x.jpg?rlkey=KEY&st=ST&dl=0"
    assert parse_qs(urlsplit(direct_link(link)).query) == {"rlkey": ["KEY"], "st": ["ST"], "dl": ["1"]}


# -- link validation ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/photo.jpg", "/Campaigns/Summer 2025/beach shot.jpg", "/a/b/c.png"])
def test_account_paths_that_are_plain_paths_are_accepted(path):
    validate_account_path(path)


@pytest.mark.parametrize("path", ["/", "//127.0.0.1:8080/x.jpg", "/../etc/passwd", "/a/../b.jpg", "/a/./b.jpg",
                                  "/a//b.jpg", "/a\\b.jpg", "/a\0.jpg", "/a\n.jpg", "/" + "x" * 1100])
def test_account_paths_with_empty_dot_or_odd_parts_are_refused(path):
    with pytest.raises(ValueError, match="looks like /Folder/photo.jpg"):
        validate_account_path(path)


@pytest.mark.parametrize("link", [
    "https://www.dropbox.com/s/abc123/photo.jpg?dl=0",
    "https://www.dropbox.com/scl/fi/abc123/photo%20one.jpg?rlkey=k3y&st=x&dl=0",
    "https://dl.dropboxusercontent.com/s/abc123/photo.jpg",
    "https://dropbox.com/scl/fi/abc/p.png?rlkey=k",
])
def test_validate_link_accepts_file_links(link):
    validate_link(link, DropboxSettings().link_hosts)


@pytest.mark.parametrize(("link", "message"), [
    ("https://example.com/s/abc/photo.jpg", ONLY_DROPBOX),
    ("https://www.dropbox.com.evil.com/s/abc/photo.jpg", ONLY_DROPBOX),
    ("https://dropbox.com@evil.com/s/abc/photo.jpg", ONLY_DROPBOX),
    ("https://www.dropbox.com:8443/s/abc/photo.jpg", ONLY_DROPBOX),
    ("https://evil.com\\@www.dropbox.com/s/abc/photo.jpg", ONLY_DROPBOX),
    ("ftp://www.dropbox.com/s/abc/photo.jpg", ONLY_DROPBOX),
    ("photo.jpg", ONLY_DROPBOX),
    ("http://www.dropbox.com/s/abc/photo.jpg", "Use the https:// link that Dropbox gives you."),
    ("https://www.dropbox.com/scl/fo/abc/def?rlkey=k", FOLDER),
    ("https://www.dropbox.com/sh/abc/def?dl=0", FOLDER),
    ("https://www.dropbox.com/scl/fi/abc/photo.jpg?dl=0", "This Dropbox link is missing its rlkey part"),
    ("https://www.dropbox.com/home/photo.jpg", "This is not a link to a Dropbox file"),
    ("https://www.dropbox.com/s/" + "a" * 2100, "This Dropbox link is too long."),
])
def test_validate_link_rejects_with_a_sentence(link, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        validate_link(link, DropboxSettings().link_hosts)


def test_a_link_to_another_host_fails_the_campaign(anonymous):
    info = fails(SourceError, fetch_dropbox, "https://evil.example/s/abc/x.jpg?token=1", anonymous)
    assert str(info.value) == ONLY_DROPBOX


@pytest.mark.parametrize("settings_name", ["anonymous", "app_auth"])
def test_a_path_needs_a_user_token(request, settings_name):
    settings = request.getfixturevalue(settings_name)
    assert str(fails(SourceError, fetch_dropbox, "/Campaigns/a.jpg", settings).value) == PATH_NEEDS_TOKEN


# -- API errors through the SDK -----------------------------------------------------------

@pytest.mark.parametrize(("behaviour", "message"), [
    ("not_found", NOT_FOUND),
    ("access_denied", PRIVATE),
    ("directory", FOLDER),
    ("unsupported_link_type", "This kind of Dropbox link is not supported"),
])
def test_shared_link_errors_read_as_sentences(fake, app_auth, behaviour, message):
    link = fake.add_link("photo.jpg", IMAGE, behaviour=behaviour)
    info = fails(SourceError, fetch_dropbox, link, app_auth, secrets=(rlkey_of(link),))
    assert str(info.value).startswith(message)


def test_a_wrong_rlkey_is_a_missing_link(fake, app_auth):
    link = fake.add_link("photo.jpg", IMAGE)
    wrong = link.replace(rlkey_of(link), "not-the-key")
    assert str(fails(SourceError, fetch_dropbox, wrong, app_auth, secrets=("not-the-key",)).value) == NOT_FOUND


@pytest.mark.parametrize(("behaviour", "message"), [
    ("not_found", "There is no file at /a.jpg in the server's Dropbox."),
    ("not_file", "/a.jpg is a folder in the server's Dropbox, not an image file."),
    ("restricted_content", "Dropbox does not allow downloading /a.jpg (restricted content)."),
])
def test_path_errors_read_as_sentences(fake, user_auth, behaviour, message):
    fake.add_file("/a.jpg", IMAGE, behaviour=behaviour)
    assert str(fails(SourceError, fetch_dropbox, "/a.jpg", user_auth).value) == message


def test_an_unknown_path_is_not_found(fake, user_auth):
    assert "There is no file at /nope.jpg" in str(fails(SourceError, fetch_dropbox, "/nope.jpg", user_auth).value)


@pytest.mark.parametrize("tag", [{".tag": "invalid_access_token"}, {".tag": "user_suspended"}])
def test_a_rejected_token_is_a_server_misconfiguration(fake, anonymous, tag):
    token = fake.issue_token()
    settings = dataclasses.replace(anonymous, access_token=token)
    link = fake.add_link("photo.jpg", IMAGE)
    fake.fail_next("get_shared_link_file", 401, json_body=api_error(tag))
    info = fails(SourceError, fetch_dropbox, link, settings, secrets=(token, rlkey_of(link)))
    assert "The server's Dropbox connection is misconfigured" in str(info.value)


def test_an_unknown_token_is_a_server_misconfiguration(fake, anonymous):
    settings = dataclasses.replace(anonymous, access_token="sl.revoked-token")
    info = fails(SourceError, fetch_dropbox, "/a.jpg", settings, secrets=("revoked-token",))
    assert "misconfigured" in str(info.value)


def test_a_token_still_expired_after_one_refresh_is_a_misconfiguration(fake, user_auth):
    fake.add_file("/a.jpg", IMAGE)
    fake.fail_next("download", 401, json_body=api_error({".tag": "expired_access_token"}), times=2)
    info = fails(SourceError, fetch_dropbox, "/a.jpg", user_auth)
    assert "misconfigured (its access token has expired)" in str(info.value)
    assert fake.calls("token") == 2


def test_a_missing_scope_names_the_permission(fake, user_auth):
    fake.add_refresh_token("links-only", ["sharing.read"])
    fake.add_file("/a.jpg", IMAGE)
    settings = dataclasses.replace(user_auth, refresh_token="links-only")
    info = fails(SourceError, fetch_dropbox, "/a.jpg", settings, secrets=("links-only",))
    assert "misconfigured (its app lacks the files.content.read permission)" in str(info.value)


def test_a_revoked_refresh_token_is_a_misconfiguration(fake, user_auth):
    settings = dataclasses.replace(user_auth, refresh_token="revoked-refresh")
    info = fails(SourceError, fetch_dropbox, "/a.jpg", settings, secrets=("revoked-refresh",))
    assert "misconfigured" in str(info.value)


def test_a_wrong_app_secret_is_a_misconfiguration(fake, user_auth):
    settings = dataclasses.replace(user_auth, app_secret="wrong-secret")
    info = fails(SourceError, fetch_dropbox, "/a.jpg", settings, secrets=("wrong-secret",))
    assert "misconfigured (Dropbox refused its app credentials: invalid_client)" in str(info.value)
    link = fake.add_link("photo.jpg", IMAGE)
    app_only = dataclasses.replace(settings, refresh_token="")
    assert "misconfigured" in str(fails(SourceError, fetch_dropbox, link, app_only, secrets=("wrong-secret",)).value)


@pytest.mark.parametrize(("response", "retry_after"), [
    ({"json_body": {"error_summary": "too_many_requests/..", "error": {
        "reason": {".tag": "too_many_requests"}, "retry_after": 7}}}, 7),
    ({"body": "Too many requests", "headers": {"Retry-After": "4"}}, 4),
])
def test_rate_limits_are_retried_later(fake, app_auth, response, retry_after):
    link = fake.add_link("photo.jpg", IMAGE)
    fake.fail_next("get_shared_link_file", 429, **response)
    info = fails(TransientSourceError, fetch_dropbox, link, app_auth)
    assert info.value.retry_after == retry_after
    assert fake.calls("get_shared_link_file") == 1  # the SDK itself did not retry


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_later(fake, user_auth, status):
    fake.add_file("/a.jpg", IMAGE)
    fake.fail_next("download", status, body="<html>Internal Server Error</html>", content_type="text/html")
    info = fails(TransientSourceError, fetch_dropbox, "/a.jpg", user_auth)
    assert str(info.value) == f"Dropbox is not available right now (HTTP {status})."
    assert fake.calls("download") == 1


def test_a_truncated_download_is_retried_later(fake, user_auth):
    fake.add_file("/a.jpg", IMAGE)
    fake.truncate_next("download")
    assert "cut off" in str(fails(TransientSourceError, fetch_dropbox, "/a.jpg", user_auth).value)


def test_a_slow_answer_times_out_and_is_retried_later(fake, user_auth):
    fake.add_file("/a.jpg", IMAGE)
    fake.slow_next("download", 1.5)
    settings = dataclasses.replace(user_auth, timeout=0.5)
    assert str(fails(TransientSourceError, fetch_dropbox, "/a.jpg", settings).value) == \
        "Dropbox did not answer in time."


def test_a_file_over_the_limit_is_refused(fake, user_auth):
    fake.add_file("/big.jpg", IMAGE + b"\0" * 4096)
    settings = dataclasses.replace(user_auth, max_bytes=2048)
    assert str(fails(SourceError, fetch_dropbox, "/big.jpg", settings).value) == \
        "The file is larger than the 2 KB limit."


def test_a_file_that_is_not_an_image_is_refused(fake, app_auth):
    link = fake.add_link("notes.txt", b"just some text")
    assert str(fails(SourceError, fetch_dropbox, link, app_auth).value) == NOT_AN_IMAGE


def test_a_certificate_from_another_ca_is_refused(fake, user_auth, tmp_path):
    other = make_tls(tmp_path / "other-ca")
    settings = dataclasses.replace(user_auth, ca_bundle=other.ca)
    info = fails(SourceError, fetch_dropbox, "/a.jpg", settings)
    assert str(info.value) == "The secure connection to Dropbox could not be verified."


# -- tokenless link failures --------------------------------------------------------------

@pytest.mark.parametrize(("behaviour", "message"), [
    ("not_found", NOT_FOUND),
    ("access_denied", NOT_DOWNLOADABLE),  # a login redirect, then an HTML page
    ("directory", NOT_DOWNLOADABLE),
    ("html", NOT_DOWNLOADABLE),
])
def test_tokenless_failures_read_as_sentences(fake, anonymous, behaviour, message):
    link = fake.add_link("photo.jpg", IMAGE, behaviour=behaviour)
    assert str(fails(SourceError, fetch_dropbox, link, anonymous, secrets=(rlkey_of(link),)).value) == message


def test_tokenless_wrong_rlkey_is_a_missing_link(fake, anonymous):
    link = fake.add_link("photo.jpg", IMAGE)
    wrong = link.replace(rlkey_of(link), "guess")
    assert str(fails(SourceError, fetch_dropbox, wrong, anonymous).value) == NOT_FOUND


def test_tokenless_download_must_be_an_image_whatever_its_type_says(fake, anonymous):
    link = fake.add_link("photo.jpg", b"<html>surprise</html>", content_type="image/jpeg")
    assert str(fails(SourceError, fetch_dropbox, link, anonymous).value) == NOT_AN_IMAGE


def test_tokenless_redirect_loop_is_refused(fake, anonymous):
    link = fake.add_link("photo.jpg", IMAGE, behaviour="redirect_loop")
    info = fails(SourceError, fetch_dropbox, link, anonymous, secrets=(rlkey_of(link),))
    assert "redirects in a loop" in str(info.value)


@pytest.mark.parametrize("target", ["https://127.0.0.2/steal", "https://evil.example/x.jpg",
                                    "http://{host}/cd/0/get/x/file"])
def test_tokenless_redirect_off_the_allow_list_is_refused(fake, anonymous, target):
    link = fake.add_link("photo.jpg", IMAGE, behaviour="redirect", target=target.format(host=fake.host))
    info = fails(SourceError, fetch_dropbox, link, anonymous, secrets=(rlkey_of(link),))
    assert "redirected to a link" in str(info.value) and "not allowed" in str(info.value)


@pytest.mark.parametrize(("route", "status", "headers"), [
    ("link", 429, {"Retry-After": "9"}), ("content", 500, {}), ("content", 503, {"Retry-After": "2"}),
])
def test_tokenless_rate_limits_and_outages_are_retried_later(fake, anonymous, route, status, headers):
    link = fake.add_link("photo.jpg", IMAGE)
    fake.fail_next(route, status, body="<html>busy</html>", content_type="text/html", headers=headers)
    info = fails(TransientSourceError, fetch_dropbox, link, anonymous)
    assert info.value.retry_after == (float(headers["Retry-After"]) if headers else None)


def test_tokenless_truncated_download_is_retried_later(fake, anonymous):
    link = fake.add_link("photo.jpg", IMAGE)
    fake.truncate_next("content")
    assert "cut off" in str(fails(TransientSourceError, fetch_dropbox, link, anonymous).value)


def test_tokenless_slow_download_is_retried_later(fake, anonymous):
    link = fake.add_link("photo.jpg", IMAGE)
    fake.slow_next("content", 1.5)
    settings = dataclasses.replace(anonymous, timeout=0.5)
    assert "did not answer in time" in str(fails(TransientSourceError, fetch_dropbox, link, settings).value)


def test_tokenless_download_over_the_limit_is_refused(fake, anonymous):
    link = fake.add_link("photo.jpg", IMAGE)
    settings = dataclasses.replace(anonymous, max_bytes=len(IMAGE) - 1)
    assert "The file is larger than the" in str(fails(SourceError, fetch_dropbox, link, settings).value)


def test_tokenless_fetch_refuses_loopback_in_production(fake, anonymous):
    link = fake.add_link("photo.jpg", IMAGE)
    settings = dataclasses.replace(anonymous, allow_private=False)
    info = fails(SourceError, fetch_dropbox, link, settings, secrets=(rlkey_of(link),))
    assert "private or reserved address" in str(info.value)
    assert fake.calls("link") == 0
