"""worker.cropping: window geometry, faces kept whole with headroom, subjects at edges, two
subjects, any size and mode. The real face is scikit-image's astronaut photo (inside its wheel)."""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFilter
from skimage import data as skdata

from worker.cropping import Analysis, analyse, choose_crop, choose_crops
from worker.boxes import RATIOS, Box, crop_box

# The astronaut's whole head in her 512x512 photo, hair top to chin, checked by eye on an overlay.
ASTRONAUT_HEAD = Box(148, 15, 152, 145)


def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


def background(size: tuple[int, int], seed: int = 3) -> Image.Image:
    """Soft, low-detail backdrop: a blurred field of colour blotches, as behind a studio subject."""
    rnd = random.Random(seed)
    im = Image.new("RGB", size, (120, 130, 140))
    draw = ImageDraw.Draw(im)
    for _ in range(30):
        x, y, r = rnd.randrange(size[0]), rnd.randrange(size[1]), rnd.randrange(20, max(21, min(size) // 2))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rnd.randrange(90, 170) for _ in range(3)))
    return im.filter(ImageFilter.GaussianBlur(max(size) / 40))


def object_image(size: int, seed: int = 5) -> Image.Image:
    """A detailed, colourful object: a disc of small saturated tiles."""
    rnd = random.Random(seed)
    tile = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(tile)
    step = max(4, size // 12)
    for x in range(0, size, step):
        for y in range(0, size, step):
            colour = (rnd.randrange(256), rnd.randrange(80), rnd.randrange(256))
            draw.rectangle((x, y, x + step - 1, y + step - 1), fill=colour)
    mask = Image.new("L", (size, size))
    ImageDraw.Draw(mask).ellipse((0, 0, size - 1, size - 1), fill=255)
    return tile, mask


def place(canvas: Image.Image, at: tuple[int, int], size: int, seed: int = 5) -> Box:
    tile, mask = object_image(size, seed)
    canvas.paste(tile, at, mask)
    return Box(at[0], at[1], size, size)


def contains(outer: Box, inner: Box) -> bool:
    return (outer.x <= inner.x and outer.y <= inner.y and inner.x + inner.w <= outer.x + outer.w
            and inner.y + inner.h <= outer.y + outer.h)


def shifted(b: Box, dx: int, dy: int) -> Box:
    return Box(b.x + dx, b.y + dy, b.w, b.h)


def assert_window(box: Box, width: int, height: int, ratio: str) -> None:
    ref = crop_box(width, height, ratio)
    assert (box.w, box.h) == (ref.w, ref.h)  # never smaller, never padded: crop_box's size
    assert 0 <= box.x <= width - box.w and 0 <= box.y <= height - box.h


# --- geometry -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(1600, 600), (600, 1600), (900, 900), (1001, 999), (4000, 3000), (37, 2000)])
def test_every_window_is_crop_box_sized_and_inside(size):
    im = background(size)
    place(im, (size[0] // 7, size[1] // 5), min(size) // 3)
    a = analyse(im, *size)
    crops = choose_crops(a)
    assert list(crops) == list(RATIOS)
    for ratio, box in crops.items():
        assert_window(box, *size, ratio)
        rw, rh = RATIOS[ratio]
        assert abs(box.w / box.h - rw / rh) <= 1 / min(box.w, box.h)  # the ratio's aspect, to a pixel


@pytest.mark.parametrize(("size", "ratio"), [((1080, 1920), "9:16"), ((1920, 1080), "16:9"), ((700, 700), "1:1"),
                                             ((540, 960), "9:16")])
def test_source_already_in_the_aspect_is_taken_whole(size, ratio):
    im = background(size)
    place(im, (0, 0), min(size) // 4)  # a subject in a corner must not shift a whole-image window
    assert choose_crop(analyse(im, *size), ratio) == Box(0, 0, *size)


def test_focal_point_wins_over_the_analysis():
    im = background((1600, 600))
    place(im, (1300, 150), 250)  # the subject is on the right...
    a = analyse(im, 1600, 600)
    box = choose_crop(a, "1:1", focal=(0.1, 0.5))  # ...the marketer asked for the left
    assert box == crop_box(1600, 600, "1:1", (0.1, 0.5)) == Box(0, 0, 600, 600)


# --- faces ----------------------------------------------------------------------------------

def test_the_astronauts_face_is_found_where_it_is():
    a = analyse(astronaut(), 512, 512)
    assert len(a.faces) == 1
    face = a.faces[0]
    # The detector's box: eyebrows to chin, so inside the hand-checked head give or take a few pixels.
    assert contains(Box(ASTRONAUT_HEAD.x - 5, ASTRONAUT_HEAD.y - 5, ASTRONAUT_HEAD.w + 10, ASTRONAUT_HEAD.h + 15), face)
    assert face.w * face.h >= 0.3 * ASTRONAUT_HEAD.w * ASTRONAUT_HEAD.h


def test_face_at_the_edge_of_a_wide_picture_is_kept_whole():
    canvas = background((1400, 512))
    canvas.paste(astronaut(), (888, 0))
    a = analyse(canvas, 1400, 512)
    head = shifted(ASTRONAUT_HEAD, 888, 0)
    assert len(a.faces) == 1
    for ratio in ("1:1", "9:16", "16:9"):
        box = choose_crop(a, ratio)
        assert contains(box, head), ratio
        centre = crop_box(1400, 512, ratio)
        assert centre.x + centre.w < head.x + head.w  # the old centre crop would have cut it


def test_face_low_in_a_tall_picture_is_kept_with_headroom():
    canvas = background((512, 1500))
    canvas.paste(astronaut(), (0, 900))
    a = analyse(canvas, 512, 1500)
    assert len(a.faces) == 1
    head = shifted(ASTRONAUT_HEAD, 0, 900)
    box = choose_crop(a, "16:9")  # 512x288: room for the head and a little more
    assert contains(box, head)
    assert box.y <= head.y - 10  # headroom above the hair, not a window flush with it


def test_a_face_outranks_a_brighter_object():
    canvas = background((1800, 512))
    canvas.paste(astronaut(), (0, 0))
    place(canvas, (1400, 60), 380)  # loud tiles at the other end
    a = analyse(canvas, 1800, 512)
    assert contains(choose_crop(a, "9:16"), ASTRONAUT_HEAD)
    assert contains(choose_crop(a, "1:1"), ASTRONAUT_HEAD)


def test_headroom_is_left_above_a_detected_face():
    a = Analysis(1000, 3000, [Box(400, 2000, 200, 200)], None)
    box = choose_crop(a, "16:9")  # 1000x562
    hair = 2000 - 0.5 * 200  # a head reaches about half a face above the detector's box
    assert box.y <= hair - 0.1 * 200 and box.y + box.h >= 2200


def test_a_face_bigger_than_the_window_keeps_the_face_not_the_hair():
    # Only the face itself fits the window: the hair above it is what gives way.
    a = Analysis(1000, 3000, [Box(300, 1000, 400, 400)], None)
    box = choose_crop(a, "16:9")  # 1000x562
    assert contains(box, Box(300, 1000, 400, 400))
    assert box.y + box.h == 1400  # the window ends at the chin, so as much above as possible shows


def test_faces_are_kept_together_when_they_fit():
    faces = [Box(100, 200, 120, 120), Box(700, 260, 100, 100)]
    a = Analysis(2400, 900, faces, None)
    box = choose_crop(a, "1:1")  # 900 wide: both heads (100-46 .. 800+22) fit
    assert all(contains(box, f) for f in faces)


def test_when_faces_cannot_all_fit_the_largest_is_kept_whole():
    faces = [Box(2000, 300, 200, 200), Box(100, 300, 120, 120)]
    a = Analysis(2400, 900, faces, None)
    box = choose_crop(a, "9:16")  # 506 wide
    assert contains(box, faces[0])
    assert not (box.x < faces[1].x + faces[1].w and faces[1].x < box.x + box.w)  # and no half face


# --- salient objects ------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "at", "ratio"), [
    ((1600, 600), (1330, 170), "1:1"),  # right edge of a wide picture
    ((1600, 600), (0, 300), "9:16"),  # left edge, low
    ((600, 1600), (200, 1330), "16:9"),  # bottom of a tall picture
    ((600, 1600), (320, 0), "1:1"),  # top right of a tall picture
    ((1000, 1000), (740, 0), "9:16"),  # a corner of a square
    ((1000, 1000), (0, 740), "16:9"),  # another corner
])
def test_object_near_an_edge_is_kept_whole(size, at, ratio):
    im = background(size)
    obj = place(im, at, 260)
    box = choose_crop(analyse(im, *size), ratio)
    assert contains(box, obj)
    assert not contains(crop_box(*size, ratio), obj)  # the old centre crop would have cut it


def test_subject_is_the_object_not_the_backdrop():
    im = background((1600, 600))
    obj = place(im, (1200, 100), 300)
    a = analyse(im, 1600, 600)
    assert a.subject is not None
    assert abs(a.subject.x + a.subject.w / 2 - (obj.x + obj.w / 2)) < 60
    assert abs(a.subject.y + a.subject.h / 2 - (obj.y + obj.h / 2)) < 60


def test_two_subjects_that_fit_are_both_kept():
    im = background((2000, 600))
    left, right = place(im, (300, 150), 250, seed=1), place(im, (1050, 200), 250, seed=2)
    box = choose_crop(analyse(im, 2000, 600), "16:9")  # 1067 wide: holds both (300..1300), not centred on them
    assert contains(box, left) and contains(box, right)


def test_two_subjects_that_cannot_both_fit_keep_one_whole():
    im = background((2000, 600))
    left, right = place(im, (0, 150), 300, seed=1), place(im, (1700, 150), 300, seed=2)
    box = choose_crop(analyse(im, 2000, 600), "1:1")
    assert contains(box, left) or contains(box, right)


def test_a_subject_bigger_than_the_window_keeps_a_part_of_it():
    im = background((2000, 600))
    obj = place(im, (900, 20), 560)  # wider than the 9:16 window (338)
    box = choose_crop(analyse(im, 2000, 600), "9:16")
    assert obj.x <= box.x and box.x + box.w <= obj.x + obj.w  # all of the window shows the subject


# --- any input ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "CMYK", "P", "1", "I;16", "I", "F", "RGBX", "YCbCr"])
def test_analyse_accepts_every_mode(mode):
    im = background((400, 300))
    place(im, (250, 100), 120)
    converted = im.convert(mode) if mode not in ("I;16", "I", "F") else im.convert("L").convert(mode)
    a = analyse(converted, 400, 300)
    for ratio, box in choose_crops(a).items():
        assert_window(box, 400, 300, ratio)


def test_transparent_pixels_count_as_the_white_they_render_as():
    im = Image.new("RGBA", (1200, 400), (0, 0, 0, 0))  # black but fully transparent: renders white
    tile, mask = object_image(300)
    im.paste(tile.convert("RGBA"), (880, 50), mask)
    assert contains(choose_crop(analyse(im, 1200, 400), "1:1"), Box(880, 50, 300, 300))


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (1, 3000), (3000, 2), (19, 19), (7, 5), (12000, 40)])
def test_analyse_copes_with_tiny_and_extreme_sizes(size):
    a = analyse(Image.new("RGB", size, (200, 30, 30)), *size)
    assert a.faces == []
    for ratio, box in choose_crops(a).items():
        assert_window(box, *size, ratio)


def test_huge_picture_is_analysed():
    im = Image.new("RGB", (6000, 4000), (128, 128, 128))
    place(im, (5000, 1000), 900)
    box = choose_crop(analyse(im, 6000, 4000), "9:16")
    assert contains(box, Box(5000, 1000, 900, 900))


def test_a_dct_scaled_decode_reports_full_resolution_boxes():
    full = background((1400, 512))
    full.paste(astronaut(), (888, 0))
    half = full.resize((700, 256), Image.Resampling.BOX)  # what a 1/2 JPEG draft decodes to
    a, b = analyse(half, 1400, 512), analyse(full, 1400, 512)
    assert len(a.faces) == len(b.faces) == 1
    fa, fb = a.faces[0], b.faces[0]
    assert abs(fa.x - fb.x) <= 6 and abs(fa.y - fb.y) <= 6 and abs(fa.w - fb.w) <= 8  # in full-resolution pixels
    assert contains(choose_crop(a, "9:16"), shifted(ASTRONAUT_HEAD, 888, 0))


def test_threads_may_analyse_at_once():
    canvas = background((1400, 512))
    canvas.paste(astronaut(), (888, 0))
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: analyse(canvas, 1400, 512).faces, range(8)))
    assert all(f == found[0] and len(f) == 1 for f in found)


