"""Resizing uint8 pictures the way OpenCV's ``cv2.resize`` does (for pipelines written with it).

Some publishers' inference scripts resize with ``cv2.resize`` (``INTER_LINEAR`` by
default, ``INTER_CUBIC``); to give their pixels, pconv calls OpenCV itself when it is
installed (the ``baselines`` extra: ``opencv-python-headless``). Without it the same
resampling (pixel-centre alignment, no antialiasing, OpenCV's cubic coefficient
-0.75, borders replicated) runs in torch and is rounded to the nearest integer:
within one grey level of OpenCV, which rounds fixed-point sums and, for an exact
halving with ``linear``, averages 2x2 blocks (the same values, rounded the same way).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["INTERPOLATIONS", "have_opencv", "resize_like_opencv"]

INTERPOLATIONS = ("linear", "cubic")

_FLAGS = {"linear": "INTER_LINEAR", "cubic": "INTER_CUBIC"}


def have_opencv() -> bool:
    """Whether ``cv2`` can be imported."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def resize_like_opencv(
    image: np.ndarray,
    size: tuple[int, int],
    interpolation: Literal["linear", "cubic"] = "linear",
    *,
    use_opencv: bool | None = None,
) -> np.ndarray:
    """``cv2.resize(image, size, interpolation=INTER_<interpolation>)`` of a uint8
    (H, W) or (H, W, C) array; ``size`` is (width, height), as OpenCV takes it.

    ``use_opencv``: None = OpenCV when installed, else torch (see the module docstring);
    True requires OpenCV, False forces torch.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be uint8 (H, W[, C]), got {image.dtype} {image.shape}")
    width, height = size
    if use_opencv is None:
        use_opencv = have_opencv()
    if use_opencv:
        import cv2

        out = cv2.resize(
            np.ascontiguousarray(image), (width, height),
            interpolation=getattr(cv2, _FLAGS[interpolation]),
        )  # fmt: skip
        return out.reshape(height, width, *image.shape[2:])
    return _resize_torch(image, width, height, interpolation)


def _resize_torch(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if image.shape[:2] == (height, width):
        return image.copy()
    x = torch.from_numpy(np.ascontiguousarray(image)).float()
    x = x.unsqueeze(-1) if image.ndim == 2 else x
    x = x.permute(2, 0, 1)[None]
    mode = "bilinear" if interpolation == "linear" else "bicubic"
    out = F.interpolate(x, size=(height, width), mode=mode, align_corners=False, antialias=False)
    out = out[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out.reshape(height, width, *image.shape[2:])
