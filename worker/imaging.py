"""Turn one uploaded image into the campaign's three JPEG crops.

Pure: bytes in, images out. No Flask, no database, no files, so it can be
tested and benchmarked alone. Every output is re-encoded from pixels, so
nothing of the uploaded file (metadata, appended payloads) survives.

Two libraries, each where the render benchmark (bench/render.py) found it best:
Pillow reads the header (format allow-list, size caps, orientation, colour profile)
before anything is decoded (worker/image_header.py), and does the work on output-sized
images (orientation, colour conversion, JPEG encoding: worker/jpeg_output.py); libvips
decodes once (shrinking on load when a big JPEG allows it) and does the crop-and-resize,
its vectorised lanczos3 several times faster than Pillow's.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pyvips  # a hard dependency: without libvips the worker must not start, not render slowly
from PIL import Image

from . import image_header as header
from . import jpeg_output
from .image_header import ORIENT, ImageRejected, sniff_format
from .jpeg_output import JPEG_QUALITY

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

# Chooses each ratio's window position: (small oriented copy, full width, full height) -> boxes.
Placer = Callable[["Image.Image", int, int], "dict[str, Box]"]

RATIOS: dict[str, tuple[int, int]] = {"1:1": (1080, 1080), "9:16": (1080, 1920), "16:9": (1920, 1080)}

# libvips' resize: lanczos3, box-shrinking by whole factors first only beyond 2 x RESIZE_GAP.
# 3.0 stays >= 50 dB from pure LANCZOS at every factor up to 8; libvips' default 2.0 fell to 47 at 4.5x.
RESIZE_KERNEL, RESIZE_GAP = "lanczos3", 3.0
# JPEGs larger than this are DCT-scaled while decoding (libvips' shrink-on-load), no further than
# each crop keeps DRAFT_OVERSAMPLE source pixels per output pixel. A 24 MP camera stays whole: DCT
# scaling's own filter costs the pixels ~11 dB (42.7 instead of 53.8 dB against a full-resolution
# LANCZOS render, bench/README.md) for ~25% less CPU. Above it, the decoded copy stays bounded:
# at most ~4x this many bytes (3 per pixel), whatever the upload's size.
FULL_DECODE_PIXELS = 25_000_000
DRAFT_OVERSAMPLE = 1.0
PREVIEW_SIZE, PREVIEW_QUALITY = (480, 480), 80
SOURCE_PREVIEW_SIZE, SOURCE_PREVIEW_QUALITY = (1280, 1280), 82

# Named loaders only: libvips' sniffing loaders would also open formats we do not accept.
_LOADERS = {"JPEG": pyvips.Image.jpegload_buffer, "PNG": pyvips.Image.pngload_buffer,
            "WEBP": pyvips.Image.webpload_buffer}


@dataclass(frozen=True)
class Box:
    """Integer crop box in source pixels, after EXIF orientation is applied."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Variant:
    ratio: str
    width: int
    height: int
    crop: Box
    jpeg: bytes  # baseline JPEG q95, sRGB, no EXIF/ICC/XMP
    preview: bytes  # fits PREVIEW_SIZE, q80


@dataclass(frozen=True)
class Rendering:
    source_width: int  # oriented size
    source_height: int
    source_format: str  # "JPEG" | "PNG" | "WEBP"
    source_preview: bytes  # oriented source fitting SOURCE_PREVIEW_SIZE, for drawing crop boxes on
    variants: list[Variant]  # in RATIOS order
    timings_ms: dict[str, float]  # decode, analyse (content-aware placement), render, encode


@dataclass(frozen=True)
class _Source:
    pixels: pyvips.Image  # in memory, as stored (not yet oriented), 8-bit, alpha flattened on white
    mode: str  # the Pillow mode of those pixels: L, RGB or CMYK
    width: int  # full-resolution oriented size, the frame crop boxes live in
    height: int
    orientation: int  # EXIF 1-8
    step: int  # source pixels per decoded pixel: the JPEG DCT denominator, else 1
    icc: bytes | None


