"""Inpainting masks: seeded generators, mask files and manifests (numpy and PIL only, never torch).

Conventions used throughout this module:

- A mask *array* is ``bool`` with shape ``(height, width)``, **True = hole** (the
  pixels to fill). The torch core uses the opposite (float, 1 = valid, 0 = hole).
- A mask *file* is a PNG of mode ``L`` with values {0, 255}, **white (255) = hole**.
- Sizes are ``(height, width)``; messages print them as ``WIDTHxHEIGHT``.
- The hole ratio is hole pixels / all pixels. A range ``(lo, hi)`` is half-open,
  ``lo <= ratio < hi`` (``hi == 1`` also admits a full mask), so the NVIDIA buckets
  never overlap. A generated mask always has at least one hole pixel.
- ``border=None``: holes may go anywhere. ``border=False``: no hole pixel closer than
  ``margin`` pixels to the image edge (default 50 at 512, scaled with the shorter
  side). ``border=True``: at least one hole pixel on the first/last row or column.

Every generator draws from the ``numpy.random.Generator`` it is given and nothing
else, so ``np.random.default_rng([seed, index])`` makes each mask reproducible.
Strokes are rasterised with PIL (thick lines plus a disc at every vertex), which is
fast and deterministic for a given Pillow version.

Two ways to meet a hole ratio:

- ``hole_ratio=None``: the kind's own algorithm, redrawn (up to ``max_tries``) until
  the ratio lies in the kind's default range (:data:`DEFAULT_HOLE_RATIO`), as MMagic
  and LaMa do.
- ``hole_ratio=(lo, hi)``: a target count is drawn uniformly in the range, then the
  kind's strokes/boxes are added one by one until the target is reached; a stroke
  that would overshoot ``hi`` is discarded and another one drawn. The number of
  strokes thus follows the requested ratio, so both 1% and 60% are cheap.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw

from pconv_cli.data.mask_kinds import MASK_KINDS
from pconv_cli.errors import PconvError
from pconv_cli.files import atomic_write

NVIDIA_BUCKETS: tuple[tuple[float, float], ...] = (
    (0.01, 0.1),
    (0.1, 0.2),
    (0.2, 0.3),
    (0.3, 0.4),
    (0.4, 0.5),
    (0.5, 0.6),
)
"""Hole-ratio buckets of NVIDIA's irregular test set (Liu et al. 2018), each ``lo <= r < hi``."""

DEFAULT_HOLE_RATIO: dict[str, tuple[float, float] | None] = {
    "irregular": (0.15, 0.65),  # MMagic's area_ratio_range for PConv training
    "brush": None,
    "box": None,
    "thin": (0.0, 0.5),  # LaMa rejects masks covering more than half the image
    "medium": (0.0, 0.5),
    "thick": (0.0, 0.5),
    "occlusion": (0.01, 0.6),  # NVIDIA's test buckets
}
"""Hole-ratio range each kind is redrawn into when ``hole_ratio`` is None (None = any)."""

MIXED_WEIGHTS: dict[str, float] = {
    "irregular": 0.4,
    "brush": 0.2,
    "box": 0.1,
    "thin": 0.1,
    "medium": 0.1,
    "thick": 0.1,
}
"""Probability of each concrete kind in a ``mixed`` mask."""

DEFAULT_MAX_TRIES = 50
"""Full redraws before :func:`generate_mask` gives up with a :class:`MaskError`."""

MAX_UNITS_PER_TRY = 1000
"""Strokes/boxes proposed per try when filling towards a requested hole ratio."""

MAX_REJECTS_IN_A_ROW = 100
"""A try also ends after this many consecutive strokes/boxes that would overshoot."""

HOLE_THRESHOLD = 127
"""Loaded mask values above this (0..255 scale) are holes."""

PNG_COMPRESS_LEVEL = 1
"""zlib level of saved masks; fixed so the same mask always gives the same bytes."""

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "file",
    "width",
    "height",
    "hole_ratio",
    "bucket",
    "touches_border",
    "kind",
    "seed",
)

MAX_MASK_PIXELS = 8192 * 8192
"""Largest mask (height x width) :func:`check_mask_request` accepts: a 100000 px side
would need tens of GB before the first stroke is drawn."""

_BASE_MARGIN = 50
"""Default no-border margin in pixels at a 512-pixel shorter side."""

_MIN_SIDE = 8
_TWO_PI = 2.0 * math.pi


class MaskError(PconvError, ValueError):
    """A mask cannot be generated, read or written; the message is one line for the user."""


class MaskResizedWarning(UserWarning):
    """:func:`load_mask` resized a mask (nearest neighbour) to the requested size."""


class MaskContentWarning(UserWarning):
    """A mask file that is mostly neither black nor white (a photo, a gradient, grey)."""


