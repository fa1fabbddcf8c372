"""GET a remote https URL without becoming an SSRF proxy (RELIABILITY.md §4, OWASP SSRF sheet).

Every hop, the first and each redirect (followed here by hand, never by requests):
https only, no user-info, host[:port] on an exact allow-list, every DNS answer a public
address, and the connection pinned to the address we checked (the TLS handshake still
sends and verifies the host name), so a second DNS answer cannot swap in 127.0.0.1.
The body is streamed under a byte cap and a wall-clock limit.

Allow-list entries: "host" (port 443), "host:port", "[v6]:port", and "*.domain" or
".domain" for any sub-domain of domain (not domain itself), e.g. "*.dl.dropboxusercontent.com".
"""
from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from . import SourceError, TransientSourceError

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_HEADERS = {"User-Agent": "campaign-portal/1", "Accept": "*/*", "Accept-Encoding": "identity"}


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


def get(url: str, *, allowed_hosts: Iterable[str], max_bytes: int, timeout: float, ca_bundle: str | None,
        allow_private: bool = False, max_redirects: int = 5, total_timeout: float | None = None) -> Fetched:
    """The final non-redirect answer, whatever its status; SourceError / TransientSourceError otherwise.

    allow_private: let loopback and private addresses through; only for tests against local fakes.
    total_timeout: wall-clock limit for the whole call (default 4 x timeout), against slow drips.
    """
    rules = [_rule(entry) for entry in allowed_hosts]
    deadline = time.monotonic() + (total_timeout if total_timeout is not None else 4 * timeout)
    current, seen = url, set()
    for hop in range(max_redirects + 1):
        host, port = check_url(current, rules, redirected=hop > 0)
        if current in seen:
            raise SourceError(f"The link {shown(url)} redirects in a loop.")
        seen.add(current)
        addresses = _resolve(host, port, allow_private)
        status, headers, body = _get_once(current, host, addresses, max_bytes, timeout, ca_bundle, deadline)
        if status in REDIRECTS and headers.get("location"):
            current = urljoin(current, headers["location"])
            continue
        return Fetched(current, status, headers, body)
    raise SourceError(f"The link {shown(url)} redirects too many times.")


def shown(url: str) -> str:
    """host + path of a URL, for messages: the query string may hold a credential (rlkey)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or ''}{parts.path}"[:200]
    except ValueError:
        return "(unreadable link)"


def check_url(url: str, rules: list[tuple[str, int, bool]], *, redirected: bool = False) -> tuple[str, int]:
    """(host, port) of an https URL whose host is allowed, or SourceError."""
    where = "redirected to a link" if redirected else "is a link"
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        raise SourceError(f"The link {shown(url)} contains characters that are not allowed.")
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise SourceError(f"The link {shown(url)} is not a valid address.") from None
    if parts.scheme.lower() != "https":
        raise SourceError(f"The link {shown(url)} {where} that is not https://, which is not allowed.")
    if "@" in parts.netloc:
        raise SourceError(f"The link {shown(url)} {where} with a user name, which is not allowed.")
    host = (parts.hostname or "").lower()
    well_formed = host.isascii() and all(host.split(".")) and not host.startswith("-")
    if not host or not well_formed or not any(_matches(host, port, rule) for rule in rules):
        raise SourceError(f"The link {shown(url)} {where} to a host that is not allowed ({host or 'none'}).")
    return host, port


def hosts_allow(url: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether check_url would accept url against this allow-list."""
    try:
        check_url(url, [_rule(entry) for entry in allowed_hosts])
    except SourceError:
        return False
    return True


def _rule(entry: str) -> tuple[str, int, bool]:
    """(host, port, any-sub-domain) from an allow-list entry."""
    entry = entry.strip().lower()
    wildcard = entry.startswith(("*.", "."))
    entry = entry[2:] if entry.startswith("*.") else entry.lstrip(".")
    if entry.startswith("["):  # [v6] or [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 443, wildcard
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port), wildcard
    return entry, 443, wildcard