def crop_box(width: int, height: int, ratio: str, focal: tuple[float, float] | None = None) -> Box:
    """Largest window of the ratio's aspect inside width x height, centred on the focal
    point (fractions of width/height; default the middle) and clamped inside. Never pads."""
    if ratio not in RATIOS:
        raise ValueError(f"unknown ratio {ratio!r}")
    fx, fy = (0.5, 0.5) if focal is None else focal
    if not (0.0 <= fx <= 1.0 and 0.0 <= fy <= 1.0):  # also rejects NaN
        raise ValueError(f"focal point {focal!r} must be fractions between 0 and 1")
    rw, rh = RATIOS[ratio]
    if width * rh >= height * rw:  # source is at least as wide as the ratio: keep full height
        w, h = max(1, min(width, round(height * rw / rh))), height
    else:
        w, h = width, max(1, min(height, round(width * rh / rw)))
    x = min(max(math.floor(fx * width - w / 2 + 0.5), 0), width - w)
    y = min(max(math.floor(fy * height - h / 2 + 0.5), 0), height - h)
    return Box(x, y, w, h)


def decode_scale(width: int, height: int) -> float:
    """The JPEG DCT scale (1, 1/2, 1/4 or 1/8) render() decodes a width x height source at."""
    return 1 / _dct_denominator(width, height, [crop_box(width, height, r) for r in RATIOS])


