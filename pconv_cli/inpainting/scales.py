"""Coarse-to-fine filling of holes deeper than a filler can see at native resolution.

Conventions: pictures are (H, W, 3) arrays (uint8, or float in [0, 1]); ``hole``
bool (H, W), **True = hole**; tensors on the filler's side are float (1, 3, h, w)
in [0, 1] and masks (1, 1, h, w) with **1 = valid**.

Levels: level ``k`` is the picture at scale ``2**-k`` on a grid anchored at pixel
(0, 0): its pixel (i, j) is the mean of the native block ``[i*2**k, (i+1)*2**k) x
[j*2**k, (j+1)*2**k)`` (edge blocks repeat the last row/column), and it is a hole
if any pixel of the block is. Every hole pixel has a *top level* (that of its
region, :func:`~pconv_cli.inpainting.strategy.scale_level`). From the deepest top
level down to native resolution, each level fills its *targets*:

- the hole pixels whose top level it is (all of them: nothing coarser exists), and
- the *band* of the hole pixels filled at a coarser level that lie within the
  filler's ``fill_radius`` of a known pixel at this level; the rest of the hole
  keeps the coarser fill (bicubic upsampled) and is given to the filler as known
  pixels, so the coarse fill guides the finer pass. Across the band the two fills are
  cross-faded: a band pixel within ``fill_radius / 2`` of a known pixel takes the
  finer fill, one at the band's outer edge keeps (almost) the coarser one, linearly
  in between (:func:`band_weight`), so no step is left where the band ends.

Targets are filled by windows of the level (the target pixels' bounding box plus
``fill_radius`` of context, rounded to the net's size multiple), one after another in
raster order, each seeing the pixels filled before it as known. When the filler
reports an update mask, a target pixel it left at 0 never reaches the output: a
band pixel keeps its coarser value, and a region whose top-level pass left one is
restarted one level coarser (:class:`NeedsCoarser`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pconv_cli.inpainting.strategy import (
    Window,
    fit_window,
    hole_depth_map,
    plan_windows,
)

__all__ = ["Filler", "NeedsCoarser", "Patch", "cover_targets", "fill_levels", "level_image"]

Filler = Callable[[Tensor, Tensor], Tensor]
"""``filler(image, valid) -> raw``: float (1, 3, h, w) with holes zeroed, mask 1 = valid."""

Coverage = Callable[[Tensor], Tensor]
"""``coverage(valid) -> (1, 1, h, w)`` update mask: 1 = the output pixel saw a known pixel."""


@dataclass
class Patch:
    """A filled rectangle: ``values`` (3, h, w) float holds the fill on ``hole`` pixels and
    the filler's raw output on the known pixels of ``guided`` (for blending)."""

    window: Window
    values: Tensor
    hole: np.ndarray
    guided: np.ndarray
    passes: list[tuple[int, Window]] = field(default_factory=list)
    """(level, window at that level) of every filler call."""


class NeedsCoarser(Exception):
    """A top-level pass left hole pixels unseen: ``labels`` lists the regions to redo."""

    def __init__(self, labels: set[int]):
        super().__init__(f"regions {sorted(labels)} need a coarser level")
        self.labels = labels


# --------------------------------------------------------------------------- levels


def _box_native(box: Window, level: int, shape: tuple[int, int]) -> tuple[Window, int, int]:
    """The native rectangle under a level box, clipped, and the padding it lacks (rows, cols)."""
    f = 2**level
    top, left = box.top * f, box.left * f
    bottom = min((box.top + box.height) * f, shape[0])
    right = min((box.left + box.width) * f, shape[1])
    return (
        Window(top, left, bottom - top, right - left),
        box.height * f - (bottom - top),
        box.width * f - (right - left),
    )


def level_image(picture: np.ndarray, box: Window, level: int) -> Tensor:
    """Level ``level`` of ``picture`` over ``box`` (level coordinates): float (1, 3, h, w)."""
    native, pad_h, pad_w = _box_native(box, level, picture.shape[:2])
    f = 2**level
    rows: list[Tensor] = []
    chunk = max(f, (1 << 22) // max(native.width * 3, 1) // f * f)  # ~4M floats at a time
    rs, cs = native.slices
    for start in range(rs.start, rs.stop, chunk):
        block = _float(picture[start : min(start + chunk, rs.stop), cs])
        rows.append(block)
    x = torch.cat(rows, dim=2) if len(rows) > 1 else rows[0]
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, f) if f > 1 else x


