"""Fetch an image from a Dropbox shared link or account path (PROTOCOLS.md §B).

With credentials (app key + secret, a refresh token or an access token) links go through the
official SDK's sharing/get_shared_link_file and paths through files/download (user token
only). Without any, a link is rewritten to its documented direct download (dl=1, every
other parameter kept, rlkey included) and fetched through safe_fetch.

The SDK reads DROPBOX_API_HOST, DROPBOX_API_CONTENT_HOST and the other host overrides when it
is first imported (§B7.1), so it is imported lazily here and deployments or tests that point
it elsewhere set those variables before the worker process starts.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from ..imaging import sniff_format
from . import SourceError, TransientSourceError, safe_fetch

LINK_HOSTS = frozenset({"www.dropbox.com", "dropbox.com", "dl.dropboxusercontent.com", "dl.dropbox.com"})
# Where www.dropbox.com redirects a dl=1 link: uc<hex>.dl.dropboxusercontent.com/cd/0/get/...
CONTENT_HOSTS = frozenset({"*.dl.dropboxusercontent.com"})

ONLY_DROPBOX = "Only Dropbox links (www.dropbox.com/...) are accepted."
NOT_FOUND = "This Dropbox link does not exist or was removed."
PRIVATE = "This Dropbox link is private or password-protected; share it publicly (anyone with the link)."
FOLDER = "This Dropbox link points to a folder; link a single image file."
NOT_DOWNLOADABLE = "This Dropbox link is not a downloadable image (it may be private, deleted, or a folder)."
NOT_AN_IMAGE = "This Dropbox file is not a JPEG, PNG or WebP image."
PATH_NEEDS_TOKEN = "A Dropbox path needs a Dropbox account token on the server; use a shared link instead"
MISCONFIGURED = "The server's Dropbox connection is misconfigured ({}); ask an administrator to reconnect Dropbox."
LINK_ERRORS = {
    "shared_link_not_found": NOT_FOUND,
    "shared_link_access_denied": PRIVATE,
    "shared_link_is_directory": FOLDER,
    "unsupported_link_type": "This kind of Dropbox link is not supported; use Share > Copy link on a single file.",
    "unsupported_parameter_field": "This Dropbox link cannot be read with a password or sub-path; share it publicly.",
}
PATH_ERRORS = {
    "not_found": "There is no file at {} in the server's Dropbox.",
    "not_file": "{} is a folder in the server's Dropbox, not an image file.",
    "restricted_content": "Dropbox does not allow downloading {} (restricted content).",
    "malformed_path": "{} is not a valid Dropbox path.",
    "unsupported_content_type": "Dropbox cannot download {} as a file.",
    "unsupported_file": "Dropbox cannot download {} as a file.",
    "locked": "{} is locked in Dropbox; unlock it and retry.",
}
_FILE_PATH = re.compile(r"/s/[A-Za-z0-9_-]+/[^/]+|/scl/fi/[A-Za-z0-9_-]+/[^/]+")


@dataclass(frozen=True)
class DropboxSettings:
    app_key: str = ""
    app_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)  # long-lived; with app_key, lets the SDK mint tokens
    access_token: str = field(default="", repr=False)  # short-lived (sl.…); for tests and one-off runs
    link_hosts: frozenset[str] = LINK_HOSTS  # what a user may paste; tests add the fake's host:port
    content_hosts: frozenset[str] = CONTENT_HOSTS  # where tokenless downloads may be redirected
    ca_bundle: str | None = None  # None: the default trust store
    timeout: float = 30.0  # connect and read timeout, seconds
    max_bytes: int = 50 * 1024 * 1024
    allow_private: bool = False  # tests only: let safe_fetch reach 127.0.0.1

    @property
    def has_credentials(self) -> bool:
        return bool((self.app_key and self.app_secret) or self.refresh_token or self.access_token)


def validate_link(value: str, link_hosts=LINK_HOSTS) -> None:
    """ValueError with a sentence for the user unless value is a Dropbox link to one file."""
    if len(value) > 2048:
        raise ValueError("This Dropbox link is too long.")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(ONLY_DROPBOX) from None
    if parts.scheme.lower() == "http":
        raise ValueError("Use the https:// link that Dropbox gives you.")
    if not safe_fetch.hosts_allow(value, link_hosts):
        raise ValueError(ONLY_DROPBOX)
    if parts.path.startswith(("/scl/fo/", "/sh/")):
        raise ValueError(FOLDER)
    if not _FILE_PATH.fullmatch(parts.path):
        raise ValueError("This is not a link to a Dropbox file; use Share > Copy link on the image.")
    if parts.path.startswith("/scl/") and "rlkey" not in dict(parse_qsl(parts.query)):
        raise ValueError("This Dropbox link is missing its rlkey part; copy the whole link from Dropbox.")


def validate_account_path(value: str) -> None:
    """ValueError unless value is a plain path in a Dropbox account (/Folder/photo.jpg): no empty,
    '.' or '..' parts, so '//host/x' or '/../x' can never read as anything else."""
    parts = value.split("/")[1:]
    if len(value) > 1024 or not parts or any(p in ("", ".", "..") for p in parts) \
            or any(ch in value for ch in "\\\0\r\n"):
        raise ValueError("A Dropbox path looks like /Folder/photo.jpg.")


def fetch_dropbox(link_or_path: str, settings: DropboxSettings) -> bytes:
    """The bytes of the image at a shared link or (with a user token) an account path."""
    value = link_or_path.strip()
    if value.startswith("/"):
        if not (settings.refresh_token or settings.access_token):
            raise SourceError(PATH_NEEDS_TOKEN)
        if len(value) > 4096 or "\x00" in value:
            raise SourceError("This Dropbox path is not valid.")
        return _with_sdk(settings, lambda dbx: dbx.files_download(value), value)
    try:
        validate_link(value, settings.link_hosts)
    except ValueError as e:
        raise SourceError(str(e)) from None
    if settings.has_credentials:
        return _with_sdk(settings, lambda dbx: dbx.sharing_get_shared_link_file(url=value), None)
    return _without_token(value, settings)


def direct_link(link: str) -> str:
    """The documented direct-download form of a shared link: every parameter kept, dl=1 (§B6)."""
    parts = urlsplit(link)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dl"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("dl", "1")]), fragment=""))


def _without_token(link: str, settings: DropboxSettings) -> bytes:
    got = safe_fetch.get(direct_link(link), allowed_hosts=settings.link_hosts | settings.content_hosts,
                         max_bytes=settings.max_bytes, timeout=settings.timeout, ca_bundle=settings.ca_bundle,
                         allow_private=settings.allow_private)
    if got.status == 429:
        raise TransientSourceError("Dropbox is limiting downloads right now; the image will be fetched later.",
                                   safe_fetch.parse_retry_after(got.headers.get("retry-after")))
    if got.status >= 500:
        raise TransientSourceError(f"Dropbox is not available right now (HTTP {got.status}).",
                                   safe_fetch.parse_retry_after(got.headers.get("retry-after")))
    if got.status in (404, 410):
        raise SourceError(NOT_FOUND)
    # Failures come back as HTML pages or login redirects, not API errors: trust only an
    # image or generic-binary type *and* image magic bytes.
    content_type = got.headers.get("content-type", "").split(";")[0].strip().lower()
    binary = content_type.startswith("image/") or content_type in ("application/octet-stream", "binary/octet-stream")
    if got.status != 200 or not binary:
        raise SourceError(NOT_DOWNLOADABLE)
    if sniff_format(got.body) is None:
        raise SourceError(NOT_AN_IMAGE)
    return got.body


class _ClosingSession(requests.Session):
    """Closes every response on close(): the SDK streams downloads and, when it raises on a
    status it does not read (429 with a header only), leaves that response's socket open."""

    def __init__(self) -> None:
        super().__init__()
        self._responses: list[requests.Response] = []

    def send(self, request, **kwargs) -> requests.Response:
        response = super().send(request, **kwargs)
        self._responses.append(response)
        return response

    def close(self) -> None:
        for response in self._responses:
            response.close()
        super().close()


