"""Generate an image with Adobe Firefly v3, async (PROTOCOLS.md §A).

IMS client-credentials token (cached per process until 5 minutes before it expires), then
POST /v3/images/generate-async, poll the statusUrl exactly as returned, and download the
pre-signed image at once through safe_fetch with no Adobe headers (S3 rejects a request
carrying both a signature and an Authorization header, §A5).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ..boxes import RATIOS
from ..image_header import sniff_format
from . import SourceError, TransientSourceError, safe_fetch

SIZES = {  # the sizes each model accepts (§A2)
    "image3": [(2048, 2048), (1024, 1024), (2304, 1792), (1792, 2304), (2688, 1536), (2688, 1512),
               (1344, 768), (1344, 756), (1152, 896), (896, 1152)],
    "image4": [(2048, 2048), (2304, 1792), (1792, 2304), (2688, 1536), (1440, 2560)],
}
UNSAFE = frozenset({"prompt_unsafe", "prompt_entity_denied", "input_media_unsafe", "output_media_unsafe",
                    "image_unsafe", "reference_image_unsafe_error", "legal_error"})
REFUSAL_REASONS = {
    "prompt_unsafe": "the prompt was flagged as unsafe",
    "prompt_entity_denied": "the prompt names a person, brand or work it may not depict",
    "input_media_unsafe": "a reference image was flagged as unsafe",
    "reference_image_unsafe_error": "a reference image was flagged as unsafe",
    "output_media_unsafe": "the generated image was flagged as unsafe",
    "image_unsafe": "the generated image was flagged as unsafe",
    "legal_error": "legal restrictions",
}
ACCOUNT_REASONS = {
    "quota_exhausted": "its generation quota is used up",
    "user_non_entitled": "it is not entitled to Firefly",
    "user_profile_denied": "its profile was denied",
    "invalid_ims_scope": "its credentials lack the Firefly scope",
    "403003": "its API key was rejected",
}
REFUSED = "Adobe Firefly refused this prompt: {}. Rephrase it and retry."
ACCOUNT = "The server's Adobe Firefly account cannot generate images now ({}); ask an administrator."
OPTIONS = frozenset({"contentClass", "negativePrompt", "seeds", "style", "structure", "visualIntensity",
                     "promptBiasingLocaleCode"})
TOKEN_MARGIN = 300.0  # seconds: get a new IMS token this long before the old one expires
TERMINAL_FAILURES = frozenset({"failed", "cancelled", "canceled", "cancel_pending", "timeout"})
_POLL_ANSWERS = frozenset({200, 404, 408, 429, 500, 502, 503, 504})
_POLL_HICCUPS = 3  # consecutive failed polls tolerated before giving up


def best_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The size whose worst ratio keeps the most of its output resolution: maximise, over sizes,
    the minimum over RATIOS of (largest crop of that ratio inside the size) / (output size).

    image3 and image4 both give 2048x2048: 1:1 crop 2048x2048 (x1.90 of 1080x1080), 9:16 crop
    1152x2048 (x1.07 of 1080x1920), 16:9 crop 2048x1152 (x1.07 of 1920x1080): min 1.067, the
    only size >= 1 for every ratio. Runners-up: 2304x1792 and 1792x2304 (0.933: the 9:16 resp.
    16:9 crop falls short), 2688x1536 (0.80), 1440x2560 (0.75), 1024x1024 (0.53).
    """
    def coverage(size: tuple[int, int]) -> float:
        w, h = size
        return min(min(w / ow, h / oh) for ow, oh in RATIOS.values())

    return max(sizes, key=coverage)


@dataclass(frozen=True)
class FireflySettings:
    client_id: str
    client_secret: str = field(repr=False)
    ims_url: str = "https://ims-na1.adobelogin.com/ims/token/v3"
    api_base: str = "https://firefly-api.adobe.io"
    scope: str = "openid,AdobeID,session,additional_info,read_organizations,firefly_api,ff_apis"
    model_version: str | None = "image3"  # sent as x-model-version; None: the API's default (image3)
    ca_bundle: str | None = None  # None: the default trust store
    timeout: float = 30.0  # connect and read timeout per request, seconds
    poll_interval: float = 1.0  # the guide polls about once a second
    deadline: float = 120.0  # seconds from submit to a finished job
    max_bytes: int = 50 * 1024 * 1024
    allow_private: bool = False  # tests only: let safe_fetch reach 127.0.0.1
    allowed_image_hosts: frozenset[str] = frozenset({".amazonaws.com"})  # where pre-signed outputs live


_tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (client_id, ims_url) -> (token, monotonic renew-at)
_tokens_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    global _tokens_lock
    _tokens_lock = threading.Lock()  # a fork while another thread held it must not deadlock the child


