"""The three output formats and their crop boxes, in upright (EXIF-oriented) source pixels.

Pure geometry: the renderer, the cropper and the portal's crop editor all speak in these boxes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .image_header import ImageRejected

RATIOS: dict[str, tuple[int, int]] = {"1:1": (1080, 1080), "9:16": (1080, 1920), "16:9": (1920, 1080)}


@dataclass(frozen=True)
class Box:
    """Integer crop box in source pixels, after EXIF orientation is applied."""

    x: int
    y: int
    w: int
    h: int


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


def boxes(width: int, height: int, focal: tuple[float, float] | None, crops: dict[str, Box]) -> list[Box]:
    """One box per ratio, in RATIOS order: the explicit crops (checked) where given, else crop_box."""
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