def _dct_denominator(width: int, height: int, boxes: list[Box]) -> int:
    """The least shrink that brings the decode within FULL_DECODE_PIXELS, or failing that the most
    libjpeg may shrink while every crop keeps at least its output's pixels (times DRAFT_OVERSAMPLE).
    The scale is uniform, so raw and oriented sizes give the same answer."""
    need = max(min(1.0, DRAFT_OVERSAMPLE * out[0] / box.w) for out, box in zip(RATIOS.values(), boxes, strict=True))
    fits = min(width // math.ceil(width * need), height // math.ceil(height * need))
    allowed = [d for d in (1, 2, 4, 8) if fits >= d]
    return next((d for d in allowed if width * height <= FULL_DECODE_PIXELS * d * d), allowed[-1])


def render(
    data: bytes,
    *,
    focal: tuple[float, float] | None = None,
    crops: dict[str, Box] | None = None,
    max_pixels: int = 64_000_000,
    max_side: int = 12_000,
    only: Collection[str] | None = None,
    place: Placer | None = None,
) -> Rendering:
    """Decode once (DCT-scaled for JPEGs over FULL_DECODE_PIXELS), crop and resize each ratio, re-encode everything.
    crops: explicit boxes in oriented source pixels, overriding the computed ones.
    only: render just these ratios (a re-render of one edited crop); all by default.
    place: positions the windows from a small copy of the picture (content-aware crops); the
    window sizes, and so the decode scale, do not depend on it. Ignored where crops or focal decide.
    A DCT-scaled decode renders each box moved onto its grid (edges on multiples of the scale's
    denominator: less than one decoded pixel off) and reports the box it rendered, so pixels and
    box agree."""
    t0 = time.perf_counter()
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected("The file is not a JPEG, PNG or WebP image.")
    crops = crops or {}
    src, boxes = _decode(data, fmt, focal, crops, max_pixels, max_side)
    t_decoded = time.perf_counter()
    preview = _fit(src, SOURCE_PREVIEW_SIZE)  # made first: the placer looks at it
    if place is not None and focal is None:
        # The preview itself: the placer box-reduces it to its ~330x248 (cropping._small_rgb) in
        # ~1 ms; an intermediate 660 px copy (Pillow BOX at a fractional factor) cost 4-5 ms more.
        placed = place(preview, src.width, src.height)
        boxes = [crops.get(r) or placed[r] for r in RATIOS]
    t1 = time.perf_counter()
    chosen = [(r, _on_grid(src, box)) for r, box in zip(RATIOS, boxes, strict=True) if only is None or r in only]
    to_srgb = jpeg_output.srgb_converter(src.mode, src.icc)
    variants, stages = _variants(src, chosen, to_srgb)
    t2 = time.perf_counter()
    encoded_preview = jpeg_output.encode(to_srgb(preview), SOURCE_PREVIEW_QUALITY)
    stages["encode"] += time.perf_counter() - t2
    timings = {"decode": (t_decoded - t0) * 1e3, "analyse": (t1 - t_decoded) * 1e3,
               "render": stages["render"] * 1e3, "encode": stages["encode"] * 1e3}
    return Rendering(src.width, src.height, fmt, encoded_preview, variants, timings)


def _variants(src: _Source, chosen: list[tuple[str, Box]], to_srgb: Callable[[Image.Image], Image.Image]
              ) -> tuple[list[Variant], dict[str, float]]:
    """Each ratio resized and encoded before the next is resized: one output's pixels alive at a time
    (three at once took 24 MP renders past 150 MiB). Returns the seconds spent resizing and encoding."""
    variants, stages = [], {"render": 0.0, "encode": 0.0}
    for ratio, box in chosen:
        t0 = time.perf_counter()
        out = to_srgb(_resize(src, box, RATIOS[ratio]))
        t1 = time.perf_counter()
        variants.append(_variant(ratio, box, out))
        stages["render"] += t1 - t0
        stages["encode"] += time.perf_counter() - t1
    return variants, stages


def _decode(data: bytes, fmt: str, focal: tuple[float, float] | None, crops: dict[str, Box],
            max_pixels: int, max_side: int) -> tuple[_Source, list[Box]]:
    """Everything from the header first (caps, orientation, crops), then libvips decodes once."""
    with header.open_image(data, fmt, max_pixels) as im:
        header.check_size(im.width, im.height, max_pixels, max_side)  # header only: nothing decoded yet
        orientation = header.orientation(im, fmt, data)
        icc = im.info.get("icc_profile")
        stored = im.size
    swap = ORIENT[orientation][1]
    width, height = (stored[1], stored[0]) if swap else stored
    boxes = _boxes(width, height, focal, crops)
    step = _dct_denominator(width, height, boxes) if fmt == "JPEG" else 1
    pixels, mode = _load_pixels(data, fmt, step)
    return _Source(pixels, mode, width, height, orientation, step, icc), boxes


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


def _boxes(width: int, height: int, focal: tuple[float, float] | None, crops: dict[str, Box]) -> list[Box]:
    unknown = set(crops) - set(RATIOS)
    if unknown:
        raise ValueError(f"unknown ratios in crops: {sorted(unknown)}")
    for ratio, box in crops.items():
        check_crop(ratio, box, width, height)
    return [crops.get(r) or crop_box(width, height, r, focal) for r in RATIOS]


def check_crop(ratio: str, box: Box, width: int, height: int) -> None:
    if not (box.w >= 1 and box.h >= 1 and 0 <= box.x <= width - box.w and 0 <= box.y <= height - box.h):
        raise ImageRejected(f"The {ratio} crop ({box.w}x{box.h} at {box.x},{box.y}) does not fit "
                            f"inside the {width}x{height} image.")
    rw, rh = RATIOS[ratio]
    exact_h = box.w * rh / rw
    if abs(box.h - exact_h) > max(1.0, exact_h / 100):  # allow rounding, never visible stretching
        raise ImageRejected(f"The {ratio} crop is {box.w}x{box.h} pixels, which is not {ratio}.")


# --- geometry: oriented boxes <-> the stored pixels libvips decoded ---------------------------

def _stored_box(src: _Source, box: Box) -> Box:
    """The box in stored (not yet oriented) source pixels."""
    _, swap, flip_x, flip_y = ORIENT[src.orientation]
    x = src.width - box.x - box.w if flip_x else box.x
    y = src.height - box.y - box.h if flip_y else box.y
    return Box(y, x, box.h, box.w) if swap else Box(x, y, box.w, box.h)


def _oriented_box(src: _Source, box: Box) -> Box:
    """The inverse of _stored_box."""
    _, swap, flip_x, flip_y = ORIENT[src.orientation]
    if swap:
        box = Box(box.y, box.x, box.h, box.w)
    x = src.width - box.x - box.w if flip_x else box.x
    y = src.height - box.y - box.h if flip_y else box.y
    return Box(x, y, box.w, box.h)


def _on_grid(src: _Source, box: Box) -> Box:
    """The box with its stored edges on the decoded grid: a DCT-scaled pixel is step x step source
    pixels, and a box between them would be rendered up to half a decoded pixel off (~31 dB)."""
    if src.step == 1:
        return box
    s = _stored_box(src, box)
    stored_w, stored_h = (src.height, src.width) if ORIENT[src.orientation][1] else (src.width, src.height)
    x0, x1 = _snap(s.x, s.x + s.w, stored_w, src.step)
    y0, y1 = _snap(s.y, s.y + s.h, stored_h, src.step)
    return _oriented_box(src, Box(x0, y0, x1 - x0, y1 - y0))


def _snap(start: int, end: int, size: int, step: int) -> tuple[int, int]:
    # Inside the last whole decoded pixel: libjpeg pads a partial last block with repeats.
    last = size // step * step
    s = min(round(start / step) * step, last - step)
    return s, max(min(round(end / step) * step, last), s + step)


def _resize(src: _Source, box: Box, size: tuple[int, int]) -> Image.Image:
    """One crop, resized from the decoded pixels in their stored orientation, then turned upright."""
    method, swap = ORIENT[src.orientation][:2]
    s, step = _stored_box(src, box), src.step
    w, h = (size[1], size[0]) if swap else size
    region = src.pixels.crop(s.x // step, s.y // step, max(1, s.w // step), max(1, s.h // step))
    out = region.resize(w / region.width, vscale=h / region.height, kernel=RESIZE_KERNEL, gap=RESIZE_GAP)
    if (out.width, out.height) != (w, h):  # the product's rounding can land a pixel off
        out = out.embed(0, 0, w, h, extend="copy")
    im = _pillow(out, src.mode)
    return im.transpose(method) if method is not None else im


def _fit(src: _Source, limit: tuple[int, int]) -> Image.Image:
    """The whole picture, upright, fitting limit (never enlarged): for drawing crop boxes on."""
    f = min(1.0, limit[0] / src.width, limit[1] / src.height)
    size = (max(1, round(src.width * f)), max(1, round(src.height * f)))
    method, swap = ORIENT[src.orientation][:2]
    w, h = (size[1], size[0]) if swap else size
    pixels = src.pixels
    # Linear after whole-factor box shrinks: only a backdrop for crop boxes, 3x cheaper than lanczos3.
    out = pixels.resize(w / pixels.width, vscale=h / pixels.height, kernel="linear", gap=RESIZE_GAP)
    if (out.width, out.height) != (w, h):
        out = out.embed(0, 0, w, h, extend="copy")
    im = _pillow(out, src.mode)
    return im.transpose(method) if method is not None else im


def _pillow(image: pyvips.Image, mode: str) -> Image.Image:
    # frombuffer wraps libvips' bytes as they are; frombytes would clear a new image, then copy.
    return Image.frombuffer(mode, (image.width, image.height), image.write_to_memory(), "raw", mode, 0, 1)


def _variant(ratio: str, box: Box, im: Image.Image) -> Variant:
    jpeg = jpeg_output.encode(im, JPEG_QUALITY)
    # From the 1080p output, not the source; reducing_gap 1: whole-factor box reduction (4x for
    # 1920x1080) does nearly all of it, a third of the time of a 2x reduction plus bilinear.
    im.thumbnail(PREVIEW_SIZE, Image.Resampling.BILINEAR, reducing_gap=1.0)
    return Variant(ratio, *RATIOS[ratio], box, jpeg, jpeg_output.encode(im, PREVIEW_QUALITY))


def thumbnail(data: bytes, size: tuple[int, int] = (320, 320), *, max_pixels: int = 64_000_000,
              max_side: int = 12_000) -> bytes:
    """A small upright JPEG of an image (for pickers), with the same checks as render().
    Pillow alone: a DCT-scaled decode to about the size asked leaves libvips nothing to win."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected("The file is not a JPEG, PNG or WebP image.")
    im = header.open_image(data, fmt, max_pixels)
    header.check_size(im.width, im.height, max_pixels, max_side)
    if fmt == "JPEG":
        im.draft("RGB", (size[0] * 2, size[1] * 2))  # DCT-scale: a picker needs few pixels
    header.load(im)
    method = ORIENT[header.orientation(im, fmt, data)][0]
    upright = jpeg_output.normalise_mode(im.transpose(method) if method is not None else im)
    upright.thumbnail(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    to_srgb = jpeg_output.srgb_converter(upright.mode, im.info.get("icc_profile"))
    return jpeg_output.encode(to_srgb(upright), PREVIEW_QUALITY)
