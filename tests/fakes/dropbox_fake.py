"""A faithful local Dropbox (PROTOCOLS.md §B, checklist §C2): one HTTPS port plays
api.dropboxapi.com (oauth2/token), content.dropboxapi.com (sharing/get_shared_link_file,
files/download) and www.dropbox.com / dl.dropboxusercontent.com (the tokenless link routes).

Point the official SDK here with DROPBOX_API_HOST=DROPBOX_API_CONTENT_HOST=localhost:<port>
set before its first import (tests/fakes/sdk_env.py). Standalone:
    python -m tests.fakes.dropbox_fake --cert-dir /tmp/fakes-tls --port 8443

Validated like the real service: Authorization (Bearer for a known, unexpired token with the
route's scope; Basic app key:secret only on app-auth routes), Dropbox-API-Arg present, ASCII,
parsed as JSON (never string-compared) with only the route's fields, no JSON/form Content-Type
and an empty body on download routes, the refresh form. Errors are exactly
`Content-Type: application/json` with error_summary and a tagged error; bad requests are
plain-text 400s, as Dropbox sends them.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from io import BytesIO
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from PIL import Image
from werkzeug.wrappers import Request, Response

from .server import FakeService, serve_main

APP_KEY, APP_SECRET, REFRESH_TOKEN = "fake-app-key", "fake-app-secret", "fake-refresh-token"
ALL_SCOPES = ("sharing.read", "files.content.read")
LINK_BEHAVIOURS = {"ok", "not_found", "access_denied", "directory", "unsupported_link_type", "html",
                   "redirect_loop", "redirect"}
LINK_ERROR_TAGS = {"not_found": "shared_link_not_found", "access_denied": "shared_link_access_denied",
                   "directory": "shared_link_is_directory", "unsupported_link_type": "unsupported_link_type"}
PATH_BEHAVIOURS = {"ok", "not_found", "not_file", "restricted_content"}
GOOD_CONTENT_TYPES = {"", "application/octet-stream", "text/plain; charset=dropbox-cors-hack"}


def jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG", quality=85)
    return out.getvalue()


@dataclass
class Link:
    id: str
    name: str
    data: bytes
    kind: str  # "scl" (/scl/fi/<id>/<name>?rlkey=) or "s" (/s/<id>/<name>)
    rlkey: str | None
    behaviour: str = "ok"  # one of LINK_BEHAVIOURS
    content_type: str = "application/octet-stream"  # on the /cd/0/get/... download
    target: str = ""  # for behaviour "redirect": where the link route sends the client


@dataclass
class File:
    path: str
    data: bytes
    behaviour: str = "ok"  # one of PATH_BEHAVIOURS
    id: str = ""


class DropboxFake(FakeService):
    """Fake Dropbox: API, content and shared-link hosts on one HTTPS port."""

    ROUTES = frozenset({"token", "get_shared_link_file", "download", "link", "content", "login"})
    CONTROL = FakeService.CONTROL | {"add_link", "add_file", "add_refresh_token", "expire_tokens"}
    CONFIGURABLE = frozenset({"app_key", "app_secret", "token_ttl"})

    def __init__(self) -> None:
        self.app_key, self.app_secret, self.token_ttl = APP_KEY, APP_SECRET, 14400
        self.links: dict[str, Link] = {}
        self.files: dict[str, File] = {}
        self.refresh_tokens: dict[str, tuple[str, ...]] = {REFRESH_TOKEN: ALL_SCOPES}
        self.tokens: dict[str, tuple[float, tuple[str, ...]]] = {}  # access token -> (expiry, scopes)
        self.opaque: dict[str, str] = {}  # /cd/0/get/<opaque>/file -> link id
        super().__init__()

    # -- steering -------------------------------------------------------------------------

    def add_link(self, name: str = "photo.jpg", data: bytes | None = None, *, kind: str = "scl",
                 behaviour: str = "ok", content_type: str = "application/octet-stream", target: str = "",
                 host: str | None = None, link_id: str | None = None) -> str:
        """Register a shared file and return its share link as Dropbox shows it (dl=0).
        host: the link's host (default this fake's host:port; "www.dropbox.com" also resolves here)."""
        if behaviour not in LINK_BEHAVIOURS or kind not in ("scl", "s"):
            raise ValueError(f"bad behaviour {behaviour!r} or kind {kind!r}")
        link_id = link_id or secrets.token_hex(8)
        rlkey = secrets.token_urlsafe(18) if kind == "scl" else None
        with self.lock:
            self.links[link_id] = Link(link_id, name, jpeg() if data is None else data, kind, rlkey, behaviour,
                                       content_type, target)
        path = f"/scl/fi/{link_id}/{quote(name)}" if kind == "scl" else f"/s/{link_id}/{quote(name)}"
        query = {"rlkey": rlkey, "st": secrets.token_hex(4), "dl": "0"} if rlkey else {"dl": "0"}
        return f"https://{host or self.host}{path}?{urlencode(query)}"

    def add_file(self, path: str, data: bytes | None = None, *, behaviour: str = "ok") -> str:
        """Register a file in the account for files/download; returns its id ("id:…")."""
        if behaviour not in PATH_BEHAVIOURS:
            raise ValueError(f"bad behaviour {behaviour!r}")
        file_id = "id:" + secrets.token_urlsafe(12)
        with self.lock:
            self.files[path.lower()] = File(path, jpeg() if data is None else data, behaviour, file_id)
        return file_id

    def add_refresh_token(self, token: str, scopes: list[str] | tuple[str, ...] = ALL_SCOPES) -> None:
        with self.lock:
            self.refresh_tokens[token] = tuple(scopes)

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (401 expired_access_token)."""
        with self.lock:
            self.tokens = {t: (0.0, scopes) for t, (_, scopes) in self.tokens.items()}

    def issue_token(self, scopes: tuple[str, ...] = ALL_SCOPES, ttl: float | None = None) -> str:
        token = "sl." + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (time.time() + (self.token_ttl if ttl is None else ttl), tuple(scopes))
        return token

    # -- routing --------------------------------------------------------------------------

    def route_of(self, request: Request) -> str | None:
        path = request.path
        if path == "/oauth2/token":
            return "token"
        if path == "/2/sharing/get_shared_link_file":
            return "get_shared_link_file"
        if path == "/2/files/download":
            return "download"
        if path.startswith(("/s/", "/scl/")):
            return "link"
        if path.startswith("/cd/0/"):
            return "content"
        if path == "/login":
            return "login"
        return None

    def dispatch(self, route: str | None, request: Request) -> Response:
        handler = {"token": self._token, "get_shared_link_file": self._get_shared_link_file,
                   "download": self._download, "link": self._link, "content": self._content,
                   "login": lambda r: _html("Log in to Dropbox", 200)}.get(route or "")
        if handler is None:
            return _html("Page not found", 404)
        return handler(request)

    # -- oauth2/token ---------------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return _text(405, "Method not allowed")
        if request.mimetype != "application/x-www-form-urlencoded":
            return _oauth_error("invalid_request", "expected a form-encoded body")
        form = request.form
        if form.get("grant_type") != "refresh_token":
            return _oauth_error("unsupported_grant_type", "grant_type must be refresh_token")
        if form.get("client_id") != self.app_key:
            return _oauth_error("invalid_client", "Invalid client_id or client_secret")
        if "client_secret" in form and form["client_secret"] != self.app_secret:
            return _oauth_error("invalid_client", "Invalid client_id or client_secret")
        with self.lock:
            scopes = self.refresh_tokens.get(form.get("refresh_token", ""))
        if scopes is None:
            return _oauth_error("invalid_grant", "refresh token is invalid or revoked")
        if form.get("scope"):
            scopes = tuple(s for s in form["scope"].split(" ") if s in scopes)
        token = self.issue_token(scopes)
        return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl,
                           "scope": " ".join(scopes)})

    # -- content routes -------------------------------------------------------------------

    def _check_download_request(self, request: Request, route: str, fields: set[str], required: str,
                                app_auth: bool, scope: str) -> tuple[dict | None, Response | None]:
        """(argument, None) if the request is acceptable, else (None, the error Dropbox sends)."""
        where = f'Error in call to API function "{route}"'
        if request.method != "POST":
            return None, _text(405, f"{where}: Method not allowed")
        content_type = request.headers.get("Content-Type", "")
        if content_type not in GOOD_CONTENT_TYPES:
            return None, _text(400, f'{where}: Bad HTTP "Content-Type" header: "{content_type}".  Expecting one '
                                    'of "application/octet-stream", "text/plain; charset=dropbox-cors-hack".')
        if request.get_data():
            return None, _text(400, f"{where}: This function requires its argument in the HTTP header "
                                    '"Dropbox-API-Arg" and an empty request body.')
        denied = self._check_auth(request, where, app_auth, scope)
        if denied is not None:
            return None, denied
        raw = request.headers.get("Dropbox-API-Arg")
        if raw is None:
            return None, _text(400, f'{where}: Must provide HTTP header "Dropbox-API-Arg" or URL parameter "arg".')
        if not raw.isascii():
            return None, _text(400, f'{where}: HTTP header "Dropbox-API-Arg": could not decode input as ASCII')
        try:
            arg = json.loads(raw)
        except ValueError:
            return None, _text(400, f'{where}: HTTP header "Dropbox-API-Arg": could not decode input as JSON')
        if not isinstance(arg, dict) or not isinstance(arg.get(required), str):
            return None, _text(400, f"{where}: missing required field '{required}'")
        unknown = set(arg) - fields
        if unknown:
            return None, _text(400, f"{where}: unknown field '{sorted(unknown)[0]}'")
        return arg, None

    def _check_auth(self, request: Request, where: str, app_auth: bool, scope: str) -> Response | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            with self.lock:
                expiry, scopes = self.tokens.get(auth[7:], (None, ()))
            if expiry is None:
                return _api_error(401, {".tag": "invalid_access_token"})
            if expiry < time.time():
                return _api_error(401, {".tag": "expired_access_token"})
            if scope not in scopes:
                return _api_error(401, {".tag": "missing_scope", "required_scope": scope})
            return None
        if auth.startswith("Basic ") and app_auth:
            try:
                key, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            except ValueError:
                return _text(400, f'{where}: Invalid authorization value in HTTP header "Authorization".')
            if (key, secret) != (self.app_key, self.app_secret):
                # [assumption] a wrong app secret: reported like a bad token, as JSON 401.
                return _api_error(401, {".tag": "invalid_access_token"})
            return None
        if auth.startswith("Basic "):
            return _text(400, f'{where}: Invalid authorization value in HTTP header "Authorization". '
                              'Expecting "Bearer <oauth2-access-token>".')
        return _text(400, f'{where}: Must provide HTTP header "Authorization" or URL parameter "authorization".')

    def _get_shared_link_file(self, request: Request) -> Response:
        arg, error = self._check_download_request(request, "sharing/get_shared_link_file",
                                                  {"url", "path", "link_password"}, "url", True, "sharing.read")
        if error is not None:
            return error
        link = self._link_for_url(arg["url"])
        if link is None or link.behaviour in ("not_found", "redirect_loop", "redirect"):
            return _api_error(409, {".tag": "shared_link_not_found"})
        if link.behaviour in LINK_ERROR_TAGS:
            return _api_error(409, {".tag": LINK_ERROR_TAGS[link.behaviour]})
        if "path" in arg or "link_password" in arg:
            return _api_error(409, {".tag": "unsupported_parameter_field"})
        metadata = {".tag": "file", "url": arg["url"], "id": "id:" + link.id, "name": link.name,
                    "link_permissions": _PERMISSIONS, "size": len(link.data), **_times_and_rev(link.data)}
        return _file_response(link.data, metadata)

    def _download(self, request: Request) -> Response:
        arg, error = self._check_download_request(request, "files/download", {"path", "rev"}, "path", False,
                                                  "files.content.read")
        if error is not None:
            return error
        path = arg["path"]
        if not (path.startswith(("/", "id:", "rev:", "ns:"))):
            return _api_error(409, {".tag": "path", "path": {".tag": "malformed_path"}})
        with self.lock:
            found = self.files.get(path.lower()) or next((f for f in self.files.values() if f.id == path), None)
        if found is None or found.behaviour == "not_found":
            return _api_error(409, {".tag": "path", "path": {".tag": "not_found"}})
        if found.behaviour != "ok":
            return _api_error(409, {".tag": "path", "path": {".tag": found.behaviour}})
        metadata = {"name": found.path.rsplit("/", 1)[-1], "id": found.id, "path_lower": found.path.lower(),
                    "path_display": found.path, "size": len(found.data), "is_downloadable": True,
                    "content_hash": hashlib.sha256(found.data).hexdigest(), **_times_and_rev(found.data)}
        return _file_response(found.data, metadata)

    def _link_for_url(self, url: str) -> Link | None:
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.netloc not in {self.host, "www.dropbox.com", "dropbox.com", "dl.dropboxusercontent.com"}:
            return None
        return self._link_for_path(parts.path, dict(parse_qsl(parts.query)))

    def _link_for_path(self, path: str, query: dict[str, str]) -> Link | None:
        pieces = path.split("/")
        if path.startswith("/scl/fi/") and len(pieces) == 5:
            kind, link_id = "scl", pieces[3]
        elif path.startswith("/s/") and len(pieces) == 4:
            kind, link_id = "s", pieces[2]
        else:
            return None
        with self.lock:
            link = self.links.get(link_id)
        if link is None or link.kind != kind or (kind == "scl" and query.get("rlkey") != link.rlkey):
            return None  # a wrong or missing rlkey looks like no link at all
        return link

    # -- www.dropbox.com link routes and the dl.dropboxusercontent.com download ---------

    def _link(self, request: Request) -> Response:
        link = self._link_for_path(request.path, request.args.to_dict())
        if link is None or link.behaviour == "not_found":
            return _html("Dropbox - 404 - This item was deleted or the link is wrong", 404)
        if link.behaviour == "access_denied":
            return _redirect(f"/login?cont={quote(request.path)}")
        if link.behaviour in ("directory", "unsupported_link_type"):
            return _html(f"Dropbox - {link.name} - folder view", 200)
        if link.behaviour == "redirect_loop":
            return _redirect(request.full_path)
        if link.behaviour == "redirect":
            return _redirect(link.target)
        mode = "get" if request.args.get("dl") == "1" else "inline" if request.args.get("raw") == "1" else None
        if mode is None:
            return _html(f"Dropbox - {link.name} - preview", 200)
        opaque = secrets.token_urlsafe(24)
        with self.lock:
            self.opaque[opaque] = link.id
        return _redirect(f"/cd/0/{mode}/{opaque}/file")

    def _content(self, request: Request) -> Response:
        pieces = request.path.split("/")  # "", cd, 0, get|inline, opaque, file
        with self.lock:
            link = self.links.get(self.opaque.get(pieces[4], "")) if len(pieces) == 6 else None
        if link is None:
            return _html("Dropbox - Error - the link has expired", 404)
        if link.behaviour == "html":
            return _html("Dropbox - sign in to view this file", 200)
        content_type = link.content_type if pieces[3] == "get" else "image/jpeg"
        headers = {"Content-Disposition": f"attachment; filename=\"{quote(link.name)}\"" if pieces[3] == "get"
                   else "inline", "X-Content-Type-Options": "nosniff"}
        return Response(link.data, 200, headers=headers, content_type=content_type)


