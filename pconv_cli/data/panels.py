"""Side-by-side pictures: training samples, ``pconv inpaint --concat``, ``pconv eval --grid``.

:func:`panel_grid` lays out rows of equally treated cells (uint8 RGB arrays) on
a canvas, with optional column titles above and a caption line above each row;
a row without cells is a caption-only heading. With ``gap=0`` and no text the
cells simply touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["PanelRow", "hole_panel", "panel_grid"]

TEXT_HEIGHT = 14
"""Pixels of one line of text (Pillow's default bitmap font)."""


@dataclass(frozen=True)
class PanelRow:
    """One row: ``cells`` (uint8 (H, W, 3) arrays, left to right) and an optional ``caption``."""

    cells: Sequence[np.ndarray] = ()
    caption: str | None = None


def hole_panel(hole: np.ndarray) -> np.ndarray:
    """A bool hole mask (True = hole) as a uint8 RGB picture: white = hole."""
    return np.repeat((hole.astype(np.uint8) * np.uint8(255))[..., None], 3, axis=2)


def panel_grid(
    rows: Sequence[PanelRow],
    *,
    titles: Sequence[str] = (),
    gap: int = 0,
    background: tuple[int, int, int] = (32, 32, 32),
    text: tuple[int, int, int] = (235, 235, 235),
) -> Image.Image:
    """The rows on one RGB canvas.

    Every cell slot is as large as the largest cell (smaller cells sit at its top
    left); slots are ``gap`` pixels apart and from the left and right edges.
    ``titles`` name the columns in a line at the top. A caption takes one text
    line above its row; a row with cells ends with ``gap`` pixels.
    """
    cells = [cell for row in rows for cell in row.cells]
    if not cells:
        raise ValueError("panel_grid needs at least one cell")
    columns = max(len(row.cells) for row in rows)
    cell_h = max(cell.shape[0] for cell in cells)
    cell_w = max(cell.shape[1] for cell in cells)
    width = columns * cell_w + (columns + 1) * gap
    top = TEXT_HEIGHT + gap if titles else 0
    height = top + sum(_row_height(row, cell_h, gap) for row in rows)
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas) if titles or any(row.caption for row in rows) else None
    for column, title in enumerate(titles):
        draw.text((gap + column * (cell_w + gap), 1), title, fill=text)
    y = top
    for row in rows:
        if row.caption is not None:
            draw.text((gap, y), row.caption, fill=text)
            y += TEXT_HEIGHT
        if row.cells:
            for column, cell in enumerate(row.cells):
                canvas.paste(Image.fromarray(cell), (gap + column * (cell_w + gap), y))
            y += cell_h + gap
    return canvas


def _row_height(row: PanelRow, cell_h: int, gap: int) -> int:
    return (TEXT_HEIGHT if row.caption is not None else 0) + (cell_h + gap if row.cells else 0)
