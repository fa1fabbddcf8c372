"""What the browser tests do on pages: fill the brief, drop files, watch the network and console."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from playwright.sync_api import ConsoleMessage, Page, Request, Response

CAMPAIGN_URL = re.compile(r"/campaigns/(?P<id>[0-9a-f]{32})$")

BRIEF = {
    "#f-name": "Browser summer launch",
    "#f-description": "Summer 2025 marketing campaign",
    "#f-target_market": "Young adults aged 18-35",
    "#f-campaign_message": "Make this summer unforgettable!",
    "#f-products_description": "Premium beach products",
}


def fill_brief(page: Page, **overrides: str) -> dict[str, str]:
    """Type the brief into the form; overrides are keyed by field name (description=...)."""
    values = {**BRIEF, **{f"#f-{k}": v for k, v in overrides.items()}}
    for selector, value in values.items():
        page.fill(selector, value)
    return values


_MAKE_TRANSFER = """([b64, name, type, size]) => {
    const parts = b64 !== null ? [Uint8Array.from(atob(b64), c => c.charCodeAt(0))]
                               : [new Uint8Array(size)];
    const transfer = new DataTransfer();
    transfer.items.add(new File(parts, name, {type}));
    return transfer;
}"""


def drop_file(page: Page, data: bytes | None, name: str, mime: str, size: int = 0,
              target: str = ".dropzone") -> None:
    """Drop one file on the drop zone, as a person dragging it from their desktop does.

    data=None makes a file of `size` zero bytes inside the page (nothing big crosses the wire).
    """
    b64 = base64.b64encode(data).decode() if data is not None else None
    transfer = page.evaluate_handle(_MAKE_TRANSFER, [b64, name, mime, size])
    try:
        page.dispatch_event(target, "dragenter", {"dataTransfer": transfer})
        page.dispatch_event(target, "dragover", {"dataTransfer": transfer})
        page.dispatch_event(target, "drop", {"dataTransfer": transfer})
    finally:
        transfer.dispose()


def campaign_id_of(page: Page) -> str:
    found = CAMPAIGN_URL.search(page.url)
    assert found, f"not on a campaign page: {page.url}"
    return found.group("id")


def mark_page(page: Page) -> None:
    """A marker that only survives if the document is never reloaded or navigated away."""
    page.evaluate("window.__marker = 1")


def still_marked(page: Page) -> bool:
    return page.evaluate("window.__marker === 1")


@dataclass
class Watch:
    """Everything that went wrong on a page: console errors, script errors, failed requests."""
    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)

    def attach(self, page: Page) -> Watch:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.on("requestfailed", self._request_failed)
        page.on("request", self._request)
        page.on("response", self._response)
        return self

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(f"console: {message.text} ({message.location.get('url')})")

    def _request(self, request: Request) -> None:
        self.requests.append(request)

    def _request_failed(self, request: Request) -> None:
        # ERR_ABORTED is the browser cancelling a request because the test navigated away
        # (a lazy image still loading), not something broken on the page.
        if request.failure != "net::ERR_ABORTED":
            self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        self.responses.append(response)
        if response.status >= 400:
            self.failed.append(f"{response.request.method} {response.url}: HTTP {response.status}")

    def problems(self) -> list[str]:
        return self.console + self.failed

    def requests_to(self, pattern: str, method: str | None = None) -> list[Request]:
        return [r for r in self.requests
                if re.search(pattern, r.url) and (method is None or r.method == method)]

    def clear(self) -> None:
        self.console.clear()
        self.failed.clear()
        self.requests.clear()
        self.responses.clear()
