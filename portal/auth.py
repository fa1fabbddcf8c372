"""HTTP Basic auth against the users table; login is required everywhere unless a view is @public."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

from flask import current_app, g, request
from flask_httpauth import HTTPBasicAuth
from werkzeug.exceptions import TooManyRequests
from werkzeug.security import check_password_hash, generate_password_hash

from . import throttle
from .models import User, db

auth = HTTPBasicAuth(realm="Campaign portal")

# Checked when the user does not exist, so both failures cost the same time.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))
# The one answer to a throttled address or user name, whichever limit it hit.
THROTTLED_MESSAGE = "Too many failed sign-in attempts; wait before trying again."


class _Expiring:
    """A bounded map whose entries expire: the least recently stored go first when it is full.
    Thread-safe; one per app and process (gunicorn threads share it)."""

    def __init__(self, size: int = 1024) -> None:
        self._items: OrderedDict = OrderedDict()  # key -> (expires at, value)
        self._size, self._lock = size, Lock()

    def get(self, key):
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] < time.monotonic():
                self._items.pop(key, None)
                return None
            return found[1]

    def put(self, key, value, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def pop(self, key) -> None:
        with self._lock:
            self._items.pop(key, None)


class _VerifiedCache:
    """Remembers recent successful checks, so polling does not pay a scrypt hash per request.

    Keyed by an HMAC of the stored hash and the offered password: a changed password
    changes the stored hash, so old entries can never match again.
    """

    def __init__(self, ttl: float = 300.0) -> None:
        self._items, self._ttl = _Expiring(), ttl

    def _key(self, stored_hash: str, password: str) -> bytes:
        secret = current_app.config["SECRET_KEY"].encode()
        return hmac.new(secret, f"{stored_hash}\0{password}".encode(), hashlib.sha256).digest()

    def hit(self, stored_hash: str, password: str) -> bool:
        return self._items.get(self._key(stored_hash, password)) is not None

    def add(self, stored_hash: str, password: str) -> None:
        self._items.put(self._key(stored_hash, password), True, self._ttl)


_verified = _VerifiedCache()


@dataclass(frozen=True)
class Account:
    """Who is signed in: what views and templates use of a user, safe to share between threads."""

    id: int
    username: str
    is_admin: bool


@auth.verify_password
def verify_password(username: str, password: str) -> Account | None:
    """The account, or None (401). Throttled first: a refused address or user name gets 429 before
    the cache or the hash are consulted, whatever the password (see portal/throttle.py)."""
    if not username or not password:
        return None  # no credentials (a browser's first request): nothing to count
    address = client_address()
    wait = login_throttle().retry_after(address, username)
    if wait is not None:
        raise TooManyRequests(THROTTLED_MESSAGE, retry_after=wait)
    account = _check_password(username, password)
    if account is None:
        login_throttle().failed(address, username)  # unknown user and wrong password alike
    return account


def _check_password(username: str, password: str) -> Account | None:
    # username -> (Account, stored hash) for AUTH_CACHE_SECONDS, so a polling page does not read
    # the users table on every request; a change made by another process waits out that time.
    cached = _accounts().get(username)
    if cached is not None and _verified.hit(cached[1], password):
        return cached[0]  # no query: this password matched this stored hash moments ago
    user = db.session.execute(db.select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        check_password_hash(_DUMMY_HASH, password)  # the same cost as a wrong password
        return None
    if not _verified.hit(user.password_hash, password):
        if not check_password_hash(user.password_hash, password):
            return None
        _verified.add(user.password_hash, password)
    account = Account(user.id, user.username, user.is_admin)
    _accounts().put(account.username, (account, user.password_hash), current_app.config["AUTH_CACHE_SECONDS"])
    return account


def login_throttle() -> throttle.LoginThrottle:
    """This app's throttle, made on first use (one per app and process)."""
    found = current_app.extensions.get("login_throttle")
    if found is None:
        found = current_app.extensions.setdefault("login_throttle", throttle.from_config(current_app.config))
    return found


def client_address() -> str:
    """request.remote_addr; X-Forwarded-For only behind PORTAL_TRUSTED_PROXIES configured proxies."""
    return throttle.client_address(request.remote_addr, request.headers.getlist("X-Forwarded-For"),
                                   current_app.config.get("TRUSTED_PROXIES", 0))


def current_user() -> Account:
    return auth.current_user()


def public(view):
    """Mark a view as reachable without logging in (health checks only)."""
    view.is_public = True
    return view


def require_login():
    """before_request hook: every endpoint needs a user unless its view is @public."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if view is not None and getattr(view, "is_public", False):
        return None
    # flask-httpauth does the challenge; wrap a no-op view so its decorator runs here.
    result = auth.login_required(lambda: None)()
    if result is None:
        g.user = auth.current_user()
    return result


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def create_user(username: str, password: str, is_admin: bool = False) -> User:
    user = User(username=username, password_hash=hash_password(password), is_admin=is_admin)
    db.session.add(user)
    db.session.commit()
    forget(username)
    return user


def forget(username: str) -> None:
    """Drop this process's cached sign-in of `username` (after changing or removing the user)."""
    _accounts().pop(username)


def _accounts() -> _Expiring:
    """This app's signed-in accounts (one cache per app and process, like the throttle)."""
    found = current_app.extensions.get("signed_in_accounts")
    if found is None:
        found = current_app.extensions.setdefault("signed_in_accounts", _Expiring())
    return found


def ensure_admin() -> str | None:
    """Create the first admin when there are no users; returns a generated password to print once."""
    if db.session.execute(db.select(User.id).limit(1)).first() is not None:
        return None
    password = current_app.config.get("ADMIN_PASSWORD")
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    create_user(current_app.config["ADMIN_USER"], password, is_admin=True)
    return generated
