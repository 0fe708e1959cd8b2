"""Array-level inpainting: ``inpaint(image, hole, source)`` for models and classic methods.

Conventions:

- ``image``: RGB (H, W, 3), uint8 (0..255) or float on the [0, 1] scale, a numpy
  array or a CPU torch tensor; the result has the same type, dtype and shape.
- ``hole``: (H, W), **True (or non-zero) = hole**, the pixels to fill (mask files
  say the same with white). The model side uses the opposite (1 = valid).
- ``source``: an inpainting model (an ``nn.Module`` taking RGB in [0, 1] and a
  1 = valid mask, e.g. :func:`pconv_cli.weights.load_model`), a classic method
  name (:data:`~pconv_cli.inpainting.classic.USER_METHODS`), or a :class:`Filler`.
- Every known pixel of the result is the input's, bit for bit; only hole pixels
  are written.

The strategy (:class:`~pconv_cli.inpainting.strategy.Strategy`) decides the model
passes and their working scales; ``blend`` composites the fill (``poisson``:
gradient-domain, :mod:`pconv_cli.inpainting.blending`; ``none``: pasted as is).
Files, EXIF and formats are the file layer's (:mod:`pconv_cli.inpainting.files`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from pconv_cli.data.images import to_uint8
from pconv_cli.inpainting.blending import Blend, poisson_blend
from pconv_cli.inpainting.scales import NeedsCoarser, Patch, fill_levels
from pconv_cli.inpainting.strategy import (
    FillCapacity,
    Mode,
    Strategy,
    Window,
    capacity_of,
    label_regions,
    plan_windows,
    region_depths,
    scale_level,
)
from pconv_cli.inpainting.tensors import as_image_tensor, device_of, model_input

__all__ = [
    "DEFAULT_BAND_RADIUS",
    "Filler",
    "InpaintResult",
    "MethodFiller",
    "ModelFiller",
    "as_filler",
    "describe_scales",
    "inpaint",
    "inpaint_image",
    "predict",
]

DEFAULT_BAND_RADIUS = 64.0
"""Fill radius assumed for a filler that reports an update mask but no ``fill_radius``."""


class Filler:
    """Something that fills holes: ``filler(image, valid) -> raw``.

    ``image`` float (1, 3, h, w) in [0, 1] with holes set to 0, ``valid`` float
    (1, 1, h, w), 1 = valid; ``raw`` float (1, 3, h, w) in [0, 1] (not composited).
    ``capacity`` says what it can fill; ``coverage(valid)`` gives its update mask
    (1 = the output pixel saw a known pixel) or None.
    """

    name = "filler"
    capacity = FillCapacity()

    def __call__(self, image: Tensor, valid: Tensor) -> Tensor:
        raise NotImplementedError

    def coverage(self, valid: Tensor) -> Tensor | None:
        return None


class ModelFiller(Filler):
    """A model as a :class:`Filler` (its :func:`capacity_of` declarations apply)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.name = str(getattr(model, "family", type(model).__name__))
        self.capacity = capacity_of(model)
        self.device = device_of(model)

    def _resampled(self, x: Tensor) -> Tensor:
        size = self.capacity.working_size
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)

    def __call__(self, image: Tensor, valid: Tensor) -> Tensor:
        size = self.capacity.working_size
        h, w = image.shape[-2:]
        image, valid = image.to(self.device), valid.to(self.device)
        if size and (h, w) != (size, size):
            small_valid = (self._resampled(valid) >= 1.0 - 1e-6).float()
            small = self._resampled(image) * small_valid
            with torch.inference_mode():
                out = self.model(small, small_valid).clamp_(0.0, 1.0)
            out = F.interpolate(out, size=(h, w), mode="bicubic", align_corners=False)
            return out.clamp_(0.0, 1.0)
        with torch.inference_mode():
            return self.model(image, valid).clamp_(0.0, 1.0)

    def coverage(self, valid: Tensor) -> Tensor | None:
        update = self.capacity.update_mask
        if update is None or self.capacity.working_size:
            return None
        with torch.inference_mode():
            return update(valid.to(self.device))


class MethodFiller(Filler):
    """A classic method (:mod:`pconv_cli.inpainting.classic`) as a :class:`Filler`."""

    capacity = FillCapacity(whole_image=True)

    def __init__(self, method: str, *, seed: int = 0, device: str | None = None):
        from pconv_cli.inpainting.classic import check_method

        check_method(method)
        self.name = method
        self.seed = seed
        self.device = device

    def __call__(self, image: Tensor, valid: Tensor) -> Tensor:
        from pconv_cli.inpainting.classic import inpaint_classic

        rgb = to_uint8(image[0].permute(1, 2, 0).cpu()).numpy()
        hole = valid[0, 0].cpu().numpy() < 0.5
        out = inpaint_classic(self.name, rgb, hole, seed=self.seed, device=self.device)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).permute(2, 0, 1)[None]


