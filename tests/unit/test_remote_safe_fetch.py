"""worker.remote.safe_fetch: the SSRF guard, redirects, pinning, caps and timeouts.

Served by the Dropbox fake's link routes (redirects, loops, HTML, big bodies) on 127.0.0.1.
"""
from __future__ import annotations

import io
import ipaddress
import socket
import sys
import time

import pytest
import requests

from tests.fakes.dropbox_fake import DropboxFake, jpeg
from tests.fakes.tls import make_tls
from worker.remote import SourceError, TransientSourceError, safe_fetch

IMAGE = jpeg(40, 30)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    tls = make_tls(tmp_path_factory.mktemp("fetch-tls"))
    fake = DropboxFake().start(tls)
    fake.tls = tls
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh(fake):
    fake.reset()


def get(fake, url: str, **overrides) -> safe_fetch.Fetched:
    options = {"allowed_hosts": {fake.host}, "max_bytes": 1024 * 1024, "timeout": 2, "ca_bundle": fake.tls.ca,
               "allow_private": True, **overrides}
    return safe_fetch.get(url, **options)


def direct(link: str) -> str:
    return link.replace("dl=0", "dl=1")


# -- success -------------------------------------------------------------------------------

def test_follows_allowed_redirects_and_returns_the_final_answer(fake):
    got = get(fake, direct(fake.add_link("a.jpg", IMAGE)))
    assert (got.status, got.body) == (200, IMAGE)
    assert got.url.startswith(f"https://{fake.host}/cd/0/get/")
    assert got.headers["content-type"] == "application/octet-stream"


def test_non_redirect_errors_are_returned_to_the_caller(fake):
    got = get(fake, f"{fake.base_url}/s/missing/a.jpg")
    assert got.status == 404 and b"deleted" in got.body


def test_ignores_requests_ca_bundle_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # would break the request if honoured
    assert get(fake, direct(fake.add_link("a.jpg", IMAGE))).body == IMAGE


