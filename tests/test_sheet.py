"""Contact sheets a microscopist trusts: a scale bar of a round length, the height span of the
colour scale, captions that fit their tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tipd.sheet import (
    SheetRow,
    _font,
    contact_sheet,
    height_range_m,
    length_text,
    nice_length,
    wrap,
)


def test_scale_bars_have_round_lengths() -> None:
    assert nice_length(33.3) == 20.0
    assert nice_length(5.0) == 5.0
    assert nice_length(1666.0) == 1000.0
    assert nice_length(0.4) == 0.2
    for x in np.geomspace(0.01, 1e4, 200):
        bar = nice_length(float(x))
        assert x / 5 < bar <= x * (1 + 1e-12)
    assert [length_text(v) for v in (0.5, 2.0, 20.0, 1000.0)] == [
        "500 pm",
        "2 nm",
        "20 nm",
        "1000 nm",
    ]


def test_the_height_span_ignores_line_offsets() -> None:
    rng = np.random.default_rng(0)
    z = rng.uniform(0, 1e-10, (64, 64))  # 100 pm of roughness
    z += rng.normal(0, 1e-8, (64, 1))  # each line offset by ~10 nm (flattened away)
    assert 0.95e-10 < height_range_m(z) < 1.06e-10
    assert height_range_m(np.full((8, 8), np.nan)) == 0.0


def test_captions_fit_their_tile() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = _font(10)
    text = "double tip+tip change+step edge+impurity+corruption"
    lines = wrap(draw, text, font, 120, 2)
    assert len(lines) == 2 and lines[-1].endswith("…")
    assert all(draw.textlength(line, font=font) <= 120 for line in lines)
    assert wrap(draw, "atoms", font, 120, 2) == ["atoms"]


def test_a_sheet_draws_the_scale_bar_on_the_tile(tmp_path: Path) -> None:
    z = np.random.default_rng(1).normal(size=(64, 64))
    rows = [SheetRow("a", [z, z], ["with", "without"], widths_nm=[30.0, None])]
    img = np.asarray(Image.open(contact_sheet(rows, tmp_path / "s.png", tile=100)))
    left = img[:, 170 + 4 : 170 + 4 + 100]  # first tile's column band
    right = img[:, 170 + 8 + 100 : 170 + 8 + 200]
    white = (left == 255).all(axis=-1).sum(), (right == 255).all(axis=-1).sum()
    assert white[0] > white[1] + 20  # the bar (a 10 nm bar is 33 px long, 3 px high)
