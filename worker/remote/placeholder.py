"""A clearly labelled stand-in image, used only when Adobe Firefly is not configured at all."""
from __future__ import annotations

import textwrap
from io import BytesIO

from PIL import Image, ImageDraw, ImageFont

TITLE = "PLACEHOLDER - Firefly not configured"  # ASCII: the default font has no em dash
_TOP, _BOTTOM = (38, 70, 83), (42, 157, 143)  # calm teal gradient
_INK = (255, 255, 255)


def placeholder(prompt: str, size: tuple[int, int] = (2048, 2048)) -> bytes:
    """A JPEG of size: a gradient, TITLE in large type and the prompt wrapped beneath it.
    Text stays inside the central square, so every 1:1, 9:16 and 16:9 crop keeps it."""
    width, height = size
    image = _gradient(width, height)
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    title_font = ImageFont.load_default(size=max(12, side // 22))
    body_font = ImageFont.load_default(size=max(10, side // 34))
    chars = max(10, int(side * 0.8 / (side // 34 * 0.55)))  # about 80% of the square per line
    lines = textwrap.wrap(prompt, chars, max_lines=8, placeholder=" ...") or ["(no prompt)"]
    body = "\n".join(lines)
    gap = side // 20
    title_box = draw.textbbox((0, 0), TITLE, font=title_font)
    body_box = draw.multiline_textbbox((0, 0), body, font=body_font, align="center", spacing=side // 80)
    title_h, body_h = title_box[3] - title_box[1], body_box[3] - body_box[1]
    top = (height - title_h - gap - body_h) // 2
    draw.text((width // 2, top), TITLE, font=title_font, fill=_INK, anchor="ma")
    draw.multiline_text((width // 2, top + title_h + gap), body, font=body_font, fill=_INK, anchor="ma",
                        align="center", spacing=side // 80)
    out = BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _gradient(width: int, height: int) -> Image.Image:
    column = Image.new("RGB", (1, 256))
    column.putdata([tuple(round(a + (b - a) * y / 255) for a, b in zip(_TOP, _BOTTOM, strict=True))
                    for y in range(256)])
    return column.resize((width, height), Image.Resampling.BILINEAR)