os.register_at_fork(after_in_child=_reset_lock_in_child)
_clock = time.monotonic  # the token cache's clock (tests move it)


def clear_token_cache() -> None:
    with _tokens_lock:
        _tokens.clear()


def generate(prompt: str, settings: FireflySettings, *, options: dict[str, Any] | None = None) -> bytes:
    """JPEG bytes of one image for prompt; SourceError / TransientSourceError otherwise."""
    body = _body(prompt, settings, options or {})
    deadline = time.monotonic() + settings.deadline
    http = safe_fetch.new_session(settings.ca_bundle)
    try:
        job = _json(_call(http, settings, "POST", f"{settings.api_base.rstrip('/')}/v3/images/generate-async",
                          body, accept=frozenset({202})))
        result = _wait(http, settings, job, deadline)
    finally:
        http.close()
    try:
        url = result["outputs"][0]["image"]["url"]
    except (KeyError, IndexError, TypeError):
        raise SourceError("Adobe Firefly finished without an image.") from None
    return _download(url, settings)


def _body(prompt: str, settings: FireflySettings, options: dict[str, Any]) -> dict[str, Any]:
    if not 1 <= len(prompt) <= 1024:
        raise SourceError("The prompt must be 1 to 1024 characters long.")
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValueError(f"unknown Firefly options: {sorted(unknown)}")
    family = "image4" if (settings.model_version or "").startswith("image4") else "image3"
    width, height = best_size(SIZES[family])
    return {"prompt": prompt, "numVariations": 1, "size": {"width": width, "height": height},
            "contentClass": "photo", **options}


def _call(http: requests.Session, settings: FireflySettings, method: str, url: str,
          body: dict | None = None, *, accept: frozenset[int] = frozenset({200})) -> requests.Response:
    """One authenticated API call: the answer if its status is in accept, else raised as our errors.
    A 401 gets one fresh token and one retry."""
    for _ in range(2):
        token = _token(http, settings)
        headers = {"x-api-key": settings.client_id, "Authorization": f"Bearer {token}"}
        if settings.model_version:
            headers["x-model-version"] = settings.model_version
        r = _send(http, method, url, settings, headers=headers, json=body)
        if r.status_code in accept:
            return r
        if r.status_code != 401:
            _raise_for(r)
        _forget(settings, token)
    raise SourceError(ACCOUNT.format("its access token was rejected"))


def _send(http: requests.Session, method: str, url: str, settings: FireflySettings, **kwargs) -> requests.Response:
    host = urlsplit(url).hostname
    try:
        return http.request(method, url, timeout=(settings.timeout, settings.timeout), allow_redirects=False,
                            **kwargs)
    except requests.exceptions.SSLError:
        raise SourceError(f"The secure connection to {host} could not be verified.") from None
    except requests.exceptions.Timeout:
        raise TransientSourceError(f"Adobe ({host}) did not answer in time.") from None
    except requests.exceptions.RequestException:
        raise TransientSourceError(f"Adobe ({host}) could not be reached.") from None


def _token(http: requests.Session, settings: FireflySettings) -> str:
    key = (settings.client_id, settings.ims_url)
    with _tokens_lock:  # held while fetching: concurrent tasks wait for one IMS call, not make N
        cached = _tokens.get(key)
        if cached and cached[1] > _clock():
            return cached[0]
        data = {"grant_type": "client_credentials", "client_id": settings.client_id,
                "client_secret": settings.client_secret, "scope": settings.scope}
        r = _send(http, "POST", settings.ims_url, settings, data=data)
        if r.status_code == 429 or r.status_code >= 500:
            raise TransientSourceError(f"Adobe sign-in is not available right now (HTTP {r.status_code}).",
                                       safe_fetch.parse_retry_after(r.headers.get("retry-after")))
        info = _json(r)
        if r.status_code != 200 or not isinstance(info.get("access_token"), str):
            error = str(info.get("error") or f"HTTP {r.status_code}")[:40]
            raise SourceError(ACCOUNT.format(f"Adobe sign-in refused its credentials: {error}"))
        lifetime = float(info.get("expires_in", 3600))
        # Renew 5 minutes before expiry (IMS tokens live 24 h); a short-lived one after half its life.
        _tokens[key] = (info["access_token"], _clock() + lifetime - min(TOKEN_MARGIN, lifetime / 2))
        return info["access_token"]


def _forget(settings: FireflySettings, token: str) -> None:
    with _tokens_lock:
        if _tokens.get((settings.client_id, settings.ims_url), ("",))[0] == token:
            del _tokens[(settings.client_id, settings.ims_url)]


