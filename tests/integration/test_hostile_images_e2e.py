"""Hostile images through the whole stack: HTTP in, the real worker, HTTP and files out.

Every input (tests/integration/it_hostile.py) ends one of three ways, and never stays
pending or processing: refused at submit (415, nothing stored); `failed` with a reason a person
understands; or `completed` with exactly the three variants at their sizes, upright, in sRGB,
alpha flattened on white, served as re-encoded JPEGs (image/jpeg + nosniff) that carry no byte
of any payload the upload smuggled in. All cases of a stack are submitted in one batch (uploads
and `local` imports), then waited for together; afterwards the worker still serves a plain
campaign. A second, own embedded portal with a fake `gs` first on its PATH proves that no
PostScript/PDF input ever reaches Ghostscript (in the worker or in the web's library thumbnails).
"""
from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import it_hostile
import pytest
from it_hostile import MARKER, Case
from it_stack import BRIEF, Api, Stack, stop_all
from PIL import Image
from test_failures_e2e import assert_readable

pytestmark = pytest.mark.timeout(900)

CASES = it_hostile.cases()
SIZES = {"1:1": (1080, 1080), "9:16": (1080, 1920), "16:9": (1920, 1080)}
LOCAL_FOLDER = "hostile"
SETTLE_SECONDS = 420  # generous: 2 shared cores; the point is "ends", not "ends fast"


@dataclass
class Outcome:
    case: Case
    submit_status: int
    submit_body: dict
    final: dict | None  # None: never ended within SETTLE_SECONDS


@dataclass
class Batch:
    outcomes: dict[str, Outcome]
    ids_before: set[str]
    ids_after: set[str]
    seconds: float


def _submit(api: Api, case: Case) -> tuple[int, dict]:
    if case.route == "local":
        r = api.create({**BRIEF, "image_metadata": {"source_type": "local",
                                                    "source_path": f"{LOCAL_FOLDER}/{case.id}.jpg"}})
    else:
        r = api.upload(case.data, filename=case.filename, content_type="image/jpeg")
    try:
        body = r.json()
    except ValueError:
        body = {"raw": r.text[:300], "content_type": r.headers.get("Content-Type")}
    return r.status_code, body


def _settle(api: Api, ids: dict[str, str], timeout: float) -> dict[str, dict]:
    """Poll every campaign until it is completed or failed; what is left is missing from the answer."""
    finals: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(finals) < len(ids) and time.monotonic() < deadline:
        for case_id, campaign_id in ids.items():
            if case_id not in finals:
                body = api.campaign(campaign_id)
                if body["status"] in ("completed", "failed"):
                    finals[case_id] = body
        time.sleep(0.3)
    return finals


@pytest.fixture(scope="module")
def batch(stack: Stack) -> Batch:
    api, admin = stack.api("alice"), stack.api("admin")
    folder = stack.import_dir / LOCAL_FOLDER
    folder.mkdir(exist_ok=True)
    for case in CASES:
        if case.route == "local":
            (folder / f"{case.id}.jpg").write_bytes(case.data)
    ids_before = set(admin.all_campaign_ids())
    started = time.perf_counter()
    submitted = {case.id: (case, *_submit(api, case)) for case in CASES}
    accepted = {cid: body["id"] for cid, (_, status, body) in submitted.items() if status == 202}
    finals = _settle(api, accepted, SETTLE_SECONDS)
    seconds = time.perf_counter() - started
    print(f"\n[hostile] {stack.name}: {len(CASES)} inputs, {len(accepted)} accepted, settled in {seconds:.1f} s")
    outcomes = {cid: Outcome(case, status, body, finals.get(cid)) for cid, (case, status, body) in submitted.items()}
    return Batch(outcomes, ids_before, set(admin.all_campaign_ids()), seconds)


# ---------------------------------------------------------------------------- one test per input

