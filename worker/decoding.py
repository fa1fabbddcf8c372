"""Decode an upload once into memory, and map crop boxes onto the decoded pixels.

Everything that can be learnt from the header is decided first (worker/image_header.py: format,
size caps, orientation, colour profile; worker/boxes.py: the crop boxes), then libvips decodes
the pixels once, shrinking a big JPEG on load where its crops allow. The pixels stay in their
stored orientation: worker/imaging.py turns each output upright, which is cheaper than turning
the whole source.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import pyvips  # a hard dependency: without libvips the worker must not start, not render slowly

from . import image_header as header
from .boxes import RATIOS, Box, boxes, crop_box
from .image_header import ORIENT, ImageRejected

# One libvips thread: a Celery pool runs one child per core and each renders one image at a time,
# so libvips' own pool (a thread per core) would only fight the other children for the cores.
if "VIPS_CONCURRENCY" not in os.environ:
    pyvips.concurrency_set(1)
# No operation cache: every upload is new bytes, and a cached operation keeps its pixels alive.
pyvips.cache_set_max(0)
# Defence in depth: we call the JPEG/PNG/WebP loaders by name, but no path may reach the others.
pyvips.block_untrusted_set(True)
# libvips reports every thread pool it finishes and every resize's residual scale at INFO: eight
# lines per campaign in the worker's log that tell an operator nothing. Its warnings still show.
logging.getLogger("pyvips").setLevel(logging.WARNING)

# JPEGs larger than this are DCT-scaled while decoding (libvips' shrink-on-load), no further than
# each crop keeps DRAFT_OVERSAMPLE source pixels per output pixel. A 24 MP camera stays whole: DCT
# scaling's own filter costs the pixels ~11 dB (42.7 instead of 53.8 dB against a full-resolution
# LANCZOS render, bench/README.md) for ~25% less CPU. Above it, the decoded copy stays bounded:
# at most ~4x this many bytes (3 per pixel), whatever the upload's size.
FULL_DECODE_PIXELS = 25_000_000
DRAFT_OVERSAMPLE = 1.0

# Named loaders only: libvips' sniffing loaders would also open formats we do not accept.
_LOADERS = {"JPEG": pyvips.Image.jpegload_buffer, "PNG": pyvips.Image.pngload_buffer,
            "WEBP": pyvips.Image.webpload_buffer}


@dataclass(frozen=True)
class Source:
    pixels: pyvips.Image  # in memory, as stored (not yet oriented), 8-bit, alpha flattened on white
    mode: str  # the Pillow mode of those pixels: L, RGB or CMYK
    width: int  # full-resolution oriented size, the frame crop boxes live in
    height: int
    orientation: int  # EXIF 1-8
    step: int  # source pixels per decoded pixel: the JPEG DCT denominator, else 1
    icc: bytes | None


def decode_scale(width: int, height: int) -> float:
    """The JPEG DCT scale (1, 1/2, 1/4 or 1/8) imaging.render() decodes a width x height source at."""
    return 1 / _dct_denominator(width, height, [crop_box(width, height, r) for r in RATIOS])


def _dct_denominator(width: int, height: int, windows: list[Box]) -> int:
    """The least shrink that brings the decode within FULL_DECODE_PIXELS, or failing that the most
    libjpeg may shrink while every crop keeps at least its output's pixels (times DRAFT_OVERSAMPLE).
    The scale is uniform, so raw and oriented sizes give the same answer."""
    need = max(min(1.0, DRAFT_OVERSAMPLE * out[0] / box.w) for out, box in zip(RATIOS.values(), windows, strict=True))
    fits = min(width // math.ceil(width * need), height // math.ceil(height * need))
    allowed = [d for d in (1, 2, 4, 8) if fits >= d]
    return next((d for d in allowed if width * height <= FULL_DECODE_PIXELS * d * d), allowed[-1])


def decode(data: bytes, fmt: str, focal: tuple[float, float] | None, crops: dict[str, Box],
           max_pixels: int, max_side: int) -> tuple[Source, list[Box]]:
    """Everything from the header first (caps, orientation, crops), then libvips decodes once."""
    with header.open_image(data, fmt, max_pixels) as im:
        header.check_size(im.width, im.height, max_pixels, max_side)  # header only: nothing decoded yet
        orientation = header.orientation(im, fmt, data)
        icc = im.info.get("icc_profile")
        stored = im.size
    swap = ORIENT[orientation][1]
    width, height = (stored[1], stored[0]) if swap else stored
    chosen = boxes(width, height, focal, crops)
    step = _dct_denominator(width, height, chosen) if fmt == "JPEG" else 1
    pixels, mode = _load_pixels(data, fmt, step)
    return Source(pixels, mode, width, height, orientation, step, icc), chosen


def _load_pixels(data: bytes, fmt: str, step: int) -> tuple[pyvips.Image, str]:
    """Decode once into memory, shrunk on load by `step` (JPEG only), brought to 8-bit L, RGB or
    CMYK. fail_on="error": a truncated or corrupt file fails here instead of rendering grey."""
    options = {"shrink": step} if step > 1 else {}
    try:
        # Sequential: the decoder streams into the one in-memory copy instead of a buffer of its own.
        image = _LOADERS[fmt](data, access="sequential", fail_on="error", **options)
        image, mode = _eight_bit_opaque(image)
        return image.copy_memory(), mode
    except pyvips.Error as e:
        if "out of memory" in str(e):
            raise MemoryError(str(e)) from e  # the worker's memory ceiling, not a damaged file
        raise ImageRejected(header.DAMAGED) from e


def _eight_bit_opaque(image: pyvips.Image) -> tuple[pyvips.Image, str]:
    """Lazy steps, run while decoding: 16-bit scaled (not clipped) to 8, alpha flattened on white.
    Flattening before resizing equals resizing premultiplied pixels and flattening after."""
    if image.format == "ushort":
        image = (image / 257).rint().cast("uchar")
    elif image.format != "uchar":
        raise ImageRejected(f"The image uses a sample format ({image.format}) we cannot convert; "
                            "please export it as an 8-bit RGB JPEG or PNG.")
    if image.hasalpha():
        # max_alpha: a 16-bit source cast to 8 bits keeps its 16-bit interpretation, which
        # would make flatten() read alpha 255 as nearly transparent (a black picture).
        image = image.flatten(background=[255] * (image.bands - 1), max_alpha=255).cast("uchar")
    if image.interpretation == "cmyk" and image.bands == 4:
        return image, "CMYK"
    if image.bands in (1, 3):
        return image, "L" if image.bands == 1 else "RGB"
    raise ImageRejected(f"The image has {image.bands} colour channels, which we cannot convert; "
                        "please export it as an RGB JPEG or PNG.")


# --- geometry: oriented boxes <-> the stored pixels libvips decoded ---------------------------

def stored_box(src: Source, box: Box) -> Box:
    """The box in stored (not yet oriented) source pixels."""
    _, swap, flip_x, flip_y = ORIENT[src.orientation]
    x = src.width - box.x - box.w if flip_x else box.x
    y = src.height - box.y - box.h if flip_y else box.y
    return Box(y, x, box.h, box.w) if swap else Box(x, y, box.w, box.h)


def _oriented_box(src: Source, box: Box) -> Box:
    """The inverse of stored_box."""
    _, swap, flip_x, flip_y = ORIENT[src.orientation]
    if swap:
        box = Box(box.y, box.x, box.h, box.w)
    x = src.width - box.x - box.w if flip_x else box.x
    y = src.height - box.y - box.h if flip_y else box.y
    return Box(x, y, box.w, box.h)


def on_grid(src: Source, box: Box) -> Box:
    """The box with its stored edges on the decoded grid: a DCT-scaled pixel is step x step source
    pixels, and a box between them would be rendered up to half a decoded pixel off (~31 dB)."""
    if src.step == 1:
        return box
    s = stored_box(src, box)
    stored_w, stored_h = (src.height, src.width) if ORIENT[src.orientation][1] else (src.width, src.height)
    x0, x1 = _snap(s.x, s.x + s.w, stored_w, src.step)
    y0, y1 = _snap(s.y, s.y + s.h, stored_h, src.step)
    return _oriented_box(src, Box(x0, y0, x1 - x0, y1 - y0))


def _snap(start: int, end: int, size: int, step: int) -> tuple[int, int]:
    # Inside the last whole decoded pixel: libjpeg pads a partial last block with repeats.
    last = size // step * step
    s = min(round(start / step) * step, last - step)
    return s, max(min(round(end / step) * step, last), s + step)
