"""Inpainting images with a model or a classic method: arrays, strategies, blending, files.

- :mod:`~pconv_cli.inpainting.api`: ``inpaint(image, hole, source)`` on arrays (the
  one entry point of the CLI, the web app and scripts);
- :mod:`~pconv_cli.inpainting.strategy`: how an image is cut into passes and at
  which working scales (:class:`Strategy`), what a filler declares it can fill;
- :mod:`~pconv_cli.inpainting.scales`: coarse-to-fine filling of deep holes;
- :mod:`~pconv_cli.inpainting.blending`: Poisson (gradient-domain) compositing;
- :mod:`~pconv_cli.inpainting.classic`: the registry of learning-free methods
  (Telea, Navier-Stokes, biharmonic, PatchMatch, ...);
- :mod:`~pconv_cli.inpainting.patchmatch`: multi-scale PatchMatch inpainting;
- :mod:`~pconv_cli.inpainting.tensors`: pictures <-> a model's input tensors;
- :mod:`~pconv_cli.inpainting.files`: jobs, masks, formats, EXIF, atomic writes.

Names are imported lazily (``from pconv_cli.inpainting import inpaint`` imports
torch; ``pconv_cli.inpainting.classic`` alone does not).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoadedImage": "..data.images",
    "output_image": "..data.images",
    "Blend": "blending",
    "BLENDS": "blending",
    "poisson_blend": "blending",
    "CLASSIC_METHODS": "classic",
    "USER_METHODS": "classic",
    "BaselineError": "classic",
    "inpaint_classic": "classic",
    "Filler": "api",
    "InpaintResult": "api",
    "MethodFiller": "api",
    "ModelFiller": "api",
    "as_filler": "api",
    "inpaint": "api",
    "inpaint_image": "api",
    "predict": "api",
    "InpaintJob": "..inpaint_jobs",
    "InpaintOptions": "files",
    "JobResult": "files",
    "RequestError": "..inpaint_jobs",
    "concat_panels": "files",
    "inpaint_file": "files",
    "inpaint_files": "files",
    "inpaint_loaded": "files",
    "plan_jobs": "..inpaint_jobs",
    "DEFAULT_CROP_TRIGGER": "strategy",
    "DEFAULT_MARGIN": "strategy",
    "DEFAULT_MIN_WINDOW": "strategy",
    "DEFAULT_RESIZE_LIMIT": "strategy",
    "STRATEGIES": "strategy",
    "FillCapacity": "strategy",
    "Mode": "strategy",
    "Strategy": "strategy",
    "Window": "strategy",
    "capacity_of": "strategy",
    "choose_strategy": "strategy",
    "dilate_holes": "strategy",
    "plan_windows": "strategy",
    "scale_level": "strategy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where = _EXPORTS[name]
    module = (importlib.import_module(where, __name__) if where.startswith(".")
              else importlib.import_module(f"{__name__}.{where}"))  # fmt: skip
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