def test_bad_source_size_is_refused():
    with pytest.raises(ValueError):
        analyse(Image.new("RGB", (10, 10)), 0, 10)


# --- properties -----------------------------------------------------------------------------

def boxes_in(width: int, height: int):
    return st.builds(
        lambda fx, fy, fw, fh: Box(int(fx * (width - 1)), int(fy * (height - 1)),
                                   max(1, int(fw * (width - int(fx * (width - 1))))),
                                   max(1, int(fh * (height - int(fy * (height - 1)))))),
        *(st.floats(0, 1) for _ in range(4)))


@st.composite
def analyses(draw):
    width, height = draw(st.integers(1, 8000)), draw(st.integers(1, 8000))
    faces = draw(st.lists(boxes_in(width, height), max_size=4))
    objects = draw(st.lists(boxes_in(width, height), max_size=4))
    with_map = draw(st.booleans())
    sal, f = None, min(1, 256 / max(width, height))
    if with_map:  # shaped like analyse()'s: longest side 256 at most
        seed = draw(st.integers(0, 2**32 - 1))
        shape = (max(1, round(height * f)), max(1, round(width * f)))
        sal = np.random.default_rng(seed).random(shape, dtype=np.float32)
    faces = sorted(faces, key=lambda b: -b.w * b.h)
    return Analysis(width, height, faces, objects[0] if objects else None, objects, sal, f)


