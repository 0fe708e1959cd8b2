"""How an image is cut into model passes: the strategy, what a filler can fill, windows.

Conventions: ``hole`` arrays are bool (H, W), **True = hole**; sizes are
(height, width); a :class:`Window` is a rectangle of the image.

Strategies (:class:`Mode`, options in :class:`Strategy`):

- ``auto`` (default): every hole region (8-connected) gets its own working scale
  from its *depth*, the largest Euclidean distance from one of its pixels to a
  known pixel (:func:`region_depths`). A region at most as deep as the filler's
  ``fill_radius`` is filled at native resolution (one pass over the image, or one
  window per region above ``crop_trigger``, as ``full``/``crop``); a deeper one
  at scale ``2**-k``, ``k`` the smallest integer with ``depth * 2**-k <=
  fill_radius`` (:func:`scale_level`), then refined coarse-to-fine up to native
  resolution (:mod:`pconv_cli.inpainting.scales`).
- ``full``: one pass at native resolution (any size; the net pads internally).
- ``crop``: one native-resolution window per group of hole regions: the bounding
  box plus ``margin``, at least ``min_window`` px and a multiple of the net's
  ``size_multiple`` where the image allows, shifted inward at the edges; windows
  that overlap are merged. Memory follows the holes.
- ``resize``: images whose long side exceeds ``resize_limit`` are shrunk to it
  (a pixel partly hole counts as hole), filled as ``full``, scaled back up
  (bicubic); only hole pixels are pasted.

Whatever the strategy, no hole pixel whose model pass could not see a known
pixel (its partial-convolution update mask stayed 0) reaches the output: such a
region is filled one scale coarser, and coarser again, until every pass sees.

A filler declares what it can fill (:class:`FillCapacity`) with attributes on the
model or on its ``net`` (the same hook as ``size_multiple``); generic code never
names a family:

- ``fill_radius``: the largest hole depth (px at the net's working scale) it fills
  well; None = no limit (classic methods);
- ``working_size``: the net always works on windows resampled to this square
  size (e.g. a family trained at 512 px only); None = any size;
- ``size_multiple``: inputs are padded internally to a multiple of this;
- ``update_mask(mask)``: the (N, 1, H, W) update mask of the net's last layer for a
  1 = valid mask (1 = that output pixel saw a known pixel), if the net has one;
- ``auto_strategy = "full"``: ``auto`` gives it the whole image in one pass (a model
  whose forward places its own working windows around the holes);
- ``default_blend``: what ``--blend auto`` means for it (``none`` for a model that
  reproduces its publisher's pixels; None: ``poisson``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_CROP_TRIGGER",
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_RESIZE_LIMIT",
    "STRATEGIES",
    "FillCapacity",
    "Mode",
    "Strategy",
    "Window",
    "capacity_of",
    "choose_strategy",
    "dilate_holes",
    "fit_window",
    "label_regions",
    "plan_windows",
    "region_depths",
    "scale_level",
]

DEFAULT_CROP_TRIGGER = 1024
"""``auto`` uses ``crop`` windows when the image's long side is larger than this (pixels)."""
DEFAULT_MARGIN = 128
"""Context pixels around each hole region's bounding box in ``crop``."""
DEFAULT_MIN_WINDOW = 256
"""Smallest ``crop`` window side (MMagic's nets were trained on 256x256 images)."""
DEFAULT_RESIZE_LIMIT = 1024
"""``resize`` shrinks images whose long side is larger than this."""


class Mode(enum.StrEnum):
    """The strategy names (``--strategy``)."""

    AUTO = "auto"
    FULL = "full"
    CROP = "crop"
    RESIZE = "resize"


STRATEGIES: tuple[str, ...] = tuple(mode.value for mode in Mode)
"""Every strategy name, the default first."""


