"""Password guessing against the real stack: gunicorn (two workers) with its counters in Redis.

The session stacks are shared, and every other test signs in from 127.0.0.1 as alice, bob or
admin. So this test guesses only from its own loopback addresses (127.<random>.<random>.n; all of
127/8 reaches the server) and only for throw-away user names, and it never fails a sign-in as
alice, bob or admin: their counters and 127.0.0.1's stay untouched.
"""
from __future__ import annotations

import base64
import http.client
import json
import secrets
import urllib.parse

import pytest
import redis
from it_stack import PASSWORDS, REDIS_URL, Stack

from portal.throttle import user_key

pytestmark = pytest.mark.timeout(180)

PER_IP, PER_USER, WINDOW = 20, 10, 300  # the defaults (portal/config.py)
PREFIX = "portal:login-failures"


class Guesser:
    """Requests from one chosen loopback source address, a new connection each (so both gunicorn
    workers answer, and only a shared counter gives exact limits)."""

    def __init__(self, base_url: str) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname, url.port
        self.net = f"127.{secrets.randbelow(250) + 2}.{secrets.randbelow(250) + 2}"

    def address(self, n: int) -> str:
        return f"{self.net}.{n}"

    def get(self, n: int, user: str, password: str, path: str = "/api/me", **headers):
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30,
                                          source_address=(self.address(n), 0))
        try:
            conn.request("GET", path, headers={"Authorization": f"Basic {token}", **headers})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def assert_429(answer, content_type: str = "application/json") -> None:
    status, headers, body = answer
    assert status == 429, (status, body[:300])
    assert headers["Content-Type"].startswith(content_type)
    assert 1 <= int(headers["Retry-After"]) <= WINDOW
    assert "WWW-Authenticate" not in headers
    if content_type == "application/json":
        assert json.loads(body)["error"] == "too_many_requests"


def test_password_guessing_is_throttled_per_address_and_per_user(mariadb_stack: Stack):
    stack = mariadb_stack
    guess = Guesser(stack.base_url)
    nobody = f"throttle-{secrets.token_hex(6)}"  # no such user: never alice, bob or admin
    wrong = "guess-" + secrets.token_hex(8)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        # Per address: PER_IP failures (a new name each, so no user limit trips) are 401s, then 429.
        for n in range(PER_IP):
            status, headers, _ = guess.get(1, f"{nobody}-{n}", wrong)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), n
        assert_429(guess.get(1, f"{nobody}-x", wrong))
        # Counted in Redis (shared by both gunicorn workers), with the window as its expiry.
        key = f"{PREFIX}:ip:{guess.address(1)}"
        assert int(client.get(key)) == PER_IP and 0 < client.ttl(key) <= WINDOW
        # A correct password from that address is refused as well (and not counted against alice).
        assert_429(guess.get(1, "alice", PASSWORDS["alice"]))
        # X-Forwarded-For is not trusted: it neither frees the address nor blames another one.
        assert_429(guess.get(1, f"{nobody}-x", wrong, **{"X-Forwarded-For": "127.0.0.1"}))
        assert guess.get(2, "alice", PASSWORDS["alice"],
                         **{"X-Forwarded-For": guess.address(1)})[0] == 200
        # Everyone else is unaffected.
        assert stack.api("alice").get("/api/me").status_code == 200

        # Per user name: one failure from each of PER_USER addresses, then 429 from anywhere.
        for n in range(PER_USER):
            assert guess.get(10 + n, nobody, wrong)[0] == 401, n
        assert_429(guess.get(40, nobody, wrong))
        assert_429(guess.get(41, nobody.upper(), wrong))  # compared as the database compares names
        assert_429(guess.get(42, nobody, wrong, path="/"), "text/html")  # a page for the browser
        assert guess.get(43, "bob", PASSWORDS["bob"])[0] == 200

        # Neither the guessed password nor the header reached the logs.
        token = base64.b64encode(f"{nobody}:{wrong}".encode()).decode()
        logs = "".join(p.output() for p in stack.procs)
        assert wrong not in logs and token not in logs and PASSWORDS["alice"] not in logs
    finally:
        keys = [f"{PREFIX}:ip:{guess.address(n)}" for n in range(1, 50)] + [user_key(nobody)]
        client.delete(*keys)  # only this test's own keys; the window would expire them anyway
        client.close()
