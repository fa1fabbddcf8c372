"""Upload -> worker -> three formats -> downloads, on both stacks, over HTTP only."""
from __future__ import annotations

import io
import secrets
import time
import zipfile
from datetime import datetime

import it_images
import pytest
from it_stack import BRIEF, Stack
from PIL import Image, ImageChops, ImageStat

from worker.boxes import crop_box

pytestmark = pytest.mark.timeout(240)

FORMATS = [("1:1", 1080, 1080), ("9:16", 1080, 1920), ("16:9", 1920, 1080)]
SLUGS = {"1:1": "1x1", "9:16": "9x16", "16:9": "16x9"}
STATUS_RANK = {"pending": 0, "processing": 1, "completed": 2, "failed": 2}
STAGE_RANK = {None: 0, "fetching": 1, "rendering": 2, "saving": 3}


def box_of(crop: dict) -> tuple[int, int, int, int]:
    return crop["x"], crop["y"], crop["w"], crop["h"]


def as_tuple(box) -> tuple[int, int, int, int]:
    return box.x, box.y, box.w, box.h


def download_image(api, url: str) -> tuple[bytes, Image.Image]:
    r = api.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/jpeg"
    im = Image.open(io.BytesIO(r.content))
    im.load()
    return r.content, im


def assert_auto_crop(variant: dict, width: int, height: int) -> None:
    """The automatic crop: the largest window of the ratio (crop_box's size), placed inside the image."""
    x, y, w, h = box_of(variant["crop"])
    size = crop_box(width, height, variant["ratio"])
    assert (w, h) == (size.w, size.h), variant
    assert 0 <= x <= width - w and 0 <= y <= height - h, variant
    assert variant["crop_reason"] == "auto"


def assert_progress_in_order(seen: list[tuple[str, str | None, int]]) -> None:
    """Status and stage only move forward, progress never goes down."""
    keys = [(STATUS_RANK[status], STAGE_RANK.get(stage, 0) if status == "processing" else 0)
            for status, stage, _ in seen]
    assert keys == sorted(keys), f"status/stage went backwards: {seen}"
    progress = [p for _, _, p in seen]
    assert progress == sorted(progress), f"progress went backwards: {seen}"
    assert all(stage in STAGE_RANK for _, stage, _ in seen), f"unknown stage in {seen}"


# ---------------------------------------------------------------------------- the 12 MP photo

@pytest.fixture(scope="session")
def photo_campaign(stack: Stack):
    """alice uploads the 12 MP JPEG once per stack; the tests below look at the result."""
    api = stack.api("alice")
    data = it_images.photo_12mp()
    response = api.upload(data, filename="IMG_0001.JPG", name="Twelve megapixels")
    accepted = time.perf_counter()
    assert response.status_code == 202, response.text
    polled = api.wait(response.json()["id"], timeout=60, interval=0.05)
    return {"stack": stack, "source": data, "response": response, "polled": polled,
            "seconds": time.perf_counter() - accepted}


def test_upload_answers_202_then_completes_with_three_formats(photo_campaign, timings):
    stack, response, polled = photo_campaign["stack"], photo_campaign["response"], photo_campaign["polled"]
    body = response.json()
    campaign_id = body["id"]
    assert set(body) == {"id", "status", "links"}
    assert body["status"] == "pending"
    assert body["links"]["self"] == f"/api/campaigns/{campaign_id}"
    assert response.headers["Location"].endswith(f"/api/campaigns/{campaign_id}")

    final = polled.body
    assert final["status"] == "completed", final
    assert final["error_message"] is None and final["progress"] == 100 and final["stage"] is None
    assert_progress_in_order(polled.seen)
    assert polled.seen[-1][0] == "completed"

    seconds = photo_campaign["seconds"]
    assert final["created_at"] and final["finished_at"], final
    server = (datetime.fromisoformat(final["finished_at"].rstrip("Z"))
              - datetime.fromisoformat(final["created_at"].rstrip("Z"))).total_seconds()
    timings(f"{stack.name}",
            f"{stack.name:8s} 12 MP JPEG (4000x3000, {len(photo_campaign['source']) / 1e6:.1f} MB) "
            f"202 -> completed seen by a client polling every 50 ms: {seconds:.2f} s "
            f"(server created->finished {server:.2f} s; worker timings {final['timings']}; "
            f"stages seen {[(s, st) for s, st, _ in polled.seen]})")

    assert final["source"] == {"width": 4000, "height": 3000}
    assert final["image_metadata"]["source_type"] == "upload"
    assert final["image_metadata"]["filename"] == "IMG_0001.JPG"
    assert final["name"] == "Twelve megapixels"
    for key, value in BRIEF.items():
        assert final[key] == value
    got = [(v["ratio"], v["width"], v["height"]) for v in final["variants"]]
    assert got == FORMATS
    for variant in final["variants"]:
        assert_auto_crop(variant, 4000, 3000)
        assert variant["url"] == f"/api/campaigns/{campaign_id}/variants/{SLUGS[variant['ratio']]}"
    assert final["processed_images"] == {
        "ratio_1_1": final["variants"][0]["url"], "ratio_9_16": final["variants"][1]["url"],
        "ratio_16_9": final["variants"][2]["url"]}
    assert final["links"]["zip"] == f"/api/campaigns/{campaign_id}/variants.zip"


