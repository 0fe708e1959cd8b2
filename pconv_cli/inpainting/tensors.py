"""The one conversion between pictures and what an inpainting model takes.

Conventions at this boundary:

- pictures: uint8 RGB (H, W, 3) / (N, H, W, 3) arrays (0..255), or float RGB on the
  [0, 1] scale, as numpy arrays or torch tensors of the same layouts;
- holes: bool (H, W) / (N, H, W), **True = hole** (as mask files say: white = hole);
- the model side (``InpaintingModel``): float RGB (N, 3, H, W) in [0, 1] and a float
  mask (N, 1, H, W) with **1 = valid, 0 = hole**. Hole pixels of the image are set
  to 0 before the model sees them: nothing of what is under a hole reaches the net.

Used by the inpainting API, ``pconv inpaint``/``serve`` and ``pconv eval``'s model
scoring, so all of them feed a model the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "as_hole_tensor",
    "as_image_tensor",
    "device_of",
    "model_input",
    "run_model",
]


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _tensor(array: np.ndarray | Tensor) -> Tensor:
    if isinstance(array, Tensor):
        return array
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array)  # torch wants writable, contiguous memory
    return torch.from_numpy(array)


def as_image_tensor(image: np.ndarray | Tensor, device: torch.device | str = "cpu") -> Tensor:
    """(H, W, 3) / (N, H, W, 3) uint8 or float [0, 1] -> float32 (N, 3, H, W) in [0, 1]."""
    x = _tensor(image)
    if x.dim() not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) or (N, H, W, 3), got {tuple(x.shape)}")
    # The strides of these permuted views pick oneDNN's kernels: kept as pconv 0.x built
    # them, so outputs stay bit-identical to the earlier releases.
    x = x.to(device).permute(2, 0, 1)[None] if x.dim() == 3 else x.to(device).permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise ValueError(f"image must be uint8 or float, got {x.dtype}")
    return x.float()


def as_hole_tensor(hole: np.ndarray | Tensor, device: torch.device | str = "cpu") -> Tensor:
    """(H, W) / (N, H, W) bool (True = hole) -> bool (N, 1, H, W), True = hole."""
    h = _tensor(hole)
    if h.dim() == 2:
        h = h[None]
    if h.dim() != 3:
        raise ValueError(f"hole must be (H, W) or (N, H, W), got {tuple(h.shape)}")
    return h.to(device).bool()[:, None]


def model_input(
    image: np.ndarray | Tensor, hole: np.ndarray | Tensor, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``(image, valid)`` for a model: float (N, 3, H, W) with holes set to 0, and the
    float (N, 1, H, W) mask, 1 = valid."""
    x = as_image_tensor(image, device)
    valid = (~as_hole_tensor(hole, device)).float()
    if valid.shape[0] != x.shape[0] or valid.shape[2:] != x.shape[2:]:
        raise ValueError(f"hole {tuple(valid.shape)} does not match image {tuple(x.shape)}")
    return x * valid, valid


def run_model(model: nn.Module, image: Tensor, valid: Tensor) -> Tensor:
    """The model's raw output (N, 3, H, W) for ``model_input``'s pair, under inference_mode."""
    with torch.inference_mode():
        return model(image, valid)
