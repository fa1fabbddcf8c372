"""Remote image sources: Dropbox links and paths, Adobe Firefly generation, the placeholder.

Self-contained: no Flask, no database. Each fetch returns bytes or raises one of the two
errors below. Their messages are shown to marketers, so they are sentences, and they never
carry a token, a client secret, an `rlkey`, an Authorization header or a link's query string
(links are shown as host + path only; see safe_fetch.shown()).
"""
from __future__ import annotations


class SourceError(Exception):
    """Permanent: the campaign fails and str(e) is shown to the marketer."""


class TransientSourceError(Exception):
    """Worth retrying later (rate limit, outage, timeout); str(e) says what happened.

    retry_after: seconds the remote service asked us to wait (Retry-After and the like), or None.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