@dataclass(frozen=True)
class Strategy:
    """How an image is cut into passes (see the module docstring); ``mode`` may be a name."""

    mode: Mode = Mode.AUTO
    margin: int = DEFAULT_MARGIN
    min_window: int = DEFAULT_MIN_WINDOW
    resize_limit: int = DEFAULT_RESIZE_LIMIT
    crop_trigger: int = DEFAULT_CROP_TRIGGER
    max_pass_pixels: int | None = None
    """The largest model pass (pixels): a plan with a larger one runs as ``resize`` to fit
    (memory grows with the pixels of a pass; ``pconv serve`` bounds it). None: no bound."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", Mode(self.mode))
        except ValueError:
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.mode!r}"
            ) from None
        for name in ("margin", "min_window", "resize_limit", "crop_trigger"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def native_mode(self, size: tuple[int, int]) -> Mode:
        """``full`` or ``crop``: how native-resolution passes cover an image of ``size``."""
        if self.mode in (Mode.FULL, Mode.CROP):
            return self.mode
        return Mode.CROP if max(size) > self.crop_trigger else Mode.FULL


def choose_strategy(
    strategy: str, size: tuple[int, int], *, crop_trigger: int = DEFAULT_CROP_TRIGGER
) -> str:
    """The concrete native strategy for an image of ``size`` = (height, width)."""
    chosen = Strategy(strategy, crop_trigger=crop_trigger)
    if chosen.mode == Mode.RESIZE:
        return Mode.RESIZE.value
    return chosen.native_mode(size).value


@dataclass(frozen=True)
class FillCapacity:
    """What a filler can fill (see the module docstring for each field)."""

    fill_radius: float | None = None
    working_size: int | None = None
    size_multiple: int = 1
    update_mask: Callable[[Any], Any] | None = None
    whole_image: bool = False
    """``auto`` gives it the whole image (its cost follows the hole, not the image)."""
    default_blend: str | None = None
    """What ``--blend auto`` means for it (None: ``poisson``)."""
    sees_hole_pixels: bool = False
    """Its native passes get the picture as it is, hole pixels included (a publisher's
    pipeline that resamples the photo before masking it); others get holes set to 0."""


def _hook(model: Any, name: str) -> Any:
    for owner in (model, getattr(model, "net", None)):
        value = getattr(owner, name, None) if owner is not None else None
        if value is not None:
            return value
    return None


def capacity_of(model: Any) -> FillCapacity:
    """The :class:`FillCapacity` a model declares (attributes of the model or its ``net``)."""
    radius = _hook(model, "fill_radius")
    working = _hook(model, "working_size")
    return FillCapacity(
        fill_radius=None if radius is None else float(radius),
        working_size=None if working is None else int(working),
        size_multiple=int(_hook(model, "size_multiple") or 1),
        update_mask=_hook(model, "update_mask"),
        whole_image=_hook(model, "auto_strategy") == "full",
        default_blend=_hook(model, "default_blend"),
        sees_hole_pixels=bool(_hook(model, "sees_hole_pixels")),
    )


# --------------------------------------------------------------------------- hole geometry


def dilate_holes(hole: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the hole by ``pixels`` (Euclidean disc); True = hole in and out."""
    if pixels <= 0 or not hole.any():
        return hole
    from scipy import ndimage

    rows = np.flatnonzero(hole.any(1))
    cols = np.flatnonzero(hole.any(0))
    top, bottom = max(rows[0] - pixels, 0), min(rows[-1] + pixels + 1, hole.shape[0])
    left, right = max(cols[0] - pixels, 0), min(cols[-1] + pixels + 1, hole.shape[1])
    out = hole.copy()
    distance = ndimage.distance_transform_edt(~hole[top:bottom, left:right])
    out[top:bottom, left:right] = distance <= pixels
    return out


_EIGHT = np.ones((3, 3), dtype=bool)