def _with_sdk(settings: DropboxSettings, call: Callable, path: str | None) -> bytes:
    import dropbox  # lazily: host overrides are read at first import (see module docstring)

    session = _ClosingSession()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify (§B7.4)
    session.verify = settings.ca_bundle or True
    try:
        # A client per call; Celery retries, so the SDK must not (it retries 429 forever by default).
        dbx = dropbox.Dropbox(
            oauth2_access_token=settings.access_token or None, oauth2_refresh_token=settings.refresh_token or None,
            app_key=settings.app_key or None, app_secret=settings.app_secret or None,
            max_retries_on_error=0, max_retries_on_rate_limit=0, session=session, timeout=settings.timeout,
            user_agent="campaign-portal")
        metadata, response = call(dbx)
        size = getattr(metadata, "size", None)  # declared by Dropbox: refuse before reading
        if size is not None and size > settings.max_bytes:
            raise SourceError(safe_fetch.too_large(settings.max_bytes))
        data = safe_fetch.read_capped(response, settings.max_bytes, host="Dropbox")
        if size is not None and len(data) != size:
            raise TransientSourceError("The download from Dropbox was cut off.")
    except Exception as e:  # translated to our two errors; anything unknown is re-raised as is
        raise _translate(e, path) from None
    finally:
        session.close()
    if sniff_format(data) is None:
        raise SourceError(NOT_AN_IMAGE)
    return data


