"""Failed sign-in throttling: per client address and per user name, checked before the password hash.

Only failures count (a wrong password, an unknown user); requests without credentials (a
browser's first, unauthenticated request) and successful sign-ins count nothing and reset
nothing. Once an address or a user name has `max` failures inside the window, every request
carrying credentials for it is refused with 429 + Retry-After until the window (anchored at the
first failure) runs out — without looking at the password, even a correct one, so a lockout is
never a guessing oracle.

Counters are fixed windows: `SET key 0 EX window NX` + `INCR` in one MULTI on a failure; every
request with credentials reads them with one MGET (PTTL only when refusing, for Retry-After).
Why not Flask-Limiter: it limits requests to routes, and here only failed verifications inside
the auth hook count, keyed by a name from the Authorization header; this is ~150 lines on the
redis client the broker already brings, with the fallback below under our control.

They live in Redis when the broker is Redis (or PORTAL_RATELIMIT_STORAGE_URL names one),
shared by every gunicorn worker, and in this process's memory otherwise (embedded mode). When
Redis fails, the counters move to memory (logged once) and Redis is tried again after a few
seconds, so an outage never turns a sign-in into a 500.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

PREFIX = "portal:login-failures"
REDIS_TIMEOUT = 0.5  # seconds; a hung Redis must not hang sign-ins
REDIS_RETRY_AFTER = 5.0  # seconds in memory after a Redis error before Redis is tried again
MEMORY_MAX_KEYS = 100_000


@dataclass(frozen=True)
class Limits:
    per_ip: int  # failures per address in one window; 0 turns the check off
    per_user: int  # failures per user name in one window; 0 turns the check off
    window: int  # seconds


def user_key(username: str) -> str:
    """Case- and trailing-space-insensitive, as MariaDB's collation compares user names; hashed,
    so attacker-chosen (or mistyped-password) names are never stored or logged as typed."""
    folded = username.rstrip(" ").casefold().encode()
    return f"{PREFIX}:user:{hashlib.sha256(folded).hexdigest()[:32]}"


def ip_key(address: str) -> str:
    return f"{PREFIX}:ip:{address}"


def client_address(remote_addr: str | None, forwarded_for: list[str], trusted_proxies: int) -> str:
    """The peer's address; with N trusted proxies, the Nth X-Forwarded-For entry from the right.

    IPv6 clients are counted by their /64 (one subscriber's usual allocation).
    """
    address = remote_addr or "unknown"
    if trusted_proxies > 0:
        hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            address = hops[-trusted_proxies]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class _Memory:
    """Fixed-window counters of one process (embedded mode, or while Redis is down)."""

    def __init__(self) -> None:
        self._items: dict[str, list[float]] = {}  # key -> [count, expires (monotonic)]
        self._lock = threading.Lock()

    def counts(self, keys: list[str]) -> list[int]:
        now = time.monotonic()
        with self._lock:
            return [int(item[0]) if (item := self._items.get(key)) and item[1] > now else 0 for key in keys]

    def expires_in(self, key: str) -> float:
        with self._lock:
            item = self._items.get(key)
        return max(item[1] - time.monotonic(), 0.0) if item else 0.0

    def add(self, keys: list[str], window: int) -> list[int]:
        now = time.monotonic()
        with self._lock:
            if len(self._items) > MEMORY_MAX_KEYS:
                self._prune(now)
            counts = []
            for key in keys:
                item = self._items.get(key)
                if item is None or item[1] <= now:
                    item = self._items[key] = [0, now + window]
                item[0] += 1
                counts.append(int(item[0]))
            return counts

    def _prune(self, now: float) -> None:
        self._items = {k: v for k, v in self._items.items() if v[1] > now}
        while len(self._items) > MEMORY_MAX_KEYS // 2:  # a flood of distinct keys: oldest go first
            self._items.pop(next(iter(self._items)))


class _Redis:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT,
                                           socket_connect_timeout=REDIS_TIMEOUT,
                                           retry=Retry(NoBackoff(), 0))

    def counts(self, keys: list[str]) -> list[int]:
        return [int(v or 0) for v in self.client.mget(keys)]  # one round trip per signed-in request

    def expires_in(self, key: str) -> float:
        return max(self.client.pttl(key), 0) / 1000  # only when refusing

    def add(self, keys: list[str], window: int) -> list[int]:
        pipe = self.client.pipeline(transaction=True)
        for key in keys:
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
        return [int(v) for v in pipe.execute()[1::2]]


class LoginThrottle:
    def __init__(self, limits: Limits, redis_url: str | None) -> None:
        self.limits = limits
        self._memory = _Memory()
        self._redis = _Redis(redis_url) if redis_url else None
        self._redis_down_until = 0.0
        self._redis_down = False

    def retry_after(self, address: str, username: str) -> int | None:
        """Seconds until this address and user name may try again, or None if they may now."""
        checks = self._checks(address, username)
        if not checks:
            return None
        counts = self._call("counts", [key for key, _ in checks])
        over = [key for (key, limit), count in zip(checks, counts, strict=True) if count >= limit]
        if not over:
            return None
        return max(1, math.ceil(max(self._call("expires_in", key) for key in over)))

    def failed(self, address: str, username: str) -> None:
        checks = self._checks(address, username)
        if not checks:
            return
        counts = self._call("add", [key for key, _ in checks], self.limits.window)
        for (key, limit), count in zip(checks, counts, strict=True):
            if count == limit:  # once per lockout; never the user name (it may be a mistyped password)
                what = f"address {address}" if key == ip_key(address) else "one user name"
                log.warning("sign-in failures over the limit (%d in %d s) for %s; refusing it until the "
                            "window ends", limit, self.limits.window, what)

    def _checks(self, address: str, username: str) -> list[tuple[str, int]]:
        checks = [(ip_key(address), self.limits.per_ip), (user_key(username), self.limits.per_user)]
        return [(key, limit) for key, limit in checks if limit > 0]

    def _call(self, method: str, *args):
        """On Redis while it answers; in memory (logged once per outage) while it does not."""
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                result = getattr(self._redis, method)(*args)
            except redis.RedisError as e:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER
                if not self._redis_down:
                    self._redis_down = True
                    log.warning("sign-in throttle: Redis unavailable (%s); counting in this process's "
                                "memory until it is back", type(e).__name__)
            else:
                if self._redis_down:
                    self._redis_down = False
                    log.info("sign-in throttle: Redis is back; counting there again")
                return result
        return getattr(self._memory, method)(*args)


def storage_url(config: dict) -> str | None:
    """PORTAL_RATELIMIT_STORAGE_URL if set (memory:// forces memory), else a Redis broker, else None."""
    url = config.get("RATELIMIT_STORAGE_URL") or config.get("CELERY_BROKER_URL") or ""
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


def from_config(config: dict) -> LoginThrottle:
    limits = Limits(per_ip=config.get("LOGIN_MAX_FAILURES_PER_IP", 20),
                    per_user=config.get("LOGIN_MAX_FAILURES_PER_USER", 10),
                    window=config.get("LOGIN_FAILURE_WINDOW", 300))
    return LoginThrottle(limits, storage_url(config))