NON_BINARY_WARNING = 0.05
"""Share of grey pixels (more than :data:`NEAR_BINARY` levels from both black and white)
above which :func:`load_mask` warns."""

NEAR_BINARY = 16
"""Levels from 0 or 255 that still count as black or white: a binary mask saved as JPEG
(quality 75 or more) has its edges within this and loads without a warning."""


# --------------------------------------------------------------------------- ratios


def hole_ratio_of(hole: np.ndarray) -> float:
    """Fraction of True (hole) pixels in a boolean mask, in [0, 1]."""
    return int(np.count_nonzero(hole)) / hole.size


def in_ratio_range(ratio: float, lo: float, hi: float) -> bool:
    """True when ``lo <= ratio < hi``; a ratio of exactly 1 is in a range with ``hi == 1``."""
    return lo <= ratio < hi or (hi >= 1.0 and ratio == 1.0)


def format_ratio_range(lo: float, hi: float) -> str:
    """``(0.1, 0.2)`` -> ``'0.1-0.2'``: the bucket label and the ``--hole-ratio`` syntax."""
    return f"{lo:g}-{hi:g}"


def parse_ratio_range(text: str) -> tuple[float, float]:
    """Parse ``'LO-HI'`` (e.g. ``'0.1-0.2'``) into floats with ``0 <= LO < HI <= 1``."""
    lo_text, sep, hi_text = text.strip().partition("-")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        lo = hi = math.nan
    if not (sep and _is_ratio_range(lo, hi)):
        raise MaskError(f"expected LO-HI with 0 <= LO < HI <= 1 (such as 0.1-0.2), got {text!r}")
    return lo, hi


def bucket_label(
    ratio: float, buckets: Iterable[tuple[float, float]] = NVIDIA_BUCKETS
) -> str | None:
    """Label (``'0.1-0.2'``) of the bucket with ``lo <= ratio < hi``, or None outside all.

    The last bucket also takes a ratio equal to its upper edge (0.6 for NVIDIA's).
    """
    bucket_list = list(buckets)
    for lo, hi in bucket_list:
        if lo <= ratio < hi:
            return format_ratio_range(lo, hi)
    if bucket_list and ratio == bucket_list[-1][1]:
        return format_ratio_range(*bucket_list[-1])
    return None


def touches_border(hole: np.ndarray) -> bool:
    """True when some hole pixel lies on the first or last row or column."""
    return bool(hole[0].any() or hole[-1].any() or hole[:, 0].any() or hole[:, -1].any())


def default_margin(size: tuple[int, int]) -> int:
    """No-border margin for ``size=(height, width)``: 50 px at 512, linear in the shorter side."""
    return round(_BASE_MARGIN * min(size) / 512)


def _is_ratio_range(lo: float, hi: float) -> bool:
    return math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= 1.0


def _check_ratio_range(hole_ratio: tuple[float, float]) -> None:
    lo, hi = hole_ratio
    if not _is_ratio_range(lo, hi):
        raise MaskError(
            f"hole ratio range {format_ratio_range(lo, hi)} must have 0 <= LO < HI <= 1"
        )


def _count_bounds(lo: float, hi: float, n_pixels: int) -> tuple[int, int]:
    """Smallest and largest hole-pixel counts c >= 1 with ``in_ratio_range(c / n, lo, hi)``."""
    low = max(1, math.ceil(lo * n_pixels))
    while low > 1 and (low - 1) / n_pixels >= lo:
        low -= 1
    while low <= n_pixels and low / n_pixels < lo:
        low += 1
    high = min(n_pixels, math.ceil(hi * n_pixels))
    while high >= low and not in_ratio_range(high / n_pixels, lo, hi):
        high -= 1
    while high < n_pixels and in_ratio_range((high + 1) / n_pixels, lo, hi):
        high += 1
    return low, high


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Frame:
    """Image size plus the region hole pixels may occupy."""

    height: int
    width: int
    border: bool | None
    margin: int  # hole-free band, used only when border is False

    @property
    def keep_out(self) -> int:
        return self.margin if self.border is False else 0

    @property
    def diagonal(self) -> float:
        return math.hypot(self.height, self.width)

    def preset_scale(self, base: int) -> float:
        """Factor from a recipe's ``base``-pixel lengths to this image (shorter side)."""
        return min(self.height, self.width) / base

    def fit_width(self, width: int) -> int:
        """Shrink a stroke width so its discs fit inside the allowed region."""
        room = min(self.height, self.width) - 2 * self.keep_out - 2
        return max(1, min(width, room))

    def _axis_range(self, extent: int, radius: float) -> tuple[int, int]:
        if self.border is not False:
            return 0, extent - 1
        pad = self.margin + math.ceil(radius) + 1
        lo, hi = pad, extent - 1 - pad
        return (lo, hi) if lo <= hi else ((lo + hi) // 2,) * 2

    def clamp(self, x: float, y: float, radius: float) -> tuple[int, int]:
        """Nearest allowed vertex for a disc of ``radius`` (inside the margin when border=False)."""
        x_lo, x_hi = self._axis_range(self.width, radius)
        y_lo, y_hi = self._axis_range(self.height, radius)
        return min(max(round(x), x_lo), x_hi), min(max(round(y), y_lo), y_hi)

    def random_point(self, rng: np.random.Generator, radius: float) -> tuple[int, int]:
        x_lo, x_hi = self._axis_range(self.width, radius)
        y_lo, y_hi = self._axis_range(self.height, radius)
        return int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1))

    def random_edge_point(self, rng: np.random.Generator) -> tuple[int, int]:
        """A uniformly chosen pixel on a uniformly chosen side of the image."""
        side = int(rng.integers(4))
        if side < 2:
            return int(rng.integers(self.width)), 0 if side == 0 else self.height - 1
        return (0 if side == 2 else self.width - 1), int(rng.integers(self.height))


