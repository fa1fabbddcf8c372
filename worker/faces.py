"""Frontal faces in a small RGB copy of a picture (worker/cropping.py keeps them whole).

OpenCV's LBP cascade finds them; each is confirmed by the Haar `default` cascade on its own
neighbourhood and, in colour, by skin in its middle.
"""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

_MIN_FACE = 20  # detector pixels: the cascade's own window
# 1.1 between detector scales: at 1.15 the LBP cascade kept as many heads on the bench but lost
# faces of ~30 px on the unit tests' canvases (fewer neighbouring hits for minNeighbors).
_FACE_SCALE_STEP = 1.1
_CONFIRM_SIDE = 40  # a detected face is confirmed in a copy where it is this wide (pixels)
_loaded = threading.local()  # face cascades, loaded on first use in each thread

# The LBP cascade (vendored: worker/cascades/README.md) takes a quarter of Haar alt2's time for the
# same heads on the crop bench; the Haar `default` one that confirms comes with the OpenCV wheel.
_CASCADES = {"lbp": str(Path(__file__).with_name("cascades") / "lbpcascade_frontalface.xml"),
             "default": cv2.data.haarcascades + "haarcascade_frontalface_default.xml"}


def _cascade(name: str) -> cv2.CascadeClassifier:
    # One per thread: a classifier keeps scratch buffers, so threads must not share one.
    per_thread = _loaded.__dict__
    if name not in per_thread:
        c = cv2.CascadeClassifier(_CASCADES[name])
        if c.empty():
            raise RuntimeError(f"The {name} face cascade is missing ({_CASCADES[name]}); "
                               "opencv-python-headless 4.x ships the Haar ones, worker/cascades the LBP one")
        per_thread[name] = c
    return per_thread[name]


def find_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces, largest first. The LBP cascade finds them; each is then confirmed by the
    Haar `default` cascade on its own neighbourhood and, in colour, by skin in its middle:
    together they drop the fur, sand and wallpaper a single cascade takes for faces, at a cost
    of ~2 ms a face."""
    # No histogram equalisation (OpenCV's samples do it): where a large plain or blurred area
    # dominates the histogram it flattens small faces, and the bench found more faces without.
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if min(grey.shape) < _MIN_FACE:
        return []
    found = _cascade("lbp").detectMultiScale(grey, scaleFactor=_FACE_SCALE_STEP, minNeighbors=3,
                                             minSize=(_MIN_FACE, _MIN_FACE))
    faces = [f for f in (tuple(int(v) for v in f) for f in found) if _confirmed(grey, f)]
    if not _is_grey(rgb):
        faces = [f for f in faces if _skin_share(rgb, f) >= 0.15]
    return sorted(faces, key=lambda f: -f[2] * f[3])


def _confirmed(grey: np.ndarray, face: tuple[int, int, int, int]) -> bool:
    x, y, w, h = face
    m = w // 2
    roi = grey[max(0, y - m): y + h + m, max(0, x - m): x + w + m]
    # Looked at with the face about _CONFIRM_SIDE px wide: the check's cost grows with the
    # neighbourhood's area, and a big face took 10 ms at full size for the same answer.
    f = min(1.0, _CONFIRM_SIDE / w)
    if f < 1.0:
        roi = cv2.resize(roi, (max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    fw = w * f
    small, big = max(_MIN_FACE, int(fw * 0.75)), int(fw * 1.35) + 1
    return len(_cascade("default").detectMultiScale(roi, scaleFactor=1.08, minNeighbors=3,
                                                    minSize=(small, small), maxSize=(big, big))) > 0


def _is_grey(rgb: np.ndarray) -> bool:
    r, g, b = cv2.split(rgb)
    return cv2.mean(cv2.absdiff(r, g))[0] + cv2.mean(cv2.absdiff(g, b))[0] < 4


def _skin_share(rgb: np.ndarray, face: tuple[int, int, int, int]) -> float:
    x, y, w, h = face  # the middle of the box: cheeks, nose, mouth, no hair or background
    core = rgb[y + h // 5: y + h - h // 5, x + w // 5: x + w - w // 5]
    ycc = cv2.cvtColor(core, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    # Chai & Ngan's skin cluster, widened: it rejects texture the cascade mistakes for a face.
    return float(np.mean((cr >= 128) & (cr <= 185) & (cb >= 70) & (cb <= 140))) if core.size else 0.0
