"""Planning ``pconv inpaint``: which image, mask and output each job has (no torch import).

Everything a request can get wrong (a missing input, an output that exists, a
folder that cannot be written, a name too long for the file system) is found
here, before a model is loaded. :mod:`pconv_cli.inpainting` runs the jobs.
Mask files are white = hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pconv_cli.data.images import (
    IMAGE_SUFFIXES,
    SUFFIX_OF_FORMAT,
    find_images,
    format_for_suffix,
)
from pconv_cli.errors import UsageError
from pconv_cli.files import name_too_long, writable_problem

__all__ = ["InpaintJob", "RequestError", "plan_jobs"]


class RequestError(UsageError, ValueError):
    """A request that cannot be planned (a usage error); ``option`` names the culprit."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


@dataclass
class InpaintJob:
    """One image, its ``mask`` file and ``out`` path, or the ``problem`` that stops it."""

    image: Path
    mask: Path | None
    out: Path
    problem: str | None = None


def _mask_index(folder: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for path in find_images(folder, recursive=False):
        index.setdefault(path.stem, []).append(path)
    return index


def _mask_for(
    image: Path, mask: Path, index: dict[str, list[Path]] | None
) -> tuple[Path | None, str | None]:
    if index is None:
        return mask, None
    found = index.get(image.stem, [])
    if not found:
        return None, f"no mask named {image.stem}.* in {mask}"
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        return None, f"several masks match {image.name} in {mask}: {names}"
    return found[0], None


def _named(path: Path) -> Path:
    """``path`` with a real last component (``.`` and ``..`` have none to build a name on)."""
    return path.resolve() if path.name in ("", ".", "..") else path


def _default_out(source: Path, file_format: str | None) -> Path:
    """Where an output goes without ``-o``: ``photo_inpainted.jpg`` / ``photos_inpainted/``."""
    source = _named(source)
    if source.is_dir():
        return source.with_name(f"{source.name}_inpainted")
    suffix = SUFFIX_OF_FORMAT[file_format] if file_format else source.suffix
    return source.with_name(f"{source.stem}_inpainted{suffix}")


def _check_kind(path: Path, what: str, option: str) -> None:
    """An input must be a regular file or a folder (a FIFO or a device would block or fail)."""
    if not path.exists():
        raise RequestError(f"{path} does not exist", option)
    if not (path.is_file() or path.is_dir()):
        raise RequestError(f"{path} is neither a file nor a folder; give {what}", option)


def plan_jobs(
    source: Path,
    mask: Path,
    out: Path | None = None,
    file_format: str | None = None,
    *,
    overwrite: bool = False,
) -> list[InpaintJob]:
    """The jobs of ``pconv inpaint SOURCE --mask MASK [-o OUT]``; a bad request is a RequestError.

    ``source`` is an image or a folder (not recursive); ``mask`` one mask file for
    every image or a folder of masks matched by file stem (``photo.jpg`` <-
    ``photo.png``); ``out`` a file (its suffix gives the format) or an existing
    folder for one image, a folder (never the input folder) for a folder; without
    ``out``: ``photo_inpainted.<suffix>`` beside the image, ``DIR_inpainted/`` beside
    the folder. Existing files, the input above all, are only replaced with
    ``overwrite``; outputs that could not be written (a read-only folder, a name too
    long) are refused here, before any work. Per-image problems (no matching mask,
    two outputs with one name) are recorded in the job, not raised.
    """
    _check_kind(source, "an image or a folder of images", "IMAGE|DIR")
    _check_kind(mask, "a mask file or a folder of masks", "--mask")
    index = _mask_index(mask) if mask.is_dir() else None
    given = out is not None
    if out is None:
        out = _default_out(source, file_format)
    if source.is_file():
        return [_plan_one(source, mask, index, out, file_format, overwrite, given)]
    return _plan_folder(source, mask, index, out, file_format, overwrite)


def _plan_one(
    source: Path,
    mask: Path,
    index: dict[str, list[Path]] | None,
    out: Path,
    file_format: str | None,
    overwrite: bool,
    given: bool,
) -> InpaintJob:
    too_long = name_too_long(out)  # checked first: stat() itself fails on such names
    if too_long:
        hint = "" if given else " (the default output name); pass -o FILE"
        raise RequestError(f"cannot write {out.name[:40]}...: {too_long}{hint}", "-o")
    if out.is_dir():
        suffix = SUFFIX_OF_FORMAT[file_format] if file_format else source.suffix
        out = out / f"{source.stem}{suffix}"
    elif format_for_suffix(out.suffix) is None:
        known = ", ".join(sorted(set(SUFFIX_OF_FORMAT.values()) | {".jpeg", ".tiff"}))
        raise RequestError(
            f"-o {out}: unknown image suffix {out.suffix or '(none)'}; use {known} "
            "or an existing folder",
            "-o",
        )
    elif file_format and format_for_suffix(out.suffix) != file_format:
        raise RequestError(
            f"--format {file_format.lower()} but -o {out} says otherwise", "--format"
        )
    if out.exists() and not overwrite:
        what = "is the input image" if out.resolve() == source.resolve() else "exists"
        raise RequestError(f"{out} {what}; pass --overwrite to replace it", "-o")
    problem = writable_problem(out)
    if problem:
        hint = "" if given else " (the default output name); pass -o FILE"
        raise RequestError(f"cannot write {out.name[:60]}: {problem}{hint}", "-o")
    found, problem = _mask_for(source, mask, index)
    return InpaintJob(source, found, out, problem)


def _plan_folder(
    source: Path,
    mask: Path,
    index: dict[str, list[Path]] | None,
    out: Path,
    file_format: str | None,
    overwrite: bool,
) -> list[InpaintJob]:
    if out.exists() and not out.is_dir():
        raise RequestError(f"{out} is a file; a folder input needs an output folder", "-o")
    if out.resolve() == source.resolve():
        raise RequestError("the output folder must differ from the input folder", "-o")
    problem = writable_problem(out, folder=True)
    if problem:
        raise RequestError(f"-o {out}: {problem}", "-o")
    images = find_images(source, recursive=False)
    if not images:
        raise RequestError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}", "IMAGE|DIR")
    jobs: list[InpaintJob] = []
    taken: dict[Path, Path] = {}
    for image in images:
        name = f"{image.stem}{SUFFIX_OF_FORMAT[file_format]}" if file_format else image.name
        target = out / name
        found, problem = _mask_for(image, mask, index)
        if target in taken:
            problem = f"its output {target.name} would overwrite that of {taken[target].name}"
        elif name_too_long(target):
            problem = f"its output {target.name[:40]}...: {name_too_long(target)}"
        taken.setdefault(target, image)
        jobs.append(InpaintJob(image, found, target, problem))
    existing = [job.out for job in jobs if job.out.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise RequestError(f"{existing[0]}{more} exist; pass --overwrite to replace them", "-o")
    return jobs