@dataclass(frozen=True)
class _Stroke:
    """Connected thick segments through ``points`` ((x, y) pixels) with round joints and ends."""

    points: tuple[tuple[int, int], ...]
    width: int


@dataclass(frozen=True)
class _Rect:
    """Filled rectangle, inclusive pixel corners."""

    x0: int
    y0: int
    x1: int
    y1: int


def _draw_unit(draw: ImageDraw.ImageDraw, unit: _Stroke | _Rect) -> None:
    if isinstance(unit, _Rect):
        draw.rectangle((unit.x0, unit.y0, unit.x1, unit.y1), fill=255)
        return
    radius = unit.width / 2
    for start, end in zip(unit.points, unit.points[1:], strict=False):
        if start != end:
            draw.line((start, end), fill=255, width=unit.width)
    for x, y in unit.points:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)


def _clear_margin(draw: ImageDraw.ImageDraw, frame: _Frame) -> None:
    """Blank the no-border band (a safety net: samplers already keep strokes inside it)."""
    m, w, h = frame.keep_out, frame.width, frame.height
    if m <= 0:
        return
    draw.rectangle((0, 0, w - 1, m - 1), fill=0)
    draw.rectangle((0, h - m, w - 1, h - 1), fill=0)
    draw.rectangle((0, 0, m - 1, h - 1), fill=0)
    draw.rectangle((w - m, 0, w - 1, h - 1), fill=0)


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class _AngleStrokes:
    """MMagic/LaMa strokes: groups of 1..5 segments at angle 0.01 + randint(max_angle) rad.

    Ranges are inclusive, lengths and widths in pixels at ``base``.
    """

    groups: tuple[int, int]
    max_angle: int
    length: tuple[int, int]
    width: tuple[int, int]
    base: int = 256
    segments: tuple[int, int] = (1, 5)


@dataclass(frozen=True)
class _BrushStrokes:
    """DeepFillv2 free-form strokes; steps scale with the diagonal, widths with ``base``."""

    groups: tuple[int, int] = (1, 3)
    vertices: tuple[int, int] = (4, 11)
    width: tuple[int, int] = (12, 40)
    base: int = 256
    mean_angle: float = _TWO_PI / 5
    angle_range: float = _TWO_PI / 15


@dataclass(frozen=True)
class _Boxes:
    """1+ axis-aligned rectangles with sides and a border margin in pixels at ``base``."""

    count: tuple[int, int]
    side: tuple[int, int]
    margin: int
    base: int = 256
    probability: float = 1.0  # chance that a mask includes boxes at all


@dataclass(frozen=True)
class _Recipe:
    strokes: _AngleStrokes | _BrushStrokes | None
    boxes: _Boxes | None


_IRREGULAR = _Recipe(
    _AngleStrokes(groups=(4, 9), max_angle=6, length=(20, 127), width=(10, 44)), None
)
_BRUSH = _Recipe(_BrushStrokes(), None)
_BOX = _Recipe(None, _Boxes(count=(1, 3), side=(32, 128), margin=10))

# LaMa's random_{thin,medium,thick}_{256,512} settings (stroke widths 5 + randint(max_width),
# lengths 10 + randint(max_len)); boxes join a mask with probability 0.3.
_PRESETS: dict[str, dict[int, _Recipe]] = {
    "thin": {
        256: _Recipe(_AngleStrokes((4, 50), 4, (10, 49), (5, 14), base=256), None),
        512: _Recipe(_AngleStrokes((4, 70), 4, (10, 109), (5, 24), base=512), None),
    },
    "medium": {
        256: _Recipe(
            _AngleStrokes((4, 5), 4, (10, 109), (5, 54), base=256),
            _Boxes((1, 5), (10, 50), margin=0, base=256, probability=0.3),
        ),
        512: _Recipe(
            _AngleStrokes((4, 10), 4, (10, 209), (5, 104), base=512),
            _Boxes((1, 5), (30, 150), margin=0, base=512, probability=0.3),
        ),
    },
    "thick": {
        256: _Recipe(
            _AngleStrokes((1, 5), 4, (10, 209), (5, 104), base=256),
            _Boxes((1, 3), (30, 150), margin=10, base=256, probability=0.3),
        ),
        512: _Recipe(
            _AngleStrokes((1, 5), 4, (10, 459), (5, 254), base=512),
            _Boxes((1, 4), (30, 300), margin=10, base=512, probability=0.3),
        ),
    },
}


