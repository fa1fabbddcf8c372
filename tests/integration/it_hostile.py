"""Hostile inputs for the end-to-end image suite, built in memory (nothing downloaded or checked in).

Each builder returns the bytes of one file. A `Case` says how the file reaches the portal
(an upload, or a `local` file in the import folder) and what a user must see:

  refused    a 415 at submit, nothing stored
  failed     202, then `failed` with an error_message matching `message`
  completed  202, then `completed`; `pixels` are (x, y, colour) checks on the 16:9 variant
             (every coloured source here is 16:9, so that variant is the whole picture)

Also here: `start_portal`, an embedded portal (`python -m portal.serve`) with extra settings,
for the tests that need their own worker (a fake `gs` on its PATH, a low memory limit).
"""
from __future__ import annotations

import io
import random
import re
import secrets
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import it_images
from it_images import BLUE, GREEN, RED, YELLOW
from it_stack import MAX_UPLOAD_MB, PYTHON, SIGN_IN, Proc, clean_env, free_port, wait_http
from PIL import Image, ImageCms, ImageDraw, ImageOps

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
W, H = 320, 180  # 16:9, so the 16:9 variant (1920x1080) shows the whole picture
LEFT, RIGHT = (480, 540), (1440, 540)  # centres of the two halves in the 16:9 variant
QUADRANTS = {(480, 270): RED, (1440, 270): GREEN, (480, 810): BLUE, (1440, 810): YELLOW}
PAYLOAD = b"<script>alert('hostile-polyglot-payload')</script>"
MARKER = b"hostile-polyglot-payload"  # must appear in no byte the portal serves

NOT_ALLOWED = r"^The file is not a JPEG, PNG or WebP image\.$"
DAMAGED = r"damaged or incomplete"
TOO_BIG = r"^The image is .*(MP|pixels).*; the limit is "


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    data: bytes
    expect: str  # "refused" | "failed" | "completed"
    route: str = "upload"  # "upload" | "local"
    message: str | None = None  # regex the failure message must match
    pixels: dict = field(default_factory=dict)  # {(x, y) in the 16:9 variant: colour}
    filename: str = "photo.jpg"
    tolerance: int = 40


# ---------------------------------------------------------------------------- encoders

