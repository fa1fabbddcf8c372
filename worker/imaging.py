"""Turn one uploaded image into the campaign's three JPEG crops.

Pure: bytes in, images out. No Flask, no database, no files, so it can be
tested and benchmarked alone. Every output is re-encoded from pixels, so
nothing of the uploaded file (metadata, appended payloads) survives.

Two libraries, each where the render benchmark (bench/render.py) found it best:
Pillow reads the header (format allow-list, size caps, orientation, colour profile)
before anything is decoded (worker/image_header.py), and does the work on output-sized
images (orientation, colour conversion, JPEG encoding: worker/jpeg_output.py); libvips
decodes once (shrinking on load when a big JPEG allows it: worker/decoding.py) and does the
crop-and-resize, its vectorised lanczos3 several times faster than Pillow's. The boxes
themselves are worker/boxes.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pyvips
from PIL import Image

from . import decoding, jpeg_output
from . import image_header as header
from .boxes import RATIOS, Box
from .decoding import Source
from .image_header import ORIENT, ImageRejected, sniff_format
from .jpeg_output import JPEG_QUALITY

# Chooses each ratio's window position: (small oriented copy, full width, full height) -> boxes.
Placer = Callable[["Image.Image", int, int], "dict[str, Box]"]

# libvips' resize: lanczos3, box-shrinking by whole factors first only beyond 2 x RESIZE_GAP.
# 3.0 stays >= 50 dB from pure LANCZOS at every factor up to 8; libvips' default 2.0 fell to 47 at 4.5x.
RESIZE_KERNEL, RESIZE_GAP = "lanczos3", 3.0
PREVIEW_SIZE, PREVIEW_QUALITY = (480, 480), 80
SOURCE_PREVIEW_SIZE, SOURCE_PREVIEW_QUALITY = (1280, 1280), 82


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
    """Decode once (DCT-scaled for JPEGs over decoding.FULL_DECODE_PIXELS), crop and resize each ratio,
    re-encode everything.
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
    src, boxes = decoding.decode(data, fmt, focal, crops, max_pixels, max_side)
    t_decoded = time.perf_counter()
    preview = _fit(src, SOURCE_PREVIEW_SIZE)  # made first: the placer looks at it
    if place is not None and focal is None:
        # The preview itself: the placer box-reduces it to its ~330x248 (cropping._small_rgb) in
        # ~1 ms; an intermediate 660 px copy (Pillow BOX at a fractional factor) cost 4-5 ms more.
        placed = place(preview, src.width, src.height)
        boxes = [crops.get(r) or placed[r] for r in RATIOS]
    t1 = time.perf_counter()
    chosen = [(r, decoding.on_grid(src, box)) for r, box in zip(RATIOS, boxes, strict=True)
              if only is None or r in only]
    to_srgb = jpeg_output.srgb_converter(src.mode, src.icc)
    variants, stages = _variants(src, chosen, to_srgb)
    t2 = time.perf_counter()
    encoded_preview = jpeg_output.encode(to_srgb(preview), SOURCE_PREVIEW_QUALITY)
    stages["encode"] += time.perf_counter() - t2
    timings = {"decode": (t_decoded - t0) * 1e3, "analyse": (t1 - t_decoded) * 1e3,
               "render": stages["render"] * 1e3, "encode": stages["encode"] * 1e3}
    return Rendering(src.width, src.height, fmt, encoded_preview, variants, timings)


def _variants(src: Source, chosen: list[tuple[str, Box]], to_srgb: Callable[[Image.Image], Image.Image]
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


def _resize(src: Source, box: Box, size: tuple[int, int]) -> Image.Image:
    """One crop, resized from the decoded pixels in their stored orientation, then turned upright."""
    method, swap = ORIENT[src.orientation][:2]
    s, step = decoding.stored_box(src, box), src.step
    w, h = (size[1], size[0]) if swap else size
    region = src.pixels.crop(s.x // step, s.y // step, max(1, s.w // step), max(1, s.h // step))
    out = region.resize(w / region.width, vscale=h / region.height, kernel=RESIZE_KERNEL, gap=RESIZE_GAP)
    if (out.width, out.height) != (w, h):  # the product's rounding can land a pixel off
        out = out.embed(0, 0, w, h, extend="copy")
    im = _pillow(out, src.mode)
    return im.transpose(method) if method is not None else im


def _fit(src: Source, limit: tuple[int, int]) -> Image.Image:
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
