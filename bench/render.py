"""Render benchmark: CPU, output quality and peak memory of worker.imaging.render against the
original design, libvips thumbnail x3, the best libvips pipeline seen so far and the floor.

    .venv/bin/python bench/render.py            # ~2-3 min on 2 cores
    .venv/bin/python bench/render.py --runs 7   # more runs per median

Inputs are generated at start (scikit-image's astronaut, enlarged, with drawn edges, texture
and noise); nothing is downloaded. See bench/README.md ("Render benchmark") for the columns.
"""
from __future__ import annotations

import os
import sys

# `python bench/render.py` puts bench/ first on sys.path, where a sibling script's name may shadow
# a standard module (bench/queue.py would shadow `queue`, which concurrent.futures imports).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

# Single-threaded everywhere, set before pyvips/libvips and OpenCV start their thread pools.
os.environ["VIPS_CONCURRENCY"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from io import BytesIO  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
import pyvips  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from worker import boxes, cropping, decoding, imaging, jpeg_output  # noqa: E402

cv2.setNumThreads(1)
pyvips.cache_set_max(0)
Image.MAX_IMAGE_PIXELS = None  # our own 50 MP input

RATIOS = boxes.RATIOS
Q = imaging.JPEG_QUALITY


# --- inputs ---------------------------------------------------------------------------------

def make_photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Photo-like RGB: the astronaut (a face, for the cropper) enlarged, with sharp drawn edges,
    blotchy mid-frequency texture and per-pixel noise, so resamplers and JPEG have work to do."""
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    src = Image.fromarray(skdata.astronaut())  # 512x512
    src = src.crop((0, 0, 512, round(512 * h / w)))  # keep the head, take the target's aspect
    base = src.resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(60):  # thin lines and outlined boxes: edges where filters differ most
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(-w // 4, w // 4)), y0 + int(rng.integers(-h // 4, h // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 7)))
        else:
            draw.rectangle((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), outline=colour,
                           width=int(rng.integers(1, 5)))
    tex_small = Image.fromarray(rng.integers(0, 256, (h // 12, w // 12), dtype=np.uint8), "L")
    texture = np.asarray(tex_small.resize((w, h), Image.Resampling.BICUBIC))
    out = np.asarray(base).copy()
    band = 256
    for y in range(0, h, band):  # in bands: 50 MP of float noise at once would be ~600 MB
        b = out[y:y + band].astype(np.float32)
        b += (texture[y:y + band, :, None].astype(np.float32) - 128) * 0.12
        b += rng.standard_normal(b.shape, dtype=np.float32) * 4.0
        out[y:y + band] = np.clip(b, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def make_inputs(directory: Path) -> dict[str, Path]:
    """name -> file; the 50 MP one is only for the memory check."""
    t = time.perf_counter()
    specs = {}
    im24 = make_photo(6000, 4000, seed=24)
    specs["24MP baseline JPEG"] = encode(im24, "JPEG", quality=90)
    specs["24MP progressive JPEG"] = encode(im24, "JPEG", quality=90, progressive=True)
    del im24
    im12 = make_photo(4000, 3000, seed=12)
    specs["12MP baseline JPEG"] = encode(im12, "JPEG", quality=90)
    specs["12MP PNG"] = encode(im12, "PNG")  # Pillow's default compression (zlib level 6)
    del im12
    im50 = make_photo(8660, 5774, seed=50)
    specs["50MP baseline JPEG"] = encode(im50, "JPEG", quality=90)
    del im50
    paths = {}
    for name, blob in specs.items():
        p = directory / (name.replace(" ", "_") + (".png" if "PNG" in name else ".jpg"))
        p.write_bytes(blob)
        paths[name] = p
    print(f"inputs generated in {time.perf_counter() - t:.1f} s: "
          + ", ".join(f"{n} {len(b) / 1e6:.1f} MB" for n, b in specs.items()), flush=True)
    return paths


# --- pipelines ------------------------------------------------------------------------------
# Each takes the file's bytes and returns {ratio: (jpeg bytes, crop box in full-resolution
# source pixels as floats (x0, y0, x1, y1))}; only the work inside is timed.

def ours(data: bytes):
    r = imaging.render(data, place=cropping.place)
    return {v.ratio: (v.jpeg, (v.crop.x, v.crop.y, v.crop.x + v.crop.w, v.crop.y + v.crop.h)) for v in r.variants}


@contextmanager
def dct_scaled():
    """render() shrinking every JPEG on load as far as its crops allow, however small the file:
    the other side of the speed/PSNR trade-off (decoding.FULL_DECODE_PIXELS)."""
    saved = decoding.FULL_DECODE_PIXELS
    decoding.FULL_DECODE_PIXELS = 0
    try:
        yield
    finally:
        decoding.FULL_DECODE_PIXELS = saved


def ours_dct(data: bytes):
    with dct_scaled():
        return ours(data)


@contextmanager
def unencoded():
    """render() handing back its pixels losslessly (PNG) instead of q95 JPEGs: what the resampling
    itself costs, before JPEG rounds our pixels and the reference's differently."""
    saved = jpeg_output.encode
    jpeg_output.encode = lambda im, quality: encode(im, "PNG", compress_level=1)
    try:
        yield
    finally:
        jpeg_output.encode = saved


def original(data: bytes):
    """The original design: full decode, centre crop_box, Pillow LANCZOS per ratio, q95."""
    im = Image.open(BytesIO(data))
    im = im.convert("RGB")  # full decode, no draft
    out = {}
    for ratio, size in RATIOS.items():
        b = boxes.crop_box(im.width, im.height, ratio)
        box = (b.x, b.y, b.x + b.w, b.y + b.h)
        small = im.crop(box).resize(size, Image.Resampling.LANCZOS)
        out[ratio] = (encode(small, "JPEG", quality=Q), box)
    return out


def vips_thumbnail(data: bytes):
    """libvips thumbnail_buffer(crop="attention") once per ratio, jpegsave Q95."""
    out = {}
    for ratio, (w, h) in RATIOS.items():
        t = pyvips.Image.thumbnail_buffer(data, w, height=h, crop="attention")
        out[ratio] = (t.jpegsave_buffer(Q=Q), None)
    return out


def _shrink(width: int, height: int) -> int:
    return round(1 / decoding.decode_scale(width, height))


def _shrink_max(width: int, height: int) -> int:
    with dct_scaled():
        return _shrink(width, height)


def vips_best(data: bytes, previews: bool = True):
    """Best libvips pipeline: one decode with shrink-on-load to the smallest DCT scale that still
    covers every crop (what ours does under dct_scaled, whatever the size), crops chosen on a small copy by our own
    cropping.place, then crop + lanczos3 resize per ratio, jpegsave Q95 4:2:0. With previews=True it
    also makes what ours makes besides: a 480 px preview of each variant (Q80) and a 1280 px
    source preview (Q82), so both produce the same campaign."""
    head = pyvips.Image.new_from_buffer(data, "")
    W, H = head.width, head.height
    is_jpeg = data.startswith(b"\xff\xd8\xff")
    s = _shrink_max(W, H) if is_jpeg else 1
    im = pyvips.Image.new_from_buffer(data, "", shrink=s) if s > 1 else head
    im = im.copy_memory()  # decode once; every crop below reads from memory
    scale_x, scale_y = im.width / W, im.height / H
    f = min(1.0, (4 * cropping.FACE_PIXELS / (im.width * im.height)) ** 0.5)
    small = Image.fromarray(im.resize(f).numpy())
    placed = cropping.place(small, W, H)
    out = {}
    for ratio, (w, h) in RATIOS.items():
        b = placed[ratio]
        x0, y0 = round(b.x * scale_x), round(b.y * scale_y)
        cw = min(im.width - x0, round(b.w * scale_x))
        ch = min(im.height - y0, round(b.h * scale_y))
        v = im.crop(x0, y0, cw, ch).resize(w / cw, vscale=h / ch)
        if v.width != w or v.height != h:
            v = v.crop(0, 0, w, h)
        jpeg = v.jpegsave_buffer(Q=Q, subsample_mode="on")  # 4:2:0 like ours (auto: 4:4:4 at Q >= 90)
        if previews:
            v.thumbnail_image(imaging.PREVIEW_SIZE[0], height=imaging.PREVIEW_SIZE[1]).jpegsave_buffer(
                Q=imaging.PREVIEW_QUALITY)
        out[ratio] = (jpeg, (x0 / scale_x, y0 / scale_y, (x0 + cw) / scale_x, (y0 + ch) / scale_y))
    if previews:
        im.thumbnail_image(imaging.SOURCE_PREVIEW_SIZE[0], height=imaging.SOURCE_PREVIEW_SIZE[1]).jpegsave_buffer(
            Q=imaging.SOURCE_PREVIEW_QUALITY)
    return out


def _floor_decode(data: bytes) -> tuple[Image.Image, float, int, int]:
    im = Image.open(BytesIO(data))
    W, H = im.size
    d = _shrink(W, H) if im.format == "JPEG" else 1  # the scale ours decodes at (as far as it goes under dct_scaled)
    if d > 1:
        im.draft("RGB", (W // d, H // d))
    im.load()
    if im.mode != "RGB":  # convert() copies even RGB to RGB: a full-size copy the floor must not pay
        im = im.convert("RGB")
    return im, im.width / W, W, H


def floor_pillow(data: bytes):
    """Floor: decode at our scale + Pillow BILINEAR (reducing_gap 2) of the centre boxes + q95."""
    im, s, W, H = _floor_decode(data)
    out = {}
    for ratio, size in RATIOS.items():
        b = boxes.crop_box(W, H, ratio)
        box = (b.x * s, b.y * s, (b.x + b.w) * s, (b.y + b.h) * s)
        small = im.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
        out[ratio] = (encode(small, "JPEG", quality=Q, subsampling=2), None)
    return out


def floor_cv2(data: bytes):
    """Floor: decode at our scale + cv2 INTER_AREA of the centre boxes + Pillow q95."""
    im, s, W, H = _floor_decode(data)
    arr = np.asarray(im)
    out = {}
    for ratio, size in RATIOS.items():
        b = boxes.crop_box(W, H, ratio)
        x0, y0 = round(b.x * s), round(b.y * s)
        view = arr[y0:y0 + round(b.h * s), x0:x0 + round(b.w * s)]
        small = cv2.resize(view, size, interpolation=cv2.INTER_AREA)
        out[ratio] = (encode(Image.fromarray(small), "JPEG", quality=Q, subsampling=2), None)
    return out


def floor_vips(data: bytes, kernel: str = "linear", gap: float = 2.0):
    """Floor: libvips decode at our scale (shrink-on-load) + resize of the centre boxes (linear unless
    told otherwise) + Q95 4:2:0."""
    is_jpeg = data.startswith(b"\xff\xd8\xff")
    head = pyvips.Image.new_from_buffer(data, "")
    W, H = head.width, head.height
    s = _shrink(W, H) if is_jpeg else 1
    im = pyvips.Image.new_from_buffer(data, "", shrink=s).copy_memory() if s > 1 else head.copy_memory()
    out = {}
    for ratio, (w, h) in RATIOS.items():
        b = boxes.crop_box(W, H, ratio)
        c = im.crop(b.x // s, b.y // s, b.w // s, b.h // s)
        v = c.resize(w / c.width, vscale=h / c.height, kernel=kernel, gap=gap)
        out[ratio] = (v.jpegsave_buffer(Q=Q, subsample_mode="on"), None)
    return out


def floor_vips_our_kernel(data: bytes):
    """The libvips floor resizing with our kernel and gap (lanczos3): the floor at our quality.
    (Linear scores ~43 dB against the LANCZOS reference on these inputs, under the 50 dB bar.)"""
    return floor_vips(data, imaging.RESIZE_KERNEL, imaging.RESIZE_GAP)


def floor_vips_dct(data: bytes):
    with dct_scaled():
        return floor_vips(data)


def floor_pillow_dct(data: bytes):
    with dct_scaled():
        return floor_pillow(data)


def floor_cv2_dct(data: bytes):
    with dct_scaled():
        return floor_cv2(data)


PIPELINES = {
    "ours": ours,
    "original": original,
    "vips thumbnail x3": vips_thumbnail,
    "best libvips": vips_best,
    "floor (Pillow bilinear)": floor_pillow,
    "floor (cv2 area)": floor_cv2,
    "floor (libvips linear)": floor_vips,
    "floor at our kernel (libvips lanczos3)": floor_vips_our_kernel,
}
FLOORS = ("floor (Pillow bilinear)", "floor (cv2 area)", "floor (libvips linear)")
# Only where DCT scaling could go further than ours does (else they repeat ours and the floor).
DCT_SCALED = {"ours, DCT-scaled": ours_dct, "floor (Pillow bilinear), DCT-scaled": floor_pillow_dct,
              "floor (cv2 area), DCT-scaled": floor_cv2_dct, "floor (libvips linear), DCT-scaled": floor_vips_dct}


def measure(data: bytes, runs: int, pipelines: dict) -> dict[str, list[float]]:
    """CPU seconds per run; pipelines interleaved so drift in machine load hits all alike."""
    for fn in pipelines.values():  # warm: imports, cascade load, libjpeg tables
        fn(data)
    times = {name: [] for name in pipelines}
    for _ in range(runs):
        for name, fn in pipelines.items():
            t = time.process_time()
            fn(data)
            times[name].append(time.process_time() - t)
    return times


# --- quality --------------------------------------------------------------------------------

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def decode_rgb(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(jpeg)).convert("RGB"))


def quality(data: bytes, outputs: dict, pixels: dict | None = None) -> tuple[float, ...]:
    """Min over ratios of PSNR (dB) of the decoded output against the full-resolution LANCZOS
    reference of the same box: (vs the reference encoded q95 4:2:0, vs the unencoded reference,
    the ceiling: the encoded reference vs the unencoded one, i.e. what q95 4:2:0 itself costs,
    and, given `pixels` (the same render unencoded), the rendered pixels vs the unencoded reference)."""
    full = Image.open(BytesIO(data)).convert("RGB")
    enc, raw, ceiling, before = [], [], [], []
    for ratio, (jpeg, box) in outputs.items():
        ref = full.resize(RATIOS[ratio], Image.Resampling.LANCZOS, box=box)
        got, ref_enc = decode_rgb(jpeg), decode_rgb(encode(ref, "JPEG", quality=Q, subsampling=2))
        raw.append(psnr(got, np.asarray(ref)))
        enc.append(psnr(got, ref_enc))
        ceiling.append(psnr(ref_enc, np.asarray(ref)))
        if pixels is not None:
            assert pixels[ratio][1] == box, "the unencoded render chose other boxes"
            before.append(psnr(decode_rgb(pixels[ratio][0]), np.asarray(ref)))
    return min(enc), min(raw), min(ceiling), (min(before) if before else float("nan"))


def quality_of(render_fn, data: bytes) -> tuple[float, ...]:
    with unencoded():
        pixels = render_fn(data)
    return quality(data, render_fn(data), pixels)


# --- memory (fresh subprocess per measurement) ----------------------------------------------

def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def memory_child(pipeline: str, path: str) -> None:
    data = Path(path).read_bytes()
    cropping.warm_up()  # as a worker child does when it starts (worker_process_init): cascades loaded
    before = _status("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:  # "5" resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = _status("VmHWM") <= before + (1 << 20)
    except OSError:
        reset = False
    PIPELINES[pipeline](data)
    peak = _status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"delta": peak - before, "baseline": before, "reset": reset,
                      "maxrss_delta": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - maxrss_before}))


def memory(pipeline: str, path: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--memory-child", pipeline, str(path)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- report ---------------------------------------------------------------------------------

def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "?")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{cpu}, {os.cpu_count()} cores, load {load}; Python {platform.python_version()}, "
            f"Pillow {PIL.__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)} "
            f"(pyvips {pyvips.__version__}), OpenCV {cv2.__version__}, numpy {np.__version__}")