def test_connects_to_the_checked_address_whatever_dns_says_next(fake, monkeypatch):
    """DNS rebinding: each hop resolves the name once, in the guard; a later lookup (which would
    answer with a private address) never happens, because the connection is pinned."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host == "localhost":
            checked = sys._getframe(1).f_code is safe_fetch._resolve.__code__
            lookups.append("guard" if checked else "other")
            address = "127.0.0.1" if checked else "10.255.255.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    assert get(fake, direct(fake.add_link("a.jpg", IMAGE))).body == IMAGE
    assert lookups == ["guard", "guard"]  # the link, then its redirect to /cd/0/get


def test_tls_still_checks_the_host_name_not_the_pinned_address(fake, monkeypatch):
    real = socket.getaddrinfo

    def evil_is_local(host, port, *args, **kwargs):
        return real("127.0.0.1" if host == "evil.test" else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", evil_is_local)
    with pytest.raises(SourceError, match="The secure connection to evil.test could not be verified."):
        get(fake, f"https://evil.test:{fake.port}/s/x/a.jpg", allowed_hosts={f"evil.test:{fake.port}"})


# -- refusals before any connection -------------------------------------------------------

@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1", "64:ff9b::7f00:1",
])
def test_non_global_addresses_are_not_public(address):
    assert not safe_fetch.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "162.125.1.18", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_global_addresses_are_public(address):
    assert safe_fetch.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("netloc", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "169.254.169.254",
                                    "[::ffff:127.0.0.1]:{port}", "10.0.0.1", "[fe80::1]"])
def test_private_targets_are_refused_in_production(fake, netloc):
    netloc = netloc.format(port=fake.port)
    with pytest.raises(SourceError, match="leads to a private or reserved address") as info:
        get(fake, f"https://{netloc}/s/x/a.jpg", allowed_hosts={netloc}, allow_private=False)
    assert "?" not in str(info.value)
    assert fake.calls() == {}


@pytest.mark.parametrize(("url", "reason"), [
    ("http://www.dropbox.com/s/x/a.jpg", "is a link that is not https://"),
    ("https://www.dropbox.com.evil.com/s/x/a.jpg", "host that is not allowed (www.dropbox.com.evil.com)"),
    ("https://evilwww.dropbox.com/s/x/a.jpg", "host that is not allowed"),
    ("https://dropbox.com@evil.com/s/x/a.jpg", "with a user name"),
    ("https://www.dropbox.com:444/s/x/a.jpg", "host that is not allowed"),
    ("https://www.dropbox.com./s/x/a.jpg", "host that is not allowed"),
    ("https://evil.com\\@www.dropbox.com/", "characters that are not allowed"),
    ("https://www.dropbox.com/s/x/a b.jpg", "characters that are not allowed"),
    ("https://www.dropbox.com:99999/", "is not a valid address"),
    ("https://dl.dropboxusercontent.com.evil.com/cd/0/get/x/file", "host that is not allowed"),
    ("https://a..dl.dropboxusercontent.com/cd/0/get/x/file", "host that is not allowed"),
    ("https://127.0.0.1/", "host that is not allowed (127.0.0.1)"),
])
def test_links_off_the_allow_list_are_refused(url, reason):
    hosts = {"www.dropbox.com", "*.dl.dropboxusercontent.com"}
    with pytest.raises(SourceError, match=reason.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        safe_fetch.get(url, allowed_hosts=hosts, max_bytes=10, timeout=1, ca_bundle=None)


@pytest.mark.parametrize(("host", "allowed"), [
    ("uc1f2e3d.dl.dropboxusercontent.com", True), ("a.b.dl.dropboxusercontent.com", True),
    ("dl.dropboxusercontent.com", False), ("evil-dl.dropboxusercontent.com", False),
])
def test_wildcard_entries_match_sub_domains_only(host, allowed):
    assert safe_fetch.hosts_allow(f"https://{host}/cd/0/get/x/file", {"*.dl.dropboxusercontent.com"}) is allowed
    assert safe_fetch.hosts_allow(f"https://{host}/x", {".dl.dropboxusercontent.com"}) is allowed


def test_query_strings_never_reach_messages():
    with pytest.raises(SourceError) as info:
        safe_fetch.get("https://evil.com/s/x/a.jpg?rlkey=SECRET&dl=1", allowed_hosts=set(), max_bytes=1, timeout=1,
                       ca_bundle=None)
    assert "SECRET" not in str(info.value) and "evil.com/s/x/a.jpg" in str(info.value)


# -- redirects -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["https://127.0.0.2:{port}/cd/0/get/x/file", "https://evil.example/a.jpg",
                                    "http://{host}/cd/0/get/x/file", "https://user@{host}/cd/0/get/x/file"])
def test_redirects_are_checked_like_the_first_link(fake, target):
    link = fake.add_link("a.jpg", IMAGE, behaviour="redirect", target=target.format(host=fake.host, port=fake.port))
    with pytest.raises(SourceError, match="redirected to a link"):
        get(fake, direct(link))


def test_a_redirect_to_a_private_address_is_refused(fake):
    link = fake.add_link("a.jpg", IMAGE, behaviour="redirect", target=f"https://127.0.0.1:{fake.port}/admin")
    with pytest.raises(SourceError, match="private or reserved address"):
        get(fake, direct(link), allowed_hosts={fake.host, f"127.0.0.1:{fake.port}"}, allow_private=False)


def test_a_redirect_loop_is_refused(fake):
    link = fake.add_link("a.jpg", IMAGE, behaviour="redirect_loop")
    with pytest.raises(SourceError, match="redirects in a loop"):
        get(fake, direct(link))


def test_too_many_redirects_are_refused(fake):
    target = direct(fake.add_link("a.jpg", IMAGE))
    for _ in range(5):  # a chain of 5 redirects, plus the link's own hop to /cd/0/get
        target = fake.add_link("a.jpg", IMAGE, behaviour="redirect", target=target)
    with pytest.raises(SourceError, match="redirects too many times"):
        get(fake, target)
    assert get(fake, target, max_redirects=6).body == IMAGE


# -- caps and timeouts ---------------------------------------------------------------------

def test_a_declared_length_over_the_cap_is_refused_before_reading(fake):
    link = fake.add_link("a.jpg", IMAGE + b"\0" * 3000)
    with pytest.raises(SourceError, match="The file is larger than the 2 KB limit."):
        get(fake, direct(link), max_bytes=2048)


def test_a_streamed_body_over_the_cap_is_refused():
    response = requests.Response()
    response.raw = io.BytesIO(b"x" * 5000)  # no Content-Length: only counting can stop it
    with pytest.raises(SourceError, match="larger than the 4 KB limit"):
        safe_fetch.read_capped(response, 4096)
    response.close()


def test_a_slow_answer_times_out(fake):
    link = fake.add_link("a.jpg", IMAGE)
    fake.slow_next("content", 1.0)
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="did not answer in time"):
        get(fake, direct(link), timeout=0.3)
    assert time.monotonic() - started < 1.0


def test_a_cut_off_body_is_transient(fake):
    link = fake.add_link("a.jpg", IMAGE)
    fake.truncate_next("content")
    with pytest.raises(TransientSourceError, match="was cut off"):
        get(fake, direct(link))


def test_a_closed_port_is_transient(fake):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientSourceError, match="could not be reached"):
        get(fake, f"https://localhost:{port}/x", allowed_hosts={f"localhost:{port}"})


def test_an_unknown_host_is_permanent(fake):
    with pytest.raises(SourceError, match="does not exist"):
        get(fake, "https://no-such-host.invalid/x", allowed_hosts={"no-such-host.invalid"})


# -- Retry-After -------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [
    ("7", 7.0), (None, None), ("", None), ("soon", None), ("-3", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
])
def test_parse_retry_after(value, seconds):
    assert safe_fetch.parse_retry_after(value) == seconds


def test_parse_retry_after_reads_a_future_http_date():
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert safe_fetch.parse_retry_after(when) == pytest.approx(60, abs=2)