@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_input(stack: Stack, batch: Batch, case: Case):
    outcome = batch.outcomes[case.id]
    if case.expect == "refused":
        _assert_refused(outcome)
        return
    assert outcome.submit_status == 202, f"{case.id}: {outcome.submit_status} {outcome.submit_body}"
    final = outcome.final
    assert final is not None, f"{case.id}: still pending/processing after {SETTLE_SECONDS} s (a lost campaign)"
    if case.expect == "failed":
        _assert_failed(stack, case, final)
    else:
        _assert_completed(stack, case, final)


def _assert_refused(outcome: Outcome) -> None:
    body = outcome.submit_body
    assert outcome.submit_status == 415, f"{outcome.case.id}: {outcome.submit_status} {body}"
    assert body.get("error") == "unsupported_media_type", body
    assert body.get("message") == "The file is not a JPEG, PNG or WebP image.", body


def _assert_failed(stack: Stack, case: Case, final: dict) -> None:
    assert final["status"] == "failed", f"{case.id}: {final['status']} {final['error_message']!r}"
    message = final["error_message"]
    assert_readable(message)
    assert re.search(case.message, message), f"{case.id}: {message!r} does not match {case.message!r}"
    assert final["variants"] == [] and "retry" in final["links"], final
    leftovers = sorted(p.name for p in stack.campaign_dir(final["id"]).glob("*")
                       if p.suffix == ".jpg" and "source" not in p.name)
    assert not leftovers, f"{case.id}: a failed campaign left outputs {leftovers}"


def _fetch(api: Api, path: str, content_type: str) -> bytes:
    r = api.get(path)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:200]}"
    assert r.headers["Content-Type"] == content_type, (path, r.headers["Content-Type"])
    assert r.headers.get("X-Content-Type-Options") == "nosniff", (path, dict(r.headers))
    assert MARKER not in r.content, f"{path} serves the uploaded payload"
    return r.content


def _assert_jpeg(data: bytes, size: tuple[int, int] | None = None, fits: tuple[int, int] | None = None) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and im.mode == "RGB", (im.format, im.mode)
    assert "exif" not in im.info and "progressive" not in im.info, sorted(im.info)
    if size is not None:
        assert im.size == size, (im.size, size)
    if fits is not None:
        assert im.width <= fits[0] and im.height <= fits[1], (im.size, fits)
    im.load()
    return im


def _assert_completed(stack: Stack, case: Case, final: dict) -> None:
    assert final["status"] == "completed", f"{case.id}: failed with {final['error_message']!r}"
    api = stack.api("alice")
    got = {v["ratio"]: v for v in final["variants"]}
    assert list(got) == list(SIZES), got
    variants = {}
    for ratio, v in got.items():
        assert (v["width"], v["height"]) == SIZES[ratio], v
        variants[ratio] = _assert_jpeg(_fetch(api, v["url"], "image/jpeg"), size=SIZES[ratio])
        _assert_jpeg(_fetch(api, v["preview_url"], "image/jpeg"), fits=(480, 480))
    _assert_jpeg(_fetch(api, f"/api/campaigns/{final['id']}/source", "image/jpeg"), fits=(1280, 1280))
    with zipfile.ZipFile(io.BytesIO(_fetch(api, final["links"]["zip"], "application/zip"))) as archive:
        assert len(archive.namelist()) == 3 and all(MARKER not in archive.read(n) for n in archive.namelist())
    for path in stack.campaign_dir(final["id"]).rglob("*.jpg"):  # every output on disk (not the kept upload)
        assert MARKER not in path.read_bytes(), path
    if case.pixels:
        assert (final["source"]["width"], final["source"]["height"]) == (it_hostile.W, it_hostile.H), final["source"]
    wide = variants["16:9"]
    for (x, y), colour in case.pixels.items():
        seen = wide.getpixel((x, y))
        assert all(abs(a - b) <= case.tolerance for a, b in zip(seen, colour, strict=True)), \
            f"{case.id}: 16:9 variant at {(x, y)} is {seen}, expected {colour} (±{case.tolerance})"
    if case.family == "hostile filenames":
        _assert_filename_harmless(stack, api, case, final)