def _json(r: requests.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _raise_for(r: requests.Response) -> None:
    info = _json(r)
    code = str(info.get("error_code") or "")
    status = r.status_code
    retry_after = safe_fetch.parse_retry_after(r.headers.get("retry-after"))
    if status == 451 or code in UNSAFE:
        raise SourceError(REFUSED.format(REFUSAL_REASONS.get(code) or _short(info.get("message")) or "unsafe content"))
    if status == 429:
        raise TransientSourceError("Adobe Firefly is rate-limiting this server; the image will be generated later.",
                                   retry_after)
    if status == 408 or status >= 500:
        raise TransientSourceError(f"Adobe Firefly is not available right now (HTTP {status}).", retry_after)
    if status == 403:
        access = r.headers.get("x-access-error") or code
        raise SourceError(ACCOUNT.format(ACCOUNT_REASONS.get(access, f"access refused: {access or 'HTTP 403'}")))
    if status == 422:
        details = "; ".join(_short(e.get("msg")) for e in info.get("validation_errors") or [] if isinstance(e, dict))
        raise SourceError(f"Adobe Firefly rejected the request: {details or _short(info.get('message')) or code}.")
    raise SourceError(f"Adobe Firefly rejected the request (HTTP {status}{', ' + code if code else ''}).")


def _short(text: Any) -> str:
    return str(text or "")[:160]


def _wait(http: requests.Session, settings: FireflySettings, job: dict[str, Any], deadline: float) -> dict:
    status_url = job.get("statusUrl")
    if not isinstance(status_url, str) or not _same_origin(status_url, settings.api_base):
        raise SourceError("Adobe Firefly answered with an unexpected job address.")
    hiccups = 0
    while True:
        delay = settings.poll_interval
        try:
            r = _call(http, settings, "GET", status_url, accept=_POLL_ANSWERS)
        except TransientSourceError:
            r = None  # a timeout or connection error: counted like a 5xx below
        if r is not None and r.status_code == 404:
            raise TransientSourceError("Adobe Firefly lost track of the generation job; it will be started again.")
        if r is None or r.status_code != 200:  # 408/429/5xx while polling: wait and poll again, a few times
            hiccups += 1
            if hiccups > _POLL_HICCUPS:
                if r is None:
                    raise TransientSourceError("Adobe Firefly stopped answering while generating the image.")
                _raise_for(r)
            if r is not None:
                delay = safe_fetch.parse_retry_after(r.headers.get("retry-after")) or delay
        else:
            hiccups = 0
            info = _json(r)
            state = info.get("status")
            if state == "succeeded":
                return info.get("result") or {}
            if state in TERMINAL_FAILURES:
                raise _job_failed(state, info)
        if time.monotonic() + delay > deadline:
            _cancel(http, settings, job)
            raise SourceError(f"Adobe Firefly did not finish within {settings.deadline:g} s. Try again later.")
        time.sleep(delay)


def _job_failed(state: str, info: dict[str, Any]) -> SourceError:
    code = str(info.get("error_code") or "")
    if code in UNSAFE:
        return SourceError(REFUSED.format(REFUSAL_REASONS[code]))
    if state == "timeout":
        return SourceError("Adobe Firefly timed out while generating the image. Try again later.")
    if state in ("cancelled", "canceled", "cancel_pending"):
        return SourceError("The Adobe Firefly job was cancelled before it finished.")
    detail = _short(info.get("message")) or code or "no reason given"
    return SourceError(f"Adobe Firefly could not generate the image ({detail}).")


def _cancel(http: requests.Session, settings: FireflySettings, job: dict[str, Any]) -> None:
    """Best effort: 409 job_completed and the like are fine, we are giving up anyway."""
    url = job.get("cancelUrl")
    if isinstance(url, str) and _same_origin(url, settings.api_base):
        with contextlib.suppress(SourceError, TransientSourceError):
            _call(http, settings, "PUT", url, accept=frozenset({200, 204, 404, 409, 410}))


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return a.scheme == "https" and (a.hostname, a.port) == (b.hostname, b.port)


def _download(url: str, settings: FireflySettings) -> bytes:
    got = safe_fetch.get(url, allowed_hosts=settings.allowed_image_hosts, max_bytes=settings.max_bytes,
                         timeout=settings.timeout, ca_bundle=settings.ca_bundle, allow_private=settings.allow_private)
    if got.status == 403:  # an expired signature: a new job gives a new URL
        raise TransientSourceError("The generated image expired before it could be downloaded; it will be "
                                   "generated again.")
    if got.status == 429 or got.status >= 500:
        raise TransientSourceError(f"The generated image could not be downloaded right now (HTTP {got.status}).",
                                   safe_fetch.parse_retry_after(got.headers.get("retry-after")))
    if got.status != 200:
        raise SourceError(f"The generated image could not be downloaded (HTTP {got.status}).")
    if sniff_format(got.body) is None:
        raise SourceError("Adobe Firefly returned something that is not an image.")
    return got.body
