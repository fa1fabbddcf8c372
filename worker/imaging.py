"""Turn one uploaded image into the campaign's three JPEG crops.

Pure: bytes in, images out. No Flask, no database, no files, so it can be
tested and benchmarked alone. Every output is re-encoded from pixels, so
nothing of the uploaded file (metadata, appended payloads) survives.
"""

from __future__ import annotations

import math
import re
import struct
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from functools import cache
from io import BytesIO

from PIL import Image, ImageCms, ImageFile

# Chooses each ratio's window position: (decoded oriented image, full width, full height) -> boxes.
Placer = Callable[["Image.Image", int, int], "dict[str, Box]"]

RATIOS: dict[str, tuple[int, int]] = {"1:1": (1080, 1080), "9:16": (1080, 1920), "16:9": (1920, 1080)}

JPEG_QUALITY = 95
# 4:2:0: a fifth smaller than 4:4:4 at q95; the chroma loss is invisible in photos, and against
# a reference encoded the same way it scores higher than 4:4:4 (40 vs 39 dB after DCT scaling).
JPEG_SUBSAMPLING = 2
# Pillow box-reduces by int(factor / gap) before LANCZOS. 1.0 and 2.0 fall below 50 dB PSNR
# against pure LANCZOS (at factors 2.8 and 4.5); 2.5 stays above it at every factor up to 5.6.
REDUCING_GAP: float | None = 2.5
# JPEGs are DCT-scaled while decoding until each crop keeps this many pixels per output pixel.
# 1.0 is fastest; DCT scaling's own filter then shows (about 39-46 dB against full-resolution
# LANCZOS on noisy photos); 3.0 keeps >= 50 dB but rarely lets any image be scaled.
DRAFT_OVERSAMPLE = 1.0
PREVIEW_SIZE, PREVIEW_QUALITY = (480, 480), 80
SOURCE_PREVIEW_SIZE, SOURCE_PREVIEW_QUALITY = (1280, 1280), 82

_DAMAGED = "The image file is damaged or incomplete; please export it again and upload the new file."
# What Pillow raises for files it cannot parse (UnidentifiedImageError and truncation are OSErrors).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)
_ORIENTATION = 0x0112
_T = Image.Transpose
# EXIF orientation -> (transpose that shows it upright, swaps axes, reverses x, reverses y).
# Applied by hand: ImageOps.exif_transpose re-serialises the EXIF and raises struct.error on
# some corrupt blocks, and we need the answer before decoding anyway.
_ORIENT = {1: (None, False, False, False), 2: (_T.FLIP_LEFT_RIGHT, False, True, False),
           3: (_T.ROTATE_180, False, True, True), 4: (_T.FLIP_TOP_BOTTOM, False, False, True),
           5: (_T.TRANSPOSE, True, False, False), 6: (_T.ROTATE_270, True, True, False),
           7: (_T.TRANSVERSE, True, True, True), 8: (_T.ROTATE_90, True, False, True)}

class ImageRejected(Exception):
    """The image cannot be used; str(e) is a sentence a marketer understands."""


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
class _Decoded:
    image: Image.Image  # oriented, mode L/LA/RGB/RGBA/CMYK, possibly DCT-scaled
    width: int  # full-resolution oriented size, the frame crop boxes live in
    height: int
    boxes: list[Box]  # in RATIOS order
    scale: float  # decoded pixels per source pixel
    offset: tuple[float, float]  # decoded-pixel shift of axes that the orientation reversed
    icc: bytes | None


