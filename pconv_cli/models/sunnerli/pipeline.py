"""SunnerLi's ``test.py``, step for step, on one image (with a mask file, as pconv always has).

Conventions: ``image`` uint8 RGB (H, W, 3), ``known`` bool (H, W) with True = known;
the result is uint8 RGB (H, W, 3): his *raw* reconstruction (``test.py`` saves it as it
is; pconv then keeps the known pixels of the input).

1. The image is read as OpenCV reads it (BGR); the mask is a 3-channel picture,
   white = known, black = hole.
2. Both are resized to ``size`` x ``size`` with ``cv2.resize`` (bilinear, no aspect
   ratio kept): the mask's edges become fractional.
3. ``torch.div(x, 255).mul_(2).add_(-1)`` on both (his ``Normalize``), then
   ``mask = (mask + 1) / 2``; the net's image is ``image * mask`` (his
   ``setInput(target=..., mask=...)``), and the net multiplies by the mask again
   inside every partial conv.
4. The output ``recon_img`` is mapped by ``add_(1)``, ``/ 2``, ``mul_(255)`` (his
   ``UnNormalize``), *truncated* to uint8 (``astype(np.uint8)``) and resized back to the
   image's size with ``cv2.resize`` (bilinear).

He runs a batch of two copies of the image (for BatchNorm; in eval mode the copies do not
interact), and so does pconv: a batch of one changes the convolutions' rounding, which
the truncation to uint8 turns into a grey level in a few pixels. OpenCV is used when
installed, else the torch equivalent (within one grey level: :mod:`pconv_cli.data.resize`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from pconv_cli.data.resize import resize_like_opencv

__all__ = ["normalize", "test_py_steps", "unnormalize"]

Generate = Callable[[Tensor, Tensor], Tensor]
"""His net's forward: (BGR masked image, dense mask), both (1, 3, size, size)."""


def normalize(array: np.ndarray) -> Tensor:
    """His ``ToTensor``, ``ToFloat``, ``Transpose(BHWC2BCHW)`` and ``Normalize()``:
    uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(array)).float()
    t = t.transpose(1, 2).transpose(0, 1)
    return torch.div(t, 255).mul_(2).add_(-1)


def unnormalize(output: Tensor) -> np.ndarray:
    """His ``UnNormalize()``, ``Transpose(BCHW2BHWC)`` and ``astype(np.uint8)``:
    (3, H, W) in [-1, 1] -> uint8 (H, W, 3), truncated."""
    t = torch.div(output.clone().add_(1), 2).mul_(255)
    return t.transpose(0, 1).transpose(1, 2).cpu().numpy().astype(np.uint8)


def test_py_steps(
    generate: Generate,
    image: np.ndarray,
    known: np.ndarray,
    size: int,
    *,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """``test.py --mask_path`` on one image: see the module docstring."""
    height, width = known.shape
    bgr = image[:, :, ::-1]
    mask_picture = np.repeat(known.astype(np.uint8)[:, :, None] * np.uint8(255), 3, axis=2)
    img = normalize(resize_like_opencv(bgr, (size, size), "linear"))
    mask = normalize(resize_like_opencv(mask_picture, (size, size), "linear"))
    mask = (mask + 1) / 2
    img = torch.stack([img, img], 0).to(device)  # his batch of two copies
    mask = torch.stack([mask, mask], 0).to(device)
    with torch.inference_mode():
        output = generate(img * mask, mask)[0]
    result = resize_like_opencv(unnormalize(output), (width, height), "linear")
    return np.ascontiguousarray(result[:, :, ::-1])
