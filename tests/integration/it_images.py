"""Test images made in code with Pillow: nothing binary is checked in.

Named it_images (not images) so it cannot shadow another test folder's helper
module under pytest's rootdir-style (prepend) imports.
"""
from __future__ import annotations

import io
import random
from functools import cache

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

ORIENTATION = 0x0112
# What ImageOps.exif_transpose applies for an orientation, inverted: stored = upright.transpose(this).
_STORE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}

# Colours far apart in every channel, so JPEG noise never confuses them.
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 30)
MAGENTA, GREY = (255, 0, 255), (128, 128, 128)


def jpeg_bytes(im: Image.Image, quality: int = 92, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    kwargs = {"exif": exif.tobytes()} if exif is not None else {}
    im.save(out, "JPEG", quality=quality, **kwargs)
    return out.getvalue()


@cache
def photo_12mp() -> bytes:
    """A 4000x3000 camera-like JPEG (gradients, shapes, sensor noise, camera EXIF), ~5 MB."""
    w, h = 4000, 3000
    gx = Image.linear_gradient("L").rotate(90).resize((w, h))
    gy = Image.linear_gradient("L").resize((w, h))
    im = Image.merge("RGB", (gx, gy, Image.blend(gx, gy, 0.5).point(lambda v: 255 - v)))
    draw = ImageDraw.Draw(im)
    rnd = random.Random(12)
    for _ in range(80):
        x, y, s = rnd.randrange(w), rnd.randrange(h), rnd.randrange(50, 700)
        draw.ellipse((x, y, x + s, y + s), fill=tuple(rnd.randrange(256) for _ in range(3)))
    im = im.filter(ImageFilter.BoxBlur(3))
    noise = Image.merge("RGB", [Image.effect_noise((w, h), 10)] * 3)
    im = ImageChops.add(im, noise, offset=-128)
    exif = Image.Exif()
    exif[0x010F] = "IntegrationCam"  # Make
    exif[0x0110] = "IT-12"  # Model
    exif[0x0131] = "it_images.py"  # Software
    exif[ORIENTATION] = 1
    return jpeg_bytes(im, quality=92, exif=exif)


def small_photo(seed: int = 0, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A quick, valid JPEG for tests that only need some campaign to complete."""
    rnd = random.Random(seed)
    im = Image.new("RGB", size, tuple(rnd.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(10):
        x, y, s = rnd.randrange(size[0]), rnd.randrange(size[1]), rnd.randrange(40, 400)
        draw.rectangle((x, y, x + s, y + s), fill=tuple(rnd.randrange(256) for _ in range(3)))
    return jpeg_bytes(im)


def quadrants(size: tuple[int, int]) -> Image.Image:
    """Upright image: red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    w, h = size
    im = Image.new("RGB", size, RED)
    draw = ImageDraw.Draw(im)
    draw.rectangle((w // 2, 0, w - 1, h // 2 - 1), fill=GREEN)
    draw.rectangle((0, h // 2, w // 2 - 1, h - 1), fill=BLUE)
    draw.rectangle((w // 2, h // 2, w - 1, h - 1), fill=YELLOW)
    return im


def oriented_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """Store `upright` rotated, with the EXIF Orientation that tells a viewer to undo it."""
    stored = upright.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    data = jpeg_bytes(stored, quality=95, exif=exif)
    # Self-check of the fixture: a correct viewer shows the upright image again.
    with Image.open(io.BytesIO(data)) as check:
        assert check.size == stored.size != upright.size
        shown = ImageOps.exif_transpose(check)
    assert shown.size == upright.size
    for fx, fy in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        at = (int(fx * upright.width), int(fy * upright.height))
        assert close(shown.getpixel(at), upright.getpixel(at)), "fixture orientation is wrong"
    return data


def focal_square(size: tuple[int, int], square: tuple[int, int, int, int]) -> bytes:
    """Flat grey image with one magenta square (x, y, w, h)."""
    im = Image.new("RGB", size, GREY)
    x, y, w, h = square
    ImageDraw.Draw(im).rectangle((x, y, x + w - 1, y + h - 1), fill=MAGENTA)
    return jpeg_bytes(im, quality=95)


def truncated_jpeg() -> bytes:
    """A JPEG cut off halfway through its scan data: the header parses, the pixels do not."""
    data = small_photo(seed=99, size=(1200, 900))
    return data[: len(data) // 2]


def gif_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("P", (64, 64), 3).save(out, "GIF")
    return out.getvalue()


def q95_luma_table() -> list[int]:
    """The luminance quantization table libjpeg writes at quality 95 (as Pillow reports it)."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), GREY).save(out, "JPEG", quality=95)
    with Image.open(io.BytesIO(out.getvalue())) as im:
        return list(im.quantization[0])


def close(a, b, tolerance: int = 40) -> bool:
    return all(abs(int(x) - int(y)) <= tolerance for x, y in zip(a[:3], b[:3], strict=True))
