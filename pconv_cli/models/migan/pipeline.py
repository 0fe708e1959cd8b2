"""MI-GAN's own inference steps: ``scripts/demo.py`` up to the generator's resolution,
a working window around each hole (placed as ``scripts/create_onnx_pipeline.py`` places
it) beyond it.

Conventions: ``image`` uint8 RGB (H, W, 3), ``known`` bool (H, W) with True = known
pixel (MI-GAN's mask polarity: white = known), results uint8 RGB of the same size in
which every known pixel is the input's.

:func:`demo_steps` is ``scripts/demo.py`` on one image, step for step:

1. the image is resized to ``res`` x ``res`` with PIL's bicubic filter, the mask with
   PIL's nearest neighbour (aspect ratio not kept: MI-GAN stretches);
2. the net's input is ``[mask - 0.5, (image * 2 / 255 - 1) * mask]`` (mask 0/1);
3. the output is mapped by ``(x * 0.5 + 0.5).clamp(0, 1) * 255`` and *truncated* to
   uint8 (``tensor.to(torch.uint8)``, not rounded);
4. resized back to the image's size with OpenCV's bicubic (``cv2.INTER_CUBIC``; the
   torch equivalent within one grey level when OpenCV is missing);
5. composited: known pixels from the image, holes from the output.

``demo.py`` first shrinks images larger than ``res`` (and writes the small result);
pconv keeps the size instead: an image whose sides are both at most ``res`` is one
:func:`demo_steps`, a larger one gets one square window per group of holes
(:func:`plan_windows`, the ONNX pipeline's ``get_masked_bbox``: the hole's bounding
box plus 128 px per side, at least ``res``, centred on the box, shifted inward at the
image edges; windows that overlap are merged) and :func:`demo_steps` on each window.
The ONNX pipeline resizes with bilinear filters and blends the result with a blurred
mask that also changes known pixels within 2 px of the hole; pconv keeps the demo's
bicubic resizing and hard compositing, so known pixels stay byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pconv_cli.data.resize import resize_like_opencv
from pconv_cli.inpainting import Window

__all__ = ["ONNX_PADDING", "demo_steps", "inpaint_migan", "plan_windows"]

ONNX_PADDING = 128
"""Context pixels the ONNX pipeline adds around the hole's bounding box on each side."""

Generate = Callable[[Tensor], Tensor]
"""MI-GAN's forward on its own input: (1, 4, res, res) -> (1, 3, res, res) in [-1, 1]."""


def demo_input(image: np.ndarray, known: np.ndarray, resolution: int) -> Tensor:
    """Steps 1-2: the (1, 4, res, res) float input ``demo.py``'s ``preprocess`` builds."""
    size = (resolution, resolution)
    img = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    mask = Image.fromarray(known.astype(np.uint8) * np.uint8(255), mode="L")
    mask = np.asarray(mask.resize(size, Image.Resampling.NEAREST))[:, :, None] // 255
    img_t = torch.from_numpy(np.array(img)).float() * 2 / 255 - 1
    mask_t = torch.from_numpy(np.array(mask)).float()
    img_t = img_t.permute(2, 0, 1).unsqueeze(0)
    mask_t = mask_t.permute(2, 0, 1).unsqueeze(0)
    return torch.cat([mask_t - 0.5, img_t * mask_t], dim=1)


