"""htmx conventions: a page includes each swappable region; a request with HX-Request gets the region alone."""
from __future__ import annotations

from flask import Response, make_response, render_template, request


def is_htmx() -> bool:
    # Only this header decides; which element asked never matters.
    return request.headers.get("HX-Request") == "true"


def page_or_fragment(page_template: str, fragment: str, code: int = 200, **context) -> Response:
    """The full page, or just the region when htmx asks; caches must keep the two apart."""
    template = fragment if is_htmx() else page_template
    response = make_response(render_template(template, **context), code)
    response.vary.add("HX-Request")
    return response


def redirect_to(url: str) -> Response:
    """After a form post: htmx follows HX-Redirect, a plain browser follows the 303."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    response = make_response("", 303)
    response.headers["Location"] = url
    return response