def test_variant_downloads_are_clean_q95_jpegs_of_the_right_region(photo_campaign):
    stack, final = photo_campaign["stack"], photo_campaign["polled"].body
    assert final["status"] == "completed", final
    api = stack.api("alice")
    q95 = it_images.q95_luma_table()
    with Image.open(io.BytesIO(photo_campaign["source"])) as source:
        source.load()
        for variant in final["variants"]:
            r = api.get(variant["url"])
            assert r.status_code == 200, r.text
            assert r.headers["Content-Type"] == "image/jpeg"
            assert r.headers["Content-Disposition"].startswith("attachment")
            assert int(r.headers["Content-Length"]) == len(r.content) == variant["bytes"]
            data = r.content
            assert b"Exif\x00\x00" not in data and b"IntegrationCam" not in data, "EXIF leaked"
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                assert im.format == "JPEG" and im.mode == "RGB"
                assert im.size == (variant["width"], variant["height"])
                assert not im.getexif() and "exif" not in im.info and "icc_profile" not in im.info
                assert "progressive" not in im.info and "progression" not in im.info, "not baseline"
                assert b"\xff\xc0" in data and b"\xff\xc2" not in data, "not a baseline (SOF0) JPEG"
                # Quality ~95: the luma table is about the q95 one (q90 would be twice as coarse,
                # q100 all ones). Equal for libjpeg(-turbo) at quality=95.
                luma = list(im.quantization[0])
                ratio = sum(luma) / sum(q95)
                assert 0.85 <= ratio <= 1.15 and luma[0] <= 3, \
                    f"{variant['ratio']}: luma quantization {luma} is not JPEG quality ~95"
                # The pixels are the reported crop of the source, scaled down.
                x, y, w, h = box_of(variant["crop"])
                expected = source.crop((x, y, x + w, y + h)).resize((96, 96), Image.Resampling.BOX)
                actual = im.resize((96, 96), Image.Resampling.BOX)
                diff = ImageStat.Stat(ImageChops.difference(expected, actual)).mean
                assert max(diff) < 6, f"{variant['ratio']} does not look like its crop: {diff}"


def test_zip_holds_exactly_the_three_jpegs(photo_campaign):
    stack, final = photo_campaign["stack"], photo_campaign["polled"].body
    assert final["status"] == "completed", final
    api = stack.api("alice")
    r = api.get(final["links"]["zip"])
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert ".zip" in r.headers["Content-Disposition"]
    singles = {v["ratio"]: api.get(v["url"]).content for v in final["variants"]}
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert len(names) == 3 and len(set(names)) == 3
        by_slug = {}
        for name in names:
            assert name.endswith(".jpg") and "/" not in name
            by_slug[name.rsplit("-", 1)[1].removesuffix(".jpg")] = archive.read(name)
    assert set(by_slug) == set(SLUGS.values())
    for ratio, width, height in FORMATS:
        data = by_slug[SLUGS[ratio]]
        assert data == singles[ratio], f"the ZIP's {ratio} differs from its download"
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.size == (width, height)


# ---------------------------------------------------------------------------- focal point

SQUARE = (2600, 300, 200, 200)  # x, y, w, h in a 3200x1800 source: near the top-right corner
FOCAL_SOURCE = (3200, 1800)


@pytest.mark.timeout(120)
def test_focal_point_picks_the_crop_and_the_square_lands_where_computed(stack: Stack):
    sw, sh = FOCAL_SOURCE
    sx, sy, sq_w, sq_h = SQUARE
    cx, cy = sx + sq_w / 2, sy + sq_h / 2
    focal = (cx / sw, cy / sh)
    # Without the focal point the 9:16 crop would miss the square: the test can tell.
    centre = crop_box(sw, sh, "9:16")
    assert not (centre.x <= sx and sx + sq_w <= centre.x + centre.w)

    api = stack.api("alice")
    polled = api.submit_and_wait(it_images.focal_square(FOCAL_SOURCE, SQUARE), filename="focal.jpg",
                                 focal_x=focal[0], focal_y=focal[1])
    assert_square_kept_around(api, polled.body, focal)