def _matches(host: str, port: int, rule: tuple[str, int, bool]) -> bool:
    rule_host, rule_port, wildcard = rule
    if port != rule_port:
        return False
    if wildcard:
        prefix = host[: -len(rule_host) - 1]
        return host.endswith("." + rule_host) and bool(prefix)
    return host == rule_host


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address; IPv6 forms that embed an IPv4 address are judged by it."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if any(e is not None and not is_public(e) for e in embedded):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                                 or ip.is_private or ip.is_unspecified)


def _resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """Every address of host, all checked: one private answer refuses the host (OWASP)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno == socket.EAI_AGAIN:
            raise TransientSourceError(f"The name {host} could not be looked up right now.") from None
        raise SourceError(f"The host {host} does not exist.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not allow_private and not is_public(ip):
            raise SourceError(f"The host {host} leads to a private or reserved address ({ip}); "
                              "it is not allowed.")
    return addresses


def new_session(ca_bundle: str | None) -> requests.Session:
    """A session that trusts exactly ca_bundle (or the default store) and ignores the environment:
    with trust_env on, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override `verify` (PROTOCOLS §B7.4)
    and *_PROXY would route our pinned connections elsewhere."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle or True
    return session


def _get_once(url: str, host: str, addresses: list[str], max_bytes: int, timeout: float,
              ca_bundle: str | None, deadline: float) -> tuple[int, Mapping[str, str], bytes]:
    session = new_session(ca_bundle)
    session.mount("https://", _PinnedAdapter(addresses))
    try:
        with session.get(url, headers=_HEADERS, stream=True, allow_redirects=False, timeout=(timeout, timeout)) as r:
            if r.status_code in REDIRECTS:
                return r.status_code, r.headers, b""
            return r.status_code, r.headers, read_capped(r, max_bytes, deadline, host)
    except requests.exceptions.SSLError:
        raise SourceError(f"The secure connection to {host} could not be verified.") from None
    except requests.exceptions.Timeout:
        raise TransientSourceError(f"{host} did not answer in time.") from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        raise TransientSourceError(f"The download from {host} was cut off.") from None
    except requests.exceptions.ConnectionError:
        raise TransientSourceError(f"{host} could not be reached.") from None
    finally:
        session.close()


def read_capped(response: requests.Response, max_bytes: int, deadline: float | None = None,
                host: str = "the server") -> bytes:
    """The (streamed) body, or SourceError once it passes max_bytes; TransientSourceError past deadline."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(too_large(max_bytes))
    chunks, size = [], 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise SourceError(too_large(max_bytes))
        if deadline is not None and time.monotonic() > deadline:
            raise TransientSourceError(f"The download from {host} was too slow and was stopped.")
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(max_bytes: int) -> str:
    limit = f"{max_bytes // (1024 * 1024)} MB" if max_bytes >= 1024 * 1024 else f"{max_bytes // 1024} KB"
    return f"The file is larger than the {limit} limit."


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class _PinnedConnection(HTTPSConnection):
    """Connects to the checked addresses; host name (SNI, certificate check, Host header) unchanged."""

    pinned: tuple[str, ...] = ()

    def _new_conn(self) -> socket.socket:
        error: Exception = NewConnectionError(self, "no address to connect to")
        for address in self.pinned:
            try:
                return urllib3_connection.create_connection(
                    (address, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options)
            except TimeoutError:
                error = ConnectTimeoutError(self, f"Connection to {self.host} timed out.")
            except OSError as e:
                error = NewConnectionError(self, f"Failed to establish a new connection: {e}")
        raise error


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, addresses: list[str]) -> None:
        self._addresses = tuple(addresses)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        connection = type("_Pinned", (_PinnedConnection,), {"pinned": self._addresses})
        pool = type("_PinnedPool", (HTTPSConnectionPool,), {"ConnectionCls": connection})
        self.poolmanager.pool_classes_by_scheme = {"https": pool}
