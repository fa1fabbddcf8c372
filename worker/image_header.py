"""What is read of an upload before any pixel is decoded, and the sentences it is refused with.

Pillow reads the header only: the format (sniffed from the bytes; Pillow opens just that plugin),
the pixel and side caps, the EXIF orientation. worker/decoding.py decides from these before
libvips decodes anything.
"""
from __future__ import annotations

import re
import struct
from io import BytesIO

from PIL import Image, ImageFile

DAMAGED = "The image file is damaged or incomplete; please export it again and upload the new file."
# What Pillow raises for files it cannot parse (UnidentifiedImageError and truncation are OSErrors).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)
_ORIENTATION = 0x0112
_T = Image.Transpose
# EXIF orientation -> (transpose that shows it upright, swaps axes, reverses x, reverses y).
# Applied by hand: ImageOps.exif_transpose re-serialises the EXIF and raises struct.error on
# some corrupt blocks, and we need the answer before decoding anyway.
ORIENT = {1: (None, False, False, False), 2: (_T.FLIP_LEFT_RIGHT, False, True, False),
          3: (_T.ROTATE_180, False, True, True), 4: (_T.FLIP_TOP_BOTTOM, False, False, True),
          5: (_T.TRANSPOSE, True, False, False), 6: (_T.ROTATE_270, True, True, False),
          7: (_T.TRANSVERSE, True, True, True), 8: (_T.ROTATE_90, True, False, True)}


class ImageRejected(Exception):
    """The image cannot be used; str(e) is a sentence a marketer understands."""


def sniff_format(data: bytes) -> str | None:
    """'JPEG' | 'PNG' | 'WEBP' from magic bytes; names and Content-Type are never trusted."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def open_image(data: bytes, fmt: str, max_pixels: int) -> ImageFile.ImageFile:
    try:
        # Only the sniffed format: Pillow's other ~40 plugins are attack surface (EPS, FITS...).
        # "JPEG" may come back as MPO (phone photos); frame 0 is the photo, as for animations.
        return Image.open(BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own guard fires in open() from the header, before our check can run.
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{_mp(int(found[1]))} MP" if found else "too large"
        raise ImageRejected(f"The image is {size}; the limit is {_mp(max_pixels)} MP.") from e
    except DECODE_ERRORS as e:
        raise ImageRejected(DAMAGED) from e


def check_size(width: int, height: int, max_pixels: int, max_side: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(f"The image is {width}x{height} pixels ({_mp(width * height)} MP); "
                            f"the limit is {_mp(max_pixels)} MP.")
    if max(width, height) > max_side:
        raise ImageRejected(f"The image is {width}x{height} pixels; "
                            f"the limit is {max_side} pixels on the longest side.")


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".removesuffix(".0")


def orientation(im: ImageFile.ImageFile, fmt: str, data: bytes) -> int:
    try:
        if fmt == "PNG" and "exif" not in im.info:
            # Pillow's getexif() would decode the whole PNG to reach an eXIf chunk after the pixels.
            exif = Image.Exif()
            exif.load(_png_exif(data) or b"")
        else:
            exif = im.getexif()
        value = exif.get(_ORIENTATION, 1)
    except (*DECODE_ERRORS, struct.error):
        return 1  # unreadable EXIF: show the pixels as stored rather than refuse the picture
    return value if value in ORIENT else 1


def _png_exif(data: bytes) -> bytes | None:
    """The eXIf chunk's body wherever it is, walking the chunk lengths (no decoding)."""
    at = 8
    while at + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        if kind == b"eXIf":
            return data[at + 8:at + 8 + length]
        if kind == b"IEND":
            return None
        at += 12 + length
    return None


def load(im: ImageFile.ImageFile) -> None:
    try:
        # Truncated files fail here (verify() passes them) as long as nobody sets Pillow's
        # LOAD_TRUNCATED_IMAGES, which would ship a half-grey crop.
        im.load()
    except DECODE_ERRORS as e:
        raise ImageRejected(DAMAGED) from e