def db(x: float) -> str:
    return "identical" if x == float("inf") else f"{x:.1f}"


def mib(n: float) -> str:
    return f"{n / 2 ** 20:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per pipeline and input (median)")
    ap.add_argument("--memory-child", nargs=2, metavar=("PIPELINE", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    print("machine:", machine(), flush=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        paths = make_inputs(Path(tmp))
        for name, path in paths.items():
            if name.startswith("50MP"):
                continue
            data = path.read_bytes()
            with Image.open(path) as im:
                W, H = im.size
            s = decoding.decode_scale(W, H) if im.format == "JPEG" else 1.0
            with dct_scaled():
                s_dct = decoding.decode_scale(W, H) if im.format == "JPEG" else 1.0
            times = measure(data, args.runs, PIPELINES | (DCT_SCALED if s_dct < s else {}))
            med = {k: statistics.median(v) for k, v in times.items()}
            floor = min(med[f] for f in FLOORS)
            parts = [imaging.render(data, place=cropping.place).timings_ms for _ in range(3)]
            parts = {k: statistics.median(t[k] for t in parts) for k in parts[0]}
            q_ours = quality_of(ours, data)
            q_best = quality(data, vips_best(data, previews=False))
            q_dct = quality_of(ours_dct, data) if s_dct < s else None
            print(f"\n### {name} ({W}x{H}, {len(data) / 1e6:.1f} MB, decoded at scale {s:g}), "
                  f"median of {args.runs} runs, CPU ms\n")
            print("| pipeline | CPU ms (median) | min-max | ours / this |")
            print("| --- | ---: | ---: | ---: |")
            for k, v in times.items():
                spread = f"{min(v) * 1e3:.0f}-{max(v) * 1e3:.0f}"
                print(f"| {k} | {med[k] * 1e3:.0f} | {spread} | {med['ours'] / med[k]:.2f} |")
            print(f"\nPSNR, min over the three ratios, vs full-res LANCZOS of the same box "
                  f"(reference q95 4:2:0 / unencoded): ours {db(q_ours[0])} / {db(q_ours[1])} dB; "
                  f"best libvips {db(q_best[0])} / {db(q_best[1])} dB; "
                  f"q95 4:2:0 of the reference itself vs unencoded: {db(q_ours[2])} dB")
            print(f"ours' pixels before encoding vs the unencoded reference: {db(q_ours[3])} dB")
            if q_dct:
                dct, dct_floor = med["ours, DCT-scaled"], min(med[f + ", DCT-scaled"] for f in FLOORS)
                print(f"ours DCT-scaled to {s_dct:g} instead: {db(q_dct[3])} dB before encoding, {db(q_dct[0])} / "
                      f"{db(q_dct[1])} dB after; {dct * 1e3:.0f} ms = {dct / dct_floor:.2f}x its floor, "
                      f"{dct / med['original']:.2f}x original (its floor {dct_floor / med['original']:.2f}x), "
                      f"{dct / med['best libvips']:.2f}x best libvips")
            print("ours, inside render() (wall ms, median of 3): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in parts.items()), flush=True)
            summary.append((name, med["ours"] / med["original"], floor / med["original"],
                            med["ours"] / med["best libvips"], med["ours"] / floor,
                            med["ours"] / med["floor at our kernel (libvips lanczos3)"],
                            *q_ours))

        print("\n### Goals (ours / original <= 0.25, ours / best libvips <= 1.0, ours / floor <= 1.3, "
              "PSNR >= 50 dB)\n")
        # The cheapest floor / original bounds the first ratio: no render at this decode scale goes below it.
        print("| input | ours / original | cheapest floor / original | ours / best libvips | ours / floor (cheapest) "
              "| ours / floor at our kernel | ours PSNR dB, pixels before encoding vs unencoded ref | ours PSNR dB "
              "vs encoded ref (vs unencoded; q95 ceiling) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, a, f, b, c, k, p1, p2, p3, p4 in summary:
            mark = lambda ok: "" if ok else " MISS"  # noqa: E731
            print(f"| {name} | {a:.2f}{mark(a <= 0.25)} | {f:.2f} | {b:.2f}{mark(b <= 1.0)} | {c:.2f}{mark(c <= 1.3)} "
                  f"| {k:.2f}{mark(k <= 1.3)} "
                  f"| {db(p4)}{mark(p4 >= 50)} | {db(p1)}{mark(p1 >= 50)} ({db(p2)}; {db(p3)}) |")

        print("\n### Peak memory of one render, fresh process (MiB above the RSS before the call; "
              "VmHWM reset through /proc/self/clear_refs)\n")
        print("| input | decoded at (ours) | ours | original | best libvips |")
        print("| --- | --- | ---: | ---: | ---: |")
        for name in ("24MP baseline JPEG", "50MP baseline JPEG"):
            row = [memory(p, paths[name]) for p in ("ours", "original", "best libvips")]
            method = "" if all(r["reset"] for r in row) else " (ru_maxrss delta: VmHWM reset unavailable)"
            with Image.open(paths[name]) as im:
                s = decoding.decode_scale(*im.size)
                at = f"{round(im.width * s)}x{round(im.height * s)} (scale {s:g})"
            print(f"| {name} | {at} | " + " | ".join(mib(r["delta"]) for r in row) + f" |{method}", flush=True)
    print("\nmachine after:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))


if __name__ == "__main__":
    main()