_PERMISSIONS = {
    "can_revoke": False, "resolved_visibility": {".tag": "public"}, "visibility_policies": [],
    "can_set_expiry": False, "can_remove_expiry": False, "allow_download": True, "can_allow_download": False,
    "can_disallow_download": False, "allow_comments": True, "team_restricts_comments": False,
}


def _times_and_rev(data: bytes) -> dict[str, Any]:
    return {"client_modified": "2026-03-01T09:30:00Z", "server_modified": "2026-03-01T09:31:12Z",
            "rev": hashlib.sha1(data).hexdigest()[:15]}


def _file_response(data: bytes, metadata: dict[str, Any]) -> Response:
    headers = {"Dropbox-API-Result": json.dumps(metadata, ensure_ascii=True),
               "X-Dropbox-Request-Id": secrets.token_hex(16)}
    return Response(data, 200, headers=headers, content_type="application/octet-stream")


def _api_error(status: int, error: dict[str, Any]) -> Response:
    summary = "/".join(_tags(error)) + "/.."
    body = {"error_summary": summary, "error": error}
    response = Response(json.dumps(body), status, headers={"X-Dropbox-Request-Id": secrets.token_hex(16)})
    response.headers["Content-Type"] = "application/json"  # exactly: the SDK asserts it
    return response


def _tags(error: dict[str, Any]) -> list[str]:
    tag = error.get(".tag", "other")
    inner = error.get(tag)
    return [tag, *(_tags(inner) if isinstance(inner, dict) else [])]


def _oauth_error(error: str, description: str) -> Response:
    response = Response(json.dumps({"error": error, "error_description": description}), 400)
    response.headers["Content-Type"] = "application/json"
    return response


def _json(status: int, body: dict[str, Any]) -> Response:
    response = Response(json.dumps(body), status)
    response.headers["Content-Type"] = "application/json"
    return response


def _text(status: int, text: str) -> Response:
    return Response(text, status, content_type="text/plain; charset=utf-8")


def _html(title: str, status: int) -> Response:
    return Response(f"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>",
                    status, content_type="text/html; charset=utf-8")


def _redirect(location: str) -> Response:
    return Response("", 302, headers={"Location": location}, content_type="text/html; charset=utf-8")


if __name__ == "__main__":
    serve_main(DropboxFake)
