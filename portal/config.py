"""Every setting with a safe default, read from the environment once at start-up.

Tests pass a dict to ``create_app`` instead; nothing here touches the disk.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a whole number, not {raw!r}") from None


def _words(raw: str) -> list[str]:
    return [w.strip().lower() for w in raw.split(",") if w.strip()]


def _hosts(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    return [h.strip().lower() for h in raw.split(",") if h.strip()] if raw else None


def from_environment() -> dict:
    instance = Path(_env("PORTAL_INSTANCE_DIR", str(ROOT / "instance"))).resolve()
    return {
        # Signs CSRF tokens; required outside the embedded runner, which keeps one in instance/.
        "SECRET_KEY": os.environ.get("PORTAL_SECRET_KEY"),
        # Where the embedded defaults keep their state (SQLite, broker folders, secret key).
        "INSTANCE_DIR": str(instance),
        # SQLAlchemy URL; mysql+pymysql://user:pw@host/db?charset=utf8mb4 in production.
        "SQLALCHEMY_DATABASE_URI": _env("DATABASE_URL", f"sqlite:///{instance / 'portal.db'}"),
        # Celery broker; the filesystem transport needs no server (embedded), redis:// in production.
        "CELERY_BROKER_URL": _env("CELERY_BROKER_URL", "filesystem://"),
        # Rendered variants and uploaded sources live here (by campaign id, never by client path).
        "STORAGE_DIR": str(Path(_env("PORTAL_STORAGE_DIR", str(ROOT / "storage"))).resolve()),
        # The server folder that `local` campaigns may read from (nothing outside it).
        "IMPORT_DIR": str(Path(_env("PORTAL_IMPORT_DIR", str(ROOT / "import"))).resolve()),
        # Largest accepted request body (uploads), in megabytes; larger ones get 413.
        "MAX_CONTENT_LENGTH": _env_int("PORTAL_MAX_UPLOAD_MB", 25) * 1024 * 1024,
        # Largest source image accepted, in megapixels and pixels per side (checked before decoding).
        "MAX_IMAGE_PIXELS": _env_int("PORTAL_MAX_IMAGE_MP", 64) * 1_000_000,
        "MAX_IMAGE_SIDE": _env_int("PORTAL_MAX_IMAGE_SIDE", 12_000),
        # Words refused in any brief field or prompt (comma-separated, case-insensitive).
        "PROHIBITED_WORDS": _words(_env("PORTAL_PROHIBITED_WORDS", "hate,violence,weapon,explicit")),
        # How many times a campaign is attempted before it is marked failed.
        "MAX_ATTEMPTS": _env_int("PORTAL_MAX_ATTEMPTS", 3),
        # Hard time limit of one render task, in seconds; the soft limit is 80% of it.
        "TASK_TIME_LIMIT": _env_int("PORTAL_TASK_TIME_LIMIT", 300),
        # A processing campaign whose heartbeat is older than this is taken over (seconds).
        "LEASE_SECONDS": _env_int("PORTAL_LEASE_SECONDS", 60),
        # A pending campaign enqueued longer ago than this is enqueued again (seconds).
        "REENQUEUE_SECONDS": _env_int("PORTAL_REENQUEUE_SECONDS", 600),
        # Memory ceiling of each worker pool child (RLIMIT_DATA, MiB): a render that needs more
        # fails with MemoryError instead of being OOM-killed; 0 turns it off (worker/limits.py).
        "WORKER_MEMORY_MB": _env_int("PORTAL_WORKER_MEMORY_MB", 3072),
        # How often the reconciler (celery beat) looks for lost campaigns (seconds).
        "RECONCILE_SECONDS": _env_int("PORTAL_RECONCILE_SECONDS", 30),
        # Redis visibility timeout; must exceed the task time limit (seconds).
        "VISIBILITY_TIMEOUT": _env_int("PORTAL_VISIBILITY_TIMEOUT", 900),
        # Default and largest page size of lists.
        "PAGE_SIZE": _env_int("PORTAL_PAGE_SIZE", 20),
        "MAX_PAGE_SIZE": _env_int("PORTAL_MAX_PAGE_SIZE", 100),
        # The first admin account, created when the users table is empty.
        "ADMIN_USER": _env("PORTAL_ADMIN_USER", "admin"),
        "ADMIN_PASSWORD": os.environ.get("PORTAL_ADMIN_PASSWORD"),
        # Dropbox: app key + secret read public shared links through the API; a refresh (or access)
        # token also reads paths in that account. None set: public links are downloaded directly.
        "DROPBOX_APP_KEY": _env("DROPBOX_APP_KEY", ""),
        "DROPBOX_APP_SECRET": _env("DROPBOX_APP_SECRET", ""),
        "DROPBOX_REFRESH_TOKEN": _env("DROPBOX_REFRESH_TOKEN", ""),
        "DROPBOX_ACCESS_TOKEN": _env("DROPBOX_ACCESS_TOKEN", ""),
        # Hosts a pasted link may use, and hosts a direct download may be redirected to (None: Dropbox's).
        "DROPBOX_LINK_HOSTS": _hosts("PORTAL_DROPBOX_LINK_HOSTS"),
        "DROPBOX_CONTENT_HOSTS": _hosts("PORTAL_DROPBOX_CONTENT_HOSTS"),
        # CA bundle for Dropbox (a TLS-inspecting proxy, or the tests' fake); None: system trust.
        "DROPBOX_CA_BUNDLE": os.environ.get("PORTAL_DROPBOX_CA_BUNDLE") or None,
        # Adobe Firefly (server-to-server credentials). Unset: ai_generated campaigns get a
        # clearly labelled placeholder image instead.
        "FIREFLY_CLIENT_ID": _env("FIREFLY_CLIENT_ID", ""),
        "FIREFLY_CLIENT_SECRET": _env("FIREFLY_CLIENT_SECRET", ""),
        "FIREFLY_IMS_URL": _env("FIREFLY_IMS_URL", "https://ims-na1.adobelogin.com/ims/token/v3"),
        "FIREFLY_API_BASE": _env("FIREFLY_API_BASE", "https://firefly-api.adobe.io"),
        "FIREFLY_MODEL_VERSION": _env("FIREFLY_MODEL_VERSION", "image3"),
        # Hosts the generated image may be downloaded from (pre-signed S3 URLs).
        "FIREFLY_IMAGE_HOSTS": _hosts("FIREFLY_IMAGE_HOSTS") or [".amazonaws.com"],
        "FIREFLY_CA_BUNDLE": os.environ.get("FIREFLY_CA_BUNDLE") or None,
        # Longest wait for one Firefly job, in seconds.
        "FIREFLY_DEADLINE": _env_int("FIREFLY_DEADLINE_SECONDS", 120),
        # Connect/read timeout of every remote call, in seconds.
        "REMOTE_TIMEOUT": _env_int("PORTAL_REMOTE_TIMEOUT", 30),
        # Tests only: let remote fetches reach loopback/private addresses (the local fakes).
        "FETCH_ALLOW_PRIVATE": _env("PORTAL_FETCH_ALLOW_PRIVATE", "") == "1",
        # Failed sign-ins allowed per client address / per user name in one window, then 429 until
        # the window (seconds, from the first failure) ends; 0 turns that check off.
        "LOGIN_MAX_FAILURES_PER_IP": _env_int("PORTAL_LOGIN_MAX_FAILURES_PER_IP", 20),
        "LOGIN_MAX_FAILURES_PER_USER": _env_int("PORTAL_LOGIN_MAX_FAILURES_PER_USER", 10),
        "LOGIN_FAILURE_WINDOW": _env_int("PORTAL_LOGIN_FAILURE_WINDOW", 300),
        # Seconds a signed-in user's row is kept per process (0: read it on every request).
        "AUTH_CACHE_SECONDS": _env_int("PORTAL_AUTH_CACHE_SECONDS", 5),
        # Where those counters live: redis://...; unset: the broker when it is Redis, else memory.
        "RATELIMIT_STORAGE_URL": _env("PORTAL_RATELIMIT_STORAGE_URL", ""),
        # Reverse proxies in front that append X-Forwarded-For; 0: the header is never trusted.
        "TRUSTED_PROXIES": _env_int("PORTAL_TRUSTED_PROXIES", 0),
        # Logging level of web and worker.
        "LOG_LEVEL": _env("PORTAL_LOG_LEVEL", "INFO"),
    }