def _recipe_for(kind: str, frame: _Frame) -> _Recipe:
    """The kind's recipe; LaMa presets use the 256 or 512 table, whichever is nearer."""
    if kind in _PRESETS:
        base = 256 if min(frame.height, frame.width) < 384 else 512
        return _PRESETS[kind][base]
    return {"irregular": _IRREGULAR, "brush": _BRUSH, "box": _BOX}[kind]


def _randint(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """Uniform integer in the inclusive range ``bounds``."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _scaled_width(rng: np.random.Generator, bounds: tuple[int, int], scale: float) -> int:
    return max(1, round(_randint(rng, bounds) * scale))


def _sample_angle_stroke(
    rng: np.random.Generator, frame: _Frame, style: _AngleStrokes, group: int, on_edge: bool
) -> _Stroke:
    """One MMagic/LaMa stroke group; the angle is mirrored (2pi - a) on even groups."""
    scale = frame.preset_scale(style.base)
    width = frame.fit_width(_scaled_width(rng, style.width, scale))
    radius = width / 2
    point = frame.random_edge_point(rng) if on_edge else frame.random_point(rng, radius)
    points = [point]
    for _ in range(_randint(rng, style.segments)):
        angle = 0.01 + int(rng.integers(style.max_angle))
        if group % 2 == 0:
            angle = _TWO_PI - angle
        length = _randint(rng, style.length) * scale
        x, y = points[-1]
        points.append(
            frame.clamp(x + length * math.cos(angle), y + length * math.sin(angle), radius)
        )
    return _Stroke(tuple(points), width)


def _sample_brush_stroke(
    rng: np.random.Generator, frame: _Frame, style: _BrushStrokes, group: int, on_edge: bool
) -> _Stroke:
    """One DeepFillv2 stroke: steps ~ N(d/8, d/16) clipped to [0, d/4], d the diagonal."""
    del group  # DeepFillv2 mirrors per vertex, not per stroke
    width = frame.fit_width(_scaled_width(rng, style.width, frame.preset_scale(style.base)))
    radius = width / 2
    spread_low, spread_high = rng.uniform(0, style.angle_range, size=2)
    angle_min, angle_max = style.mean_angle - spread_low, style.mean_angle + spread_high
    d = frame.diagonal
    point = frame.random_edge_point(rng) if on_edge else frame.random_point(rng, radius)
    points = [point]
    for vertex in range(_randint(rng, style.vertices)):
        angle = float(rng.uniform(angle_min, angle_max))
        if vertex % 2 == 0:
            angle = _TWO_PI - angle
        step = float(np.clip(rng.normal(d / 8, d / 16), 0, d / 4))
        x, y = points[-1]
        points.append(frame.clamp(x + step * math.cos(angle), y + step * math.sin(angle), radius))
    return _Stroke(tuple(points), width)


def _sample_box(rng: np.random.Generator, frame: _Frame, style: _Boxes, on_edge: bool) -> _Rect:
    """A rectangle inside the box margin (or the no-border margin), or flush with an edge."""
    scale = frame.preset_scale(style.base)
    pad = frame.keep_out if on_edge else max(round(style.margin * scale), frame.keep_out)
    room_w, room_h = frame.width - 2 * pad, frame.height - 2 * pad  # both margins < side / 2
    box_w = min(room_w, max(1, round(_randint(rng, style.side) * scale)))
    box_h = min(room_h, max(1, round(_randint(rng, style.side) * scale)))
    x0 = pad + int(rng.integers(room_w - box_w + 1))
    y0 = pad + int(rng.integers(room_h - box_h + 1))
    if on_edge:
        side = int(rng.integers(4))
        if side == 0:
            y0 = 0
        elif side == 1:
            y0 = frame.height - box_h
        elif side == 2:
            x0 = 0
        else:
            x0 = frame.width - box_w
    return _Rect(x0, y0, x0 + box_w - 1, y0 + box_h - 1)


def _plan_batch(rng: np.random.Generator, recipe: _Recipe) -> list[str]:
    """Unit types ('stroke' / 'box') of one natural mask of the recipe, in drawing order."""
    plan: list[str] = []
    if recipe.strokes is not None:
        plan += ["stroke"] * _randint(rng, recipe.strokes.groups)
    boxes = recipe.boxes
    if boxes is not None and (boxes.probability >= 1.0 or rng.random() < boxes.probability):
        plan += ["box"] * _randint(rng, boxes.count)
    if recipe.strokes is not None and recipe.boxes is not None and len(plan) > 1:
        plan = [plan[i] for i in rng.permutation(len(plan))]
    return plan


class _UnitSampler:
    """Samples a recipe's strokes and boxes, counting stroke groups for angle mirroring."""

    def __init__(self, rng: np.random.Generator, frame: _Frame, recipe: _Recipe) -> None:
        self.rng, self.frame, self.recipe = rng, frame, recipe
        self.groups = 0

    def sample(self, unit_type: str, on_edge: bool) -> _Stroke | _Rect:
        if unit_type == "box":
            assert self.recipe.boxes is not None
            return _sample_box(self.rng, self.frame, self.recipe.boxes, on_edge)
        style = self.recipe.strokes
        group, self.groups = self.groups, self.groups + 1
        if isinstance(style, _BrushStrokes):
            return _sample_brush_stroke(self.rng, self.frame, style, group, on_edge)
        assert style is not None
        return _sample_angle_stroke(self.rng, self.frame, style, group, on_edge)

    def endless_plan(self) -> Iterator[str]:
        """Natural batches one after another, for filling towards a target ratio."""
        while True:
            yield from _plan_batch(self.rng, self.recipe)


# --------------------------------------------------------------------------- generation


def check_mask_request(
    kind: str,
    size: tuple[int, int],
    hole_ratio: tuple[float, float] | None = None,
    border: bool | None = None,
    margin: int | None = None,
) -> None:
    """Raise :class:`MaskError` when no mask can satisfy the request (cheap, draws nothing)."""
    unknown = [part for part in kind.split("+") if part not in MASK_KINDS]
    if unknown:
        raise MaskError(
            f"unknown mask kind {unknown[0]!r}; choose from {', '.join(MASK_KINDS)} "
            "(or several joined by +)"
        )
    height, width = size
    if height < _MIN_SIDE or width < _MIN_SIDE:
        raise MaskError(
            f"mask size {width}x{height} is too small (at least {_MIN_SIDE}x{_MIN_SIDE})"
        )
    if height * width > MAX_MASK_PIXELS:
        raise MaskError(
            f"mask size {width}x{height} is too large: at most {MAX_MASK_PIXELS / 1e6:.0f} MP "
            "per mask (e.g. 8192x8192); a smaller mask is resized to each image it is used with"
        )
    margin = default_margin(size) if margin is None else margin
    if margin < 0:
        raise MaskError(f"margin must be >= 0, got {margin}")
    keep_out = margin if border is False else 0
    inner_h, inner_w = height - 2 * keep_out, width - 2 * keep_out
    if inner_h < 3 or inner_w < 3:
        raise MaskError(
            f"a margin of {margin} px leaves no room for holes in a {width}x{height} mask"
        )
    if hole_ratio is None:
        return
    _check_ratio_range(hole_ratio)
    n_pixels = height * width
    low, high = _count_bounds(*hole_ratio, n_pixels)
    if low > high:
        raise MaskError(
            f"no {width}x{height} mask has a hole ratio in {format_ratio_range(*hole_ratio)}"
        )
    if low > inner_h * inner_w:
        raise MaskError(
            f"a {width}x{height} {kind} mask cannot reach hole ratio "
            f"{format_ratio_range(*hole_ratio)} without holes within {margin} px of the edge: "
            f"only {inner_h * inner_w / n_pixels:.1%} of the image lies inside that margin"
        )


def resolve_kind(kind: str, rng: np.random.Generator) -> str:
    """The concrete kind to draw: ``A+B`` picks one of its kinds uniformly, ``mixed`` one by
    :data:`MIXED_WEIGHTS`; others pass."""
    if "+" in kind:
        parts = kind.split("+")
        kind = parts[int(rng.integers(len(parts)))]
    if kind != "mixed":
        return kind
    names = list(MIXED_WEIGHTS)
    weights = np.array([MIXED_WEIGHTS[name] for name in names], dtype=float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def generate_mask(
    kind: str,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (256, 256),
    hole_ratio: tuple[float, float] | None = None,
    border: bool | None = None,
    margin: int | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
) -> np.ndarray:
    """Draw one mask of ``kind``: bool array of shape ``size=(height, width)``, True = hole.

    Kinds: ``irregular`` (MMagic's PConv/DeepFillv2 training masks: 4..9 groups of
    1..5 thick segments), ``brush`` (DeepFillv2's free-form brush: 1..3 strokes of
    4..11 vertices with round joints), ``box`` (1..3 rectangles, sides 1/8 to 1/2 of
    256 scaled, 10 px at 256 from the border), ``thin``/``medium``/``thick`` (LaMa-like
    presets: many narrow strokes; fewer, wider strokes plus boxes with p=0.3; 1..5
    very wide strokes plus larger boxes), ``occlusion`` (see :func:`_draw_occlusion`),
    ``mixed`` (one of the first six, drawn with :data:`MIXED_WEIGHTS`); ``A+B`` picks one
    of its kinds uniformly.

    ``hole_ratio=(lo, hi)`` asks for ``lo <= ratio < hi`` (None: the kind's default
    range, :data:`DEFAULT_HOLE_RATIO`); ``border`` and ``margin`` as in the module
    docstring. Raises :class:`MaskError` for impossible requests or after ``max_tries``.
    """
    check_mask_request(kind, size, hole_ratio, border, margin)
    kind = resolve_kind(kind, rng)
    frame = _Frame(size[0], size[1], border, default_margin(size) if margin is None else margin)
    recipe = None if kind == "occlusion" else _recipe_for(kind, frame)
    for _ in range(max(1, max_tries)):
        if recipe is None:
            hole = _draw_occlusion(rng, frame, hole_ratio or DEFAULT_HOLE_RATIO[kind])
        elif hole_ratio is None:
            hole = _draw_natural(rng, frame, recipe, DEFAULT_HOLE_RATIO[kind])
        else:
            hole = _fill_towards_ratio(rng, frame, recipe, hole_ratio)
        if hole is not None:
            return hole
    wanted = DEFAULT_HOLE_RATIO[kind] if hole_ratio is None else hole_ratio
    ratio_text = "any hole ratio" if wanted is None else f"hole ratio {format_ratio_range(*wanted)}"
    raise MaskError(
        f"could not draw a {frame.width}x{frame.height} {kind} mask with {ratio_text}"
        f"{_border_text(frame)} in {max(1, max_tries)} tries"
    )


def _border_text(frame: _Frame) -> str:
    if frame.border is False:
        return f" and no hole within {frame.margin} px of the edge"
    if frame.border is True:
        return " and a hole touching the edge"
    return ""


def _meets_border(hole: np.ndarray, frame: _Frame) -> bool:
    return frame.border is not True or touches_border(hole)


def _draw_natural(
    rng: np.random.Generator,
    frame: _Frame,
    recipe: _Recipe,
    accepted: tuple[float, float] | None,
) -> np.ndarray | None:
    """One draw of the recipe's own algorithm; None when the ratio or border test fails."""
    canvas = Image.new("L", (frame.width, frame.height), 0)
    draw = ImageDraw.Draw(canvas)
    sampler = _UnitSampler(rng, frame, recipe)
    for index, unit_type in enumerate(_plan_batch(rng, recipe)):
        _draw_unit(draw, sampler.sample(unit_type, on_edge=frame.border is True and index == 0))
    _clear_margin(draw, frame)
    hole = np.asarray(canvas) > 0
    count = int(np.count_nonzero(hole))
    if count == 0 or not _meets_border(hole, frame):
        return None
    if accepted is not None and not in_ratio_range(count / hole.size, *accepted):
        return None
    return hole


# --------------------------------------------------------------------------- occlusion


def _smooth_field(rng: np.random.Generator, frame: _Frame, cells: int) -> np.ndarray:
    """Gaussian noise on a grid of about ``cells`` cells along the shorter side, bicubically
    upsampled to the frame: a smooth random field, float32 (H, W), roughly unit variance."""
    short = min(frame.height, frame.width)
    grid_h = max(2, round(cells * frame.height / short)) + 2
    grid_w = max(2, round(cells * frame.width / short)) + 2
    grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    image = Image.fromarray(grid, mode="F")
    box = (1.0, 1.0, grid_w - 1.0, grid_h - 1.0)  # skip the outer cells: no edge artefacts
    field = image.resize((frame.width, frame.height), Image.Resampling.BICUBIC, box=box)
    return np.asarray(field, dtype=np.float32)


def _draw_occlusion(
    rng: np.random.Generator, frame: _Frame, hole_ratio: tuple[float, float]
) -> np.ndarray | None:
    """A mask like NVIDIA's irregular test masks (occlusion/disocclusion between video frames).

    Holes are bands along 1..3 level lines of a smooth random field: the distance
    ``|f - c| / |grad f|`` to the line, roughened by fine noise, below a half-width that
    varies smoothly along the line; a second field hides parts of the lines (open,
    curvy strokes), and with probability 0.3 one side of a level line is filled as
    well (a blob). The hole is the target count (drawn in ``hole_ratio``) of pixels
    nearest to the lines relative to the local width: small ratios give thin curvy
    strokes, large ones thick blobby bands. None when the range or border test fails.
    """
    low, high = _count_bounds(*hole_ratio, frame.height * frame.width)
    target = int(rng.integers(low, high + 1))
    scale = min(frame.height, frame.width) / 256
    field = _smooth_field(rng, frame, int(rng.integers(2, 7)))
    grad_y, grad_x = np.gradient(field)
    slope = np.hypot(grad_x, grad_y) + 1e-6
    levels = rng.uniform(-0.8, 0.8, size=int(rng.integers(1, 4)))
    distance = np.min(np.abs(field[None] - levels[:, None, None]), axis=0) / slope
    rough = _smooth_field(rng, frame, int(rng.integers(16, 48)))
    distance = distance + float(rng.uniform(0.0, 1.5)) * scale * np.abs(rough)
    width = np.exp(0.7 * _smooth_field(rng, frame, int(rng.integers(2, 6))))
    visible = _smooth_field(rng, frame, int(rng.integers(2, 5)))
    hidden = visible < float(rng.uniform(-1.5, 0.3))
    if rng.random() < 0.3:
        blob = field > float(rng.uniform(0.8, 1.8))
        distance = np.where(blob, 0.0, distance)
    distance = np.where(hidden, np.inf, distance / width)
    keep_out = frame.keep_out
    if keep_out:
        distance[:keep_out] = distance[-keep_out:] = np.inf
        distance[:, :keep_out] = distance[:, -keep_out:] = np.inf
    finite = np.sort(distance[np.isfinite(distance)], axis=None)
    if finite.size < low:
        return None
    threshold = finite[min(target, finite.size) - 1]
    hole = distance <= threshold
    count = int(np.count_nonzero(hole))
    if not (low <= count <= high) or not _meets_border(hole, frame):
        return None
    return hole


def _fill_towards_ratio(
    rng: np.random.Generator,
    frame: _Frame,
    recipe: _Recipe,
    hole_ratio: tuple[float, float],
) -> np.ndarray | None:
    """Add units until a random target count in the range is reached; None if it is not."""
    low, high = _count_bounds(*hole_ratio, frame.height * frame.width)
    target = int(rng.integers(low, high + 1))
    canvas = Image.new("L", (frame.width, frame.height), 0)
    pixels = np.asarray(canvas)
    count, touched = 0, False
    sampler = _UnitSampler(rng, frame, recipe)
    plan = sampler.endless_plan()
    rejects_in_a_row = 0
    for _ in range(MAX_UNITS_PER_TRY):
        unit = sampler.sample(next(plan), on_edge=frame.border is True and not touched)
        trial = canvas.copy()
        draw = ImageDraw.Draw(trial)
        _draw_unit(draw, unit)
        _clear_margin(draw, frame)
        trial_pixels = np.asarray(trial)
        trial_count = int(np.count_nonzero(trial_pixels))
        if trial_count > high:
            rejects_in_a_row += 1
            if rejects_in_a_row == MAX_REJECTS_IN_A_ROW:
                break
            continue
        rejects_in_a_row = 0
        canvas, pixels, count = trial, trial_pixels, trial_count
        touched = touched or (frame.border is True and touches_border(pixels))
        if count >= target and _meets_border(pixels, frame):
            return pixels > 0
    if count >= low and _meets_border(pixels, frame):
        return pixels > 0
    return None


# --------------------------------------------------------------------------- files


def save_mask(path: str | os.PathLike[str], hole: np.ndarray) -> None:
    """Write a bool hole array as PNG mode L, 255 = hole, 0 = valid.

    Atomic (temp file + rename) without an fsync per file: that cost ~30% of the
    time of a 1000-mask set here. A mask set's manifest is written last, with an
    fsync, and marks the set complete.
    """
    hole = np.asarray(hole)
    if hole.dtype != np.bool_ or hole.ndim != 2:
        raise MaskError(f"a mask must be a 2-D boolean array, got {hole.dtype} {hole.shape}")
    image = Image.fromarray(hole.view(np.uint8) * np.uint8(255))
    atomic_write(
        path,
        lambda tmp: image.save(
            tmp, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL
        ),
        fsync=False,
    )


_LOADABLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L")
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L")


def _hole_values(image: Image.Image) -> np.ndarray:
    """0..255 'holeness' of an opened mask image: alpha if it has transparency, else luminance
    (16-bit grey scaled down to 8 bits)."""
    if image.mode in _DEEP_MODES:
        return (np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    if image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "L")
    if image.mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            return alpha  # painted (opaque) pixels are the hole
        image = image.convert("L")
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image)


def load_mask(
    path: str | os.PathLike[str] | BinaryIO,
    size: tuple[int, int] | None = None,
    invert: bool = False,
    *,
    name: str | None = None,
) -> np.ndarray:
    """Read a mask file as a bool array, True = hole (white, value > 127, in the file).

    Accepts modes 1, L, P, RGB and RGBA (also LA/PA) and 16-bit grey (value > 32767 =
    hole). A file with transparency uses
    its alpha: opaque painted pixels are the hole. ``invert`` flips hole and valid
    (for black = hole files). ``size=(height, width)`` resizes with nearest neighbour
    after thresholding, so the result stays binary, and emits a
    :class:`MaskResizedWarning`; a file with more than 5% grey pixels (more than
    :data:`NEAR_BINARY` levels from 0 and 255: JPEG's ringing around a binary mask does
    not count) emits a :class:`MaskContentWarning`. Unreadable, empty or unsupported files
    raise :class:`MaskError`. ``path`` may also be a binary stream (an upload);
    ``name`` then stands for the file in messages.
    """
    stream = hasattr(path, "read")
    source = path if stream else Path(path)
    path = Path(name or "mask") if stream else source
    try:
        if (not stream and source.stat().st_size == 0) or (
            stream and hasattr(source, "getbuffer") and source.getbuffer().nbytes == 0
        ):
            raise MaskError(f"mask file {path} is empty")
        with Image.open(source) as image:
            image.load()
            if image.mode not in _LOADABLE_MODES:
                raise MaskError(
                    f"mask file {path} has unsupported image mode {image.mode} "
                    f"(expected 1, L, P, RGB, RGBA or 16-bit grey)"
                )
            values = _hole_values(image)
    except MaskError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise MaskError(f"cannot read mask file {path}: {reason}") from None
    grey = float(
        np.count_nonzero((values > NEAR_BINARY) & (values < 255 - NEAR_BINARY))
    ) / max(values.size, 1)
    if grey > NON_BINARY_WARNING:
        warnings.warn(
            f"mask {path}: {grey:.0%} of its pixels are neither black nor white; "
            f"thresholded at {HOLE_THRESHOLD} (white = hole)",
            MaskContentWarning,
            stacklevel=2,
        )
    hole = values > HOLE_THRESHOLD
    if invert:
        hole = ~hole
    if size is not None and hole.shape != tuple(size):
        hole = _resize_nearest(hole, size, path)
    return hole


def _resize_nearest(hole: np.ndarray, size: tuple[int, int], path: Path) -> np.ndarray:
    height, width = size
    warnings.warn(
        f"resized mask {path} from {hole.shape[1]}x{hole.shape[0]} to {width}x{height} "
        f"(nearest neighbour)",
        MaskResizedWarning,
        stacklevel=3,
    )
    image = Image.fromarray(hole.view(np.uint8) * np.uint8(255))
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST)) > HOLE_THRESHOLD


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class ManifestRow:
    """One mask of a set. ``file`` is relative to the manifest's folder; bucket '' = none."""

    file: str
    width: int
    height: int
    hole_ratio: float
    bucket: str
    touches_border: bool
    kind: str
    seed: int

    def to_csv(self) -> dict[str, str]:
        return {
            "file": self.file,
            "width": str(self.width),
            "height": str(self.height),
            "hole_ratio": repr(self.hole_ratio),  # shortest exact form: buckets recompute exactly
            "bucket": self.bucket,
            "touches_border": "true" if self.touches_border else "false",
            "kind": self.kind,
            "seed": str(self.seed),
        }


