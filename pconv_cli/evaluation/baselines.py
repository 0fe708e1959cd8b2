"""Classic, learning-free inpainting baselines for ``pconv eval`` (numpy; no torch).

Conventions: ``image`` is uint8 RGB (H, W, 3); ``hole`` is bool (H, W), **True =
hole**. Every method returns its raw output as float RGB (H, W, 3) on the [0, 1]
scale; the caller composites (known pixels from ``image``) and quantises.

- ``zeros``: holes filled with 0 (black).
- ``mean``: holes filled with the mean colour of the valid pixels (per channel).
- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` (slow for big holes).
- ``telea`` / ``ns``: OpenCV's ``cv2.inpaint`` (Telea 2004 / Navier-Stokes) with a
  radius of :data:`OPENCV_RADIUS` px; needs the optional extra ``baselines``
  (``pip install 'pconv-cli[baselines]'``, i.e. ``opencv-python-headless``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pconv_cli.errors import PconvError

__all__ = [
    "METHODS",
    "OPENCV_METHODS",
    "OPENCV_RADIUS",
    "BaselineError",
    "check_method",
    "inpaint_classic",
]

METHODS: tuple[str, ...] = ("zeros", "mean", "biharmonic", "telea", "ns")
"""Every ``--method`` name, cheapest first."""

OPENCV_METHODS: tuple[str, ...] = ("telea", "ns")
"""Methods that need OpenCV (the ``baselines`` extra)."""

OPENCV_RADIUS = 3
"""``inpaintRadius`` passed to ``cv2.inpaint`` (the value of OpenCV's own examples)."""


class BaselineError(PconvError, ValueError):
    """An unknown method or a missing optional dependency; the message is one line."""


def check_method(name: str) -> None:
    """Raise :class:`BaselineError` unless ``name`` is a method that can run here."""
    if name not in METHODS:
        raise BaselineError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    if name in OPENCV_METHODS:
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise BaselineError(
                f"--method {name} needs OpenCV: pip install 'pconv-cli[baselines]' "
                "(opencv-python-headless)"
            ) from None


def _zeros(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    return np.zeros(image.shape, dtype=np.float64)


def _mean(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    valid = image[~hole]
    colour = valid.mean(axis=0) / 255.0 if valid.size else np.zeros(3)
    return np.broadcast_to(colour, image.shape).astype(np.float64)


def _biharmonic(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    return inpaint_biharmonic(image.astype(np.float64) / 255.0, hole, channel_axis=-1)


def _opencv(flag_name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def run(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        import cv2

        bgr = np.ascontiguousarray(image[..., ::-1])
        mask = hole.astype(np.uint8) * np.uint8(255)
        out = cv2.inpaint(bgr, mask, OPENCV_RADIUS, getattr(cv2, flag_name))
        return out[..., ::-1].astype(np.float64) / 255.0

    return run


_IMPLEMENTATIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "zeros": _zeros,
    "mean": _mean,
    "biharmonic": _biharmonic,
    "telea": _opencv("INPAINT_TELEA"),
    "ns": _opencv("INPAINT_NS"),
}


def inpaint_classic(method: str, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill ``hole`` (True = hole) of uint8 RGB ``image`` with ``method``.

    Returns the raw output, float RGB (H, W, 3) in [0, 1] (not composited).
    """
    check_method(method)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BaselineError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2]:
        raise BaselineError(f"hole mask {hole.shape} does not match image {image.shape[:2]}")
    return _IMPLEMENTATIONS[method](image, hole.astype(bool, copy=False))
