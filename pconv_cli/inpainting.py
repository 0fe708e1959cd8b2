"""Inpainting whole images with a model: strategies, uint8 compositing, mask dilation, image files.

Conventions:

- ``image``: uint8 RGB array (H, W, 3), the upright picture (EXIF already applied).
- ``hole``: bool array (H, W), **True = hole** (as :func:`pconv_cli.data.masks.load_mask`
  returns it). The torch side uses the opposite: float mask, 1 = valid.
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
- ``auto``: ``crop`` when the long side exceeds ``crop_trigger``, else ``full``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor, nn

from pconv_cli.files import atomic_write
from pconv_cli.models.pconv_unet import composite

__all__ = [
    "DEFAULT_CROP_TRIGGER",
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_RESIZE_LIMIT",
    "STRATEGIES",
    "ImageError",
    "InpaintResult",
    "LoadedImage",
    "Window",
    "choose_strategy",
    "concat_panels",
    "dilate_holes",
    "inpaint_image",
    "inpaint_tensor",
    "load_image",
    "output_image",
    "plan_windows",
    "predict",
    "save_image",
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


class ImageError(ValueError):
    """An image that cannot be read or written; the message is one line for the CLI."""


# --------------------------------------------------------------------------- model passes


def inpaint_tensor(model: nn.Module, image: Tensor, mask: Tensor) -> Tensor:
    """Composite of ``image`` and ``model``'s output clamped to [0, 1].

    ``image``: float (N, 3, H, W) RGB in [0, 1]; ``mask``: (N, 1, H, W), 1 = valid.
    Known pixels come from ``image`` exactly. Runs without autograd.
    """
    with torch.inference_mode():
        output = model(image, mask).clamp_(0.0, 1.0)
        return composite(image, output, mask)


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


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


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


def _size_multiple(model: nn.Module) -> int:
    net = getattr(model, "net", model)
    return int(getattr(net, "size_multiple", 1))


def _paste(result: np.ndarray, output: np.ndarray, hole: np.ndarray) -> None:
    result[hole] = _to_uint8(output[hole])


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
) -> InpaintResult:
    """Fill the holes of a uint8 RGB ``image`` (``hole`` True = hole) with ``model``.

    ``model`` maps RGB in [0, 1] + mask (1 = valid) to RGB (``InpaintingModel``).
    Known pixels of the result are byte-identical to ``image``. See the module
    docstring for the strategies.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2]:
        raise ValueError(f"hole {hole.shape} does not match image {image.shape[:2]}")
    hole = hole.astype(bool, copy=False)
    strategy = choose_strategy(strategy, hole.shape, crop_trigger=crop_trigger)
    result = image.copy()
    if not hole.any():
        return InpaintResult(result, strategy)
    whole = Window(0, 0, *hole.shape)
    if strategy == "resize" and max(hole.shape) > resize_limit:
        output, window = _inpaint_resized(model, image, hole, resize_limit)
        _paste(result, output, hole)
        return InpaintResult(result, strategy, [window])
    if strategy == "crop":
        multiple = _size_multiple(model)
        windows = plan_windows(
            hole, margin=margin, min_size=max(min_window, multiple), multiple=multiple
        )
        for window in windows:
            rows, cols = window.slices
            sub_hole = hole[rows, cols]
            output = predict(model, image[rows, cols], sub_hole)
            _paste(result[rows, cols], output, sub_hole)
        return InpaintResult(result, strategy, windows)
    _paste(result, predict(model, image, hole), hole)
    return InpaintResult(result, strategy, [whole])


# --------------------------------------------------------------------------- image files

_KEEP_MODES = ("RGB", "RGBA", "L", "LA")
_EXIF_FORMATS = ("JPEG", "PNG", "WEBP")
_ICC_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")


@dataclass
class LoadedImage:
    """An image file, upright (EXIF orientation applied), as pconv inpaints it.

    ``rgb``: uint8 (H, W, 3) fed to the net; ``upright``: the upright PIL image in
    its own mode; ``format``: the file's format (``"JPEG"``, ``"PNG"``...);
    ``exif``: EXIF bytes without the orientation tag (or None); ``icc_profile``;
    ``jpeg_subsampling``: the input's chroma subsampling (-1 = unknown).
    """

    path: Path
    rgb: np.ndarray
    upright: Image.Image
    format: str
    exif: bytes | None = None
    icc_profile: bytes | None = None
    jpeg_subsampling: int = -1

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]