def write_manifest(path: str | os.PathLike[str], rows: Iterable[ManifestRow]) -> None:
    """Write ``rows`` as CSV with :data:`MANIFEST_COLUMNS` (atomically)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(row.to_csv() for row in rows)

    atomic_write(Path(path), write)


def _parse_manifest_row(record: dict[str, str]) -> ManifestRow:
    flag = record["touches_border"].strip().lower()
    if flag not in ("true", "false"):
        raise ValueError(f"touches_border must be true or false, got {record['touches_border']!r}")
    return ManifestRow(
        file=record["file"],
        width=int(record["width"]),
        height=int(record["height"]),
        hole_ratio=float(record["hole_ratio"]),
        bucket=record["bucket"],
        touches_border=flag == "true",
        kind=record["kind"],
        seed=int(record["seed"]),
    )


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Read a mask-set manifest; raise :class:`MaskError` naming the first bad line."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in MANIFEST_COLUMNS if name not in (reader.fieldnames or [])]
            if missing:
                raise MaskError(f"manifest {path} lacks column(s) {', '.join(missing)}")
            rows = []
            for record in reader:
                try:
                    rows.append(_parse_manifest_row(record))
                except (TypeError, ValueError) as error:
                    raise MaskError(f"manifest {path} line {reader.line_num}: {error}") from None
            return rows
    except OSError as error:
        raise MaskError(f"cannot read manifest {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise MaskError(
            f"manifest {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"offset {error.start})"
        ) from None
    except csv.Error as error:
        raise MaskError(f"manifest {path} is not a readable CSV file ({error})") from None
