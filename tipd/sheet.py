"""Contact sheets: grids of flattened frames as PNG, for a microscopist to judge by eye."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tipd.preprocess import flatten_lines, scale_unit


def afmhot(unit: np.ndarray) -> np.ndarray:
    """The usual STM colour map: values in [-1, 1] → uint8 RGB, shape ``(*unit.shape, 3)``."""
    t = (np.clip(unit, -1, 1) + 1) / 2
    rgb = np.stack([2 * t, 2 * t - 0.5, 2 * t - 1], axis=-1)
    out: np.ndarray = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return out


def render_tile(z: np.ndarray, size: int) -> Image.Image:
    """A frame flattened line by line, scaled and coloured, as a ``size``² image."""
    img = Image.fromarray(afmhot(scale_unit(flatten_lines(z))))
    return img.resize((size, size), Image.Resampling.BILINEAR)


@dataclass
class SheetRow:
    """One row of a sheet: a title and frames (heights, any unit) with captions."""

    title: str
    frames: list[np.ndarray]
    captions: list[str]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def contact_sheet(rows: list[SheetRow], path: Path, tile: int = 128, title: str = "") -> Path:
    """Write a PNG: one line per :class:`SheetRow`, the title at the left, captions below."""
    label_w, cap_h, gap, head = 170, 14, 4, (28 if title else 0)
    ncols = max((len(r.frames) for r in rows), default=1)
    width = label_w + ncols * (tile + gap) + gap
    height = head + len(rows) * (tile + cap_h + gap) + gap
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font, small = _font(13), _font(10)
    if title:
        draw.text((gap + 2, 6), title, fill=(240, 240, 240), font=_font(16))
    for i, row in enumerate(rows):
        y = head + gap + i * (tile + cap_h + gap)
        draw.multiline_text(
            (gap + 2, y + tile // 2 - 14), row.title, fill=(230, 230, 230), font=font
        )
        for j, (z, cap) in enumerate(zip(row.frames, row.captions, strict=True)):
            x = label_w + gap + j * (tile + gap)
            sheet.paste(render_tile(z, tile), (x, y))
            draw.text((x + 1, y + tile + 1), cap[:26], fill=(180, 180, 180), font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
