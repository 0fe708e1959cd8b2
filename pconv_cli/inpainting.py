"""Inpainting whole images and folders with a model: strategies, mask dilation, batch jobs.

Conventions:

- ``image``: uint8 RGB array (H, W, 3), the upright picture (EXIF already applied).
- ``hole``: bool array (H, W), **True = hole** (as :func:`pconv_cli.data.masks.load_mask`
  returns it; mask *files* are white = hole). The torch side uses the opposite:
  float mask, 1 = valid.
- Results are uint8 RGB of the same size in which every known pixel is
  byte-identical to ``image``: only hole pixels are ever written.

Strategies (``strategy=``):

- ``full``: one pass at native resolution (any size; the net pads internally).
- ``crop``: one window per group of connected hole regions: the bounding box plus
  ``margin`` on each side, at least ``min_window`` pixels and rounded up to the
  net's size multiple where the image allows, shifted inward at the image edges;
  windows that overlap are merged. Each window runs at native resolution and only
  its hole pixels are pasted back. Memory follows the holes, not the image.
- ``resize``: when the long side exceeds ``resize_limit``, the image is shrunk to
  it (a pixel that is partly hole counts as hole), inpainted, composited, scaled
  back up (bicubic) and only the hole pixels are pasted.
- ``auto``: ``crop`` when the long side exceeds ``crop_trigger``, else ``full``; a model
  may name the strategy ``auto`` means for it (``model.auto_strategy``, e.g. ``full`` for
  a model whose forward works around the holes its own way at any size).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pconv_cli.data.images import (
    ImageDepthWarning,
    ImageError,
    ImageMetadataWarning,
    LoadedImage,
    format_for_suffix,
    load_image,
    output_image,
    save_image,
    to_uint8,
)
from pconv_cli.data.masks import MaskContentWarning, MaskError, MaskResizedWarning, load_mask
from pconv_cli.data.panels import PanelRow, hole_panel, panel_grid
from pconv_cli.inpaint_jobs import InpaintJob, RequestError, plan_jobs

__all__ = [
    "DEFAULT_CROP_TRIGGER",
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_RESIZE_LIMIT",
    "STRATEGIES",
    "InpaintJob",
    "InpaintOptions",
    "InpaintResult",
    "JobResult",
    "RequestError",
    "Window",
    "choose_strategy",
    "concat_panels",
    "dilate_holes",
    "inpaint_file",
    "inpaint_files",
    "inpaint_image",
    "plan_jobs",
    "plan_windows",
    "predict",
]

STRATEGIES = ("auto", "full", "crop", "resize")
DEFAULT_CROP_TRIGGER = 1024
"""``auto`` uses ``crop`` when the image's long side is larger than this (pixels)."""
DEFAULT_MARGIN = 128
"""Context pixels around each hole region's bounding box in ``crop``."""
DEFAULT_MIN_WINDOW = 256
"""Smallest ``crop`` window side (MMagic's nets were trained on 256x256 images)."""
DEFAULT_RESIZE_LIMIT = 1024
"""``resize`` shrinks images whose long side is larger than this."""