def demo_output(output: Tensor) -> np.ndarray:
    """Step 3: the generator's (3, res, res) output as ``demo.py`` quantises it (truncated)."""
    output = (output * 0.5 + 0.5).clamp(0, 1) * 255
    return output.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def demo_steps(
    generate: Generate,
    image: np.ndarray,
    known: np.ndarray,
    resolution: int,
    *,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """``scripts/demo.py`` on one image of any size: see the module docstring."""
    height, width = known.shape
    x = demo_input(image, known, resolution).to(device)
    with torch.inference_mode():
        result = demo_output(generate(x)[0])
    result = resize_like_opencv(result, (width, height), "cubic")
    keep = known[:, :, None].astype(np.uint8)
    return image * keep + result * (1 - keep)


def _axis(low: int, high: int, crop: int, limit: int) -> tuple[int, int]:
    """The ONNX pipeline's window along one axis: centred on ``low..high`` (inclusive
    hole extent), ``crop`` long, clipped to ``0..limit`` and shifted inward."""
    centre, offset = (low + high) // 2, crop // 2
    start, stop = max(centre - offset, 0), min(centre + offset, limit)
    excess = max(crop - (stop - start), 0)
    return max(start - excess, 0), min(stop + excess, limit)


def _window(box: tuple[int, int, int, int], shape: tuple[int, int], res: int, pad: int) -> Window:
    top, left, bottom, right = box  # inclusive extents
    crop = max(max(right - left, bottom - top) + 2 * pad, res)
    y0, y1 = _axis(top, bottom, crop, shape[0])
    x0, x1 = _axis(left, right, crop, shape[1])
    return Window(y0, x0, y1 - y0, x1 - x0)


def plan_windows(hole: np.ndarray, resolution: int, *, padding: int = ONNX_PADDING) -> list[Window]:
    """One window per group of holes (8-connected regions whose windows overlap are one
    group), each placed as the ONNX pipeline places its single window."""
    if not hole.any():
        return []
    from scipy import ndimage

    labels, _ = ndimage.label(hole, structure=np.ones((3, 3), dtype=bool))
    boxes = [
        (s[0].start, s[1].start, s[0].stop - 1, s[1].stop - 1) for s in ndimage.find_objects(labels)
    ]
    while True:
        windows = [_window(box, hole.shape, resolution, padding) for box in boxes]
        merged = _merge_overlapping(boxes, windows)
        if len(merged) == len(boxes):
            return sorted(windows, key=lambda w: (w.top, w.left))
        boxes = merged


def _overlap(a: Window, b: Window) -> bool:
    return (
        a.top < b.top + b.height and b.top < a.top + a.height
        and a.left < b.left + b.width and b.left < a.left + a.width
    )  # fmt: skip


def _merge_overlapping(boxes: list, windows: list[Window]) -> list:
    """The boxes with every connected set of overlapping windows replaced by its union."""
    group = list(range(len(boxes)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i in range(len(windows)):
        for j in range(i + 1, len(windows)):
            if _overlap(windows[i], windows[j]):
                group[root(j)] = root(i)
    unions: dict[int, tuple[int, int, int, int]] = {}
    for i, box in enumerate(boxes):
        old = unions.setdefault(root(i), box)
        unions[root(i)] = (
            min(old[0], box[0]), min(old[1], box[1]), max(old[2], box[2]), max(old[3], box[3])
        )  # fmt: skip
    return list(unions.values())


def inpaint_migan(
    generate: Generate,
    image: np.ndarray,
    known: np.ndarray,
    resolution: int,
    *,
    device: torch.device | str = "cpu",
    padding: int = ONNX_PADDING,
) -> tuple[np.ndarray, list[Window]]:
    """MI-GAN's inference on one image of any size: (result, windows that ran).

    Up to ``resolution`` on both sides: :func:`demo_steps` on the whole image; larger:
    :func:`demo_steps` on each window of :func:`plan_windows` (``padding`` px of context
    around each group's box), hole pixels pasted back.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if known.shape != image.shape[:2]:
        raise ValueError(f"mask {known.shape} does not match image {image.shape[:2]}")
    known = known.astype(bool, copy=False)
    height, width = known.shape
    if known.all():
        return image.copy(), []
    if max(height, width) <= resolution:
        whole = Window(0, 0, height, width)
        return demo_steps(generate, image, known, resolution, device=device), [whole]
    result = image.copy()
    windows = plan_windows(~known, resolution, padding=padding)
    for window in windows:
        rows, cols = window.slices
        sub_known = known[rows, cols]
        filled = demo_steps(generate, image[rows, cols], sub_known, resolution, device=device)
        result[rows, cols][~sub_known] = filled[~sub_known]
    return result, windows