@pytest.mark.timeout(120)
def test_moving_the_focal_point_through_the_api_renders_again_around_it(stack: Stack):
    sw, sh = FOCAL_SOURCE
    sx, sy, sq_w, sq_h = SQUARE
    focal = ((sx + sq_w / 2) / sw, (sy + sq_h / 2) / sh)
    api = stack.api("alice")
    first = api.submit_and_wait(it_images.focal_square(FOCAL_SOURCE, SQUARE), filename="plain.jpg").body
    assert first["status"] == "completed" and first["focal_x"] is None, first
    r = api.request("PATCH", f"/api/campaigns/{first['id']}", json={"focal_x": focal[0], "focal_y": focal[1]})
    assert r.status_code == 202 and r.json()["status"] == "pending", r.text
    final = api.wait(first["id"]).body
    assert final["attempt"] == 1 and final["finished_at"] != first["finished_at"], "it did not render again"
    assert_square_kept_around(api, final, focal)


def assert_square_kept_around(api, final: dict, focal: tuple[float, float]) -> None:
    """Every crop is crop_box's around the focal point, holds the square, and shows it where computed."""
    sw, sh = FOCAL_SOURCE
    sx, sy, sq_w, sq_h = SQUARE
    cx, cy = sx + sq_w / 2, sy + sq_h / 2
    assert final["status"] == "completed", final
    assert final["focal_x"] == pytest.approx(focal[0]) and final["focal_y"] == pytest.approx(focal[1])
    assert len(final["variants"]) == 3
    for variant in final["variants"]:
        ratio = variant["ratio"]
        expected = crop_box(sw, sh, ratio, focal)
        assert box_of(variant["crop"]) == as_tuple(expected), ratio
        assert variant["crop_reason"] == "focal"
        x, y, w, h = box_of(variant["crop"])
        assert x <= sx and sx + sq_w <= x + w and y <= sy and sy + sq_h <= y + h, \
            f"{ratio} crop {variant['crop']} does not contain the square"
        _, im = download_image(api, variant["url"])
        with im:
            ow, oh = im.size
            scale_x, scale_y = ow / w, oh / h
            at = (int((cx - x) * scale_x), int((cy - y) * scale_y))
            assert it_images.close(im.getpixel(at), it_images.MAGENTA, 30), \
                f"{ratio}: pixel {at} is {im.getpixel(at)}, not the magenta square"
            # ...and only there: the far corner of the output is the grey background.
            far = (0 if at[0] > ow / 2 else ow - 1, oh - 1 if at[1] < oh / 2 else 0)
            assert it_images.close(im.getpixel(far), it_images.GREY, 30), f"{ratio}: {far}"


# ---------------------------------------------------------------------------- EXIF orientation

UPRIGHT = (2400, 1600)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("source_type,orientation", [("local", 6), ("upload", 8)])
def test_exif_orientation_is_applied_to_every_output(stack: Stack, source_type: str, orientation: int):
    upright = it_images.quadrants(UPRIGHT)
    data = it_images.oriented_jpeg(upright, orientation)
    api = stack.api("alice")
    if source_type == "local":
        relative = f"sub/photo-{orientation}-{secrets.token_hex(4)}.jpg"
        target = stack.import_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        body = {**BRIEF, "image_metadata": {"source_type": "local", "source_path": relative}}
        r = api.create(body)  # exactly the original design's JSON body
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "pending"
        polled = api.wait(r.json()["id"])
        assert polled.body["image_metadata"]["source_path"] == relative
    else:
        polled = api.submit_and_wait(data, filename=f"rotated-{orientation}.jpg")
    final = polled.body
    assert final["status"] == "completed", final
    assert final["image_metadata"]["source_type"] == source_type
    assert final["source"] == {"width": UPRIGHT[0], "height": UPRIGHT[1]}, "EXIF orientation ignored"
    quadrant = {(True, True): it_images.RED, (False, True): it_images.GREEN,
                (True, False): it_images.BLUE, (False, False): it_images.YELLOW}  # (left, top)
    for variant in final["variants"]:
        assert_auto_crop(variant, *UPRIGHT)
        x, y, w, h = box_of(variant["crop"])
        _, im = download_image(api, variant["url"])
        with im:
            assert im.size == (variant["width"], variant["height"])
            for fx in (0.1, 0.3, 0.5, 0.7, 0.9):
                for fy in (0.1, 0.3, 0.5, 0.7, 0.9):
                    sx, sy = x + fx * w, y + fy * h  # where this output pixel comes from in the source
                    if min(abs(sx - UPRIGHT[0] / 2), abs(sy - UPRIGHT[1] / 2)) < 40:
                        continue  # too near a quadrant edge to tell
                    colour = quadrant[(sx < UPRIGHT[0] / 2, sy < UPRIGHT[1] / 2)]
                    at = (int(fx * im.width), int(fy * im.height))
                    assert it_images.close(im.getpixel(at), colour), \
                        f"{variant['ratio']} at {at}: {im.getpixel(at)} is not {colour}: wrongly oriented"
    # The source preview (for drawing crop boxes on) is upright too.
    _, preview = download_image(api, f"/api/campaigns/{final['id']}/source")
    with preview:
        assert preview.width > preview.height
        assert it_images.close(preview.getpixel((preview.width // 4, preview.height // 4)), it_images.RED)
