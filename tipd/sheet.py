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


def nice_length(max_nm: float) -> float:
    """The longest of 1, 2 or 5 × 10^k nm not above ``max_nm`` (> 0): a scale bar's length."""
    k = np.floor(np.log10(max_nm))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= max_nm:
            return float(m * 10**k)
    return float(10 ** (k - 1) * 5)


def length_text(nm: float) -> str:
    """A length as a microscopist writes it: pm below 1 nm, else nm (the sheets' font has
    no µ)."""
    if nm < 1:
        return f"{nm * 1e3:.3g} pm"
    return f"{nm:.0f} nm" if nm >= 100 else f"{nm:.3g} nm"


def height_range_m(z: np.ndarray, clip_percentile: float = 0.5) -> float:
    """The height span (same unit as ``z``) the colour scale of :func:`render_tile` covers:
    the frame flattened line by line, between its ``clip_percentile`` percentiles."""
    flat = flatten_lines(z)
    ok = np.isfinite(flat)
    if not ok.any():
        return 0.0
    lo, hi = np.percentile(flat[ok], [clip_percentile, 100 - clip_percentile])
    return float(hi - lo)


@dataclass
class SheetRow:
    """One row of a sheet: a title and frames (heights, metres) with captions and, where known,
    each frame's scan width in nm (for its scale bar)."""

    title: str
    frames: list[np.ndarray]
    captions: list[str]
    widths_nm: list[float] | None = None


def rows_of(
    frames: list[np.ndarray],
    captions: list[str],
    widths_nm: list[float],
    per_row: int,
    what: str = "frames",
) -> list[SheetRow]:
    """``frames`` laid out ``per_row`` to a row, each row titled by the numbers it holds."""
    return [
        SheetRow(
            title=f"{what} {k + 1}-{min(k + per_row, len(frames))}",
            frames=frames[k : k + per_row],
            captions=captions[k : k + per_row],
            widths_nm=widths_nm[k : k + per_row],
        )
        for k in range(0, len(frames), per_row)
    ]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int, lines: int) -> list[str]:
    """``text`` broken at spaces (or ``+``) into at most ``lines`` lines that fit ``width``
    pixels; the last is cut with an ellipsis when it does not fit."""
    words = text.replace("+", "+ ").split()
    out: list[str] = []
    line = ""
    for word in words:
        trial = f"{line} {word}".strip().replace("+ ", "+")
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            out.append(line)
            line = word
    out.append(line)
    if len(out) > lines:
        out = out[:lines]
        out[-1] += "…"
    for i, text_ in enumerate(out):
        while draw.textlength(text_, font=font) > width and len(text_) > 1:
            text_ = text_[:-2] + "…"
        out[i] = text_
    return out


def _scale_marks(
    draw: ImageDraw.ImageDraw, x: int, y: int, tile: int, z: np.ndarray, width_nm: float | None
) -> None:
    """A scale bar (bottom left) and the colour scale's height span (bottom right) on a tile."""
    font = _font(10)
    span = height_range_m(z)
    if span > 0:
        text = f"dz {length_text(span * 1e9)}"
        w = int(draw.textlength(text, font=font))
        draw.rectangle(
            (x + tile - w - 5, y + tile - 14, x + tile - 1, y + tile - 1), fill=(0, 0, 0)
        )
        draw.text((x + tile - w - 3, y + tile - 13), text, fill=(255, 255, 255), font=font)
    if width_nm and width_nm > 0:
        bar_nm = nice_length(width_nm / 3)
        px = max(2, round(tile * bar_nm / width_nm))
        label = length_text(bar_nm)
        w = max(px, int(draw.textlength(label, font=font)))
        draw.rectangle((x + 1, y + tile - 20, x + w + 6, y + tile - 1), fill=(0, 0, 0))
        draw.rectangle((x + 4, y + tile - 5, x + 4 + px, y + tile - 3), fill=(255, 255, 255))
        draw.text((x + 4, y + tile - 19), label, fill=(255, 255, 255), font=font)


def scan_png(z: np.ndarray, width_nm: float | None, size: int = 384) -> bytes:
    """One scan as PNG bytes: flattened line by line, coloured, ``size`` pixels square, with
    its scale bar and height span (as on a contact sheet)."""
    import io

    img = render_tile(z, size)
    _scale_marks(ImageDraw.Draw(img), 0, 0, size, z, width_nm)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def contact_sheet(rows: list[SheetRow], path: Path, tile: int = 128, title: str = "") -> Path:
    """Write a PNG: one line per :class:`SheetRow`, the title at the left, captions (up to two
    lines, fitted to the tile) below. Each tile carries a scale bar (where its width is known)
    and the height span of its colour scale (dz, dark to bright)."""
    label_w, cap_h, gap, head = 170, 26, 4, (44 if title else 18)
    ncols = max((len(r.frames) for r in rows), default=1)
    width = label_w + ncols * (tile + gap) + gap
    height = head + len(rows) * (tile + cap_h + gap) + gap
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font, small = _font(13), _font(10)
    if title:
        draw.text((gap + 2, 6), title, fill=(240, 240, 240), font=_font(16))
    legend = (
        "each frame flattened line by line; colour from dark (low) to bright (high) over the "
        "height span dz written on it"
    )
    draw.text((gap + 2, head - 15), legend, fill=(170, 170, 170), font=small)
    for i, row in enumerate(rows):
        y = head + gap + i * (tile + cap_h + gap)
        draw.multiline_text(
            (gap + 2, y + tile // 2 - 14), row.title, fill=(230, 230, 230), font=font
        )
        none: list[float | None] = [None] * len(row.frames)
        widths = none if row.widths_nm is None else list(row.widths_nm)
        for j, (z, cap, w_nm) in enumerate(zip(row.frames, row.captions, widths, strict=True)):
            x = label_w + gap + j * (tile + gap)
            sheet.paste(render_tile(z, tile), (x, y))
            _scale_marks(draw, x, y, tile, z, w_nm)
            text = "\n".join(wrap(draw, cap, small, tile - 2, 2))
            draw.multiline_text((x + 1, y + tile + 1), text, fill=(190, 190, 190), font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
