"""Failed sign-in throttling: 429 + Retry-After per address and per user name, before the hash."""
from __future__ import annotations

import base64
import logging

import pytest

import portal.auth
from portal import throttle as throttle_module
from portal.models import db

from factories import PASSWORDS, build_app

LIMITS = {"LOGIN_MAX_FAILURES_PER_IP": 4, "LOGIN_MAX_FAILURES_PER_USER": 3, "LOGIN_FAILURE_WINDOW": 60}


def make_app(tmp_path, **settings):
    return build_app(tmp_path, **{**LIMITS, **settings})


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        db.engine.dispose()


def creds(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(client, user: str, password: str, ip: str = "10.0.0.1", path: str = "/api/me", **headers):
    return client.get(path, headers={**creds(user, password), **headers}, environ_base={"REMOTE_ADDR": ip})


@pytest.fixture
def hashes(monkeypatch):
    """Counts calls of the expensive password check."""
    calls = []
    real = portal.auth.check_password_hash

    def counting(stored, password):
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(portal.auth, "check_password_hash", counting)
    return calls


def assert_throttled_json(r):
    assert r.status_code == 429, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    assert r.json["error"] == "too_many_requests" and r.json["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert "WWW-Authenticate" not in r.headers


def test_per_address_limit_gives_429_with_retry_after_even_for_a_correct_password(app):
    client = app.test_client()
    for n in range(4):  # different names each time: only the address limit can trip
        assert get(client, f"nobody{n}", "guess").status_code == 401
    assert_throttled_json(get(client, "nobody9", "guess"))
    # The right password from that address is refused too while the lockout lasts: no oracle.
    assert_throttled_json(get(client, "alice", PASSWORDS["alice"]))
    # Another address is not affected.
    assert get(client, "alice", PASSWORDS["alice"], ip="10.0.0.2").status_code == 200


def test_per_user_limit_gives_429_from_any_address(app):
    client = app.test_client()
    for n in range(3):  # one failure from each of three addresses: only the user limit can trip
        assert get(client, "alice", "wrong", ip=f"10.1.0.{n}").status_code == 401
    assert_throttled_json(get(client, "alice", PASSWORDS["alice"], ip="10.1.0.99"))
    # Compared as MariaDB compares user names: case and trailing spaces do not escape the limit.
    assert_throttled_json(get(client, "ALICE ", "wrong", ip="10.1.0.98"))
    assert get(client, "bob", PASSWORDS["bob"], ip="10.1.0.99").status_code == 200


def test_the_check_comes_before_the_password_hash(app, hashes):
    client = app.test_client()
    for n in range(4):
        assert get(client, f"ghost{n}", "guess").status_code == 401
    assert len(hashes) == 4  # each failure paid one hash (the dummy one for unknown users)
    for _ in range(5):
        assert get(client, "ghost", "guess").status_code == 429
        assert get(client, "bob", "wrong").status_code == 429
    assert len(hashes) == 4, "a throttled request still hashed the password"


def test_unknown_user_and_wrong_password_get_identical_answers(app, hashes):
    client = app.test_client()

    def shape(r):
        headers = {k: v for k, v in r.headers.items() if k != "X-Request-ID"}
        return r.status_code, headers, r.get_data()

    unknown = get(client, "nosuchuser", "wrong", ip="10.2.0.1")
    wrong = get(client, "alice", "wrong", ip="10.2.0.2")
    assert shape(unknown) == shape(wrong)
    assert unknown.status_code == 401 and unknown.headers["WWW-Authenticate"].startswith("Basic")
    assert len(hashes) == 2  # both cost a hash
    for _ in range(2):  # both names reach their limit (3) the same way
        get(client, "nosuchuser", "wrong", ip="10.2.0.1")
        get(client, "alice", "wrong", ip="10.2.0.2")
    unknown, wrong = get(client, "nosuchuser", "x", ip="10.2.0.1"), get(client, "alice", "x", ip="10.2.0.2")
    assert unknown.status_code == 429
    assert shape(unknown) == shape(wrong)


def test_successful_sign_ins_count_nothing_and_reset_nothing(app, hashes):
    client = app.test_client()
    for _ in range(10):  # far over both limits
        assert get(client, "alice", PASSWORDS["alice"]).status_code == 200
    assert len(hashes) <= 1  # verified once, then from the cache of successful checks
    for n in range(3):
        assert get(client, f"x{n}", "guess").status_code == 401
    # A valid account's sign-in does not reset the address's failures...
    assert get(client, "bob", PASSWORDS["bob"]).status_code == 200
    assert get(client, "x3", "guess").status_code == 401  # the 4th failure
    assert get(client, "x4", "guess").status_code == 429
    # ...and alice's own counter was never touched: from elsewhere she signs in at once.
    assert get(client, "alice", PASSWORDS["alice"], ip="10.9.9.9").status_code == 200


def test_requests_without_credentials_are_not_counted(app):
    client = app.test_client()
    for _ in range(10):  # a browser's first request carries no credentials
        r = client.get("/api/me", environ_base={"REMOTE_ADDR": "10.3.0.1"})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert get(client, "alice", PASSWORDS["alice"], ip="10.3.0.1").status_code == 200


def test_pages_get_an_html_429(app):
    client = app.test_client()
    for n in range(4):
        r = get(client, f"page{n}", "guess", path="/")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    r = get(client, "page9", "guess", path="/")
    assert r.status_code == 429 and r.mimetype == "text/html"
    assert "Too many failed sign-in attempts" in r.get_data(as_text=True)
    assert int(r.headers["Retry-After"]) >= 1 and "WWW-Authenticate" not in r.headers


def test_the_lockout_ends_with_the_window(app, monkeypatch):
    client = app.test_client()
    for n in range(4):
        get(client, f"w{n}", "guess")
    assert get(client, "alice", PASSWORDS["alice"]).status_code == 429
    now = throttle_module.time.monotonic()
    monkeypatch.setattr(throttle_module.time, "monotonic", lambda: now + 61)
    assert get(client, "alice", PASSWORDS["alice"]).status_code == 200


def test_x_forwarded_for_is_ignored_unless_proxies_are_configured(app, tmp_path):
    client = app.test_client()
    for n in range(4):  # each claims another origin; all come from one peer
        assert get(client, f"f{n}", "guess", **{"X-Forwarded-For": f"192.0.2.{n}"}).status_code == 401
    assert get(client, "f9", "guess", **{"X-Forwarded-For": "192.0.2.200"}).status_code == 429

    proxied = make_app(tmp_path / "proxied", TRUSTED_PROXIES=1)
    behind_proxy = proxied.test_client()
    for n in range(4):  # the proxy (one peer) relays different clients: counted apart
        assert get(behind_proxy, f"p{n}", "guess", **{"X-Forwarded-For": f"198.51.100.7, 192.0.2.{n}"}
                   ).status_code == 401
    assert get(behind_proxy, "p9", "guess", **{"X-Forwarded-For": "192.0.2.5"}).status_code == 401
    for n in range(3):
        get(behind_proxy, f"q{n}", "guess", **{"X-Forwarded-For": "192.0.2.1"})
    assert get(behind_proxy, "q9", "guess", **{"X-Forwarded-For": "192.0.2.1"}).status_code == 429
    with proxied.app_context():
        db.engine.dispose()


def test_redis_down_falls_back_to_memory_without_500(tmp_path, caplog, hashes):
    app = make_app(tmp_path, RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0")  # nothing listens there
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="portal.throttle"):
        assert get(client, "alice", PASSWORDS["alice"]).status_code == 200
        for n in range(4):
            assert get(client, f"r{n}", "guess").status_code == 401
        assert_throttled_json(get(client, "r9", "guess"))
    outage = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(outage) == 1, [r.getMessage() for r in caplog.records]
    with app.app_context():
        db.engine.dispose()


def test_storage_follows_the_broker_unless_configured():
    assert throttle_module.storage_url({"CELERY_BROKER_URL": "redis://h:6379/0"}) == "redis://h:6379/0"
    assert throttle_module.storage_url({"CELERY_BROKER_URL": "filesystem://"}) is None
    assert throttle_module.storage_url({"CELERY_BROKER_URL": "redis://h/0",
                                        "RATELIMIT_STORAGE_URL": "memory://"}) is None
    assert throttle_module.storage_url({"CELERY_BROKER_URL": "memory://",
                                        "RATELIMIT_STORAGE_URL": "redis://r/3"}) == "redis://r/3"


def test_client_address_normalises_and_trusts_only_configured_proxies():
    address = throttle_module.client_address
    assert address("203.0.113.9", ["10.0.0.1"], 0) == "203.0.113.9"
    assert address("10.0.0.1", ["203.0.113.9, 10.0.0.2"], 1) == "10.0.0.2"
    assert address("10.0.0.1", ["203.0.113.9, 10.0.0.2"], 2) == "203.0.113.9"
    assert address("10.0.0.1", ["203.0.113.9"], 2) == "10.0.0.1"  # fewer hops than proxies: the peer
    assert address("2001:db8:1:2:3:4:5:6", [], 0) == "2001:db8:1:2::/64"
    assert address("::ffff:192.0.2.1", [], 0) == "192.0.2.1"


def test_no_log_line_holds_a_password_or_the_authorization_header(app, caplog):
    client = app.test_client()
    secret = "hunter2-typed-as-name"
    with caplog.at_level(logging.DEBUG):
        get(client, "alice", PASSWORDS["alice"])
        for n in range(5):
            get(client, secret, "also-secret-pw")  # a password typed into the name field
            get(client, f"u{n}", "also-secret-pw")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "over the limit" in text  # the lockout is logged...
    token = base64.b64encode(f"{secret}:also-secret-pw".encode()).decode()
    for leaked in (secret, "also-secret-pw", PASSWORDS["alice"], token, "Basic "):
        assert leaked not in text  # ...without the name, password or header
