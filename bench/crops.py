"""Crop-quality benchmark: our cropper against a centre crop, libvips' attention crop and smartcrop.py.

    .venv/bin/python bench/crops.py [--overlays DIR]

Photos come from installed wheels (scikit-image, scikit-learn, matplotlib, ultralytics); photos.json
holds their hand-checked subject and head boxes. From them the script builds cases where the
subject sits at an edge or in a corner of wide, tall and square canvases, and cases with two
subjects. Every method gets the same RGB picture and must return a window of crop_box's size.
Score of a crop = share of the subject boxes' area it keeps / the best share any window of
that size could keep. See bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from worker import cropping, decoding, imaging  # noqa: E402
from worker.boxes import RATIOS, Box, crop_box  # noqa: E402

HERE = Path(__file__).resolve().parent
Rect = tuple[float, float, float, float]  # x, y, w, h


@dataclass
class Case:
    name: str
    kind: str  # photo | edge | corner | two
    image: Image.Image  # RGB
    subjects: list[Rect]
    heads: list[Rect]


def package_file(rel: str) -> Path | None:
    """'skimage/data/x.png' -> the file inside the installed package (nothing is downloaded)."""
    top, _, rest = rel.partition("/")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / rest
    return path if path.is_file() else None


def load_photos() -> tuple[list[Case], list[str]]:
    spec = json.loads((HERE / "photos.json").read_text())["photos"]
    cases, missing = [], []
    for name, e in spec.items():
        path = package_file(e["file"])
        if path is None:
            missing.append(f"{name} ({e['file']})")
            continue
        im = Image.open(path).convert("RGB")
        cases.append(Case(name, "photo", im, [tuple(b) for b in e["subjects"]], [tuple(b) for b in e["heads"]]))
    notes = [f"photos left out, their package is not installed: {', '.join(missing)}"] if missing else []
    return cases, notes


# --- derived cases: a photo's subject placed at an edge or corner of a new canvas -----------

def blurred_background(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    f = max(size[0] / photo.width, size[1] / photo.height)
    cover = photo.resize((round(photo.width * f) + 1, round(photo.height * f) + 1), Image.Resampling.BICUBIC)
    left, top = (cover.width - size[0]) // 2, (cover.height - size[1]) // 2
    cover = cover.crop((left, top, left + size[0], top + size[1]))
    return cover.filter(ImageFilter.GaussianBlur(max(size) / 40))


def region_of(case: Case, subject: Rect) -> Rect:
    """The subject with a margin of real surroundings, clipped to the photo."""
    x, y, w, h = subject
    m = 0.08 * max(w, h)
    x0, y0 = max(0.0, x - m), max(0.0, y - m)
    x1, y1 = min(case.image.width, x + w + m), min(case.image.height, y + h + m)
    return x0, y0, x1 - x0, y1 - y0


def paste(canvas: Image.Image, case: Case, subject: Rect, scale: float, at: tuple[float, float],
          flush: tuple[int, int]) -> tuple[Rect, list[Rect]]:
    """Paste the subject's region scaled by `scale` with its corner at `at` (canvas pixels), the
    subject pushed against the canvas edge on the axes where flush is -1 (left/top) or 1.
    Returns the subject and head boxes on the canvas."""
    rx, ry, rw, rh = region_of(case, subject)
    patch = case.image.crop((round(rx), round(ry), round(rx + rw), round(ry + rh)))
    patch = patch.resize((max(1, round(patch.width * scale)), max(1, round(patch.height * scale))),
                         Image.Resampling.LANCZOS)
    sx, sy = (subject[0] - rx) * scale, (subject[1] - ry) * scale
    sw, sh = subject[2] * scale, subject[3] * scale
    ax, ay = at
    if flush[0] == -1:
        ax = -sx
    elif flush[0] == 1:
        ax = canvas.width - (sx + sw)
    if flush[1] == -1:
        ay = -sy
    elif flush[1] == 1:
        ay = canvas.height - (sy + sh)
    ax, ay = round(ax), round(ay)
    feather = max(2, round(0.04 * max(patch.size)))  # soft seam: no hard rectangle to find
    mask = Image.new("L", patch.size, 0)
    ImageDraw.Draw(mask).rectangle([feather, feather, patch.width - 1 - feather, patch.height - 1 - feather], fill=255)
    canvas.paste(patch, (ax, ay), mask.filter(ImageFilter.GaussianBlur(feather / 2)))
    heads = [((hx - rx) * scale + ax, (hy - ry) * scale + ay, hw * scale, hh * scale)
             for hx, hy, hw, hh in case.heads if inside(subject, (hx, hy, hw, hh))]
    box = (ax + sx, ay + sy, sw, sh)
    return clip(box, canvas.size), [clip(h, canvas.size) for h in heads]


def inside(outer: Rect, inner: Rect) -> bool:
    return (inner[0] >= outer[0] - 1 and inner[1] >= outer[1] - 1 and inner[0] + inner[2] <= outer[0] + outer[2] + 1
            and inner[1] + inner[3] <= outer[1] + outer[3] + 1)


def clip(r: Rect, size: tuple[int, int]) -> Rect:
    x0, y0 = max(0.0, r[0]), max(0.0, r[1])
    x1, y1 = min(size[0], r[0] + r[2]), min(size[1], r[1] + r[3])
    return x0, y0, x1 - x0, y1 - y0


SEED = 20240601  # placements along the free axis; --seed N checks the result is no accident of one draw
LAYOUTS = {  # kind, canvas, (flush x, flush y) for each subject, subject size limit (fractions of w, h)
    "wide": ("edge", (1152, 480), [(-1, 0)], (0.45, 0.85)),
    "wide-right": ("edge", (1152, 480), [(1, 0)], (0.45, 0.85)),
    "tall": ("edge", (480, 1152), [(0, -1)], (0.85, 0.45)),
    "tall-bottom": ("edge", (480, 1152), [(0, 1)], (0.85, 0.45)),
    "square-tl": ("corner", (720, 720), [(-1, -1)], (0.55, 0.55)),
    "square-tr": ("corner", (720, 720), [(1, -1)], (0.55, 0.55)),
    "square-bl": ("corner", (720, 720), [(-1, 1)], (0.55, 0.55)),
    "square-br": ("corner", (720, 720), [(1, 1)], (0.55, 0.55)),
}
PAIRS = [("astronaut", "grace"), ("coffee", "flower"), ("motorcycle", "rocket"), ("camera", "chelsea"),
         ("china", "astronaut")]
PAIR_LAYOUTS = {"wide": ((1152, 480), [(-1, 0), (1, 0)], (0.38, 0.85)),
                "tall": ((480, 1152), [(0, -1), (0, 1)], (0.85, 0.38)),
                "square": ((720, 720), [(-1, -1), (1, 1)], (0.45, 0.45))}


def fit_scale(case: Case, subject: Rect, size: tuple[int, int], limit: tuple[float, float]) -> float:
    _, _, rw, rh = region_of(case, subject)
    return min(limit[0] * size[0] / rw, limit[1] * size[1] / rh, 1.5)  # never blow a small photo up much


def derived_cases(photos: list[Case], seed: int = SEED) -> list[Case]:
    rnd = random.Random(seed)
    by_name = {c.name: c for c in photos}
    out = []
    names = list(LAYOUTS)
    for i, photo in enumerate(photos):  # each photo in three layouts: a wide, a tall and a square one
        for layout in (names[i % 2], names[2 + i % 2], names[4 + i % 4]):
            kind, size, flushes, limit = LAYOUTS[layout]
            canvas = blurred_background(photo.image, size)
            subject = photo.subjects[0]
            s = fit_scale(photo, subject, size, limit)
            at = (rnd.uniform(0, size[0] - subject[2] * s), rnd.uniform(0, size[1] - subject[3] * s))
            box, heads = paste(canvas, photo, subject, s, at, flushes[0])
            out.append(Case(f"{photo.name}@{layout}", kind, canvas, [box], heads))
    for a, b in PAIRS:
        if a not in by_name or b not in by_name:
            continue
        for layout, (size, flushes, limit) in PAIR_LAYOUTS.items():
            canvas = blurred_background(by_name[a].image, size)
            boxes, heads = [], []
            for name, flush in zip((a, b), flushes, strict=True):
                photo = by_name[name]
                s = fit_scale(photo, photo.subjects[0], size, limit)
                sw, sh = photo.subjects[0][2] * s, photo.subjects[0][3] * s
                at = (rnd.uniform(0, size[0] - sw), rnd.uniform(0, size[1] - sh))
                box, hs = paste(canvas, photo, photo.subjects[0], s, at, flush)
                boxes.append(box)
                heads += hs
            out.append(Case(f"{a}+{b}@{layout}", "two", canvas, boxes, heads))
    return out


# --- the methods: each returns {ratio: Box} -------------------------------------------------

def ours(im: Image.Image) -> dict[str, Box]:
    a = cropping.analyse(im, im.width, im.height)
    return {r: cropping.choose_crop(a, r) for r in RATIOS}


def centre(im: Image.Image) -> dict[str, Box]:
    return {r: crop_box(im.width, im.height, r) for r in RATIOS}


def vips_attention(im: Image.Image) -> dict[str, Box]:
    import pyvips

    v = pyvips.Image.new_from_memory(im.tobytes(), im.width, im.height, 3, "uchar")
    out = {}
    for r in RATIOS:
        b = crop_box(im.width, im.height, r)
        _, opts = v.smartcrop(b.w, b.h, interesting="attention", attention_x=True, attention_y=True)
        # libvips centres the window on the attention point, clamped inside (smartcrop.c).
        x = min(max(opts["attention_x"] - b.w // 2, 0), im.width - b.w)
        y = min(max(opts["attention_y"] - b.h // 2, 0), im.height - b.h)
        out[r] = Box(x, y, b.w, b.h)
    return out


def smartcrop_py(im: Image.Image) -> dict[str, Box]:
    import smartcrop

    sc = smartcrop.SmartCrop()
    out = {}
    for r in RATIOS:
        b = crop_box(im.width, im.height, r)
        # min_scale=1: only windows of exactly crop_box's size, like everyone else.
        top = sc.crop(im, b.w, b.h, min_scale=1.0)["top_crop"]
        out[r] = Box(min(max(top["x"], 0), im.width - b.w), min(max(top["y"], 0), im.height - b.h), b.w, b.h)
    return out


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in ("opencv-python-headless", "pyvips", "pyvips-binary", "smartcrop"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{dist} {version(dist)}")
    return "versions: " + ", ".join(found)


def available_methods() -> tuple[dict, list[str]]:
    methods = {"ours": ours, "centre": centre}
    notes = []
    others = (("libvips attention", vips_attention, "pyvips"), ("smartcrop.py", smartcrop_py, "smartcrop"))
    for name, fn, module in others:
        try:
            __import__(module)
            methods[name] = fn
        except (ImportError, OSError) as e:
            notes.append(f"{name} left out: {module} does not import ({e})")
    return methods, notes


def check_exact_box(b: Box, im: Image.Image, ratio: str) -> None:
    ref = crop_box(im.width, im.height, ratio)
    if (b.w, b.h) != (ref.w, ref.h) or not (0 <= b.x <= im.width - b.w and 0 <= b.y <= im.height - b.h):
        raise AssertionError(f"{b} is not a {ratio} window inside {im.size}")


# --- scoring ---------------------------------------------------------------------------------

def kept_1d(boxes: list[Rect], starts: np.ndarray, length: int, vertical: bool) -> np.ndarray:
    """Area of `boxes` inside a window starting at each of `starts` (the window spans the other axis)."""
    total = np.zeros(len(starts))
    for x, y, w, h in boxes:
        s, e, other = (y, y + h, w) if vertical else (x, x + w, h)
        total += np.clip(np.minimum(e, starts + length) - np.maximum(s, starts), 0, None) * other
    return total


def whole_1d(boxes: list[Rect], starts: np.ndarray, length: int, vertical: bool) -> np.ndarray:
    count = np.zeros(len(starts), dtype=int)
    for x, y, w, h in boxes:
        s, e = (y, y + h) if vertical else (x, x + w)
        count += (starts <= s + 0.5) & (starts + length >= e - 0.5)  # half a pixel of label rounding
    return count


def judge(case: Case, ratio: str, b: Box) -> dict:
    W, H = case.image.size
    vertical = b.w == W
    n = (H - b.h) if vertical else (W - b.w)
    starts = np.arange(n + 1)
    length, pos = (b.h, b.y) if vertical else (b.w, b.x)
    kept_all = kept_1d(case.subjects, starts, length, vertical)
    best = kept_all.max()
    kept = kept_1d(case.subjects, np.array([pos]), length, vertical)[0]
    out = {"score": kept / best if best > 0 else 1.0}
    if case.heads:
        heads_best = whole_1d(case.heads, starts, length, vertical).max()
        if heads_best >= 1:
            out["heads_ok"] = whole_1d(case.heads, np.array([pos]), length, vertical)[0] >= heads_best
    return out


# --- running ----------------------------------------------------------------------------------

REPEATS = 5  # each method runs this often per image; the fastest run counts (a shared machine's noise only adds)


def run(cases: list[Case], methods: dict) -> dict[str, dict]:
    results = {name: {"rows": [], "ms": []} for name in methods}
    for name, fn in methods.items():
        fn(cases[0].image)  # warm-up: imports, cascade loading
        for case in cases:
            times = []
            for _ in range(REPEATS):
                t = time.perf_counter()
                boxes = fn(case.image)
                times.append((time.perf_counter() - t) * 1e3)
            results[name]["ms"].append(min(times))
            for ratio, b in boxes.items():
                check_exact_box(b, case.image, ratio)
                results[name]["rows"].append({"case": case.name, "kind": case.kind, "ratio": ratio, "box": b,
                                              **judge(case, ratio, b)})
    return results


def figures(rows: list[dict], ms: list[float]) -> dict[str, float | str]:
    scores = [r["score"] for r in rows]
    faces = [r["heads_ok"] for r in rows if "heads_ok" in r]
    return {"mean": statistics.fmean(scores), "ge90": sum(s >= 0.9 for s in scores) / len(scores),
            "heads": sum(faces) / len(faces) if faces else float("nan"), "cuts": len(faces) - sum(faces),
            "nfaces": len(faces), "ms": statistics.median(ms) if ms else float("nan")}


def table(results: dict[str, dict]) -> str:
    lines = ["| method | mean score | crops >= 0.9 | face crops, whole heads kept | crops cutting a head that fitted "
             "| analysis ms/image |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, res in results.items():
        f = figures(res["rows"], res["ms"])
        kept = f"{f['heads']:.1%} ({f['nfaces'] - f['cuts']}/{f['nfaces']})"
        lines.append(f"| {name} | {f['mean']:.3f} | {f['ge90']:.1%} | {kept} | {f['cuts']} | {f['ms']:.1f} |")
    return "\n".join(lines)


def breakdown(results: dict[str, dict]) -> str:
    kinds = ["photo", "edge", "corner", "two"]
    ratios = list(RATIOS)
    lines = ["| method | " + " | ".join(kinds) + " | " + " | ".join(ratios) + " |",
             "| --- |" + " ---: |" * (len(kinds) + len(ratios))]
    for name, res in results.items():
        cells = [statistics.fmean(r["score"] for r in res["rows"] if r["kind"] == k) for k in kinds]
        cells += [statistics.fmean(r["score"] for r in res["rows"] if r["ratio"] == q) for q in ratios]
        lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def render_timing(photo: Image.Image) -> str:
    """What choosing the three crops adds to a render of a camera-sized JPEG."""
    lines = ["| source | image analyse() sees | analyse + 3 x choose_crop, ms | render() of that JPEG, ms |",
             "| --- | --- | ---: | ---: |"]
    for size in ((4032, 3024), (6000, 4000), (1600, 1200)):
        big = photo.resize(size, Image.Resampling.BICUBIC)
        buf = BytesIO()
        big.save(buf, "JPEG", quality=90)
        render_ms = min(sum(imaging.render(buf.getvalue()).timings_ms.values()) for _ in range(3))
        s = decoding.decode_scale(*size)
        seen = big if s == 1 else Image.open(BytesIO(buf.getvalue()))
        if s != 1:
            seen.draft("RGB", (round(size[0] * s), round(size[1] * s)))
            seen.load()
        times = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            a = cropping.analyse(seen, *size)
            for r in RATIOS:
                cropping.choose_crop(a, r)
            times.append((time.perf_counter() - t) * 1e3)
        lines.append(f"| {size[0]}x{size[1]} JPEG | {seen.width}x{seen.height} (DCT scale {s:g}) "
                     f"| {min(times):.1f} | {render_ms:.0f} |")
    return "\n".join(lines)


def write_overlays(cases: list[Case], results: dict[str, dict], folder: Path) -> None:
    """Each case with its subject (yellow) and head (magenta) boxes and every method's crops."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = {"ours": "lime", "centre": "white", "libvips attention": "cyan", "smartcrop.py": "orange"}
    for case in cases:
        tiles = []
        for ratio in RATIOS:
            im = case.image.copy()
            d = ImageDraw.Draw(im)
            for x, y, w, h in case.subjects:
                d.rectangle([x, y, x + w - 1, y + h - 1], outline="yellow", width=3)
            for x, y, w, h in case.heads:
                d.rectangle([x, y, x + w - 1, y + h - 1], outline="magenta", width=2)
            for i, (name, res) in enumerate(results.items()):
                row = next(r for r in res["rows"] if r["case"] == case.name and r["ratio"] == ratio)
                b, k = row["box"], 2 + 3 * i
                d.rectangle([b.x + k, b.y + k, b.x + b.w - 1 - k, b.y + b.h - 1 - k],
                            outline=colours.get(name, "red"), width=2)
                d.text((4, 4 + 12 * i), f"{name} {row['score']:.2f}", fill=colours.get(name, "red"))
            d.text((4, im.height - 14), ratio, fill="yellow")
            tiles.append(im)
        sheet = Image.new("RGB", (sum(t.width for t in tiles) + 20, max(t.height for t in tiles)), "black")
        x = 0
        for t in tiles:
            sheet.paste(t, (x, 0))
            x += t.width + 10
        sheet.thumbnail((1800, 900))
        sheet.save(folder / f"{case.name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlays", type=Path, help="write one PNG per case with the boxes drawn")
    parser.add_argument("--seed", type=int, default=SEED, help="another draw of the derived cases' placements")
    args = parser.parse_args()
    photos, notes = load_photos()
    if not photos:
        raise SystemExit("no photos: install the bench requirements (bench/README.md)")
    cases = photos + derived_cases(photos, args.seed)
    methods, more = available_methods()
    notes += more
    results = run(cases, methods)
    n_crops = len(results["ours"]["rows"])
    print(f"{len(cases)} images ({len(photos)} photos, {len(cases) - len(photos)} derived), {n_crops} crops\n")
    print(table(results))
    print(f"\nanalysis ms/image: all three crops of one image, the fastest of {REPEATS} runs, median over images")
    print(versions())
    print("\nMean score by case kind and by ratio:\n")
    print(breakdown(results))
    for note in notes:
        print(f"\nNote: {note}")
    print("\nOur analysis at camera sizes (the image render() decodes, possibly DCT-scaled):\n")
    print(render_timing(photos[0].image))
    if args.overlays:
        write_overlays(cases, results, args.overlays)
        print(f"\noverlays written to {args.overlays}")


if __name__ == "__main__":
    main()
