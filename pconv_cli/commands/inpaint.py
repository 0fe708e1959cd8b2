"""``pconv inpaint``: fill the holes of one image or a folder of images.

A thin wrapper over ``pconv_cli.inpainting`` and ``pconv_cli.weights.checkpoint``;
torch is imported inside the command only. Mask files are white = hole.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import typer

_PANEL_IO = "Input and output"
_PANEL_MASK = "Masks"
_PANEL_LARGE = "Large images"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}
_FORMATS.update(tiff="TIFF", tif="TIFF")
_SUFFIX_OF = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


class _Failure(Exception):
    """One input that could not be processed (message is one line)."""


@dataclass
class _Job:
    image: Path
    mask: Path | None
    out: Path
    problem: str | None = None


def _format_option(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return _FORMATS[value.lower().lstrip(".")]
    except KeyError:
        raise typer.BadParameter(
            f"unknown format {value!r}; choose from {', '.join(sorted(set(_FORMATS)))}",
            param_hint="--format",
        ) from None


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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


def _plan_jobs(source: Path, mask: Path, out: Path, file_format: str | None) -> list[_Job]:
    if not source.exists():
        raise typer.BadParameter(f"{source} does not exist", param_hint="IMAGE|DIR")
    if not mask.exists():
        raise typer.BadParameter(f"{mask} does not exist", param_hint="--mask")
    index = None
    if mask.is_dir():
        index = {}
        for path in _list_images(mask):
            index.setdefault(path.stem, []).append(path)
    if source.is_file():
        if out.is_dir():
            suffix = _SUFFIX_OF[file_format] if file_format else source.suffix
            out = out / f"{source.stem}{suffix}"
        elif file_format and _FORMATS.get(out.suffix.lower().lstrip(".")) not in (
            None,
            file_format,
        ):
            raise typer.BadParameter(
                f"--format {file_format.lower()} but -o {out} says otherwise", param_hint="--format"
            )
        found, problem = _mask_for(source, mask, index)
        return [_Job(source, found, out, problem)]
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(
            f"{out} is a file; a folder input needs an output folder", param_hint="-o"
        )
    if out.resolve() == source.resolve():
        raise typer.BadParameter(
            "the output folder must differ from the input folder", param_hint="-o"
        )
    images = _list_images(source)
    if not images:
        raise typer.BadParameter(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}", param_hint="IMAGE|DIR"
        )
    jobs: list[_Job] = []
    taken: dict[Path, Path] = {}
    for image in images:
        name = f"{image.stem}{_SUFFIX_OF[file_format]}" if file_format else image.name
        target = out / name
        found, problem = _mask_for(image, mask, index)
        if target in taken:
            problem = f"its output {target.name} would overwrite that of {taken[target].name}"
        taken.setdefault(target, image)
        jobs.append(_Job(image, found, target, problem))
    return jobs


def _output_format(job: _Job, loaded_format: str, file_format: str | None) -> str:
    if file_format:
        return file_format
    return _FORMATS.get(job.out.suffix.lower().lstrip("."), loaded_format)


def _process(job: _Job, model, options: dict, state: dict) -> str:
    """Inpaint one job and write its output; returns a short description."""
    from pconv_cli.data.masks import MaskError, MaskResizedWarning, load_mask
    from pconv_cli.inpainting import (
        ImageError,
        concat_panels,
        dilate_holes,
        inpaint_image,
        load_image,
        output_image,
        save_image,
    )

    if job.problem:
        raise _Failure(job.problem)
    try:
        loaded = load_image(job.image)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MaskResizedWarning)
            hole = load_mask(job.mask, size=loaded.size, invert=options["invert_mask"])
        for warning in caught:
            if issubclass(warning.category, MaskResizedWarning) and not state.get("resized"):
                state["resized"] = str(warning.message)
    except (ImageError, MaskError) as exc:
        raise _Failure(str(exc)) from None
    hole = dilate_holes(hole, options["dilate"])
    result = inpaint_image(
        model,
        loaded.rgb,
        hole,
        strategy=options["strategy"],
        margin=options["margin"],
        resize_limit=options["resize_limit"],
        crop_trigger=options["crop_trigger"],
    )
    if options["concat"]:
        picture = concat_panels(loaded, hole, result.image)
    else:
        picture = output_image(loaded, result.image, hole)
    file_format = _output_format(job, loaded.format, options["file_format"])
    try:
        save_image(job.out, picture, loaded, file_format=file_format, quality=options["quality"])
    except ImageError as exc:
        raise _Failure(str(exc)) from None
    passes = len(result.windows)
    return f"{result.strategy}, {passes} pass{'es' if passes != 1 else ''}"


def _run(jobs: list[_Job], weights: str, device_name: str, options: dict, folder: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    from pconv_cli.devices import DeviceError, resolve_device
    from pconv_cli.weights.checkpoint import WeightsError, load_model

    start = time.perf_counter()
    try:
        device = resolve_device(device_name)
        model = load_model(weights, device)
    except (DeviceError, WeightsError) as exc:
        console.print(f"[red]Error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    meta = model.weights_metadata
    what = meta.get("name") or Path(meta.get("source", weights)).name
    console.print(
        f"[bold]pconv inpaint[/] with {escape(what)} ({meta['source_format']} weights, "
        f"{meta['arch']} L{meta['layers']}, {meta['normalization']}) on {device}"
    )
    if "assumed" in meta:
        console.print(f"[yellow]warning:[/] {escape(what)}: assumed {escape(meta['assumed'])}")
    state: dict = {}
    failures: list[tuple[_Job, str]] = []
    done = 0
    try:
        if folder:
            done = _run_folder(jobs, model, options, state, failures, console)
        else:
            job = jobs[0]
            try:
                summary = _process(job, model, options, state)
            except (_Failure, RuntimeError) as exc:  # RuntimeError: e.g. out of memory
                failures.append((job, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            else:
                done = 1
                console.print(f"wrote {escape(str(job.out))} ({summary})")
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/]: no partial file was left behind")
        raise typer.Exit(130) from None
    if state.get("resized"):
        console.print(
            f"note: {escape(state['resized'])}; every mask of another size than its image "
            "is resized this way (then thresholded, so it stays binary)"
        )
    elapsed = time.perf_counter() - start
    if folder:
        failed = ", ".join(job.image.name for job, _ in failures)
        console.print(
            f"{done} of {len(jobs)} images inpainted into {escape(str(jobs[0].out.parent))} "
            f"in {elapsed:.1f} s" + (f"; [red]failed:[/] {escape(failed)}" if failures else "")
        )
    elif failures:
        console.print(f"[red]Error:[/] {escape(failures[0][1])}")
    if failures:
        raise typer.Exit(1)


def _run_folder(jobs, model, options, state, failures, console) -> int:
    from rich.markup import escape

    from pconv_cli.commands._progress import progress_bar

    done = 0
    bar = progress_bar(
        "inpaint", "{task.fields[name]}", console=console, transient=False, hide_when_piped=False
    )
    with bar as progress:
        task = progress.add_task("inpaint", total=len(jobs), name="")
        for job in jobs:
            progress.update(task, name=escape(job.image.name))
            try:
                _process(job, model, options, state)
            except (_Failure, RuntimeError) as exc:  # RuntimeError: e.g. out of memory
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                failures.append((job, text))
                progress.console.print(f"[red]skipped[/] {escape(job.image.name)}: {escape(text)}")
            else:
                done += 1
            progress.advance(task)
        progress.update(task, name="")
    return done


def inpaint(
    source: Path = typer.Argument(
        ...,
        metavar="IMAGE|DIR",
        help="An image, or a folder of images (.jpg .png .bmp .webp .tif; not recursive).",
        show_default=False,
    ),
    mask: Path = typer.Option(
        ...,
        "--mask",
        "-m",
        metavar="MASK|DIR",
        help="Mask file (white = hole; an alpha channel counts if present) used for every "
        "image, or a folder of masks matched to images by file stem (photo.jpg <- photo.png).",
        rich_help_panel=_PANEL_MASK,
    ),
    weights: str = typer.Option(
        ...,
        "--weights",
        "-w",
        metavar="NAME|PATH",
        help="Published weights by name (see 'pconv weights list'; downloaded once into "
        "torch.hub's cache) or a weights file: pconv .safetensors, MMagic or naoto0804 .pth.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output file for one image (or an existing folder), output folder for a folder.",
        rich_help_panel=_PANEL_IO,
    ),
    invert_mask: bool = typer.Option(
        False, "--invert-mask", help="Mask files are black = hole.", rich_help_panel=_PANEL_MASK
    ),
    dilate: int = typer.Option(
        0,
        "--dilate",
        min=0,
        metavar="N",
        help="Grow every hole by N pixels first (covers halos around objects).",
        rich_help_panel=_PANEL_MASK,
    ),
    strategy: str = typer.Option(
        "auto",
        "--strategy",
        metavar="[auto|full|crop|resize]",
        help="full: the whole image at native resolution. crop: one native-resolution window "
        "around each hole region. resize: shrink to --resize-limit, inpaint, scale back. "
        "auto: crop above --crop-trigger, else full.",
        rich_help_panel=_PANEL_LARGE,
    ),
    margin: int = typer.Option(
        128,
        "--margin",
        min=0,
        help="crop: context pixels around each hole region.",
        rich_help_panel=_PANEL_LARGE,
    ),
    resize_limit: int = typer.Option(
        1024,
        "--resize-limit",
        min=16,
        help="resize: long side in pixels the image is shrunk to (if larger).",
        rich_help_panel=_PANEL_LARGE,
    ),
    crop_trigger: int = typer.Option(
        1024,
        "--crop-trigger",
        min=1,
        help="auto: use crop when the image's long side exceeds this.",
        rich_help_panel=_PANEL_LARGE,
    ),
    file_format: str = typer.Option(
        None,
        "--format",
        metavar="[jpeg|png|webp|bmp|tiff]",
        help="Output format. [default: -o's extension, else the input's format]",
        rich_help_panel=_PANEL_IO,
    ),
    quality: int = typer.Option(
        None,
        "--quality",
        min=1,
        max=100,
        help="JPEG/WebP quality. [default: 95]",
        rich_help_panel=_PANEL_IO,
    ),
    concat: bool = typer.Option(
        False,
        "--concat",
        help="Write input | mask | result side by side instead of the result.",
        rich_help_panel=_PANEL_IO,
    ),
    device: str = typer.Option("auto", "--device", metavar="[auto|cpu|cuda|mps]"),
) -> None:
    """Inpaint IMAGE (or every image in DIR) where MASK is white; known pixels stay bit-exact."""
    if strategy not in ("auto", "full", "crop", "resize"):
        raise typer.BadParameter(
            f"{strategy!r} is not one of auto, full, crop, resize", param_hint="--strategy"
        )
    fmt = _format_option(file_format)
    jobs = _plan_jobs(source, mask, out, fmt)
    options = dict(
        invert_mask=invert_mask,
        dilate=dilate,
        strategy=strategy,
        margin=margin,
        resize_limit=resize_limit,
        crop_trigger=crop_trigger,
        file_format=fmt,
        quality=quality,
        concat=concat,
    )
    _run(jobs, weights, device, options, folder=source.is_dir())