def sniff_format(data: bytes) -> str | None:
    """'JPEG' | 'PNG' | 'WEBP' from magic bytes; names and Content-Type are never trusted."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


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
    # The most libjpeg may shrink while every crop keeps at least its output's pixels.
    # The scale is uniform, so raw and oriented sizes give the same answer.
    need = max(min(1.0, DRAFT_OVERSAMPLE * out[0] / box.w) for out, box in zip(RATIOS.values(), boxes, strict=True))
    fits = min(width // math.ceil(width * need), height // math.ceil(height * need))
    return next(d for d in (8, 4, 2, 1) if fits >= d)  # the rule of JpegImageFile.draft


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
    """Decode once (DCT-scaled for JPEG), crop and resize each ratio, re-encode everything.
    crops: explicit boxes in oriented source pixels, overriding the computed ones.
    only: render just these ratios (a re-render of one edited crop); all by default.
    place: positions the windows from the decoded picture (content-aware crops); the window
    sizes, and so the decode scale, do not depend on it. Ignored where crops or focal decide."""
    t0 = time.perf_counter()
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected("The file is not a JPEG, PNG or WebP image.")
    crops = crops or {}
    src = _decode(data, fmt, focal, crops, max_pixels, max_side)
    t_decoded = time.perf_counter()
    if place is not None and focal is None:
        placed = place(src.image, src.width, src.height)
        src = replace(src, boxes=[crops.get(r) or placed[r] for r in RATIOS])
    t1 = time.perf_counter()
    to_srgb = _srgb_converter(src.image.mode, src.icc)
    chosen = [(r, box) for r, box in zip(RATIOS, src.boxes, strict=True) if only is None or r in only]
    outputs = [to_srgb(src.image.resize(RATIOS[r], Image.Resampling.LANCZOS,
                                        box=_decoded_box(src, box), reducing_gap=REDUCING_GAP))
               for r, box in chosen]
    source_preview = to_srgb(_fit(src, SOURCE_PREVIEW_SIZE))
    t2 = time.perf_counter()
    variants = [_variant(r, box, out) for (r, box), out in zip(chosen, outputs, strict=True)]
    preview = _encode(source_preview, SOURCE_PREVIEW_QUALITY)
    t3 = time.perf_counter()
    timings = {"decode": (t_decoded - t0) * 1e3, "analyse": (t1 - t_decoded) * 1e3,
               "render": (t2 - t1) * 1e3, "encode": (t3 - t2) * 1e3}
    return Rendering(src.width, src.height, fmt, preview, variants, timings)


def _decode(data: bytes, fmt: str, focal: tuple[float, float] | None, crops: dict[str, Box],
            max_pixels: int, max_side: int) -> _Decoded:
    im = _open(data, fmt, max_pixels)  # no `with`: close() would discard the decoded pixels
    _check_size(im.width, im.height, max_pixels, max_side)  # header only: nothing decoded yet
    if fmt != "JPEG":
        _load(im)  # PNG may keep its eXIf chunk after the pixels
    method, swap, flip_x, flip_y = _ORIENT[_exif_orientation(im)]
    width, height = (im.height, im.width) if swap else im.size
    boxes = _boxes(width, height, focal, crops)
    scale = 1.0
    if fmt == "JPEG":  # before load(): libjpeg then decodes straight to 1/2, 1/4 or 1/8 size
        d, raw_width = _dct_denominator(width, height, boxes), im.width
        drafted = im.draft("RGB", (im.width // d, im.height // d)) if d > 1 else None
        scale = drafted[1][2] / raw_width if drafted else 1.0  # draft's box: raw size / denominator
        _load(im)
    upright = im.transpose(method) if method is not None else im  # no full-size copy when upright
    # A reversed axis moves libjpeg's padded partial block from the end to the start.
    offset = (upright.width - width * scale if flip_x else 0.0, upright.height - height * scale if flip_y else 0.0)
    return _Decoded(_normalise_mode(upright), width, height, boxes, scale, offset, im.info.get("icc_profile"))


def _open(data: bytes, fmt: str, max_pixels: int) -> ImageFile.ImageFile:
    try:
        # Only the sniffed format: Pillow's other ~40 plugins are attack surface (EPS, FITS...).
        # "JPEG" may come back as MPO (phone photos); frame 0 is the photo, as for animations.
        return Image.open(BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own guard fires in open() from the header, before our check can run.
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{_mp(int(found[1]))} MP" if found else "too large"
        raise ImageRejected(f"The image is {size}; the limit is {_mp(max_pixels)} MP.") from e
    except _DECODE_ERRORS as e:
        raise ImageRejected(_DAMAGED) from e


def _check_size(width: int, height: int, max_pixels: int, max_side: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(f"The image is {width}x{height} pixels ({_mp(width * height)} MP); "
                            f"the limit is {_mp(max_pixels)} MP.")
    if max(width, height) > max_side:
        raise ImageRejected(f"The image is {width}x{height} pixels; "
                            f"the limit is {max_side} pixels on the longest side.")


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".removesuffix(".0")


def _exif_orientation(im: ImageFile.ImageFile) -> int:
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except (*_DECODE_ERRORS, struct.error):
        return 1  # unreadable EXIF: show the pixels as stored rather than refuse the picture
    return value if value in _ORIENT else 1


def _load(im: ImageFile.ImageFile) -> None:
    try:
        # Truncated files fail here (verify() passes them) as long as nobody sets Pillow's
        # LOAD_TRUNCATED_IMAGES, which would ship a half-grey crop.
        im.load()
    except _DECODE_ERRORS as e:
        raise ImageRejected(_DAMAGED) from e


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


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any decoded mode to L, LA, RGB, RGBA or CMYK, the modes LANCZOS handles correctly.
    Alpha stays (resize premultiplies it) and is flattened on the small outputs instead."""
    if im.mode in ("L", "LA", "RGB", "RGBA", "CMYK") and "transparency" not in im.info:
        return im
    if im.mode.startswith("I"):  # 16-bit grey: convert("L") would clip 1000 to 255, so scale
        return im.convert("I").point(lambda v: v / 257).convert("L")
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("P", "PA", "La", "RGBa") or "transparency" in im.info:
        # Via RGBA: convert("RGB") would drop (and warn about) palette transparency.
        has_alpha = im.mode != "P" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise ImageRejected(f"The image uses a colour format ({im.mode}) we cannot convert; "
                            "please export it as an RGB JPEG or PNG.") from e