def _assert_filename_harmless(stack: Stack, api: Api, case: Case, final: dict) -> None:
    page = api.get(f"/campaigns/{final['id']}")
    assert page.status_code == 200
    assert "<img src=x" not in page.text, "markup from a filename reached the page unescaped"
    if "<img" in case.filename:
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert final["image_metadata"]["filename"], final["image_metadata"]
    assert len(final["image_metadata"]["filename"]) <= 255
    campaign_dir = stack.campaign_dir(final["id"]).resolve()
    for root in (stack.storage_dir, stack.import_dir, stack.storage_dir.parent):
        strays = [p for p in root.rglob("*hostile-escape*") if campaign_dir not in p.resolve().parents]
        assert not strays, f"a filename chose where a file went: {strays}"
    assert not Path("/tmp/hostile-escape.jpg").exists() and not Path("/etc/hostile-escape.jpg").exists()


# ---------------------------------------------------------------------------- the batch as a whole

def test_refused_uploads_left_nothing_behind(stack: Stack, batch: Batch):
    accepted = {o.submit_body["id"] for o in batch.outcomes.values() if o.submit_status == 202}
    refused = [o for o in batch.outcomes.values() if o.submit_status != 202]
    assert refused and all(o.case.expect == "refused" for o in refused), [o.case.id for o in refused]
    assert batch.ids_after - batch.ids_before == accepted, "a refused request created a campaign"
    # Other modules' tests share the stack and may run between the batch and this test: compare the
    # folders with the campaigns there are now.
    folders = {p.name for p in (stack.storage_dir / "campaigns").iterdir()}
    campaigns = set(stack.api("admin").all_campaign_ids())
    assert folders <= campaigns, f"storage folders without a campaign: {folders - campaigns}"


def test_every_campaign_of_the_batch_ended(batch: Batch):
    stuck = [o.case.id for o in batch.outcomes.values() if o.submit_status == 202 and o.final is None]
    assert not stuck, f"never ended: {stuck}"
    expects = [o.case.expect for o in batch.outcomes.values()]
    counts = {k: expects.count(k) for k in ("refused", "failed", "completed")}
    print(f"\n[hostile] inputs tried: {len(batch.outcomes)} {counts}; settled in {batch.seconds:.1f} s")


def test_the_worker_serves_the_next_campaign(stack: Stack, batch: Batch):
    for proc in stack.procs:
        assert proc.popen.poll() is None, f"{proc.name} exited during the hostile batch\n{proc.tail()}"
    done = stack.api("bob").submit_and_wait(it_hostile.small_jpeg(seed=5), timeout=120).body
    assert done["status"] == "completed" and len(done["variants"]) == 3, done


# A JPEG comment (COM) is where a polyglot hides its payload; Pillow's writer would copy it from the
# source's info into every output unless told not to (jpeg_output.encode).
def _thumbnails(stack: Stack) -> dict[str, object]:
    folder = stack.import_dir / "hostile-thumbs"
    folder.mkdir(exist_ok=True)
    for case in CASES:
        (folder / f"{case.id}.jpg").write_bytes(case.data)
    api = stack.api("alice")
    params = {"folder": "hostile-thumbs", "per_page": 100}
    pages = api.get("/api/library", params=params).json()["pages"]
    images = [i for page in range(1, pages + 1)
              for i in api.get("/api/library", params={**params, "page": page}).json()["images"]]
    assert len(images) == len(CASES)
    by_name = {i["name"]: i for i in images}
    return {case.id: api.get(by_name[f"{case.id}.jpg"]["thumbnail_url"]) for case in CASES}


@pytest.fixture(scope="module")
def thumbnails(stack: Stack) -> dict[str, object]:
    return _thumbnails(stack)