@settings(max_examples=300, deadline=None, database=None)
@given(a=analyses(), ratio=st.sampled_from(list(RATIOS)))
def test_any_analysis_gives_an_exact_window_inside(a, ratio):
    assert_window(choose_crop(a, ratio), a.width, a.height, ratio)


@settings(max_examples=300, deadline=None, database=None)
@given(a=analyses(), ratio=st.sampled_from(list(RATIOS)), focal=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_focal_point_is_honoured_for_any_size(a, ratio, focal):
    box = choose_crop(a, ratio, focal)
    assert box == crop_box(a.width, a.height, ratio, focal)
    fx, fy = focal[0] * a.width, focal[1] * a.height
    # Inside the window, or the window is against the image edge nearest to it.
    assert box.x <= fx <= box.x + box.w or box.x in (0, a.width - box.w)
    assert box.y <= fy <= box.y + box.h or box.y in (0, a.height - box.h)


@settings(max_examples=300, deadline=None, database=None)
@given(a=analyses(), ratio=st.sampled_from(list(RATIOS)))
def test_the_largest_face_is_kept_whenever_the_window_can_hold_it(a, ratio):
    box = choose_crop(a, ratio)
    if a.faces and a.faces[0].w <= box.w and a.faces[0].h <= box.h:
        assert contains(box, a.faces[0])


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 700), height=st.integers(1, 700), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["RGB", "L", "RGBA", "LA", "CMYK"]), shrink=st.sampled_from([1, 2, 4, 8]))
def test_analyse_any_picture(width, height, seed, mode, shrink):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    im = Image.fromarray(pixels).convert(mode)
    decoded = im.resize((max(1, -(-width // shrink)), max(1, -(-height // shrink))))  # like a DCT-scaled decode
    a = analyse(decoded, width, height)
    for f in [*a.faces, *a.objects]:
        assert f.x >= 0 and f.y >= 0 and f.w >= 1 and f.h >= 1 and f.x + f.w <= width and f.y + f.h <= height
    for ratio, box in choose_crops(a).items():
        assert_window(box, width, height, ratio)
