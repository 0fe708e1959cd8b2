"""Learning-free inpainting methods: one registry for ``pconv inpaint``, ``serve`` and ``eval``.

Conventions: ``image`` is uint8 RGB (H, W, 3); ``hole`` is bool (H, W), **True =
hole**. Every method returns its raw output as float RGB (H, W, 3) on the [0, 1]
scale; callers composite (known pixels from ``image``) and quantise.

- ``zeros``: holes filled with 0 (black); an evaluation floor.
- ``mean``: holes filled with the mean colour of the valid pixels (per channel).
- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` (smooth; slow for big holes).
- ``telea`` / ``ns``: OpenCV's ``cv2.inpaint`` (Telea 2004 / Navier-Stokes) with a
  radius of :data:`OPENCV_RADIUS` px; needs the optional extra ``baselines``
  (``pip install 'pconv-cli[baselines]'``, i.e. ``opencv-python-headless``).
- ``patchmatch``: exemplar-based multi-scale PatchMatch inpainting
  (:mod:`pconv_cli.inpainting.patchmatch`, pconv's own torch code; seeded).

This module imports neither torch nor OpenCV until a method runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pconv_cli.errors import PconvError

__all__ = [
    "CLASSIC_METHODS",
    "METHODS",
    "OPENCV_METHODS",
    "OPENCV_RADIUS",
    "USER_METHODS",
    "BaselineError",
    "ClassicMethod",
    "check_method",
    "inpaint_classic",
    "register_method",
]

OPENCV_RADIUS = 3
"""``inpaintRadius`` passed to ``cv2.inpaint`` (the value of OpenCV's own examples)."""

Fill = Callable[..., np.ndarray]
"""``fill(image, hole, *, seed, device) -> float (H, W, 3) in [0, 1]``."""


class BaselineError(PconvError, ValueError):
    """An unknown method, a missing optional dependency or an input a method cannot
    fill; the message is one line."""


@dataclass(frozen=True)
class ClassicMethod:
    """A registered method: ``fill`` and, if it needs one, the module and extra it needs.

    ``for_users``: offered by ``pconv inpaint``/``serve`` (``zeros``/``mean`` are
    evaluation floors only).
    """

    name: str
    description: str
    fill: Fill
    requires: str | None = None
    requires_name: str = ""
    requires_package: str = ""
    extra: str | None = None
    for_users: bool = True


CLASSIC_METHODS: dict[str, ClassicMethod] = {}
"""Every method by name, in registration order (cheapest first)."""


def register_method(method: ClassicMethod) -> ClassicMethod:
    """Add ``method`` to :data:`CLASSIC_METHODS` (a name may be registered once)."""
    if method.name in CLASSIC_METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    CLASSIC_METHODS[method.name] = method
    return method


def check_method(name: str) -> ClassicMethod:
    """The method called ``name``; :class:`BaselineError` unless it can run here."""
    method = CLASSIC_METHODS.get(name)
    if method is None:
        raise BaselineError(f"unknown method {name!r}; choose from {', '.join(CLASSIC_METHODS)}")
    if method.requires:
        import importlib

        try:
            importlib.import_module(method.requires)
        except ImportError:
            raise BaselineError(
                f"--method {name} needs {method.requires_name}: pip install "
                f"'pconv-cli[{method.extra}]' ({method.requires_package})"
            ) from None
    return method


def inpaint_classic(
    method: str,
    image: np.ndarray,
    hole: np.ndarray,
    *,
    seed: int = 0,
    device: str | None = None,
) -> np.ndarray:
    """Fill ``hole`` (True = hole) of uint8 RGB ``image`` with ``method``.

    Returns the raw output, float RGB (H, W, 3) in [0, 1] (not composited).
    ``seed`` and ``device`` reach the methods that use them (``patchmatch``).
    """
    found = check_method(method)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BaselineError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2]:
        raise BaselineError(f"hole mask {hole.shape} does not match image {image.shape[:2]}")
    return found.fill(image, hole.astype(bool, copy=False), seed=seed, device=device)


# --------------------------------------------------------------------------- the methods


def _zeros(image: np.ndarray, hole: np.ndarray, **_: object) -> np.ndarray:
    return np.zeros(image.shape, dtype=np.float64)


def _mean(image: np.ndarray, hole: np.ndarray, **_: object) -> np.ndarray:
    valid = image[~hole]
    colour = valid.mean(axis=0) / 255.0 if valid.size else np.zeros(3)
    return np.broadcast_to(colour, image.shape).astype(np.float64)


def _biharmonic(image: np.ndarray, hole: np.ndarray, **_: object) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    if hole.all():  # nothing known to extend: black, as ``mean`` gives
        return np.zeros(image.shape, dtype=np.float64)
    return inpaint_biharmonic(image.astype(np.float64) / 255.0, hole, channel_axis=-1)


def _opencv(flag_name: str) -> Fill:
    def run(image: np.ndarray, hole: np.ndarray, **_: object) -> np.ndarray:
        import cv2

        bgr = np.ascontiguousarray(image[..., ::-1])
        mask = hole.astype(np.uint8) * np.uint8(255)
        out = cv2.inpaint(bgr, mask, OPENCV_RADIUS, getattr(cv2, flag_name))
        return out[..., ::-1].astype(np.float64) / 255.0

    return run


def _patchmatch(
    image: np.ndarray, hole: np.ndarray, *, seed: int = 0, device: str | None = None
) -> np.ndarray:
    from pconv_cli.inpainting.patchmatch import PatchMatchError, patchmatch_inpaint

    try:
        out = patchmatch_inpaint(image, hole, seed=seed, device=device or "cpu")
    except PatchMatchError as error:
        raise BaselineError(str(error)) from None
    return out.astype(np.float64) / 255.0


_OPENCV = dict(requires="cv2", requires_name="OpenCV",
               requires_package="opencv-python-headless", extra="baselines")  # fmt: skip
register_method(ClassicMethod("zeros", "holes filled with black (an evaluation floor)",
                              _zeros, for_users=False))  # fmt: skip
register_method(ClassicMethod("mean", "holes filled with the mean known colour",
                              _mean, for_users=False))  # fmt: skip
register_method(ClassicMethod("biharmonic", "scikit-image biharmonic inpainting (smooth)",
                              _biharmonic))  # fmt: skip
register_method(ClassicMethod("telea", "OpenCV Telea 2004 fast marching (smooth)",
                              _opencv("INPAINT_TELEA"), **_OPENCV))  # fmt: skip
register_method(ClassicMethod("ns", "OpenCV Navier-Stokes inpainting (smooth)",
                              _opencv("INPAINT_NS"), **_OPENCV))  # fmt: skip
register_method(ClassicMethod("patchmatch", "multi-scale PatchMatch (exemplar textures; seeded)",
                              _patchmatch))  # fmt: skip

METHODS: tuple[str, ...] = tuple(CLASSIC_METHODS)
"""Every ``pconv eval --method`` name, cheapest first."""
USER_METHODS: tuple[str, ...] = tuple(m.name for m in CLASSIC_METHODS.values() if m.for_users)
"""The ``--method`` names of ``pconv inpaint`` and ``pconv serve``."""
OPENCV_METHODS: tuple[str, ...] = tuple(
    m.name for m in CLASSIC_METHODS.values() if m.requires == "cv2"
)
"""Methods that need OpenCV (the ``baselines`` extra)."""
