"""Content-aware crops: where to put each ratio's window so the picture keeps its subject.

Pure: a decoded image in, boxes out. `analyse()` looks once at a small copy (faces found by
worker/faces.py, a saliency map of our own: worker/saliency.py); `choose_crop()` then places each
ratio's window — the same size `boxes.crop_box` gives, so outputs keep full resolution.

The window is the largest of its aspect, so it always spans the whole width or the whole
height: placing it is a choice along one axis, made by rules in priority order:
faces whole (with headroom), then the main object whole, then the most saliency.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from . import saliency
from .boxes import RATIOS, Box, crop_box
from .faces import find_faces

__all__ = ["Analysis", "analyse", "choose_crop", "choose_crops", "place", "warm_up"]

# The face detector's copy is sized by area, not by its longest side: the detector's time grows
# with the area, and a panorama keeps its faces as big as a 4:3 photo's would be. A 4:3 photo
# becomes 330x248: faces from 20 px, 6% of its width, are found. (288x216 is 25% faster and
# kept as many heads on the bench, but lost the astronaut's face on some test canvases.)
FACE_PIXELS = 330 * 248
MAP_SIDE = 256  # the saliency map's longest side: a subject stays dozens of cells wide
_SAMPLE_PIXELS = 16 * FACE_PIXELS  # larger inputs are point-sampled to this before area-averaging
# A head is the detected face box grown to hair and ears (fractions of the face size: each
# side, above); the cascade's box already reaches the chin. Headroom is wished for above it.
_HEAD_SIDES, _HEAD_ABOVE, _HEADROOM = 0.33, 0.55, 0.15
# How strongly each rule's preferred start outweighs saliency, in saliency share per window
# length of distance: faces on the upper third / centred, a subject that fits centred, the
# top of an upright subject that does not fit, the middle of a wide one that does not.
_PULL_FACES, _PULL_CENTRED, _PULL_TOP, _PULL_MIDDLE = 0.2, 0.1, 1.0, 0.02
# Above the top of an upright subject that does not fit, this much of the window (heads without
# a detected face: hair has little detail, so the map's subject starts a little low).
_TOP_ROOM = 0.05
# A face must be at least this detailed (the saliency map's 0..1 detail, averaged over its box):
# the blurred copy of a face in a soft background is still a face pattern to the cascade.
_FACE_MIN_DETAIL = 0.15


@dataclass(frozen=True)
class Analysis:
    """What analyse() saw; choose_crop() needs nothing else, so one analysis serves every ratio."""

    width: int  # full-resolution oriented source size the boxes refer to
    height: int
    faces: list[Box]  # detected faces, source pixels, largest first
    subject: Box | None  # the main salient region, source pixels
    objects: list[Box] = field(default_factory=list)  # salient regions, most salient first
    saliency: np.ndarray | None = field(default=None, repr=False, compare=False)  # small map, rows x cols
    scale: float = 1.0  # saliency-map cells per source pixel (the same on both axes, give or take rounding)


def analyse(image: Image.Image, width: int, height: int) -> Analysis:
    """Faces and salient regions of `image` (decoded and oriented, possibly DCT-scaled: any size
    with the source's aspect; any Pillow mode), reported in `width` x `height` source pixels."""
    if width < 1 or height < 1:
        raise ValueError(f"bad source size {width}x{height}")
    rgb = _small_rgb(image, FACE_PIXELS)
    small = rgb
    if max(rgb.shape[:2]) > MAP_SIDE:
        f = MAP_SIDE / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sal, detail = saliency.saliency_map(small)
    fx, fy = small.shape[1] / rgb.shape[1], small.shape[0] / rgb.shape[0]
    faces = [f for f in find_faces(rgb) if _sharp(detail, f, fx, fy)]
    objects = [_to_source(b, width / sal.shape[1], height / sal.shape[0], width, height) for b in saliency.objects(sal)]
    # Faces outrank anything else the map holds when the remaining freedom is spent.
    top = float(sal.max()) * 2 + 1
    for x, y, w, h in faces:
        cv2.rectangle(sal, (int(x * fx), int(y * fy)), (int((x + w) * fx), int((y + h) * fy)), top, -1)
    faces_src = [_to_source(f, width / rgb.shape[1], height / rgb.shape[0], width, height) for f in faces]
    return Analysis(width, height, faces_src, objects[0] if objects else None, objects, sal, sal.shape[1] / width)


def choose_crop(analysis: Analysis, ratio: str, focal: tuple[float, float] | None = None) -> Box:
    """The window of `ratio`, of exactly crop_box's size, that keeps the most of what matters.
    A manual focal point (fractions of width/height) wins over the analysis: crop_box's window."""
    a = analysis
    whole = crop_box(a.width, a.height, ratio, focal)
    if focal is not None or (whole.w == a.width and whole.h == a.height):
        return whole
    vertical = whole.w == a.width  # the window spans the width, so it slides up and down
    span, size = (a.height, whole.h) if vertical else (a.width, whole.w)
    start = _place(a, vertical, span, size)
    return Box(0, start, whole.w, whole.h) if vertical else Box(start, 0, whole.w, whole.h)


def choose_crops(analysis: Analysis, focal: tuple[float, float] | None = None) -> dict[str, Box]:
    """choose_crop for every ratio, in RATIOS order."""
    return {ratio: choose_crop(analysis, ratio, focal) for ratio in RATIOS}


# --- analysis -------------------------------------------------------------------------------

def warm_up() -> None:
    """Load the cascades and OpenCV's kernels now (a worker child at start), not in the first render:
    the first analysis in a fresh process costs ~50 ms more."""
    place(Image.new("RGB", (320, 240), "grey"), 320, 240)


def place(image: Image.Image, width: int, height: int) -> dict[str, Box]:
    """Content-aware boxes for every ratio; the shape imaging.render(place=...) expects."""
    return choose_crops(analyse(image, width, height))


def _fit(width: int, height: int, pixels: int) -> tuple[int, int]:
    """(w, h) of a copy scaled down to hold at most about `pixels`."""
    f = min(1.0, math.sqrt(pixels / (width * height)))
    return max(1, round(width * f)), max(1, round(height * f))


def _small_rgb(image: Image.Image, pixels: int) -> np.ndarray:
    """uint8 RGB of at most about `pixels`, alpha flattened on white like the rendered outputs."""
    if image.width * image.height > 4 * _SAMPLE_PIXELS:  # averaging every pixel of 12 MP costs ~10 ms
        image = image.resize(_fit(image.width, image.height, _SAMPLE_PIXELS), Image.Resampling.NEAREST)
    image = _to_rgb(image)
    k = math.isqrt(image.width * image.height // pixels)
    if k >= 2:  # Pillow's box reduction first: it spares copying the big image into numpy
        image = image.reduce(k)
    arr = np.asarray(image)
    if arr.shape[0] * arr.shape[1] > pixels:
        arr = cv2.resize(arr, _fit(arr.shape[1], arr.shape[0], pixels), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        base = Image.new("RGB", im.size, "white")
        base.paste(im, mask=im.getchannel("A"))
        return base
    if im.mode.startswith(("I", "F")):  # 16-bit or float grey: stretch to 8 bits, don't clip
        arr = np.asarray(im.convert("F"), dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        arr = arr * (255.0 / top) if top > 0 else np.zeros_like(arr)
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).convert("RGB")
    try:
        return im if im.mode == "RGB" else im.convert("RGB")
    except ValueError:  # a mode Pillow cannot turn into RGB (LAB, HSV...): its first band is brightness
        return im.getchannel(0).convert("RGB")


def _sharp(detail: np.ndarray, face: tuple[int, int, int, int], fx: float, fy: float) -> bool:
    x, y, w, h = face  # detector pixels; fx, fy: map cells per detector pixel
    x0, y0 = int(x * fx), int(y * fy)
    cell = detail[y0: max(y0 + 1, int((y + h) * fy)), x0: max(x0 + 1, int((x + w) * fx))]
    return float(cell.mean()) >= _FACE_MIN_DETAIL


def _to_source(b: tuple[int, int, int, int], fx: float, fy: float, width: int, height: int) -> Box:
    x, y = min(width - 1, int(b[0] * fx)), min(height - 1, int(b[1] * fy))
    x2, y2 = min(width, max(x + 1, round((b[0] + b[2]) * fx))), min(height, max(y + 1, round((b[1] + b[3]) * fy)))
    return Box(x, y, x2 - x, y2 - y)


# --- placement ------------------------------------------------------------------------------

def _interval(b: Box, vertical: bool) -> tuple[int, int]:
    return (b.y, b.y + b.h) if vertical else (b.x, b.x + b.w)


def _holding(lo: int, hi: int, s: float, e: float, size: int) -> tuple[int, int] | None:
    """The starts in [lo, hi] whose window holds all of [s, e], if any."""
    nlo, nhi = max(lo, math.ceil(e - size)), min(hi, math.floor(s))
    return (nlo, nhi) if nlo <= nhi else None


def _place(a: Analysis, vertical: bool, span: int, size: int) -> int:
    """Window start along the free axis: faces, then objects narrow the allowed starts; the
    saliency map and a preferred start choose within what is left."""
    lo, hi = 0, span - size
    lo, hi, target = _keep_faces(a, vertical, size, lo, hi)
    for obj in a.objects:  # most salient first; each kept whole if it fits beside the rest
        s, e = _interval(obj, vertical)
        # Too big: stay inside it, and if upright keep its top (heads, roofs, tops of bottles).
        top = s - round(_TOP_ROOM * size) if vertical else s
        kept = _holding(lo, hi, s, e, size) if e - s <= size else (
            (max(lo, top), min(hi, e - size)) if max(lo, top) <= min(hi, e - size) else None)
        if kept is None:
            continue
        lo, hi = kept
        if target is None and e - s <= size:
            target = ((s + e - size) / 2, _PULL_CENTRED)
        elif target is None:  # too big: its top if upright, else its richest part
            target = (top, _PULL_TOP) if vertical else ((s + e - size) / 2, _PULL_MIDDLE)
    return _best_in(a, vertical, size, lo, hi, target)


def _keep_faces(a: Analysis, vertical: bool, size: int, lo: int, hi: int
                ) -> tuple[int, int, tuple[float, float] | None]:
    eyes = []
    for face in a.faces:  # largest first: each kept whole if it still fits with those before it
        s, e = _interval(face, vertical)
        grow = (_HEAD_ABOVE + _HEADROOM, 0.0) if vertical else (_HEAD_SIDES, _HEAD_SIDES)
        kept = _holding(lo, hi, s - grow[0] * (e - s), e + grow[1] * (e - s), size)
        if kept is None:  # the whole head does not fit: the face, and above it as much as fits
            kept = _holding(lo, hi, s, e, size)
            if kept is None:
                continue
            if vertical:
                pin = min(max(kept[0], e - size), kept[1])
                kept = (pin, pin)
        lo, hi = kept
        eyes.append(s + 0.4 * (e - s) if vertical else (s + e) / 2)
    if not eyes:
        return lo, hi, None
    # Upright windows put the eyes on the upper third, others centre the faces.
    at = (min(eyes) + max(eyes)) / 2 - (size / 3 if vertical else size / 2)
    return lo, hi, (at, _PULL_FACES)


def _best_in(a: Analysis, vertical: bool, size: int, lo: int, hi: int,
             target: tuple[float, float] | None) -> int:
    """The start in [lo, hi] whose window holds the most saliency, traded against distance
    from the preferred start (weight per window length)."""
    if lo >= hi:
        return lo
    starts = np.arange(lo, hi + 1)
    score = np.zeros(len(starts))
    if a.saliency is not None:
        profile = a.saliency.sum(axis=1 if vertical else 0).astype(np.float64)
        cum = np.concatenate([[0.0], np.cumsum(profile)])
        cells, per_px = np.arange(len(cum)), len(profile) / (a.height if vertical else a.width)
        mass = np.interp((starts + size) * per_px, cells, cum) - np.interp(starts * per_px, cells, cum)
        score = mass / (cum[-1] if cum[-1] > 0 else 1.0)
    if target is not None:
        score = score - target[1] * np.abs(starts - target[0]) / size
    # A faint pull to the middle breaks ties: a featureless picture is centre-cropped, like crop_box.
    score = score - 1e-3 * np.abs(starts - (lo + hi) / 2) / size
    return int(starts[int(np.argmax(score))])