def level_mask(mask: np.ndarray, box: Window, level: int, *, reduce: str = "max") -> np.ndarray:
    """Level ``level`` of a native (H, W) array over ``box``: the max of each block."""
    native, pad_h, pad_w = _box_native(box, level, mask.shape)
    part = mask[native.slices]
    if pad_h or pad_w:
        part = np.pad(part, ((0, pad_h), (0, pad_w)), mode="edge")
    f = 2**level
    if f == 1:
        return part.copy()
    h, w = part.shape
    return part.reshape(h // f, f, w // f, f).max(axis=(1, 3))


def _float(array: np.ndarray) -> Tensor:
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _upsample(values: Tensor, box: Window, target: Window) -> Tensor:
    """``values`` (a level box ``box``) bicubic x2 onto the finer level's ``target`` box."""
    top, left = target.top // 2 - 2 - box.top, target.left // 2 - 2 - box.left
    bottom = (target.top + target.height + 1) // 2 + 2 - box.top
    right = (target.left + target.width + 1) // 2 + 2 - box.left
    t0, l0 = max(top, 0), max(left, 0)
    crop = values[..., t0 : min(bottom, box.height), l0 : min(right, box.width)]
    up = F.interpolate(crop, scale_factor=2.0, mode="bicubic", align_corners=False)
    y0 = target.top - 2 * (box.top + t0)
    x0 = target.left - 2 * (box.left + l0)
    return up[..., y0 : y0 + target.height, x0 : x0 + target.width].clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- windows


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def cover_targets(
    target: np.ndarray, *, context: int, multiple: int, cells: tuple[int, ...] = ()
) -> list[tuple[Window, np.ndarray]]:
    """Windows that cover every target pixel, each with the target pixels it fills.

    Candidates: one window per group of target regions (:func:`plan_windows` with
    ``context`` of margin), or, for every cell size in ``cells``, the target pixels
    of each grid cell with their own window (in raster order). The candidate with
    the smallest total window area wins (ties: the earlier one).
    """
    shape = target.shape
    windows = plan_windows(target, margin=context, min_size=multiple, multiple=multiple)
    best = [(w, target[w.slices] & True) for w in windows]
    best_cost = sum(w.area for w, _ in best)
    for cell in cells:
        pieces = []
        for top in range(0, shape[0], cell):
            for left in range(0, shape[1], cell):
                part = target[top : top + cell, left : left + cell]
                if not part.any():
                    continue
                t, lf, b, r = _bbox(part)
                box = (top + t, left + lf, top + b, left + r)
                window = fit_window(
                    box, shape, margin=context, min_size=multiple, multiple=multiple
                )
                piece = np.zeros(window.height * window.width, bool).reshape(
                    window.height, window.width
                )
                rs = slice(box[0] - window.top, box[2] - window.top)
                cs = slice(box[1] - window.left, box[3] - window.left)
                piece[rs, cs] = part[t:b, lf:r]
                pieces.append((window, piece))
        cost = sum(w.area for w, _ in pieces)
        if cost < best_cost:
            best, best_cost = pieces, cost
    return best


# --------------------------------------------------------------------------- the levels


@dataclass
class _Level:
    k: int
    box: Window
    values: Tensor  # (1, 3, h, w): known pixels, then fills
    hole: np.ndarray  # hole at this level
    top: np.ndarray  # top level of each hole pixel (-1 = known)
    labels: np.ndarray  # region label of each pixel (a block's largest label)


def _level_box(hole: np.ndarray, level: int, pad: int, shape: tuple[int, int]) -> Window:
    f = 2**level
    top, left, bottom, right = _bbox(hole)
    h, w = -(-shape[0] // f), -(-shape[1] // f)
    t, lf = max(top // f - pad, 0), max(left // f - pad, 0)
    b, r = min(-(-bottom // f) + pad, h), min(-(-right // f) + pad, w)
    return Window(t, lf, b - t, r - lf)


def band_weight(depth: np.ndarray, carried: np.ndarray, radius: int) -> np.ndarray:
    """Weight (float32, same shape) of a level's own fill against the coarser fill it
    replaces: 1 off ``carried`` (pixels with no coarser fill) and for carried pixels up to
    ``radius / 2`` deep, falling linearly to ``1 / (radius / 2 + 1)`` at ``radius``."""
    fade = max(1.0, radius / 2)
    weight = np.ones(depth.shape, dtype=np.float32)
    weight[carried] = np.clip((radius + 1 - depth[carried]) / (fade + 1), 0.0, 1.0)
    return weight


def _run_pieces(
    level: _Level,
    targets: np.ndarray,
    known: np.ndarray,
    filler: Filler,
    coverage: Coverage | None,
    *,
    context: int,
    multiple: int,
    raw_out: Tensor | None,
    weight: np.ndarray,
) -> list[Window]:
    """Fill ``targets`` of ``level`` window by window (``known``: pixels a pass may see;
    ``weight``: :func:`band_weight`)."""
    known = known.copy()
    passes = []
    cells = (4 * context, 8 * context) if context else ()
    for window, piece in cover_targets(targets, context=context, multiple=multiple, cells=cells):
        rs, cs = window.slices
        valid_np = known[rs, cs] & ~piece
        valid = torch.from_numpy(valid_np)[None, None].float()
        x = level.values[..., rs, cs] * valid
        raw = filler(x, valid).float().cpu().clamp_(0.0, 1.0)
        take = piece
        update = coverage(valid) if coverage is not None else None
        if update is not None:
            seen = update.cpu()[0, 0].numpy() > 0
            unseen = piece & ~seen
            if unseen.any():
                top_pass = unseen & (level.top[rs, cs] == level.k)
                if top_pass.any():
                    raise NeedsCoarser(set(np.unique(level.labels[rs, cs][top_pass]).tolist()))
                take = piece & seen  # band pixels left unseen keep their coarser fill
        sel = torch.from_numpy(take)
        mix = torch.from_numpy(weight[rs, cs][take])
        old = level.values[0, :, rs, cs][:, sel]
        level.values[0, :, rs, cs][:, sel] = old + mix * (raw[0][:, sel] - old)
        known[rs, cs] |= take
        if raw_out is not None:
            outside = torch.from_numpy(~level.hole[rs, cs])
            raw_out[:, rs, cs][:, outside] = raw[0][:, outside]
        passes.append(window)
    return passes


def fill_levels(
    picture: np.ndarray,
    hole: np.ndarray,
    top_level: np.ndarray,
    labels: np.ndarray,
    filler: Filler,
    *,
    fill_radius: float,
    multiple: int = 1,
    coverage: Coverage | None = None,
) -> Patch:
    """Fill ``hole`` (True = hole) of ``picture`` level by level (see the module docstring).

    ``top_level``: int (H, W), the top level of each hole pixel (>= 0); ``labels``:
    int (H, W) region labels (for :class:`NeedsCoarser`). Pixels outside ``hole``
    are known. Returns the native :class:`Patch` over the holes plus context.
    """
    shape = hole.shape
    radius = max(1, math.floor(fill_radius))
    context = radius
    pad = context + multiple
    deepest = int(top_level[hole].max())
    top_map = np.where(hole, top_level, -1).astype(np.int16)
    previous: _Level | None = None
    passes: list[tuple[int, Window]] = []
    raw0: Tensor | None = None
    for k in range(deepest, -1, -1):
        box = _level_box(hole, k, pad, shape)
        hole_k = level_mask(hole, box, k)
        top_k = level_mask(top_map, box, k)
        labels_k = level_mask(labels, box, k)
        values = level_image(picture, box, k)
        if previous is not None:
            carried = hole_k & (top_k > k)
            up = _upsample(previous.values, previous.box, box)
            sel = torch.from_numpy(carried)
            values[0][:, sel] = up[0][:, sel]
        level = _Level(k, box, values, hole_k, top_k, labels_k)
        depth = hole_depth_map(hole_k)
        band = hole_k & (top_k > k) & (depth <= radius)
        targets = hole_k & (top_k == k) | band
        known = ~hole_k | (hole_k & (top_k > k))
        if k == 0:
            raw0 = torch.full((3, *hole_k.shape), float("nan"))
        if targets.any():
            windows = _run_pieces(
                level, targets, known, filler, coverage,
                context=context, multiple=multiple, raw_out=raw0 if k == 0 else None,
                weight=band_weight(depth, hole_k & (top_k > k), radius),
            )  # fmt: skip
            passes += [(k, w) for w in windows]
        previous = level
    assert previous is not None and raw0 is not None
    values = previous.values[0]
    guided = ~torch.isnan(raw0[0]).numpy() & ~previous.hole
    g = torch.from_numpy(guided)
    values[:, g] = raw0[:, g]
    return Patch(previous.box, values, previous.hole & hole[previous.box.slices], guided, passes)