def load_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Read an image file upright: EXIF orientation applied, other EXIF kept.

    RGB, RGBA, L and LA stay as they are; 16-bit grey becomes 8-bit L, palette and
    other modes become RGB (RGBA with transparency).
    """
    path = Path(path)
    try:
        with Image.open(path) as source:
            source.load()
            file_format = source.format or "PNG"
            subsampling = -1
            if file_format == "JPEG":
                from PIL import JpegImagePlugin

                subsampling = JpegImagePlugin.get_sampling(source)
            upright = ImageOps.exif_transpose(source)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ImageError(f"cannot read image {path}: {reason}") from None
    if upright.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: keep the top 8 bits
        upright = Image.fromarray((np.asarray(upright).astype(np.int64) >> 8).astype(np.uint8), "L")
    if upright.mode not in _KEEP_MODES:
        has_alpha = upright.mode in ("PA", "RGBa", "La") or "transparency" in upright.info
        upright = upright.convert("RGBA" if has_alpha else "RGB")
    exif = upright.getexif()
    exif.pop(0x0112, None)
    return LoadedImage(
        path=path,
        rgb=np.asarray(upright.convert("RGB")),
        upright=upright,
        format=file_format,
        exif=exif.tobytes() if len(exif) else None,
        icc_profile=upright.info.get("icc_profile"),
        jpeg_subsampling=subsampling,
    )


def output_image(loaded: LoadedImage, rgb: np.ndarray, hole: np.ndarray) -> Image.Image:
    """The result in the input's mode: RGB/RGBA/L/LA, with alpha and known pixels kept.

    For ``L``/``LA`` inputs only hole pixels take the luma of ``rgb``; alpha is
    always the input's.
    """
    mode = loaded.upright.mode
    if mode == "RGB":
        return Image.fromarray(rgb, "RGB")
    original = np.array(loaded.upright)
    if mode in ("L", "LA"):
        luma = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
        if mode == "L":
            original[hole] = luma[hole]
        else:
            original[..., 0][hole] = luma[hole]
        return Image.fromarray(original, mode)
    original[..., :3] = rgb  # RGBA
    return Image.fromarray(original, "RGBA")


def concat_panels(loaded: LoadedImage, hole: np.ndarray, rgb: np.ndarray) -> Image.Image:
    """input | mask (white = hole) | result, side by side, RGB."""
    mask = np.repeat((hole.view(np.uint8) * np.uint8(255))[..., None], 3, axis=2)
    return Image.fromarray(np.concatenate([loaded.rgb, mask, rgb], axis=1), "RGB")


def _save_options(
    image: Image.Image, loaded: LoadedImage, file_format: str, quality: int | None
) -> tuple[Image.Image, dict]:
    options: dict = {}
    if file_format == "JPEG":
        if image.mode in ("RGBA", "LA"):
            image = image.convert(image.mode[:-1])
        options["quality"] = 95 if quality is None else quality
        if loaded.format == "JPEG" and loaded.jpeg_subsampling >= 0:
            options["subsampling"] = loaded.jpeg_subsampling
    elif file_format == "WEBP":
        options["quality"] = 95 if quality is None else quality
    elif quality is not None and file_format != "PNG":
        options["quality"] = quality
    if loaded.exif and file_format in _EXIF_FORMATS:
        options["exif"] = loaded.exif
    if loaded.icc_profile and file_format in _ICC_FORMATS:
        options["icc_profile"] = loaded.icc_profile
    return image, options


def save_image(
    path: str | os.PathLike[str],
    image: Image.Image,
    loaded: LoadedImage,
    *,
    file_format: str | None = None,
    quality: int | None = None,
) -> Path:
    """Write ``image`` atomically in ``file_format`` (default: the input's format).

    JPEG/WebP quality defaults to 95; the input's EXIF (without orientation), ICC
    profile and JPEG chroma subsampling are kept where the format allows.
    """
    file_format = (file_format or loaded.format).upper()
    image, options = _save_options(image, loaded, file_format, quality)

    def save(tmp: Path) -> None:
        image.save(tmp, format=file_format, **options)

    try:
        return atomic_write(path, save)
    except (OSError, ValueError, KeyError) as error:
        raise ImageError(f"cannot write {path} as {file_format}: {error}") from None
