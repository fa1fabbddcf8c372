"""worker.imaging: sizes, crops, orientation, colour modes, hostile inputs, quality."""
from __future__ import annotations

import math
import random
import struct
import warnings
import zlib
from dataclasses import astuple
from io import BytesIO

import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFile, JpegImagePlugin

from worker import decoding, imaging, jpeg_output
from worker.boxes import RATIOS, Box, check_crop, crop_box
from worker.decoding import decode_scale
from worker.imaging import ImageRejected, render, sniff_format

RED, BLUE, GREEN, GREY, WHITE = (255, 0, 0), (0, 0, 255), (0, 200, 0), (128, 128, 128), (255, 255, 255)


def encode(im: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    out = BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(BytesIO(data))
    im.load()
    return im


def near(pixel, expected, tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


def psnr(a: Image.Image, b: Image.Image) -> float:
    hist = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).histogram()
    mse = sum((i % 256) ** 2 * n for i, n in enumerate(hist)) / (a.width * a.height * 3)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def photo_like(width: int, height: int, seed: int = 7) -> Image.Image:
    """Gradients, hard-edged shapes, thin lines, and grain at two scales: flat colour would hide
    resampling differences."""
    rnd = random.Random(seed)
    g = Image.linear_gradient("L")
    im = Image.merge("RGB", (g.resize((width, height)), g.rotate(90).resize((width, height)),
                             Image.radial_gradient("L").resize((width, height))))
    draw = ImageDraw.Draw(im)
    for _ in range(60):
        x, y, s = rnd.randrange(width), rnd.randrange(height), rnd.randrange(width // 40, width // 6)
        shape = draw.ellipse if rnd.random() < 0.5 else draw.rectangle
        shape((x, y, x + s, y + s // 2), fill=tuple(rnd.randrange(256) for _ in range(3)))
    for _ in range(40):
        draw.line([rnd.randrange(width), rnd.randrange(height), rnd.randrange(width), rnd.randrange(height)],
                  fill=tuple(rnd.randrange(256) for _ in range(3)), width=rnd.randrange(1, 8))
    coarse = Image.effect_noise((width // 4, height // 4), 20).resize((width, height), Image.Resampling.BICUBIC)
    patch, fine = Image.effect_noise((509, 509), 8), Image.new("L", (width, height))
    for x in range(0, width, 509):  # tiling a patch is 100x faster than noise at full size
        for y in range(0, height, 509):
            fine.paste(patch, (x, y))
    grain = ImageChops.add(coarse, fine, 1.0, -128)
    return ImageChops.add(im, Image.merge("RGB", (grain, grain, grain)), 1.0, -128)


def full_lanczos(data: bytes, box: Box, size: tuple[int, int]) -> Image.Image:
    """The reference: full-resolution decode, one LANCZOS resample of the same crop box."""
    return decode(data).convert("RGB").resize(size, Image.Resampling.LANCZOS,
                                              box=(box.x, box.y, box.x + box.w, box.y + box.h))


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height: what a decompression bomb looks like."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- sniffing and sizes -------------------------------------------------------------------

def test_sniff_format_reads_magic_bytes_only():
    im = Image.new("RGB", (8, 8), RED)
    assert sniff_format(encode(im, "JPEG")) == "JPEG"
    assert sniff_format(encode(im, "PNG")) == "PNG"
    assert sniff_format(encode(im, "WEBP")) == "WEBP"
    for other in (encode(im, "GIF"), encode(im, "BMP"), encode(im, "TIFF"), b"<svg></svg>", b"RIFF", b""):
        assert sniff_format(other) is None


@pytest.mark.parametrize("size", [(900, 600), (600, 900), (700, 700)], ids=["landscape", "portrait", "square"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_every_ratio_has_its_exact_size(size, fmt):
    result = render(encode(Image.new("RGB", size, GREY), fmt))
    assert (result.source_width, result.source_height, result.source_format) == (*size, fmt)
    assert [v.ratio for v in result.variants] == list(RATIOS)
    for v in result.variants:
        full, preview = decode(v.jpeg), decode(v.preview)
        assert (full.format, full.mode, full.size) == ("JPEG", "RGB", RATIOS[v.ratio])
        assert (v.width, v.height) == RATIOS[v.ratio]
        assert preview.format == "JPEG" and max(preview.size) == 480
        assert abs(preview.width / preview.height - v.width / v.height) < 0.01
        assert v.crop == crop_box(*size, v.ratio)
    assert decode(result.source_preview).size == size  # fits 1280x1280 already; never enlarged
    assert set(result.timings_ms) == {"decode", "analyse", "render", "encode"}


def test_outputs_are_baseline_jpegs_without_metadata_or_payload():
    im = Image.new("RGB", (600, 400), GREY)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {2: (52.0, 31.0, 12.0)}  # GPSInfo: latitude
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    payload = b"<script>alert('polyglot')</script>"
    data = encode(im, exif=exif, icc_profile=icc, xmp=b"<x:xmpmeta>secret</x:xmpmeta>") + payload
    result = render(data)
    for blob in [result.source_preview] + [b for v in result.variants for b in (v.jpeg, v.preview)]:
        out = decode(blob)
        assert not out.getexif() and not {"exif", "icc_profile", "xmp", "progressive"} & set(out.info)
        assert b"\xff\xc0" in blob  # SOF0: baseline
        assert payload not in blob and b"PhoneMaker" not in blob and b"secret" not in blob
    assert JpegImagePlugin.get_sampling(decode(result.variants[0].jpeg)) == jpeg_output.JPEG_SUBSAMPLING


# --- crop geometry ------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", list(RATIOS))
def test_crop_box_is_the_largest_centred_window_of_the_exact_aspect(ratio):
    rw, rh = RATIOS[ratio]
    rnd = random.Random(ratio)
    sizes = [(rnd.randrange(1, 9000), rnd.randrange(1, 9000)) for _ in range(300)] + [(1, 1), (1, 5000), (5000, 1)]
    for width, height in sizes:
        box = crop_box(width, height, ratio)
        assert box.x >= 0 and box.y >= 0 and box.x + box.w <= width and box.y + box.h <= height
        assert box.w == width or box.h == height  # largest: touches two opposite sides
        if min(box.w, box.h) > 1:
            assert abs(box.h - box.w * rh / rw) <= 1 or abs(box.w - box.h * rw / rh) <= 1
        assert abs(box.x + box.w / 2 - width / 2) <= 1 and abs(box.y + box.h / 2 - height / 2) <= 1


def test_crop_box_follows_the_focal_point_and_stays_inside():
    assert crop_box(4000, 1000, "1:1", (0.25, 0.5)) == Box(500, 0, 1000, 1000)
    assert crop_box(1000, 4000, "16:9", (0.5, 0.75)) == Box(0, 2719, 1000, 562)
    assert crop_box(4000, 3000, "9:16", (0, 0)) == Box(0, 0, 1688, 3000)
    assert crop_box(4000, 3000, "9:16", (1, 1)) == Box(4000 - 1688, 0, 1688, 3000)
    assert crop_box(3000, 4000, "16:9", (1, 1)) == Box(0, 4000 - 1688, 3000, 1688)
    assert crop_box(3000, 4000, "16:9", (0.0, 0.0)) == Box(0, 0, 3000, 1688)


@pytest.mark.parametrize(("ratio", "size"), [("1:1", (1080, 1080)), ("9:16", (900, 1600)), ("16:9", (3840, 2160))])
def test_source_already_at_the_ratio_is_used_whole(ratio, size):
    assert crop_box(*size, ratio, (0.9, 0.1)) == Box(0, 0, *size)


def test_crop_box_refuses_nonsense():
    with pytest.raises(ValueError):
        crop_box(100, 100, "4:5")
    for focal in [(-0.1, 0.5), (0.5, 1.5), (math.nan, 0.5)]:
        with pytest.raises(ValueError):
            crop_box(100, 100, "1:1", focal)


def test_pixels_come_from_the_reported_crop_box():
    im = Image.new("RGB", (1200, 800), GREY)
    ImageDraw.Draw(im).rectangle((900, 100, 999, 199), fill=GREEN)
    focal = (950 / 1200, 150 / 800)
    result = render(encode(im, "PNG"), focal=focal)
    for v in result.variants:
        assert v.crop == crop_box(1200, 800, v.ratio, focal)
        sx, sy = v.width / v.crop.w, v.height / v.crop.h
        out = decode(v.jpeg)
        assert near(out.getpixel(((950 - v.crop.x) * sx, (150 - v.crop.y) * sy)), GREEN)
        assert near(out.getpixel(((880 - v.crop.x) * sx, (230 - v.crop.y) * sy)), GREY)


# --- orientation --------------------------------------------------------------------------

def oriented_jpeg(raw: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(raw, quality=95, exif=exif)


def test_orientation_6_turns_the_left_half_to_the_top():
    raw = Image.new("RGB", (400, 200), RED)
    raw.paste(BLUE, (200, 0, 400, 200))
    result = render(oriented_jpeg(raw, 6))  # 6 = "rotate 90 degrees clockwise to display"
    assert (result.source_width, result.source_height) == (200, 400)
    tall = decode(result.variants[1].jpeg)
    assert result.variants[1].ratio == "9:16" and tall.size == (1080, 1920)
    assert near(tall.getpixel((540, 100)), RED) and near(tall.getpixel((540, 1820)), BLUE)
    preview = decode(result.source_preview)
    assert preview.size == (200, 400)
    assert near(preview.getpixel((100, 20)), RED) and near(preview.getpixel((100, 380)), BLUE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_orientations_show_the_upright_picture(orientation):
    upright = Image.new("RGB", (300, 200), RED)  # a red picture with a blue top-left corner
    upright.paste(BLUE, (0, 0, 100, 60))
    # Store it the way a camera in that orientation would: the inverse of the display transform.
    undo = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}
    raw = upright.transpose(undo[orientation]) if orientation in undo else upright
    result = render(oriented_jpeg(raw, orientation), focal=(0, 0))
    assert (result.source_width, result.source_height) == (300, 200)
    wide = decode(result.variants[2].jpeg)  # 16:9 from the top-left corner
    assert near(wide.getpixel((100, 100)), BLUE) and near(wide.getpixel((1800, 1000)), RED)


def test_explicit_crops_use_oriented_coordinates():
    raw = Image.new("RGB", (400, 200), RED)
    raw.paste(BLUE, (200, 0, 400, 200))
    data = oriented_jpeg(raw, 6)  # displayed 200x400: red top half
    result = render(data, crops={"9:16": Box(10, 0, 108, 192)})
    assert result.variants[1].crop == Box(10, 0, 108, 192)
    tall = decode(result.variants[1].jpeg)
    assert near(tall.getpixel((540, 20)), RED) and near(tall.getpixel((540, 1900)), RED)
    with pytest.raises(ImageRejected, match="does not fit inside the 200x400 image"):
        render(data, crops={"1:1": Box(0, 0, 300, 300)})  # fits the stored 400x200, not the picture


def test_png_orientation_is_read_wherever_its_exif_chunk_is():
    raw = Image.new("RGB", (400, 200), RED)
    raw.paste(BLUE, (200, 0, 400, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(raw, "PNG", exif=exif)
    start = data.index(b"eXIf") - 4
    chunk = data[start:start + 12 + struct.unpack(">I", data[start:start + 4])[0]]
    rest = data.replace(chunk, b"")
    after_pixels = rest[:rest.index(b"IEND") - 4] + chunk + rest[rest.index(b"IEND") - 4:]
    for png in (data, after_pixels):
        result = render(png)
        assert (result.source_width, result.source_height) == (200, 400)
        tall = decode(result.variants[1].jpeg)
        assert near(tall.getpixel((540, 100)), RED) and near(tall.getpixel((540, 1820)), BLUE)


def test_corrupt_exif_does_not_stop_the_render():
    # Orientation 6 plus PlanarConfiguration (a SHORT tag) holding text, one flipped byte away
    # from a Make tag: ImageOps.exif_transpose raises struct.error re-writing this block.
    exif = bytes.fromhex(
        "4578696600004d4d002a000000080002011c0002000000290000002601120003000000010006000000000000"
        + "78" * 40 + "0000")
    result = render(encode(Image.new("RGB", (80, 40), RED), exif=exif))
    assert (result.source_width, result.source_height) == (40, 80)


# --- explicit crops -----------------------------------------------------------------------

def test_explicit_crops_override_only_their_ratio():
    im = Image.new("RGB", (1200, 800), GREY)
    im.paste(RED, (0, 0, 300, 300))
    result = render(encode(im, "PNG"), crops={"1:1": Box(0, 0, 300, 300)})
    square = decode(result.variants[0].jpeg)
    assert result.variants[0].crop == Box(0, 0, 300, 300)
    assert near(square.getpixel((5, 5)), RED) and near(square.getpixel((1075, 1075)), RED)
    assert [v.crop for v in result.variants[1:]] == [crop_box(1200, 800, r) for r in ("9:16", "16:9")]


@pytest.mark.parametrize("box", [Box(1000, 0, 300, 300), Box(-1, 0, 300, 300), Box(0, 600, 300, 300), Box(0, 0, 0, 0)])
def test_crops_outside_the_image_are_rejected(box):
    with pytest.raises(ImageRejected, match="does not fit inside the 1200x800 image"):
        render(encode(Image.new("RGB", (1200, 800), GREY), "PNG"), crops={"1:1": box})


def test_crops_of_the_wrong_shape_are_rejected():
    data = encode(Image.new("RGB", (1200, 800), GREY), "PNG")
    with pytest.raises(ImageRejected, match="not 16:9"):
        render(data, crops={"16:9": Box(0, 0, 400, 400)})
    with pytest.raises(ValueError):
        render(data, crops={"4:5": Box(0, 0, 400, 500)})


# --- colour modes -------------------------------------------------------------------------

def half_transparent(mode: str) -> Image.Image:
    """Left half opaque (red, or grey 50 for LA), right half fully transparent."""
    if mode == "P":
        im = Image.new("P", (400, 400), 0)
        im.putpalette([0, 0, 0, 255, 0, 0])
        im.paste(1, (0, 0, 200, 400))
        im.info["transparency"] = 0
        return im
    im = Image.new(mode, (400, 400), (0,) * len(mode))
    im.paste((255, 0, 0, 255) if mode == "RGBA" else (50, 255), (0, 0, 200, 400))
    return im


@pytest.mark.parametrize(("mode", "fmt", "left"), [
    ("RGBA", "PNG", RED), ("RGBA", "WEBP", RED), ("LA", "PNG", (50, 50, 50)), ("P", "PNG", RED)])
def test_transparency_is_composited_on_white(mode, fmt, left):
    data = encode(half_transparent(mode), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    square = decode(render(data).variants[0].jpeg)
    assert near(square.getpixel((100, 540)), left)
    assert near(square.getpixel((1000, 540)), WHITE)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    im = Image.new("I;16", (300, 300), 32896)  # 50 % grey in 16 bits
    im.paste(Image.new("I;16", (150, 300), 1000))  # 1.5 %: clipping would make it 255
    square = decode(render(encode(im, "PNG")).variants[0].jpeg)
    assert near(square.getpixel((800, 540)), (128, 128, 128), 2)
    assert near(square.getpixel((200, 540)), (4, 4, 4), 2)


@pytest.mark.parametrize("bands", [2, 4])
def test_sixteen_bit_alpha_is_composited_on_white_not_black(bands):
    import numpy as np
    import pyvips

    pixels = np.zeros((300, 300, bands), dtype=np.uint16)
    pixels[:, :150] = (60000, 65535) if bands == 2 else (60000, 2000, 2000, 65535)  # opaque
    pixels[:, 150:, -1] = 0  # fully transparent
    image = pyvips.Image.new_from_array(pixels).copy(interpretation="grey16" if bands == 2 else "rgb16")
    square = decode(render(image.pngsave_buffer(bitdepth=16)).variants[0].jpeg)
    assert near(square.getpixel((200, 540)), (233,) * 3 if bands == 2 else (233, 8, 8))
    assert near(square.getpixel((900, 540)), WHITE)


def test_a_jpeg_comment_is_not_copied_into_any_output():
    payload = b"<script>alert(1)</script>"
    data = encode(Image.new("RGB", (400, 300), RED), comment=payload)
    assert payload in data
    result = render(data)
    outputs = [v.jpeg for v in result.variants] + [v.preview for v in result.variants]
    outputs += [result.source_preview, imaging.thumbnail(data)]
    assert not [out for out in outputs if payload in out]


def test_cmyk_grey_and_bilevel_become_rgb():
    cmyk = Image.new("CMYK", (300, 300), (0, 255, 255, 0))  # pure red ink
    grey = Image.new("L", (300, 300), 90)
    bilevel = Image.new("1", (300, 300), 1)
    for data, colour in [(encode(cmyk), RED), (encode(grey), (90, 90, 90)), (encode(bilevel, "PNG"), WHITE)]:
        square = decode(render(data).variants[0].jpeg)
        assert square.mode == "RGB" and near(square.getpixel((540, 540)), colour)


def swapped_primaries_profile() -> bytes:
    """sRGB with the red and blue primaries exchanged: stored red means displayed blue."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", icc[128:132])
    entry = {bytes(icc[132 + 12 * i:136 + 12 * i]): 136 + 12 * i for i in range(count)}  # offset+size
    r, b = entry[b"rXYZ"], entry[b"bXYZ"]
    icc[r:r + 8], icc[b:b + 8] = icc[b:b + 8], icc[r:r + 8]
    return bytes(icc)


def test_icc_profiles_are_converted_to_srgb_and_broken_ones_ignored():
    im = Image.new("RGB", (300, 300), RED)
    square = decode(render(encode(im, "PNG", icc_profile=swapped_primaries_profile())).variants[0].jpeg)
    assert near(square.getpixel((540, 540)), BLUE, 3)
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # wrong colour space for RGB
    for icc in (b"not a profile", lab):
        square = decode(render(encode(im, "JPEG", icc_profile=icc)).variants[0].jpeg)
        assert near(square.getpixel((540, 540)), RED, 3)


def test_animated_and_multi_picture_files_use_the_first_frame():
    frames = [Image.new("RGB", (300, 300), RED), Image.new("RGB", (300, 300), BLUE)]
    for fmt in ("PNG", "WEBP", "MPO"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        result = render(data)
        assert result.source_format == ("JPEG" if fmt == "MPO" else fmt)
        assert near(decode(result.variants[0].jpeg).getpixel((540, 540)), RED)


# --- hostile inputs -----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO"])
def test_other_image_formats_are_rejected(fmt):
    with pytest.raises(ImageRejected, match="not a JPEG, PNG or WebP image"):
        render(encode(Image.new("RGB", (64, 64), RED), fmt))


@pytest.mark.parametrize("data", [b"hello, this is text", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b""])
def test_non_images_are_rejected(data):
    with pytest.raises(ImageRejected, match="not a JPEG, PNG or WebP image"):
        render(data)


def test_a_30000_pixel_square_header_is_rejected_before_decoding():
    data = png_header(30000, 30000)
    assert len(data) < 100
    with pytest.raises(ImageRejected, match=r"900 MP; the limit is 64 MP"):
        render(data)


def test_pillows_bomb_warning_is_a_rejection_too():
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageRejected, match="100 MP"):
            render(png_header(10000, 10000), max_pixels=150_000_000, max_side=20_000)


def test_size_limits_are_checked_from_the_header(monkeypatch):
    def no_decoding(self):
        raise AssertionError("decoded before the size check")

    data = encode(Image.new("RGB", (1000, 1000), GREY), "PNG")
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for fmt in decoding._LOADERS:  # nor libvips, which does the real decoding
        monkeypatch.setitem(decoding._LOADERS, fmt, lambda *a, **k: no_decoding(None))
    with pytest.raises(ImageRejected, match=r"1000x1000 pixels \(1 MP\); the limit is 0.5 MP"):
        render(data, max_pixels=500_000)
    with pytest.raises(ImageRejected, match="the limit is 999 pixels on the longest side"):
        render(data, max_side=999)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_and_corrupt_files_are_rejected(fmt):
    data = encode(photo_like(400, 300), fmt)
    for broken in (data[: len(data) // 2], data[:40], data[:16] + b"\x00" * 200):
        with pytest.raises(ImageRejected, match="damaged or incomplete"):
            render(broken)


# --- decoding at reduced scale ------------------------------------------------------------

@pytest.mark.parametrize(("size", "scale"), [
    ((4000, 3000), 1.0),  # the 9:16 crop (1688 wide) needs 0.64: no DCT scale fits
    ((4032, 3024), 1.0),
    ((6000, 4000), 1.0),  # 24 MP: within FULL_DECODE_PIXELS, decoded whole
    ((7000, 4000), 0.5),  # 28 MP: its 2250 wide 9:16 crop needs 0.48
    ((4000, 7000), 0.5),
    ((8000, 6000), 0.5),  # needs 0.32: 1/4 would leave the 9:16 crop 844 px wide
    ((12000, 12000), 0.25),  # 1/4 is 9 MP; 1/8 would leave the crops too few pixels
    ((800, 600), 1.0),
])
def test_decode_scale(size, scale):
    assert decode_scale(*size) == scale


@pytest.mark.parametrize(("size", "scale"), [((4000, 3000), 1.0), ((6000, 4000), 0.5), ((12000, 12000), 0.25)])
def test_decode_scale_without_a_full_decode_budget_goes_as_far_as_the_crops_allow(monkeypatch, size, scale):
    monkeypatch.setattr(decoding, "FULL_DECODE_PIXELS", 0)
    assert decode_scale(*size) == scale


def test_big_jpegs_are_decoded_at_reduced_scale_with_the_crops_in_place(monkeypatch):
    loads = []
    jpegload = decoding._LOADERS["JPEG"]

    def spy(data, **options):
        loads.append(options)
        return jpegload(data, **options)

    monkeypatch.setitem(decoding._LOADERS, "JPEG", spy)
    monkeypatch.setattr(decoding, "FULL_DECODE_PIXELS", 10_000_000)  # 14.8 MP: decoded at 1/2
    im = Image.new("RGB", (3845, 3843), GREY)  # odd sizes: libjpeg pads the last block
    ImageDraw.Draw(im).rectangle((3500, 3500, 3844, 3842), fill=GREEN)
    focal = (1.0, 1.0)
    result = render(encode(im, quality=90), focal=focal)
    assert decode_scale(3845, 3843) == 0.5 and [o.get("shrink") for o in loads] == [2]
    assert (result.source_width, result.source_height) == (3845, 3843)
    preview = decode(result.source_preview)
    assert preview.size == (1280, 1279) and near(preview.getpixel((1270, 1270)), GREEN)
    for v in result.variants:
        wanted = crop_box(3845, 3843, v.ratio, focal)
        # On the decoded grid: edges at even source pixels, inside the image, within 2 px of the asked box.
        assert all(abs(a - b) <= 2 for a, b in zip(astuple(v.crop), astuple(wanted), strict=True)), v.ratio
        assert v.crop.x % 2 == 0 and v.crop.y % 2 == 0 and v.crop.w % 2 == 0 and v.crop.h % 2 == 0
        check_crop(v.ratio, v.crop, 3845, 3843)
        out = decode(v.jpeg)
        sx, sy = v.width / v.crop.w, v.height / v.crop.h
        assert near(out.getpixel((v.width - 5, v.height - 5)), GREEN)
        assert near(out.getpixel(((3490 - v.crop.x) * sx, (3490 - v.crop.y) * sy)), GREY)


def test_reduced_scale_decoding_keeps_flipped_axes_aligned(monkeypatch):
    """Orientation 7 reverses both axes, which moves libjpeg's padded last block to the front;
    ignoring that shifts every crop by half a decoded pixel (31 dB instead of 50 on these waves)."""
    row, col = Image.new("L", (3845, 1)), Image.new("L", (1, 3843))
    row.putdata([round(128 + 60 * math.sin(x / 4)) for x in range(3845)])
    col.putdata([round(128 + 60 * math.sin(y / 5)) for y in range(3843)])
    monkeypatch.setattr(decoding, "FULL_DECODE_PIXELS", 10_000_000)  # 14.8 MP: decoded at 1/2
    waves = ImageChops.add(row.resize((3845, 3843), Image.Resampling.NEAREST),
                           col.resize((3845, 3843), Image.Resampling.NEAREST), 2.0).convert("RGB")
    result = render(oriented_jpeg(waves.transpose(Image.Transpose.TRANSVERSE), 7))
    reference = encode(waves, quality=95)
    assert decode_scale(3845, 3843) == 0.5
    for v in result.variants:
        assert psnr(decode(v.jpeg), full_lanczos(reference, v.crop, (v.width, v.height))) >= 45, v.ratio


# --- quality ------------------------------------------------------------------------------

def lossless(im: Image.Image, quality: int) -> bytes:
    """Stands in for jpeg_output.encode: the rendered pixels themselves, before JPEG's rounding."""
    return encode(im, "PNG", compress_level=1)


def test_quality_matches_full_lanczos(monkeypatch):
    """The rendered pixels are >= 50 dB from a full-resolution LANCZOS render of the same box, and the
    q95 JPEG costs them no more than it costs that reference. (Against the reference *encoded*, any
    resampler but Pillow's own scores 43-47 dB: q95 rounds a slightly different input differently.)"""
    data = encode(photo_like(4000, 3000), quality=90)
    result = render(data)
    monkeypatch.setattr(jpeg_output, "encode", lossless)
    pixels = render(data)
    for v, raw in zip(result.variants, pixels.variants, strict=True):
        reference = full_lanczos(data, v.crop, (v.width, v.height))
        assert psnr(decode(raw.jpeg), reference) >= 50, v.ratio
        q95 = decode(encode(reference, quality=95, subsampling=jpeg_output.JPEG_SUBSAMPLING))
        assert psnr(decode(v.jpeg), reference) >= psnr(q95, reference) - 0.3, v.ratio


@pytest.mark.parametrize("factor", [2.0, 2.9, 3.7, 4.5, 5.6, 8.0])
def test_resize_keeps_50db_at_every_downscale_factor(factor):
    # 4000x3000 JPEGs never shrink a crop more than 2.8x; big PNGs and DCT-scaled JPEGs do.
    source = photo_like(1800, 1800)
    size = (round(1800 / factor),) * 2
    pixels = decoding.pyvips.Image.new_from_memory(source.tobytes(), 1800, 1800, 3, "uchar")
    whole = decoding.Source(pixels, "RGB", 1800, 1800, orientation=1, step=1, icc=None)
    ours = imaging._resize(whole, Box(0, 0, 1800, 1800), size)
    assert psnr(ours, source.resize(size, Image.Resampling.LANCZOS)) >= 50


def test_thumbnail_is_small_upright_and_checked():
    from worker.imaging import thumbnail

    buf = BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (2000, 1000), (0, 0, 255)).save(buf, "JPEG", exif=exif)
    with Image.open(BytesIO(thumbnail(buf.getvalue()))) as im:
        assert im.format == "JPEG" and im.size == (160, 320)
    with pytest.raises(ImageRejected):
        thumbnail(b"GIF89a" + bytes(64))