def _srgb_converter(mode: str, icc: bytes | None) -> Callable[[Image.Image], Image.Image]:
    """Flatten alpha onto white and map the embedded profile to sRGB, on output-sized images."""
    flat_mode = {"LA": "L", "RGBA": "RGB"}.get(mode, mode)
    transform = _icc_transform(icc, flat_mode) if icc else None

    def convert(im: Image.Image) -> Image.Image:
        if im.mode in ("LA", "RGBA"):
            base = Image.new(flat_mode, im.size, "white")
            base.paste(im, mask=im.getchannel("A"))
            im = base
        return transform.apply(im) if transform else im.convert("RGB")

    return convert


def _icc_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc))
        return ImageCms.buildTransform(profile, _srgb(), mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # broken or mismatched profile: the pixels are close enough to sRGB


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _decoded_box(src: _Decoded, box: Box) -> tuple[float, float, float, float]:
    ox, oy = src.offset
    s = src.scale
    return (box.x * s + ox, box.y * s + oy, (box.x + box.w) * s + ox, (box.y + box.h) * s + oy)


def _fit(src: _Decoded, limit: tuple[int, int]) -> Image.Image:
    f = min(1.0, limit[0] / src.width, limit[1] / src.height)
    size = (max(1, round(src.width * f)), max(1, round(src.height * f)))
    box = _decoded_box(src, Box(0, 0, src.width, src.height))
    # Only for drawing crop boxes on: box-reduce almost all the way (5x faster than gap 2.0).
    return src.image.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=1.0)


def _variant(ratio: str, box: Box, im: Image.Image) -> Variant:
    jpeg = _encode(im, JPEG_QUALITY)
    im.thumbnail(PREVIEW_SIZE, Image.Resampling.BILINEAR, reducing_gap=2.0)  # cheap: from 1080p, not the source
    return Variant(ratio, *RATIOS[ratio], box, jpeg, _encode(im, PREVIEW_QUALITY))


def _encode(im: Image.Image, quality: int) -> bytes:
    out = BytesIO()
    # No exif/icc_profile/xmp arguments: Pillow writes only what it is given, so no metadata.
    im.save(out, "JPEG", quality=quality, subsampling=JPEG_SUBSAMPLING, optimize=False, progressive=False)
    return out.getvalue()


def thumbnail(data: bytes, size: tuple[int, int] = (320, 320), *, max_pixels: int = 64_000_000,
              max_side: int = 12_000) -> bytes:
    """A small upright JPEG of an image (for pickers), with the same checks as render()."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected("The file is not a JPEG, PNG or WebP image.")
    im = _open(data, fmt, max_pixels)
    _check_size(im.width, im.height, max_pixels, max_side)
    if fmt == "JPEG":
        im.draft("RGB", (size[0] * 2, size[1] * 2))  # DCT-scale: a picker needs few pixels
    _load(im)
    method = _ORIENT[_exif_orientation(im)][0]
    upright = _normalise_mode(im.transpose(method) if method is not None else im)
    upright.thumbnail(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return _encode(_srgb_converter(upright.mode, im.info.get("icc_profile"))(upright), PREVIEW_QUALITY)
