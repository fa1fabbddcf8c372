"""Output-sized pictures to what is served: sRGB, alpha flattened on white, JPEG with no metadata.

Every output is re-encoded from pixels, so nothing of the uploaded file (EXIF, ICC, comments,
appended payloads) survives.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import cache
from io import BytesIO

from PIL import Image, ImageCms

from .image_header import ImageRejected

JPEG_QUALITY = 95
# 4:2:0: a fifth smaller than 4:4:4 at q95; the chroma loss is invisible in photos, and against
# a reference encoded the same way it scores higher than 4:4:4 (40 vs 39 dB after DCT scaling).
JPEG_SUBSAMPLING = 2


def normalise_mode(im: Image.Image) -> Image.Image:
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


def srgb_converter(mode: str, icc: bytes | None) -> Callable[[Image.Image], Image.Image]:
    """Flatten alpha onto white and map the embedded profile to sRGB, on output-sized images."""
    flat_mode = {"LA": "L", "RGBA": "RGB"}.get(mode, mode)
    transform = _icc_transform(icc, flat_mode) if icc else None

    def convert(im: Image.Image) -> Image.Image:
        if im.mode in ("LA", "RGBA"):
            base = Image.new(flat_mode, im.size, "white")
            base.paste(im, mask=im.getchannel("A"))
            im = base
        if transform:
            return transform.apply(im)
        return im if im.mode == "RGB" else im.convert("RGB")

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


def encode(im: Image.Image, quality: int) -> bytes:
    out = BytesIO()
    # No exif/icc_profile/xmp arguments, so no metadata; but Pillow copies a source's JPEG comment
    # (im.info["comment"], kept through transpose/resize) unless told otherwise: a COM payload.
    im.save(out, "JPEG", quality=quality, subsampling=JPEG_SUBSAMPLING, optimize=False, progressive=False,
            comment=b"")
    return out.getvalue()