# --------------------------------------------------------------------------- model passes


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def predict(model: nn.Module, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The model's output for a uint8 RGB ``image`` and bool ``hole`` (True = hole).

    Returns float32 (H, W, 3) in [0, 1] (raw output, clamped, not composited).
    The model takes RGB in [0, 1] and masks with 1 = valid (``InpaintingModel``).
    """
    device = _device_of(model)
    if not (image.flags.writeable and image.flags.c_contiguous):
        image = np.array(image)  # torch wants writable, contiguous memory
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None]
    x = x.float().div_(255.0)
    mask = torch.from_numpy(~hole).to(device)[None, None].float()
    with torch.inference_mode():
        output = model(x, mask).clamp_(0.0, 1.0)
    return output[0].permute(1, 2, 0).float().cpu().numpy()


# --------------------------------------------------------------------------- mask helpers


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


def _fit_axis(start: int, stop: int, *, margin: int, min_size: int, multiple: int, limit: int):
    """(offset, length) of a window covering ``start:stop`` plus margins, inside ``0:limit``."""
    length = max(stop - start + 2 * margin, min_size)
    length = -(-length // multiple) * multiple
    length = min(length, limit)
    offset = (start + stop) // 2 - length // 2
    return min(max(offset, 0), limit - length), length


def _fit_window(
    box: tuple[int, int, int, int],
    shape: tuple[int, int],
    *,
    margin: int,
    min_size: int,
    multiple: int,
) -> Window:
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
    labels, _ = ndimage.label(hole, structure=np.ones((3, 3), dtype=bool))
    boxes = _boxes_of(labels)
    while True:
        windows = [
            _fit_window(b, shape, margin=margin, min_size=min_size, multiple=multiple)
            for b in boxes
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


def choose_strategy(
    strategy: str, size: tuple[int, int], *, crop_trigger: int = DEFAULT_CROP_TRIGGER
) -> str:
    """The concrete strategy for an image of ``size`` = (height, width)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy != "auto":
        return strategy
    return "crop" if max(size) > crop_trigger else "full"


# --------------------------------------------------------------------------- whole images


@dataclass
class InpaintResult:
    """``image``: uint8 RGB result; ``strategy``: what ran; ``windows``: model passes."""

    image: np.ndarray
    strategy: str
    windows: list[Window] = field(default_factory=list)


def _paste(result: np.ndarray, output: np.ndarray, hole: np.ndarray) -> None:
    result[hole] = to_uint8(output[hole])


def _inpaint_resized(
    model: nn.Module, image: np.ndarray, hole: np.ndarray, limit: int
) -> tuple[np.ndarray, Window]:
    height, width = hole.shape
    scale = limit / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    hole_image = Image.fromarray(hole.view(np.uint8) * np.uint8(255))
    # Any hole coverage makes a small pixel a hole: hole content never leaks in.
    small_hole = np.asarray(hole_image.resize(size, Image.Resampling.BOX)) > 0
    filled = predict(model, small, small_hole)
    filled[~small_hole] = small[~small_hole] / np.float32(255.0)
    up = torch.from_numpy(filled).permute(2, 0, 1)[None]
    up = F.interpolate(up, size=(height, width), mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).clamp_(0.0, 1.0).numpy(), Window(0, 0, size[1], size[0])


def _pass_limit(shape: tuple[int, int], max_pixels: int) -> int:
    """The long side a ``shape`` (height, width) picture shrinks to for <= ``max_pixels``."""
    height, width = shape
    return max(16, int(max(height, width) * math.sqrt(max_pixels / (height * width))))


def inpaint_image(
    model: nn.Module,
    image: np.ndarray,
    hole: np.ndarray,
    *,
    strategy: str = "auto",
    margin: int = DEFAULT_MARGIN,
    min_window: int = DEFAULT_MIN_WINDOW,
    resize_limit: int = DEFAULT_RESIZE_LIMIT,
    crop_trigger: int = DEFAULT_CROP_TRIGGER,
    max_pass_pixels: int | None = None,
) -> InpaintResult:
    """Fill the holes of a uint8 RGB ``image`` (``hole`` True = hole) with ``model``.

    ``model`` maps RGB in [0, 1] + mask (1 = valid) to RGB (``InpaintingModel``).
    Known pixels of the result are byte-identical to ``image``. See the module
    docstring for the strategies. ``max_pass_pixels`` bounds memory: a model pass
    (the whole image, or a crop window) larger than that runs shrunk to fit, as
    ``resize`` does (memory grows with the pixels of a pass: see ``pconv serve``).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2]:
        raise ValueError(f"hole {hole.shape} does not match image {image.shape[:2]}")
    hole = hole.astype(bool, copy=False)
    if strategy == "auto":
        strategy = getattr(model, "auto_strategy", None) or strategy
    strategy = choose_strategy(strategy, hole.shape, crop_trigger=crop_trigger)
    result = image.copy()
    if not hole.any():
        return InpaintResult(result, strategy)
    whole = Window(0, 0, *hole.shape)
    too_big = max_pass_pixels is not None and hole.size > max_pass_pixels
    if strategy == "full" and too_big:
        strategy, resize_limit = "resize", _pass_limit(hole.shape, max_pass_pixels)
    elif strategy == "resize" and too_big:
        resize_limit = min(resize_limit, _pass_limit(hole.shape, max_pass_pixels))
    if strategy == "resize" and max(hole.shape) > resize_limit:
        output, window = _inpaint_resized(model, image, hole, resize_limit)
        _paste(result, output, hole)
        return InpaintResult(result, strategy, [window])
    if strategy == "crop":
        multiple = int(getattr(model, "size_multiple", 1))
        windows = plan_windows(
            hole, margin=margin, min_size=max(min_window, multiple), multiple=multiple
        )
        for window in windows:
            rows, cols = window.slices
            sub_hole = hole[rows, cols]
            if max_pass_pixels is not None and sub_hole.size > max_pass_pixels:
                limit = _pass_limit(sub_hole.shape, max_pass_pixels)
                output, _ = _inpaint_resized(model, image[rows, cols], sub_hole, limit)
            else:
                output = predict(model, image[rows, cols], sub_hole)
            _paste(result[rows, cols], output, sub_hole)
        return InpaintResult(result, strategy, windows)
    _paste(result, predict(model, image, hole), hole)
    return InpaintResult(result, strategy, [whole])


def concat_panels(loaded: LoadedImage, hole: np.ndarray, rgb: np.ndarray) -> Image.Image:
    """input | mask (white = hole) | result, side by side, RGB."""
    return panel_grid([PanelRow([loaded.rgb, hole_panel(hole), rgb])])


# --------------------------------------------------------------------------- files and folders


@dataclass(frozen=True)
class InpaintOptions:
    """How every job of a run is done (see :func:`inpaint_image` for the strategy options).

    ``file_format``: Pillow format of the outputs (None: the output suffix's, else
    the input's); ``quality``: JPEG/WebP quality; ``concat``: write input | mask |
    result instead of the result; ``dilate``: grow holes by that many pixels;
    ``invert_mask``: mask files are black = hole; ``max_pass_pixels``: the largest
    model pass (None: no limit).
    """

    invert_mask: bool = False
    dilate: int = 0
    strategy: str = "auto"
    margin: int = DEFAULT_MARGIN
    min_window: int = DEFAULT_MIN_WINDOW
    resize_limit: int = DEFAULT_RESIZE_LIMIT
    crop_trigger: int = DEFAULT_CROP_TRIGGER
    file_format: str | None = None
    quality: int | None = None
    concat: bool = False
    max_pass_pixels: int | None = None


@dataclass
class JobResult:
    """What became of a job: the strategy and passes that ran, or a one-line ``error``.

    ``notes``: warnings worth telling (a mask resized to its image, a mostly grey
    mask, an all-hole mask, a bit depth the output cannot keep), as
    ``(kind, text)`` pairs; ``kind`` is the warning's class name.
    """

    job: InpaintJob
    strategy: str | None = None
    passes: int = 0
    error: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def _first_line(error: BaseException) -> str:
    text = str(error).splitlines()
    return text[0] if text and text[0] else type(error).__name__


def inpaint_file(model: nn.Module, job: InpaintJob, options: InpaintOptions) -> JobResult:
    """Read ``job``'s image and mask, inpaint, write the output atomically.

    Expected failures (unreadable files, a mask problem, out of memory) come back
    as ``JobResult.error``; nothing is written then.
    """
    result = JobResult(job)
    if job.problem:
        result.error = job.problem
        return result
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            loaded = load_image(job.image)
            hole = load_mask(job.mask, size=loaded.size, invert=options.invert_mask)
            hole = dilate_holes(hole, options.dilate)
            if hole.all():
                result.notes.append(
                    ("AllHole", f"mask {job.mask} covers the whole of {job.image.name}: "
                     "nothing of the picture is kept")
                )  # fmt: skip
            filled = inpaint_image(
                model,
                loaded.rgb,
                hole,
                strategy=options.strategy,
                margin=options.margin,
                min_window=options.min_window,
                resize_limit=options.resize_limit,
                crop_trigger=options.crop_trigger,
                max_pass_pixels=options.max_pass_pixels,
            )
            file_format = (
                options.file_format or format_for_suffix(job.out.suffix) or loaded.format
            )
            if options.concat:
                picture = concat_panels(loaded, hole, filled.image)
            else:
                picture = output_image(loaded, filled.image, hole, file_format)
            save_image(job.out, picture, loaded, file_format=file_format, quality=options.quality)
        told = (MaskResizedWarning, MaskContentWarning, ImageDepthWarning, ImageMetadataWarning)
        result.notes += [
            (w.category.__name__, str(w.message)) for w in caught if issubclass(w.category, told)
        ]
    except (ImageError, MaskError, RuntimeError) as error:  # RuntimeError: e.g. out of memory
        result.error = _first_line(error)
        return result
    result.strategy, result.passes = filled.strategy, len(filled.windows)
    return result


def inpaint_files(
    model: nn.Module, jobs: Iterable[InpaintJob], options: InpaintOptions
) -> Iterator[JobResult]:
    """:func:`inpaint_file` for every job, in order (a generator: results as they finish)."""
    for job in jobs:
        yield inpaint_file(model, job, options)