def encode(im: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def halves(left, right, mode: str = "RGB", size: tuple[int, int] = (W, H)) -> Image.Image:
    im = Image.new(mode, size, right)
    im.paste(left, (0, 0, size[0] // 2, size[1]))
    return im


def quadrants(size: tuple[int, int] = (W, H)) -> Image.Image:
    return it_images.quadrants(size)


def small_jpeg(seed: int = 0) -> bytes:
    rnd = random.Random(seed)
    im = Image.new("RGB", (400, 300), tuple(rnd.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x, y, s = rnd.randrange(400), rnd.randrange(300), rnd.randrange(20, 120)
        draw.rectangle((x, y, x + s, y + s), fill=tuple(rnd.randrange(256) for _ in range(3)))
    return encode(im, "JPEG", quality=90)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes,
            extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def zeros_stream(n_bytes: int) -> bytes:
    """A zlib stream of n_bytes zeros (~1 KB per MB), built from one compressed megabyte.

    Each megabyte ends with a full flush (the dictionary is reset), so its compressed bytes are
    the same every time and can be repeated; only the checksum is computed over everything."""
    mb, rest = divmod(n_bytes, 1 << 20)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = raw.compress(b"\0" * (1 << 20)) + raw.flush(zlib.Z_FULL_FLUSH)
    tail = raw.compress(b"\0" * rest) + raw.flush(zlib.Z_FINISH)
    checksum, piece = 1, b"\0" * (1 << 20)
    for _ in range(mb):
        checksum = zlib.adler32(piece, checksum)
    checksum = zlib.adler32(b"\0" * rest, checksum)
    stream = b"\x78\xda" + block * mb + tail + struct.pack(">I", checksum)
    return stream


def png16(left: tuple[int, ...], right: tuple[int, ...], colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): left/right halves."""
    row = b"\0" + b"".join(struct.pack(f">{len(v)}H", *v) for v in [left] * (W // 2) + [right] * (W // 2))
    return raw_png(W, H, 16, colour_type, zlib.compress(row * H))


# ---------------------------------------------------------------------------- bombs

def png_declaring(width: int, height: int, stream: bytes | None = None) -> bytes:
    return raw_png(width, height, 8, 2, stream if stream is not None else zlib.compress(b"\0" * 64))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A tiny real JPEG whose SOF0 header is patched to claim width x height."""
    data = bytearray(encode(Image.new("RGB", (64, 64), GREEN), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (64, 64), 1), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # logical screen
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A lossless WebP (simple VP8L file) whose bitstream header claims width x height (<= 16384)."""
    data = bytearray(encode(Image.new("RGB", (64, 64), GREEN), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F, "libwebp wrote an extended file"
    (bits,) = struct.unpack_from("<I", data, 21)
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    struct.pack_into("<I", data, 21, bits)
    return bytes(data)


def webp_vp8x_canvas(width: int, height: int) -> bytes:
    """An extended WebP whose canvas claims width x height around a 64x64 picture."""
    exif = Image.Exif()
    exif[0x0131] = "it_hostile"  # any metadata makes libwebp write the extended (VP8X) layout
    data = bytearray(encode(Image.new("RGBA", (64, 64), (*GREEN, 255)), "WEBP", lossless=True,
                            exif=exif.tobytes()))
    assert data[12:16] == b"VP8X"
    data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


# ---------------------------------------------------------------------------- damaged files

def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def garbage_after_header(data: bytes, keep: int) -> bytes:
    return data[:keep] + random.Random(keep).randbytes(4000)


def bad_png_crc() -> bytes:
    data = bytearray(encode(halves(RED, BLUE), "PNG"))
    ihdr_crc = 8 + 8 + 13  # signature, IHDR length+type, IHDR body
    data[ihdr_crc] ^= 0xFF
    return bytes(data)


# ---------------------------------------------------------------------------- other formats

def eps() -> bytes:
    return encode(Image.new("RGB", (32, 32), RED), "EPS")


def eps_dos_binary() -> bytes:
    """The DOS EPS binary header (C5D0D3C6) that Pillow's EPS plugin also accepts."""
    ps = eps()
    return b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIII", 30, len(ps), 0, 0, 0, 0) + b"\xff\xff" + ps


def postscript() -> bytes:
    return b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 0 0 moveto 100 100 lineto stroke\nshowpage\n"


def psd() -> bytes:
    """A minimal 8-bit RGB Photoshop file, raw (uncompressed) channels."""
    w, h = 16, 16
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + b"\xc8" * (w * h) + b"\x1e" * (w * h * 2)


def fits() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
             "NAXIS1  =                   32", "NAXIS2  =                   32", "END"]
    header = "".join(c.ljust(80) for c in cards).ljust(2880).encode()
    return header + bytes(range(256)) * 4 + b"\0" * (2880 - 1024)


def svg() -> bytes:
    return (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg' width='30000' height='30000'>"
            b"<script>alert(1)</script><rect width='100%' height='100%' fill='red'/></svg>")


def iso_bmff(brand: bytes) -> bytes:
    """The start of a HEIC/AVIF file (ftyp + an empty meta box): what phones upload."""
    ftyp = b"ftyp" + brand + b"\0\0\0\0" + b"mif1" + brand
    meta = b"meta" + b"\0" * 4 + b"\0\0\0\x0chdlr\0\0\0\0"
    return struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(meta) + 4) + meta + b"\0" * 512


def other_formats() -> dict[str, bytes]:
    red = Image.new("RGB", (64, 64), RED)
    return {
        "eps": eps(), "eps-dos-binary": eps_dos_binary(), "postscript": postscript(),
        "pdf": encode(red, "PDF"), "tiff": encode(red, "TIFF"), "bmp": encode(red, "BMP"),
        "psd": psd(), "ico": encode(red, "ICO"), "svg": svg(), "heic": iso_bmff(b"heic"),
        "avif": iso_bmff(b"avif"), "fits": fits(), "gif": encode(red, "GIF"),
        "jpeg2000": encode(red, "JPEG2000"), "tga": encode(red, "TGA"), "qoi": encode(red, "QOI"),
        "dds": encode(red, "DDS"),
    }


# ---------------------------------------------------------------------------- animations

def animated(fmt: str) -> bytes:
    """Frame 0 red on the left / blue on the right, frame 1 the other way round."""
    first, second = halves(RED, BLUE), halves(BLUE, RED)
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return encode(first, fmt, save_all=True, append_images=[second], duration=100, loop=0, **extra)


# ---------------------------------------------------------------------------- colour

def palette_png(transparency: bytes | int | None) -> bytes:
    """Palette index 0 on the right, 1 (red) on the left; index 0 opaque black unless made transparent."""
    im = Image.new("P", (W, H), 0)
    im.putpalette([0, 0, 0, 220, 30, 30])
    im.paste(1, (0, 0, W // 2, H))
    return encode(im, "PNG", **({} if transparency is None else {"transparency": transparency}))


def alpha_image(mode: str, fmt: str) -> bytes:
    """Left opaque, right fully transparent with black (or zero) colour underneath."""
    left = {"RGBA": (*RED, 255), "LA": (90, 255)}[mode]
    im = halves(left, (0,) * len(mode), mode)
    return encode(im, fmt, **({"lossless": True} if fmt == "WEBP" else {}))


def cmyk_jpeg() -> bytes:
    """Pillow writes CMYK JPEGs the way Photoshop does: Adobe APP14 marker, inverted values."""
    data = encode(halves((0, 255, 255, 0), (255, 255, 0, 0), "CMYK"), "JPEG", quality=95)
    assert b"Adobe" in data[:200], "no Adobe marker"
    return data


def colour_key_png() -> bytes:
    """RGB PNG with a tRNS colour key: blue pixels are transparent."""
    return encode(halves(RED, BLUE), "PNG", transparency=BLUE)


def icc_with_colorants(red: tuple, green: tuple, blue: tuple) -> bytes:
    """The sRGB profile with its rXYZ/gXYZ/bXYZ colorants replaced (D50, s15Fixed16)."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", icc[128:132])
    tags = {bytes(icc[132 + 12 * i:136 + 12 * i]): struct.unpack(">II", icc[136 + 12 * i:144 + 12 * i])
            for i in range(count)}
    for tag, xyz in ((b"rXYZ", red), (b"gXYZ", green), (b"bXYZ", blue)):
        offset, _ = tags[tag]
        struct.pack_into(">3i", icc, offset + 8, *(round(v * 65536) for v in xyz))
    return bytes(icc)


# Adobe RGB (1998) primaries adapted to D50, as in Adobe's own profile.
WIDE_GAMUT = icc_with_colorants((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
WIDE_COLOUR = (40, 180, 60)  # a saturated green: Adobe RGB and sRGB differ most there


def swapped_primaries() -> bytes:
    """sRGB with red and blue colorants exchanged: stored red is displayed blue."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (count,) = struct.unpack(">I", srgb[128:132])
    entry = {srgb[132 + 12 * i:136 + 12 * i]: 136 + 12 * i for i in range(count)}
    icc = bytearray(srgb)
    r, b = entry[b"rXYZ"], entry[b"bXYZ"]
    icc[r:r + 8], icc[b:b + 8] = icc[b:b + 8], icc[r:r + 8]
    return bytes(icc)


def srgb_of(colour: tuple, icc: bytes) -> tuple:
    """What a colour-managed viewer shows for `colour` stored under `icc` (the reference)."""
    transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                        ImageCms.createProfile("sRGB"), "RGB", "RGB")
    return ImageCms.applyTransform(Image.new("RGB", (1, 1), colour), transform).getpixel((0, 0))


# ---------------------------------------------------------------------------- orientation

# The transpose a viewer applies for each orientation (ImageOps.exif_transpose) and its inverse,
# which stores the upright picture so that the viewer's transpose shows it upright again.
_T = Image.Transpose
_VIEW = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE,
         6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}
_STORE = {**_VIEW, 6: _T.ROTATE_90, 8: _T.ROTATE_270}


def oriented(orientation: int, fmt: str = "JPEG") -> bytes:
    upright = quadrants()
    stored = upright.transpose(_STORE[orientation]) if orientation != 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(data)) as check:  # the fixture itself: a correct viewer shows it upright
        check.load()
        shown = ImageOps.exif_transpose(check).convert("RGB")
    assert shown.size == upright.size, (orientation, fmt, shown.size)
    for x, y in ((80, 45), (240, 45), (80, 135), (240, 135)):
        assert max(abs(a - b) for a, b in zip(shown.getpixel((x, y)), upright.getpixel((x, y)), strict=True)) < 40
    return data


def bad_orientation() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 9  # not an orientation: shown as stored
    return encode(quadrants(), "JPEG", quality=95, exif=exif.tobytes())


def corrupt_exif() -> bytes:
    """An APP1 Exif segment whose IFD offset points far outside it."""
    body = b"Exif\0\0" + b"II*\0" + struct.pack("<I", 0x7FFFFFF0) + b"\0" * 16
    data = encode(quadrants(), "JPEG", quality=95)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


# ---------------------------------------------------------------------------- polyglots

def jpeg_comment(data: bytes, comment: bytes) -> bytes:
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]


def jpeg_xmp(data: bytes, packet: bytes) -> bytes:
    body = b"http://ns.adobe.com/xap/1.0/\0" + packet
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


def zip_of(name: str, body: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(name, body)
    return out.getvalue()


def html_page() -> bytes:
    return b"<!doctype html><html><body>" + PAYLOAD + b"</body></html>"


def png_text(data: bytes, key: bytes, text: bytes) -> bytes:
    end = data.index(b"IDAT") - 4
    return data[:end] + png_chunk(b"tEXt", key + b"\0" + text) + data[end:]


def gif_js() -> bytes:
    """The classic GIF/JavaScript polyglot: a valid GIF header that is also a script."""
    return b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=1;" + PAYLOAD + b"//" + encode(Image.new("P", (1, 1)), "GIF")[13:]


# ---------------------------------------------------------------------------- the cases

def cases() -> list[Case]:
    c: list[Case] = []
    jpeg_rb, png_rb = encode(halves(RED, BLUE), "JPEG", quality=95), encode(halves(RED, BLUE), "PNG")
    webp_rb = encode(halves(RED, BLUE), "WEBP", quality=95)
    red_blue = {LEFT: RED, RIGHT: BLUE}

    # Decompression bombs: tiny files declaring huge sizes, refused from the header.
    for name, data in [
        ("png-30000x30000", png_declaring(30000, 30000)),
        ("png-30000x30000-8mb-zeros", png_declaring(30000, 30000, zeros_stream(8 << 20))),
        ("png-100000x1", png_declaring(100000, 1)),
        ("png-12001x1", png_declaring(12001, 1)),
        ("jpeg-30000x30000", jpeg_declaring(30000, 30000)),
        ("jpeg-65500x1", jpeg_declaring(65500, 1)),
        ("jpeg-9000x9000", jpeg_declaring(9000, 9000)),  # 81 MP: under Pillow's guard, over ours
        ("webp-16383x16383", webp_declaring(16383, 16383)),
        ("webp-16383x1", webp_declaring(16383, 1)),
    ]:
        c.append(Case(f"bomb-{name}", "decompression bombs", data, "failed", message=TOO_BIG))
    c.append(Case("bomb-webp-vp8x-canvas-30000x30000", "decompression bombs", webp_vp8x_canvas(30000, 30000),
                  "failed", message=f"{TOO_BIG}|{DAMAGED}"))
    # Bombs inside the limits: the decoder stops at the declared size; a 64 MP picture (the cap) renders.
    c.append(Case("bomb-png-320x180-with-256mb-of-zeros", "decompression bombs",
                  png_declaring(W, H, zeros_stream(256 << 20)), "completed", pixels={LEFT: BLACK, RIGHT: BLACK}))
    c.append(Case("bomb-png-8000x8000-zeros-at-the-cap", "decompression bombs",
                  png_declaring(8000, 8000, zeros_stream(8000 * (8000 * 3 + 1))), "completed"))
    for name, data in [("gif-30000x30000", gif_declaring(30000, 30000)), ("gif-65535x1", gif_declaring(65535, 1))]:
        c.append(Case(f"bomb-{name}", "decompression bombs", data, "refused"))
        c.append(Case(f"bomb-{name}-local", "decompression bombs", data, "failed", route="local", message=NOT_ALLOWED))

    # Truncated and corrupt files.
    for name, data in [
        ("jpeg-cut-mid-scan", cut(jpeg_rb, 0.6)), ("jpeg-header-only", jpeg_rb[:jpeg_rb.index(b"\xff\xda") + 12]),
        ("jpeg-garbage-after-header", garbage_after_header(jpeg_rb, 20)),
        ("jpeg-magic-then-random", b"\xff\xd8\xff" + random.Random(1).randbytes(50_000)),
        ("png-cut-mid-idat", cut(png_rb, 0.7)), ("png-garbage-after-header", garbage_after_header(png_rb, 33)),
        ("png-bad-crc", bad_png_crc()), ("webp-cut", cut(webp_rb, 0.5)),
        ("webp-garbage-after-header", garbage_after_header(webp_rb, 16)),
        ("html-behind-jpeg-magic", b"\xff\xd8\xff" + html_page()),
    ]:
        c.append(Case(f"corrupt-{name}", "truncated and corrupt", data, "failed", message=DAMAGED))
    for name, data in [("zero-bytes", b""), ("random-bytes", random.Random(2).randbytes(20_000)),
                       ("text", b"hello, this is not a picture\n" * 10)]:
        c.append(Case(f"corrupt-{name}", "truncated and corrupt", data, "refused"))
        c.append(Case(f"corrupt-{name}-local", "truncated and corrupt", data, "failed", route="local",
                      message=NOT_ALLOWED))

    # Formats outside the allow-list, named .jpg: refused at upload, failed when imported.
    for name, data in other_formats().items():
        c.append(Case(f"format-{name}-as-jpg", "formats outside the allow-list", data, "refused"))
        c.append(Case(f"format-{name}-as-jpg-local", "formats outside the allow-list", data, "failed",
                      route="local", message=NOT_ALLOWED))

    # Animations and multi-picture files: the first frame is the picture (README: "first frame").
    for fmt in ("WEBP", "PNG"):
        c.append(Case(f"animated-{fmt.lower()}", "animated", animated(fmt), "completed", pixels=red_blue))
    c.append(Case("animated-gif", "animated", animated("GIF"), "refused"))
    c.append(Case("animated-gif-local", "animated", animated("GIF"), "failed", route="local", message=NOT_ALLOWED))
    mpo = encode(halves(RED, BLUE), "MPO", save_all=True, append_images=[halves(BLUE, RED)], quality=95)
    c.append(Case("mpo-phone-jpeg", "animated", mpo, "completed", pixels=red_blue))

    # Colour modes: composited on white, scaled (not clipped), converted to sRGB.
    for name, data, pixels in [
        ("cmyk-jpeg-adobe", cmyk_jpeg(), {LEFT: (255, 0, 0), RIGHT: (0, 0, 255)}),  # red ink | cyan+magenta
        ("grey-jpeg", encode(halves(60, 200, "L"), "JPEG", quality=95), {LEFT: (60,) * 3, RIGHT: (200,) * 3}),
        ("grey-png", encode(halves(60, 200, "L"), "PNG"), {LEFT: (60,) * 3, RIGHT: (200,) * 3}),
        ("bilevel-png", encode(halves(0, 1, "1"), "PNG"), {LEFT: BLACK, RIGHT: WHITE}),
        ("png-16bit-grey", png16((1000,), (32896,), 0), {LEFT: (4, 4, 4), RIGHT: (128,) * 3}),  # 1000: not 255
        ("png-16bit-rgb", png16((60000, 2000, 2000), (2000, 2000, 60000), 2), {LEFT: (233, 8, 8), RIGHT: (8, 8, 233)}),
        ("png-16bit-grey-alpha", png16((1000, 65535), (65535, 0), 4), {LEFT: (4, 4, 4), RIGHT: WHITE}),
        ("png-16bit-rgba", png16((60000, 2000, 2000, 65535), (0, 0, 0, 0), 6), {LEFT: (233, 8, 8), RIGHT: WHITE}),
        ("palette-png", palette_png(None), {LEFT: RED, RIGHT: BLACK}),
        ("palette-png-transparent-index", palette_png(0), {LEFT: RED, RIGHT: WHITE}),
        ("palette-png-partial-alpha", palette_png(b"\x00\x80"), {LEFT: (238, 143, 143), RIGHT: WHITE}),
        ("rgb-png-colour-key", colour_key_png(), {LEFT: RED, RIGHT: WHITE}),
        ("grey-png-colour-key", encode(halves(60, 200, "L"), "PNG", transparency=200), {LEFT: (60,) * 3, RIGHT: WHITE}),
        ("rgba-png", alpha_image("RGBA", "PNG"), {LEFT: RED, RIGHT: WHITE}),
        ("rgba-webp", alpha_image("RGBA", "WEBP"), {LEFT: RED, RIGHT: WHITE}),
        ("la-png", alpha_image("LA", "PNG"), {LEFT: (90,) * 3, RIGHT: WHITE}),
        ("rgba-png-half-alpha", encode(halves((*RED, 128), (0, 0, 0, 0), "RGBA"), "PNG"),
         {LEFT: (237, 142, 142), RIGHT: WHITE}),
    ]:
        c.append(Case(f"colour-{name}", "colour modes", data, "completed", pixels=pixels, tolerance=12))
    c.append(Case("icc-swapped-primaries-png", "ICC profiles",
                  encode(Image.new("RGB", (W, H), RED), "PNG", icc_profile=swapped_primaries()),
                  "completed", pixels={LEFT: srgb_of(RED, swapped_primaries())}, tolerance=6))
    wide = srgb_of(WIDE_COLOUR, WIDE_GAMUT)
    assert max(abs(a - b) for a, b in zip(wide, WIDE_COLOUR, strict=True)) > 25, "the wide-gamut fixture shows nothing"
    c.append(Case("icc-wide-gamut-jpeg", "ICC profiles",
                  encode(Image.new("RGB", (W, H), WIDE_COLOUR), "JPEG", quality=98, icc_profile=WIDE_GAMUT),
                  "completed", pixels={LEFT: wide, RIGHT: wide}, tolerance=6))
    c.append(Case("icc-broken-profile-jpeg", "ICC profiles",
                  encode(halves(RED, BLUE), "JPEG", quality=95, icc_profile=b"not a profile" * 20),
                  "completed", pixels=red_blue, tolerance=12))

    # EXIF orientation: outputs are upright whatever the stored orientation.
    for orientation in range(1, 9):
        c.append(Case(f"orientation-{orientation}-jpeg", "EXIF orientation", oriented(orientation), "completed",
                      pixels=QUADRANTS))
    c.append(Case("orientation-6-png", "EXIF orientation", oriented(6, "PNG"), "completed", pixels=QUADRANTS))
    c.append(Case("orientation-8-webp", "EXIF orientation", oriented(8, "WEBP"), "completed", pixels=QUADRANTS))
    c.append(Case("orientation-9-invalid", "EXIF orientation", bad_orientation(), "completed", pixels=QUADRANTS))
    c.append(Case("orientation-corrupt-exif", "EXIF orientation", corrupt_exif(), "completed", pixels=QUADRANTS))

    # Polyglots: the payload never reaches a served byte; the outputs are re-encoded JPEGs.
    for name, data in [
        ("jpeg-plus-html", jpeg_rb + html_page()),
        ("jpeg-html-in-comment", jpeg_comment(jpeg_rb, html_page())),
        ("jpeg-html-in-xmp", jpeg_xmp(jpeg_rb, b"<x:xmpmeta>" + html_page() + b"</x:xmpmeta>")),
        ("png-plus-zip", png_rb + zip_of("index.html", html_page())),
        ("png-html-in-text-chunk", png_text(png_rb, b"Comment", html_page())),
        ("webp-plus-html", webp_rb + html_page()),
    ]:
        c.append(Case(f"polyglot-{name}", "polyglots", data, "completed", pixels=red_blue))
        c.append(Case(f"polyglot-{name}-local", "polyglots", data, "completed", route="local", pixels=red_blue))
    c.append(Case("polyglot-gif-js", "polyglots", gif_js(), "refused"))

    # Filenames with markup or traversal: stored under the campaign's id, shown escaped.
    for i, name in enumerate(HOSTILE_FILENAMES):
        c.append(Case(f"filename-{i}-{slug(name)}", "hostile filenames", jpeg_rb, "completed",
                      filename=name, pixels=red_blue))
    return c


HOSTILE_FILENAMES = [
    "<img src=x onerror=alert(1)>.jpg",
    "../../../../tmp/hostile-escape.jpg",
    "..\\..\\..\\hostile-escape.jpg",
    "/etc/hostile-escape.jpg",
    "\"quote's\"; DROP TABLE campaigns;--.jpg",
    "hostile\u202egpj.exe",
    "long-" + "x" * 300 + ".jpg",
]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "name"


# ---------------------------------------------------------------------------- own portal

@dataclass
class Portal:
    proc: Proc
    base_url: str
    password: str
    root: Path

    @property
    def import_dir(self) -> Path:
        return self.root / "import"

    @property
    def storage_dir(self) -> Path:
        return self.root / "storage"


def start_portal(root: Path, **settings: str) -> Portal:
    """`python -m portal.serve` in root (gunicorn + worker + beat), with extra settings in its
    environment; waits until the worker is ready. Stop it with stop_all([portal.proc])."""
    for folder in ("instance", "storage", "import", "logs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = clean_env(PORT=str(port), PORTAL_INSTANCE_DIR=str(root / "instance"),
                    PORTAL_STORAGE_DIR=str(root / "storage"), PORTAL_IMPORT_DIR=str(root / "import"),
                    PORTAL_RECONCILE_SECONDS="2", PORTAL_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
                    PORTAL_ADMIN_PASSWORD="admin-" + secrets.token_hex(8), **settings)
    proc = Proc("serve", [PYTHON, "-m", "portal.serve"], env, root / "logs", split_stderr=True)
    base = f"http://127.0.0.1:{port}"
    proc.wait_for_output(SIGN_IN.pattern, 90)
    wait_http(base + "/healthz", 60, [proc])
    wait_http(base + "/readyz", 30, [proc])
    proc.wait_for_output(r"celery@\S+ ready\.", 90, stderr=True)
    return Portal(proc, base, env["PORTAL_ADMIN_PASSWORD"], root)