def as_filler(source: Any, *, seed: int = 0, device: str | None = None) -> Filler:
    """A :class:`Filler` for a model, a classic method name or a filler."""
    if isinstance(source, Filler):
        return source
    if isinstance(source, str):
        return MethodFiller(source, seed=seed, device=device)
    if isinstance(source, nn.Module):
        return ModelFiller(source)
    raise TypeError(f"cannot inpaint with a {type(source).__name__}: give a model or a method")


def predict(model: nn.Module, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """One native pass of ``model`` on uint8 RGB ``image`` (``hole`` True = hole).

    Returns float32 (H, W, 3) in [0, 1]: the raw output, clamped, not composited.
    """
    x, valid = model_input(image, hole, device_of(model))
    return ModelFiller(model)(x, valid)[0].permute(1, 2, 0).float().cpu().numpy()


@dataclass
class InpaintResult:
    """``image``: the result (the input's type); ``strategy``: how native passes ran
    (``full``/``crop``/``resize``); ``windows``: the native-scale passes; ``scales``: the
    working scales used, coarsest first (``(1.0,)``: native only); ``blend``."""

    image: Any
    strategy: str
    windows: list[Window] = field(default_factory=list)
    scales: tuple[float, ...] = (1.0,)
    blend: str = Blend.NONE.value
    passes: int = 0

    @property
    def note(self) -> str | None:
        """One line naming the scales when not only the native one was used, else None."""
        return describe_scales(self.scales)


def describe_scales(scales: tuple[float, ...]) -> str | None:
    """``"filled at scales 1/8, 1/4, 1/2, 1"`` (None when only native resolution was used)."""
    if tuple(scales) == (1.0,) or not scales:
        return None
    names = ["1" if s == 1.0 else f"1/{round(1 / s)}" for s in scales]
    return "filled at scales " + ", ".join(names) + " (coarse-to-fine: the holes are deeper " \
        "than the model sees at full resolution)"  # fmt: skip


# --------------------------------------------------------------------------- inputs


def _as_picture(image: Any) -> tuple[np.ndarray, Any]:
    """A writable (H, W, 3) uint8 or float32 numpy copy and a function giving back the kind."""
    if isinstance(image, Tensor):
        array = image.detach().cpu().numpy()
        dtype = image.dtype

        def back(result: np.ndarray) -> Tensor:
            return torch.from_numpy(result).to(dtype)
    else:
        array = np.asarray(image)

        def back(result: np.ndarray) -> np.ndarray:
            return result if array.dtype in (np.uint8, np.float32) else result.astype(array.dtype)

    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.copy(), back
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [0, 1], got {array.dtype}")
    return array.astype(np.float32, copy=True), back


def _as_hole(hole: Any, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(hole, Tensor):
        hole = hole.detach().cpu().numpy()
    hole = np.asarray(hole)
    if hole.shape != shape:
        raise ValueError(f"hole {hole.shape} does not match image {shape}")
    return hole.astype(bool, copy=False)


def _window_input(picture: np.ndarray, hole: np.ndarray, window: Window) -> tuple[Tensor, Tensor]:
    rows, cols = window.slices
    return model_input(picture[rows, cols], hole[rows, cols])


# --------------------------------------------------------------------------- compositing


def _composite(result: np.ndarray, patch: Patch, blend: Blend) -> None:
    """Write ``patch``'s hole pixels into ``result`` (blended first with ``poisson``)."""
    rows, cols = patch.window.slices
    hole = torch.from_numpy(patch.hole)
    values = patch.values
    if blend is Blend.POISSON:
        photo = _float_chw(result[rows, cols])
        values = poisson_blend(photo, values, hole)
    filled = values.permute(1, 2, 0)[hole].numpy()
    target = result[rows, cols]
    target[patch.hole] = to_uint8(filled) if result.dtype == np.uint8 else np.clip(filled, 0, 1)


def _float_chw(array: np.ndarray) -> Tensor:
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


# --------------------------------------------------------------------------- the passes


@dataclass
class _Run:
    """What a fill did (for :class:`InpaintResult`)."""

    mode: Mode
    windows: list[Window] = field(default_factory=list)
    levels: set[int] = field(default_factory=set)
    passes: int = 0


def _native_passes(
    filler: Filler, result: np.ndarray, hole: np.ndarray, target: np.ndarray,
    windows: list[Window], labels: np.ndarray, check: bool,
) -> tuple[list[Patch], set[int]]:  # fmt: skip
    """One pass per window; ``target`` pixels are filled; regions left unseen are returned."""
    patches, unseen = [], set()
    for window in windows:
        rows, cols = window.slices
        x, valid = _window_input(result, hole, window)
        if filler.capacity.sees_hole_pixels:
            x = as_image_tensor(result[rows, cols])
        raw = filler(x, valid).float().cpu()
        fill = target[rows, cols].copy()
        if check:
            seen = filler.coverage(valid)
            if seen is not None:
                blind = fill & (seen[0, 0].cpu().numpy() <= 0)
                if blind.any():
                    lost = set(np.unique(labels[rows, cols][blind]).tolist())
                    unseen |= lost
                    fill &= ~np.isin(labels[rows, cols], list(lost))
        guided = ~hole[rows, cols]
        patches.append(Patch(window, raw[0], fill, guided))
    return patches, unseen


def _deep_patch(
    filler: Filler, result: np.ndarray, deep: np.ndarray, top: np.ndarray, labels: np.ndarray,
    check: bool,
) -> Patch:  # fmt: skip
    """The coarse-to-fine fill of the ``deep`` regions (``top``: each label's top level)."""
    capacity = filler.capacity
    radius = capacity.fill_radius or DEFAULT_BAND_RADIUS
    limit = max(1, math.ceil(math.log2(max(deep.shape))))
    while True:
        coverage = filler.coverage if check and top.max() < limit else None
        try:
            return fill_levels(
                result, deep, top[labels], labels, filler,
                fill_radius=radius, multiple=capacity.size_multiple, coverage=coverage,
            )  # fmt: skip
        except NeedsCoarser as error:
            top[sorted(error.labels)] += 1


def _fill(
    filler: Filler, result: np.ndarray, hole: np.ndarray, strategy: Strategy, blend: Blend
) -> _Run:
    """Fill ``hole`` of ``result`` in place (see the strategy module for the plan)."""
    capacity = filler.capacity
    labels, count = label_regions(hole)
    top = np.zeros(count + 1, dtype=np.int64)
    if strategy.mode == Mode.AUTO and capacity.fill_radius is not None:
        depths = region_depths(hole, labels, count)
        top[1:] = [scale_level(d, capacity.fill_radius) for d in depths[1:]]
    check = not hole.all()
    mode = strategy.native_mode(hole.shape)
    if capacity.whole_image and strategy.mode == Mode.AUTO:
        mode = Mode.FULL
    run = _Run(mode)
    native = hole & (top[labels] == 0)
    if native.any():
        if mode == Mode.FULL:
            windows = [Window(0, 0, *hole.shape)]
        else:
            multiple = capacity.size_multiple
            windows = plan_windows(
                native,
                margin=strategy.margin,
                min_size=max(strategy.min_window, multiple),
                multiple=multiple,
            )
        patches, unseen = _native_passes(filler, result, hole, native, windows, labels, check)
        for patch in patches:
            _composite(result, patch, blend)
        run.windows += windows
        run.passes += len(windows)
        run.levels.add(0)
        if unseen:
            top[sorted(unseen)] = 1
    deep = hole & (top[labels] > 0)
    if deep.any():
        patch = _deep_patch(filler, result, deep, top, labels, check)
        _composite(result, patch, blend)
        run.levels |= {level for level, _ in patch.passes}
        run.passes += len(patch.passes)
    return run


def _fill_resized(
    filler: Filler, result: np.ndarray, hole: np.ndarray, strategy: Strategy, blend: Blend
) -> _Run:
    """``resize``: fill a copy shrunk to ``resize_limit``, scale the fill back up."""
    height, width = hole.shape
    scale = strategy.resize_limit / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    hole_image = Image.fromarray(hole.view(np.uint8) * np.uint8(255))
    # Any hole coverage makes a small pixel a hole: hole content never leaks in.
    small_hole = np.asarray(hole_image.resize(size, Image.Resampling.BOX)) > 0
    if result.dtype == np.uint8:
        small_u8 = np.asarray(Image.fromarray(result).resize(size, Image.Resampling.LANCZOS))
        small = small_u8 / np.float32(255.0)
    else:
        x = torch.from_numpy(result).permute(2, 0, 1)[None]
        small_t = F.interpolate(x, size=size[::-1], mode="bilinear", antialias=True)
        small = small_t[0].permute(1, 2, 0).clamp_(0, 1).numpy()
    small = np.ascontiguousarray(small, dtype=np.float32)
    inner = Strategy(Mode.FULL)
    run = _fill(filler, small, small_hole, inner, Blend.NONE)
    up = torch.from_numpy(small).permute(2, 0, 1)[None].contiguous()  # as 0.x resized
    up = F.interpolate(up, size=(height, width), mode="bicubic", align_corners=False)
    values = up[0].clamp_(0.0, 1.0)
    _composite(result, Patch(Window(0, 0, height, width), values, hole, ~hole), blend)
    run.mode = Mode.RESIZE
    run.windows = [Window(0, 0, size[1], size[0])]
    run.levels = {level + math.log2(max(height, width) / strategy.resize_limit)
                  for level in run.levels}  # fmt: skip
    return run


def _largest_pass(strategy: Strategy, hole: np.ndarray, capacity: FillCapacity) -> int:
    """The pixels of the largest native pass ``strategy`` would run on ``hole``."""
    height, width = hole.shape
    if strategy.mode == Mode.RESIZE:
        scale = min(1.0, strategy.resize_limit / max(height, width))
        return math.ceil(height * scale) * math.ceil(width * scale)
    mode = strategy.native_mode(hole.shape)
    if mode == Mode.FULL or (capacity.whole_image and strategy.mode == Mode.AUTO):
        return height * width
    multiple = capacity.size_multiple
    size = max(strategy.min_window, multiple)
    windows = plan_windows(hole, margin=strategy.margin, min_size=size, multiple=multiple)
    return max((w.area for w in windows), default=0)


def _bounded(strategy: Strategy, hole: np.ndarray, capacity: FillCapacity) -> Strategy:
    """``strategy``, or ``resize`` to a size whose pass fits ``max_pass_pixels``."""
    limit = strategy.max_pass_pixels
    if limit is None or _largest_pass(strategy, hole, capacity) <= limit:
        return strategy
    height, width = hole.shape
    side = max(16, int(max(height, width) * math.sqrt(limit / (height * width))))
    while math.ceil(height * side / max(height, width)) * math.ceil(
        width * side / max(height, width)
    ) > limit and side > 16:
        side -= 1
    return replace(strategy, mode=Mode.RESIZE, resize_limit=min(side, strategy.resize_limit))


def inpaint(
    image: Any,
    hole: Any,
    source: Any,
    *,
    strategy: Strategy | str = "auto",
    blend: Blend | str = Blend.POISSON,
    seed: int = 0,
) -> InpaintResult:
    """Fill the holes of ``image`` with ``source`` (see the module docstring).

    ``strategy``: a :class:`~pconv_cli.inpainting.strategy.Strategy` or a mode name;
    ``blend``: ``auto`` (``poisson`` unless the source declares another default),
    ``poisson`` or ``none``; ``seed``: for seeded methods (``patchmatch``).
    """
    picture, back = _as_picture(image)
    mask = _as_hole(hole, picture.shape[:2])
    strategy = strategy if isinstance(strategy, Strategy) else Strategy(strategy)
    blend = Blend(blend)
    filler = as_filler(source, seed=seed)
    if blend == Blend.AUTO:
        blend = Blend(filler.capacity.default_blend or Blend.POISSON)
    if not mask.any():
        mode = Mode.RESIZE if strategy.mode == Mode.RESIZE else strategy.native_mode(mask.shape)
        return InpaintResult(back(picture), mode.value, blend=blend.value)
    strategy = _bounded(strategy, mask, filler.capacity)
    with torch.inference_mode():
        if strategy.mode == Mode.RESIZE and max(mask.shape) > strategy.resize_limit:
            run = _fill_resized(filler, picture, mask, strategy, blend)
        else:
            run = _fill(filler, picture, mask, strategy, blend)
    scales = tuple(sorted({2.0**-level for level in run.levels}))
    return InpaintResult(
        back(picture), run.mode.value, run.windows, scales, blend.value, run.passes
    )


def inpaint_image(model: Any, image: Any, hole: Any, *, strategy: str = "auto",
                  **options: int) -> InpaintResult:  # fmt: skip
    """pconv 0.x's call, kept for scripts: ``model`` first, strategy options as keywords
    (``margin``, ``min_window``, ``resize_limit``, ``crop_trigger``), no blending."""
    return inpaint(image, hole, model, strategy=Strategy(strategy, **options), blend=Blend.NONE)
