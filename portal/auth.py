"""HTTP Basic auth against the users table; login is required everywhere unless a view is @public."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
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


class _VerifiedCache:
    """Remembers recent successful checks, so polling does not pay a scrypt hash per request.

    Keyed by an HMAC of the stored hash and the offered password: a changed password
    changes the stored hash, so old entries can never match again.
    """

    def __init__(self, size: int = 1024, ttl: float = 300.0) -> None:
        self._items: OrderedDict[bytes, float] = OrderedDict()
        self._size, self._ttl, self._lock = size, ttl, Lock()

    def _key(self, stored_hash: str, password: str) -> bytes:
        secret = current_app.config["SECRET_KEY"].encode()
        return hmac.new(secret, f"{stored_hash}\0{password}".encode(), hashlib.sha256).digest()

    def hit(self, stored_hash: str, password: str) -> bool:
        key = self._key(stored_hash, password)
        with self._lock:
            expires = self._items.get(key)
            if expires is None or expires < time.monotonic():
                self._items.pop(key, None)
                return False
            return True

    def add(self, stored_hash: str, password: str) -> None:
        key = self._key(stored_hash, password)
        with self._lock:
            self._items[key] = time.monotonic() + self._ttl
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_verified = _VerifiedCache()


@auth.verify_password
def verify_password(username: str, password: str) -> User | None:
    """The user, or None (401). Throttled first: a refused address or user name gets 429 before
    the cache or the hash are consulted, whatever the password (see portal/throttle.py)."""
    if not username or not password:
        return None  # no credentials (a browser's first request): nothing to count
    address = client_address()
    wait = login_throttle().retry_after(address, username)
    if wait is not None:
        raise TooManyRequests(THROTTLED_MESSAGE, retry_after=wait)
    user = _check_password(username, password)
    if user is None:
        login_throttle().failed(address, username)  # unknown user and wrong password alike
    return user


def _check_password(username: str, password: str) -> User | None:
    user = db.session.execute(db.select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        check_password_hash(_DUMMY_HASH, password)  # the same cost as a wrong password
        return None
    if _verified.hit(user.password_hash, password):
        return user
    if check_password_hash(user.password_hash, password):
        _verified.add(user.password_hash, password)
        return user
    return None


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


def current_user() -> User:
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
    return user


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