def test_library_thumbnails_of_every_input(thumbnails):
    """The server library's picker decodes in the web process: every input copied there (as .jpg)
    gets a re-encoded thumbnail or a readable 422, never a 500 or the original bytes."""
    wrong = []
    for case in CASES:
        r = thumbnails[case.id]
        want = 200 if case.expect == "completed" else 422
        if r.status_code != want:
            wrong.append(f"{case.id}: {r.status_code} {r.text[:120]}")
        elif want == 200:
            assert r.headers["Content-Type"] == "image/jpeg" and r.headers["X-Content-Type-Options"] == "nosniff"
            assert MARKER not in r.content, case.id
            _assert_jpeg(r.content, fits=(320, 320))
        else:
            assert_readable(r.json()["message"])
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------- no Ghostscript, ever

TRAPPED = ("gs", "gsc", "gswin64c", "convert", "magick", "rsvg-convert", "inkscape", "heif-convert", "pdftoppm")
POSTSCRIPT_LIKE = ["eps", "eps-dos-binary", "postscript", "pdf"]


def _trap_dir(root: Path) -> tuple[Path, Path]:
    """A folder of fake converters (gs first among them) that only record that they ran."""
    bin_dir, marker = root / "trap-bin", root / "spawned.txt"
    bin_dir.mkdir()
    for name in TRAPPED:
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho \"{name} $*\" >> '{marker}'\nexit 1\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir, marker


@pytest.fixture(scope="module")
def trapped(tmp_path_factory):
    root = tmp_path_factory.mktemp("trapped_portal")
    bin_dir, marker = _trap_dir(root)
    portal = it_hostile.start_portal(root / "portal", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    try:
        yield portal, bin_dir, marker
    finally:
        stop_all([portal.proc])


def test_the_ghostscript_trap_springs_when_pillow_opens_eps_unrestricted(tmp_path):
    """Self-check of the trap: Pillow with every plugin does run `gs` for an EPS (so a clean
    marker in the next test means the portal never let it)."""
    bin_dir, marker = _trap_dir(tmp_path)
    code = "import io,sys; from PIL import Image; Image.open(io.BytesIO(sys.stdin.buffer.read())).load()"
    done = subprocess.run([sys.executable, "-c", code], input=it_hostile.eps(), capture_output=True,
                          env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, timeout=60)
    assert done.returncode != 0
    assert marker.read_text().startswith("gs "), marker.read_text() if marker.exists() else done.stderr


def test_no_converter_is_spawned_for_postscript_pdf_or_any_other_format(trapped):
    portal, _, marker = trapped
    api = Api(portal.base_url, "admin", portal.password)
    formats = it_hostile.other_formats()
    names = [*POSTSCRIPT_LIKE, *(n for n in formats if n not in POSTSCRIPT_LIKE)]
    for name in names:  # .jpg names, so the library lists them
        (portal.import_dir / f"{name}.jpg").write_bytes(formats[name])
    ids = {}
    for name in names:
        r = api.create({**BRIEF, "image_metadata": {"source_type": "local", "source_path": f"{name}.jpg"}})
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]
        up = api.upload(formats[name], filename=f"{name}.jpg")
        assert up.status_code == 415, (name, up.status_code, up.text[:200])
    listing = api.get("/api/library", params={"per_page": 100})
    assert listing.status_code == 200, listing.text
    listed = {i["name"]: i for i in listing.json()["images"]}
    for name in names:  # the picker's thumbnails decode in the web process: the same rule there
        thumb = api.get(listed[f"{name}.jpg"]["thumbnail_url"])
        assert thumb.status_code == 422, (name, thumb.status_code, thumb.text[:200])
        assert thumb.json()["message"] == "The file is not a JPEG, PNG or WebP image.", thumb.text
    for name, campaign_id in ids.items():
        final = api.wait(campaign_id, timeout=120).body
        assert final["status"] == "failed", (name, final["status"])
        assert final["error_message"] == "The file is not a JPEG, PNG or WebP image.", final
    assert not marker.exists(), f"an external converter was started: {marker.read_text()}"
    api.close()
