"""The file layer of inpainting: jobs, masks, formats, EXIF, 16-bit, atomic writes.

Reads an image (upright, :func:`~pconv_cli.data.images.load_image`) and its mask
file (white = hole, :func:`~pconv_cli.data.masks.load_mask`), calls the array API
(:func:`pconv_cli.inpainting.api.inpaint`) and writes the result in the input's
mode and format with its EXIF/ICC (:func:`~pconv_cli.data.images.output_image`),
atomically. ``pconv inpaint`` runs :func:`inpaint_files`; ``pconv serve`` runs
:func:`inpaint_loaded` on uploads, in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from pconv_cli.data.images import (
    ImageDepthWarning,
    ImageError,
    ImageMetadataWarning,
    LoadedImage,
    format_for_suffix,
    load_image,
    output_image,
    save_image,
)
from pconv_cli.data.masks import MaskContentWarning, MaskError, MaskResizedWarning, load_mask
from pconv_cli.data.panels import PanelRow, hole_panel, panel_grid
from pconv_cli.inpaint_jobs import InpaintJob, RequestError, plan_jobs
from pconv_cli.inpainting.strategy import (
    DEFAULT_CROP_TRIGGER,
    DEFAULT_MARGIN,
    DEFAULT_MIN_WINDOW,
    DEFAULT_RESIZE_LIMIT,
    Strategy,
    dilate_holes,
)

__all__ = [
    "InpaintJob",
    "InpaintOptions",
    "JobResult",
    "RequestError",
    "concat_panels",
    "inpaint_file",
    "inpaint_files",
    "inpaint_loaded",
    "plan_jobs",
]


def concat_panels(loaded: LoadedImage, hole: np.ndarray, rgb: np.ndarray) -> Image.Image:
    """input | mask (white = hole) | result, side by side, RGB."""
    return panel_grid([PanelRow([loaded.rgb, hole_panel(hole), rgb])])


@dataclass(frozen=True)
class InpaintOptions:
    """How every job of a run is done.

    Strategy options: see :class:`~pconv_cli.inpainting.strategy.Strategy`;
    ``blend``: ``auto``, ``poisson`` or ``none``; ``seed``: for seeded methods. ``file_format``:
    Pillow format of the outputs (None: the output suffix's, else the input's);
    ``quality``: JPEG/WebP quality; ``concat``: write input | mask | result instead
    of the result; ``dilate``: grow holes by that many pixels; ``invert_mask``:
    mask files are black = hole; ``max_pass_pixels``: the largest model pass.
    """

    invert_mask: bool = False
    dilate: int = 0
    strategy: str = "auto"
    margin: int = DEFAULT_MARGIN
    min_window: int = DEFAULT_MIN_WINDOW
    resize_limit: int = DEFAULT_RESIZE_LIMIT
    crop_trigger: int = DEFAULT_CROP_TRIGGER
    blend: str = "auto"
    seed: int = 0
    file_format: str | None = None
    quality: int | None = None
    concat: bool = False
    max_pass_pixels: int | None = None

    @property
    def plan(self) -> Strategy:
        """The :class:`~pconv_cli.inpainting.strategy.Strategy` these options describe."""
        return Strategy(
            self.strategy,
            margin=self.margin,
            min_window=self.min_window,
            resize_limit=self.resize_limit,
            crop_trigger=self.crop_trigger,
            max_pass_pixels=self.max_pass_pixels,
        )


@dataclass
class JobResult:
    """What became of a job: the strategy, passes and blend that ran, or a one-line ``error``.

    ``notes``: things worth telling (a mask resized to its image, a mostly grey
    mask, an all-hole mask, a bit depth the output cannot keep, the working scales
    when not only the native one), as ``(kind, text)`` pairs; ``kind`` is the
    warning's class name (``Scales`` for the scales).
    """

    job: InpaintJob
    strategy: str | None = None
    passes: int = 0
    blend: str | None = None
    error: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def _first_line(error: BaseException) -> str:
    text = str(error).splitlines()
    return text[0] if text and text[0] else type(error).__name__


_TOLD = (MaskResizedWarning, MaskContentWarning, ImageDepthWarning, ImageMetadataWarning)


def inpaint_loaded(
    source: Any,
    loaded: LoadedImage,
    hole: np.ndarray,
    options: InpaintOptions,
    *,
    file_format: str,
    mask_name: str = "the mask",
) -> tuple[Image.Image, JobResult]:
    """Inpaint a read image (``hole``: True = hole) and give the picture to write.

    The picture is in the input's mode (alpha, grey and 16-bit kept where
    ``file_format`` allows), or input | mask | result with ``options.concat``. The
    :class:`JobResult` (its ``job`` left empty) holds the strategy, passes and notes.
    """
    from pconv_cli.inpainting.api import inpaint

    result = JobResult(InpaintJob(loaded.path, None, loaded.path))
    hole = dilate_holes(hole, options.dilate)
    if hole.all():
        result.notes.append(
            ("AllHole", f"{mask_name} covers the whole of {loaded.path.name}: "
             "nothing of the picture is kept")
        )  # fmt: skip
    filled = inpaint(
        loaded.rgb, hole, source, strategy=options.plan, blend=options.blend, seed=options.seed
    )
    if filled.note:
        result.notes.append(("Scales", filled.note))
    if options.concat:
        picture = concat_panels(loaded, hole, filled.image)
    else:
        picture = output_image(loaded, filled.image, hole, file_format)
    result.strategy, result.passes, result.blend = filled.strategy, filled.passes, filled.blend
    return picture, result


def inpaint_file(source: Any, job: InpaintJob, options: InpaintOptions) -> JobResult:
    """Read ``job``'s image and mask, inpaint with ``source``, write the output atomically.

    ``source``: a model, a classic method name or a filler (see
    :func:`pconv_cli.inpainting.api.inpaint`). Expected failures (unreadable files,
    a mask problem, a method that cannot fill, out of memory) come back as
    ``JobResult.error``; nothing is written then.
    """
    from pconv_cli.inpainting.classic import BaselineError

    result = JobResult(job)
    if job.problem:
        result.error = job.problem
        return result
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            loaded = load_image(job.image)
            hole = load_mask(job.mask, size=loaded.size, invert=options.invert_mask)
            file_format = options.file_format or format_for_suffix(job.out.suffix) or loaded.format
            picture, done = inpaint_loaded(
                source, loaded, hole, options, file_format=file_format,
                mask_name=f"mask {job.mask}",
            )  # fmt: skip
            save_image(job.out, picture, loaded, file_format=file_format, quality=options.quality)
        notes = [(w.category.__name__, str(w.message)) for w in caught
                 if issubclass(w.category, _TOLD)]  # fmt: skip
    except (ImageError, MaskError, BaselineError, RuntimeError) as error:
        result.error = _first_line(error)  # RuntimeError: e.g. out of memory
        return result
    result.strategy, result.passes, result.blend = done.strategy, done.passes, done.blend
    result.notes = [n for n in done.notes if n[0] == "AllHole"] + notes
    result.notes += [n for n in done.notes if n[0] != "AllHole"]
    return result


def inpaint_files(source: Any, jobs: Iterable[InpaintJob], options: InpaintOptions
                  ) -> Iterator[JobResult]:  # fmt: skip
    """:func:`inpaint_file` for every job, in order (a generator: results as they finish)."""
    for job in jobs:
        yield inpaint_file(source, job, options)