def _translate(e: Exception, path: str | None) -> Exception:
    """The SourceError / TransientSourceError for an SDK or network failure; e itself if unknown."""
    from dropbox import exceptions as dx
    from dropbox.dropbox_client import BadInputException
    from dropbox.stone_validators import ValidationError

    if isinstance(e, (SourceError, TransientSourceError)):
        return e
    if isinstance(e, dx.ApiError):
        return SourceError(_api_message(e.error, path))
    if isinstance(e, dx.AuthError):
        return SourceError(MISCONFIGURED.format(_auth_reason(e.error)))
    if isinstance(e, dx.RateLimitError):
        return TransientSourceError("Dropbox is limiting requests right now; the image will be fetched later.",
                                    e.backoff)
    if isinstance(e, dx.InternalServerError):
        return TransientSourceError(f"Dropbox is not available right now (HTTP {e.status_code}).")
    if isinstance(e, dx.BadInputError):
        if _oauth_error(e.message):  # the token endpoint refused the app key/secret (invalid_client)
            return SourceError(MISCONFIGURED.format(f"Dropbox refused its app credentials: {_oauth_error(e.message)}"))
        # A route's plain-text 400 may quote the link, rlkey included: never show it.
        return SourceError("Dropbox could not read this link; copy it again with Share > Copy link.")
    if isinstance(e, BadInputException):
        return SourceError(MISCONFIGURED.format("incomplete credentials"))
    if isinstance(e, dx.HttpError):
        return SourceError(f"Dropbox refused the download (HTTP {e.status_code}).")
    if isinstance(e, requests.exceptions.SSLError):
        return SourceError("The secure connection to Dropbox could not be verified.")
    if isinstance(e, requests.exceptions.Timeout):
        return TransientSourceError("Dropbox did not answer in time.")
    if isinstance(e, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return TransientSourceError("The download from Dropbox was cut off.")
    if isinstance(e, requests.exceptions.ConnectionError):
        return TransientSourceError("Dropbox could not be reached.")
    if isinstance(e, (ValidationError, KeyError, ValueError)):  # a malformed answer from Dropbox
        return TransientSourceError("Dropbox sent an answer that could not be read.")
    return e


def _oauth_error(body: str) -> str | None:
    """The `error` code of an OAuth JSON error body (400 from oauth2/token), else None."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error[:40] if isinstance(error, str) else None


def _api_message(error, path: str | None) -> str:
    tag = getattr(error, "_tag", None)
    if tag == "path" and path is not None:
        inner = getattr(error.get_path(), "_tag", None)
        return PATH_ERRORS.get(inner, "Dropbox could not read {}.").format(path)
    if path is not None:
        return PATH_ERRORS.get(tag, "Dropbox could not read {}.").format(path)
    return LINK_ERRORS.get(tag, "Dropbox could not read this link.")


def _auth_reason(error) -> str:
    if error is None:
        return "its access was refused"
    if error.is_missing_scope():
        return f"its app lacks the {error.get_missing_scope().required_scope} permission"
    if error.is_user_suspended():
        return "the Dropbox account is suspended"
    if error.is_expired_access_token():
        return "its access token has expired"
    return "its token was rejected"