def label_regions(hole: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected hole regions (8-connectivity): int32 labels 1..n (0 = known) and n."""
    from scipy import ndimage

    labels, count = ndimage.label(hole, structure=_EIGHT)
    return labels.astype(np.int32, copy=False), int(count)


def hole_depth_map(hole: np.ndarray) -> np.ndarray:
    """float32 (H, W): each hole pixel's Euclidean distance to the nearest known pixel
    (0 on known pixels); the image edge is not a known pixel. All hole: inf."""
    from scipy import ndimage

    depth = np.zeros(hole.shape, dtype=np.float32)
    if not hole.any():
        return depth
    if hole.all():
        depth[:] = np.inf
        return depth
    rows = np.flatnonzero(hole.any(1))
    cols = np.flatnonzero(hole.any(0))
    # The ring around the holes' bounding box is known (or the image edge), so the
    # nearest known pixel of every hole pixel lies inside the box grown by one.
    top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, hole.shape[0])
    left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, hole.shape[1])
    box = hole[top:bottom, left:right]
    if box.all():  # the box is the whole image minus known pixels outside it: none
        depth[:] = np.inf
        return depth
    depth[top:bottom, left:right] = ndimage.distance_transform_edt(box)
    return depth


def region_depths(hole: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """float64 (count + 1,): the depth of each region (index = label; [0] = 0)."""
    from scipy import ndimage

    if count == 0:
        return np.zeros(1)
    depth = hole_depth_map(hole)
    maxima = ndimage.maximum(depth, labels, index=np.arange(1, count + 1))
    return np.concatenate([[0.0], np.asarray(maxima, dtype=np.float64)])


def scale_level(depth: float, fill_radius: float | None) -> int:
    """The smallest k >= 0 with ``depth * 2**-k <= fill_radius`` (0 without a radius)."""
    if fill_radius is None or depth <= fill_radius:
        return 0
    if not math.isfinite(depth):
        return 0  # all hole: no scale sees a known pixel
    return max(0, math.ceil(math.log2(depth / fill_radius) - 1e-9))


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    """A rectangle of the image: rows ``top:top+height``, columns ``left:left+width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    @property
    def area(self) -> int:
        return self.height * self.width


def _fit_axis(start: int, stop: int, *, margin: int, min_size: int, multiple: int, limit: int):
    """(offset, length) of a window covering ``start:stop`` plus margins, inside ``0:limit``."""
    length = max(stop - start + 2 * margin, min_size)
    length = -(-length // multiple) * multiple
    length = min(length, limit)
    offset = (start + stop) // 2 - length // 2
    return min(max(offset, 0), limit - length), length


def fit_window(
    box: tuple[int, int, int, int],
    shape: tuple[int, int],
    *,
    margin: int,
    min_size: int,
    multiple: int,
) -> Window:
    """The window around ``box`` = (top, left, bottom, right): ``margin`` per side, at least
    ``min_size``, a multiple of ``multiple`` where ``shape`` allows, shifted inside."""
    top, left, bottom, right = box
    opts = dict(margin=margin, min_size=min_size, multiple=multiple)
    y, h = _fit_axis(top, bottom, limit=shape[0], **opts)
    x, w = _fit_axis(left, right, limit=shape[1], **opts)
    return Window(y, x, h, w)


def _boxes_of(labels: np.ndarray) -> list[tuple[int, int, int, int]]:
    from scipy import ndimage

    return [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in ndimage.find_objects(labels)]


def plan_windows(
    hole: np.ndarray,
    *,
    margin: int = DEFAULT_MARGIN,
    min_size: int = DEFAULT_MIN_WINDOW,
    multiple: int = 1,
) -> list[Window]:
    """``crop``'s windows: disjoint rectangles that together hold every hole pixel.

    One window per connected hole region (8-connectivity): its bounding box plus
    ``margin`` per side, at least ``min_size`` and a multiple of ``multiple`` where
    the image is large enough, shifted inward at the edges. Windows that overlap
    or touch are replaced by one around their union until none do.
    """
    if not hole.any():
        return []
    from scipy import ndimage

    shape = hole.shape
    labels, _ = label_regions(hole)
    boxes = _boxes_of(labels)
    while True:
        windows = [
            fit_window(b, shape, margin=margin, min_size=min_size, multiple=multiple) for b in boxes
        ]
        canvas = np.zeros(shape, dtype=bool)
        for window in windows:
            canvas[window.slices] = True
        groups, count = ndimage.label(canvas)
        if count == len(windows):
            return sorted(windows, key=lambda w: (w.top, w.left))
        # Merge: the union of the hole boxes of each group of touching windows.
        merged: dict[int, tuple[int, int, int, int]] = {}
        for box, window in zip(boxes, windows, strict=True):
            group = int(groups[window.top, window.left])
            old = merged.get(group, box)
            merged[group] = (
                min(old[0], box[0]),
                min(old[1], box[1]),
                max(old[2], box[2]),
                max(old[3], box[3]),
            )
        boxes = list(merged.values())
