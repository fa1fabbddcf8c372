"""A faithful local Adobe Firefly v3 (PROTOCOLS.md §A, checklist §C1): one HTTPS app playing
IMS (/ims/token/v3), the Firefly API (/v3/...) and the S3 host of pre-signed outputs
(/presigned/images/<uuid>?X-Amz-...).

Standalone: python -m tests.fakes.firefly_fake --cert-dir /tmp/fakes-tls --port 8444
Point the client at it: ims_url={url}/ims/token/v3, api_base={url},
allowed_image_hosts={"localhost:<port>"}, ca_bundle=<cert-dir>/ca.pem.

Job outcomes (configure(job_outcome=...) or .job_outcome = ..., read when a job is created):
"succeeded", "succeeded:minimal" (optional fields left out), "failed:<error_code>", "timeout",
"cancelled", "canceled", "never" (stays running). Jobs go pending -> running -> outcome
after polls_to_finish polls.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from io import BytesIO
from typing import Any

from PIL import Image
from werkzeug.wrappers import Request, Response

from .server import FakeService, serve_main

CLIENT_ID, CLIENT_SECRET = "fake-firefly-client", "fake-firefly-secret"
MODELS = {"image3", "image3_custom", "image4_standard", "image4_ultra", "image4_custom"}
SIZES = {
    "image3": {(2048, 2048), (1024, 1024), (2304, 1792), (1792, 2304), (2688, 1536), (2688, 1512),
               (1344, 768), (1344, 756), (1152, 896), (896, 1152)},
    "image4": {(2048, 2048), (2304, 1792), (1792, 2304), (2688, 1536), (1440, 2560)},
}


@dataclass
class Job:
    id: str
    outcome: str
    outputs: list[dict[str, Any]]
    size: dict[str, int]
    content_class: str
    polls: int = 0
    cancelled: bool = False
    statuses: list[str] = field(default_factory=list)


class FireflyFake(FakeService):
    """Fake Adobe IMS + Firefly v3 + pre-signed S3 outputs on one HTTPS port."""

    ROUTES = frozenset({"ims", "generate", "generate_sync", "status", "cancel", "image"})
    CONTROL = FakeService.CONTROL | {"expire_images", "expire_tokens"}
    CONFIGURABLE = frozenset({"job_outcome", "polls_to_finish", "token_ttl", "full_size_images", "unsafe_words"})

    def __init__(self) -> None:
        self.clients = {CLIENT_ID: CLIENT_SECRET}
        self.job_outcome, self.polls_to_finish, self.token_ttl = "succeeded", 2, 86399
        self.full_size_images = False  # True: outputs at the requested size (slower), else 1/16 of it
        self.unsafe_words: list[str] = []  # prompts containing one get 451 prompt_unsafe at submit
        self.tokens: dict[str, float] = {}
        self.jobs: dict[str, Job] = {}
        self.images: dict[str, bytes] = {}
        self.clock_skew = 0.0  # added to "now" when checking pre-signed URLs
        self._signing_key = secrets.token_bytes(16)
        super().__init__()

    def expire_images(self) -> None:
        """Every pre-signed URL handed out so far has expired (403 AccessDenied XML)."""
        self.clock_skew += 7200

    def expire_tokens(self) -> None:
        """Every IMS token issued so far is now invalid (401 401013 on the next API call)."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    # -- routing --------------------------------------------------------------------------

    def route_of(self, request: Request) -> str | None:
        path = request.path
        for prefix, route in (("/ims/token/v3", "ims"), ("/v3/images/generate-async", "generate"),
                              ("/v3/images/generate", "generate_sync"), ("/v3/status/", "status"),
                              ("/v3/cancel/", "cancel"), ("/presigned/images/", "image")):
            if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
                return route
        return None

    def dispatch(self, route: str | None, request: Request) -> Response:
        if route == "ims":
            return self._ims(request)
        if route == "image":
            return self._image(request)
        if route is None:
            return _error(404, "not_found", "Resource not found")
        denied = self._check_api_auth(request)
        if denied is not None:
            return denied
        return {"generate": self._generate, "generate_sync": self._generate, "status": self._status,
                "cancel": self._cancel}[route](request)

    # -- IMS --------------------------------------------------------------------------------

    def _ims(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"error": "method_not_allowed"})
        fields = {**request.args.to_dict(), **request.form.to_dict()}  # the body wins over the query
        if fields.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type", "error_description": "unsupported grant_type"})
        if fields.get("client_id") not in self.clients:
            return _json(400, {"error": "invalid_client", "error_description": "invalid client_id parameter"})
        if not hmac.compare_digest(fields.get("client_secret", ""), self.clients[fields["client_id"]]):
            return _json(400, {"error": "invalid_client", "error_description": "invalid client_secret parameter"})
        if "firefly_api" not in fields.get("scope", "").split(","):
            return _json(400, {"error": "invalid_scope", "error_description": "invalid scope"})
        token = "eyJ" + secrets.token_urlsafe(40)
        with self.lock:
            self.tokens[token] = time.time() + self.token_ttl
        return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl})

    def _check_api_auth(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") not in self.clients:
            return _error(403, "403003", "Api Key is invalid")
        auth = request.headers.get("Authorization", "")
        with self.lock:
            expiry = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if expiry is None or expiry < time.time():
            return _error(401, "401013", "Oauth token is not valid")
        return None

    # -- generate ---------------------------------------------------------------------------

    def _generate(self, request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "method_not_allowed", "Method not allowed")
        if request.mimetype != "application/json":
            return _error(415, "invalid_content_type", "Content-Type must be application/json")
        raw = request.get_data()
        if not raw.strip():
            return _error(400, "empty_input_body", "The request body is empty")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "bad_request", "The body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "bad_request", "The body must be a JSON object")
        model = request.headers.get("x-model-version", "image3")
        problems = _validate(body, model)
        if problems:
            return _json(422, {"error_code": "validation_error", "message": "Request validation failed",
                               "validation_errors": problems})
        prompt = body["prompt"].lower()
        if any(word.lower() in prompt for word in self.unsafe_words):
            return _error(451, "prompt_unsafe", "The prompt was flagged by content moderation")
        job = self._new_job(body, model)
        if request.path.endswith("/generate"):  # legacy sync: the result inline
            return _json(200, {"size": job.size, "outputs": job.outputs, "contentClass": job.content_class})
        status_url, cancel_url = f"{self.base_url}/v3/status/{job.id}", f"{self.base_url}/v3/cancel/{job.id}"
        response = _json(202, {"jobId": job.id, "statusUrl": status_url, "cancelUrl": cancel_url})
        response.headers["Link"] = f'<{status_url}>; rel="status", <{cancel_url}>; rel="cancel"'
        return response

    def _new_job(self, body: dict[str, Any], model: str) -> Job:
        count = body.get("numVariations") or len(body.get("seeds") or []) or 1
        seeds = body.get("seeds") or [secrets.randbelow(10**6) for _ in range(count)]
        size = body.get("size") or {"width": 2048, "height": 2048}
        outputs = [{"seed": seed, "image": {"url": self._presign(self._make_image(size, seed))}} for seed in seeds]
        job_id = f"urn:ff:jobs:fake:{uuid.uuid4()}"
        job = Job(job_id, self.job_outcome, outputs, size, body.get("contentClass") or "photo")
        with self.lock:
            self.jobs[job_id] = job
        return job

    def _make_image(self, size: dict[str, int], seed: int) -> bytes:
        scale = 1 if self.full_size_images else 16
        colour = (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)
        out = BytesIO()
        Image.new("RGB", (size["width"] // scale, size["height"] // scale), colour).save(out, "JPEG", quality=85)
        return out.getvalue()

    def _presign(self, data: bytes) -> str:
        image_id = str(uuid.uuid4())
        with self.lock:
            self.images[image_id] = data
        date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        signature = self._sign(image_id, date, "3600")
        return (f"{self.base_url}/presigned/images/{image_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Date={date}&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}")

    def _sign(self, image_id: str, date: str, expires: str) -> str:
        return hmac.new(self._signing_key, f"{image_id}|{date}|{expires}".encode(), hashlib.sha256).hexdigest()

    # -- status / cancel --------------------------------------------------------------------

    def _status(self, request: Request) -> Response:
        if request.method != "GET":
            return _error(405, "method_not_allowed", "Method not allowed")
        with self.lock:
            job = self.jobs.get(request.path.removeprefix("/v3/status/"))
            if job is None:
                return _error(404, "unknown_job_id", "The job id is unknown.")
            job.polls += 1
            state = self._state(job)
        body: dict[str, Any] = {"jobId": job.id, "status": state}
        if state in ("pending", "running") and not job.outcome.endswith(":minimal"):
            body["progress"] = min(99, job.polls * 100 // (self.polls_to_finish + 1))
        elif state == "succeeded":
            result: dict[str, Any] = {"outputs": job.outputs}
            if not job.outcome.endswith(":minimal"):
                result.update(size=job.size, contentClass=job.content_class)
            body["result"] = result
        elif state == "failed":
            code = job.outcome.partition(":")[2] or "runtime_error"
            body.update(error_code=code, message=f"The job failed: {code}")
        elif state in ("timeout", "cancelled", "canceled"):
            body.update(error_code=f"job_{state}", message=f"The job ended: {state}")
        return _json(200, body)

    def _state(self, job: Job) -> str:
        if job.cancelled:
            return "cancelled"
        if job.outcome == "never" or job.polls <= self.polls_to_finish:
            return "pending" if job.polls == 1 else "running"
        return job.outcome.partition(":")[0]

    def _cancel(self, request: Request) -> Response:
        if request.method != "PUT":
            return _error(405, "method_not_allowed", "Method not allowed")
        with self.lock:
            job = self.jobs.get(request.path.removeprefix("/v3/cancel/"))
            if job is None:
                return _error(404, "unknown_job_id", "The job id is unknown.")
            if job.cancelled:
                return _error(409, "job_already_canceled", "The job is already cancelled.")
            if self._state(job) not in ("pending", "running"):
                return _error(409, "job_completed", "The job has already completed.")
            job.cancelled = True
        return Response(b"", 200)

    # -- the pre-signed S3 download -----------------------------------------------------------

    def _image(self, request: Request) -> Response:
        if "Authorization" in request.headers:  # S3: a query signature and a header are exclusive
            return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                                                     "query parameter, Signature query string parameter or the "
                                                     "Authorization header should be specified")
        image_id = request.path.removeprefix("/presigned/images/")
        args = request.args
        date, expires, signature = args.get("X-Amz-Date", ""), args.get("X-Amz-Expires", ""), args.get(
            "X-Amz-Signature", "")
        if not hmac.compare_digest(signature, self._sign(image_id, date, expires)):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
        signed_at = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
        if time.time() + self.clock_skew > signed_at + int(expires):
            return _s3_error(403, "AccessDenied", "Request has expired")
        with self.lock:
            data = self.images.get(image_id)
        if data is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(data, 200, content_type="image/jpeg")


def _validate(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """The schema breaches of a generate body, as 422 validation_errors entries."""
    problems: list[dict[str, Any]] = []

    def bad(field_name: str, msg: str, kind: str = "value_error") -> None:
        problems.append({"loc": ["body", field_name], "msg": msg, "type": kind})

    if model not in MODELS:
        problems.append({"loc": ["header", "x-model-version"], "msg": f"Unknown model version {model!r}",
                         "type": "enum"})
        return problems
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        bad("prompt", "Field required", "missing")
    elif not 1 <= len(prompt) <= 1024:
        bad("prompt", "String should have 1 to 1024 characters", "string_too_long")
    negative = body.get("negativePrompt")
    if negative is not None and (not isinstance(negative, str) or len(negative) > 1024 or model.endswith("_custom")):
        bad("negativePrompt", "negativePrompt must be at most 1024 characters and not with custom models")
    count = body.get("numVariations")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 4):
        bad("numVariations", "Input should be between 1 and 4")
    seeds = body.get("seeds")
    if seeds is not None:
        if (not isinstance(seeds, list) or not 1 <= len(seeds) <= 4 or len(set(map(str, seeds))) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            bad("seeds", "seeds must be 1 to 4 unique integers")
        elif isinstance(count, int) and count != len(seeds):
            bad("seeds", "The number of seeds must equal numVariations")
    size = body.get("size")
    if size is not None:
        family = "image4" if model.startswith("image4") else "image3"
        pair = (size.get("width"), size.get("height")) if isinstance(size, dict) else None
        if pair not in SIZES[family]:
            bad("size", f"Size {pair} is not supported by {model}")
    if body.get("contentClass") not in (None, "photo", "art"):
        bad("contentClass", "Input should be 'photo' or 'art'", "enum")
    intensity = body.get("visualIntensity")
    if intensity is not None and (not isinstance(intensity, int) or not 2 <= intensity <= 10):
        bad("visualIntensity", "Input should be between 2 and 10")
    if model.endswith("_custom") and not body.get("customModelId"):
        bad("customModelId", "Field required for custom models", "missing")
    return problems


def _json(status: int, body: dict[str, Any]) -> Response:
    response = Response(json.dumps(body), status)
    response.headers["Content-Type"] = "application/json"
    return response


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error_code": code, "message": message})


def _s3_error(status: int, code: str, message: str) -> Response:
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
           f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>")
    return Response(xml, status, content_type="application/xml")


if __name__ == "__main__":
    serve_main(FireflyFake)
