"""``pconv inpaint``: fill the holes of one image or a folder of images.

A thin wrapper over :mod:`pconv_cli.inpainting` (planning and running the jobs)
and :mod:`pconv_cli.weights`; torch is imported inside the command only. Mask
files are white = hole. The source is a model (``--weights``, the zoo's default
without one) or a classic method (``--method``), one at a time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import typer

from pconv_cli.commands._options import DEVICE_METAVAR, FLAG, device_value

_PANEL_IO = "Input and output"
_PANEL_MASK = "Masks"
_PANEL_LARGE = "Large images"
_PANEL_SOURCE = "Model or method"
_METHODS = ("telea", "ns", "biharmonic", "patchmatch")
"""``--method`` choices (kept here so --help imports nothing; a test checks them against
:data:`pconv_cli.inpainting.classic.USER_METHODS`)."""

_FORMAT_NAMES = ("jpeg", "jpg", "png", "webp", "bmp", "tiff", "tif")


def _format_option(value: str | None) -> str | None:
    from pconv_cli.data.images import FORMATS

    if value is None:
        return None
    try:
        return FORMATS[value.lower().lstrip(".")]
    except KeyError:
        raise typer.BadParameter(
            f"unknown format {value!r}; choose from {', '.join(sorted(FORMATS))}",
            param_hint="--format",
        ) from None


def _load_source(weights: str | None, method: str | None, device_name: str, console):
    """(source, one-line description): a loaded model or a classic method name."""
    from rich.markup import escape

    from pconv_cli.devices import resolve_device
    from pconv_cli.inpainting.classic import check_method
    from pconv_cli.models import describe_config
    from pconv_cli.weights import expect_kind, model_from_weights, open_weights, zoo

    device = resolve_device(device_name)
    if method:
        found = check_method(method)
        return method, f"--method {method} ({found.description}) on the CPU", device
    loaded = expect_kind(open_weights(weights or zoo.DEFAULT_WEIGHTS), "inpainting")
    model = model_from_weights(loaded, device=device)
    meta = loaded.metadata
    what = meta.get("name") or Path(meta.get("source", weights or "")).name
    if "assumed" in meta:
        console.print(f"[yellow]warning:[/] {escape(what)}: assumed {escape(meta['assumed'])}")
    described = (
        f"{what} ({loaded.source_format} weights, "
        f"{describe_config(loaded.family, loaded.config)}) on {device}"
    )
    return model, described, device


def _run(jobs, source_options: tuple, options, folder: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    start = time.perf_counter()
    source, described, _ = _load_source(*source_options, console)
    console.print(f"[bold]pconv inpaint[/] with {escape(described)}")
    try:
        results = _run_jobs(jobs, source, options, console, folder)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/]: no partial file was left behind")
        raise typer.Exit(130) from None
    _print_notes(console, results)
    failures = [r for r in results if not r.ok]
    elapsed = time.perf_counter() - start
    if folder:
        failed = ", ".join(r.job.image.name for r in failures)
        console.print(
            f"{len(results) - len(failures)} of {len(jobs)} images inpainted into "
            f"{escape(str(jobs[0].out.parent))} in {elapsed:.1f} s"
            + (f"; [red]failed:[/] {escape(failed)}" if failures else "")
        )
    elif failures:
        console.print(f"[red]Error:[/] {escape(failures[0].error)}")
    else:
        result = results[0]
        passes = f"{result.passes} pass{'es' if result.passes != 1 else ''}"
        console.print(
            f"wrote {escape(str(result.job.out))} ({result.strategy}, {passes}, "
            f"blend {result.blend or options.blend})"
        )
    if failures:
        raise typer.Exit(1)


def _print_notes(console, results) -> None:
    """Each kind of warning once (with how many images it concerns)."""
    from rich.markup import escape

    first: dict[str, str] = {}
    count: dict[str, int] = {}
    for result in results:
        for kind, text in result.notes:
            first.setdefault(kind, text)
            count[kind] = count.get(kind, 0) + 1
    for kind, text in first.items():
        more = f" (and {count[kind] - 1} more like it)" if count[kind] > 1 else ""
        if kind == "MaskResizedWarning":
            more += "; masks of another size are resized so, then thresholded: they stay binary"
        if kind == "Scales":
            console.print(f"note: {escape(text)}{more}")
            continue
        console.print(f"[yellow]warning:[/] {escape(text)}{more}")


def _run_jobs(jobs, source, options, console, folder: bool) -> list:
    """Every job's result; a folder run shows a progress bar and reports each failure."""
    from rich.markup import escape

    from pconv_cli.commands._progress import progress_bar
    from pconv_cli.inpainting import inpaint_files

    if not folder:
        return list(inpaint_files(source, jobs, options))
    results = []
    bar = progress_bar(
        "inpaint",
        "{task.fields[name]}",
        console=console,
        transient=False,
        hide_when_piped=False,
        unit="img",
    )
    with bar as progress:
        task = progress.add_task("inpaint", total=len(jobs), name="")
        progress.update(task, name=escape(jobs[0].image.name))
        for result in inpaint_files(source, jobs, options):
            results.append(result)
            if not result.ok:
                progress.console.print(
                    f"[red]skipped[/] {escape(result.job.image.name)}: {escape(result.error)}"
                )
            progress.advance(task)
            if len(results) < len(jobs):
                progress.update(task, name=escape(jobs[len(results)].image.name))
        progress.update(task, name="")
    return results


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
        "--masks",
        "-m",
        metavar="MASK|DIR",
        help="Mask file (white = hole; an alpha channel counts if present) used for every "
        "image, or a folder of masks matched to images by file stem (photo.jpg <- photo.png).",
        rich_help_panel=_PANEL_MASK,
    ),
    weights: str = typer.Option(
        None,
        "--weights",
        "-w",
        metavar="NAME|PATH",
        help="Weights by zoo name (pconv weights list; downloaded once into torch.hub's "
        "cache) or a file: pconv .safetensors, MMagic or naoto0804 .pth. "
        "[default: the zoo's default entry unless --method]",
        rich_help_panel=_PANEL_SOURCE,
    ),
    method: str = typer.Option(
        None,
        "--method",
        metavar="[" + "|".join(_METHODS) + "]",
        help="A classic method instead of a model: telea / ns (OpenCV, the baselines extra), "
        "biharmonic (scikit-image), patchmatch (exemplar textures, seeded). "
        "[default: none: the model]",
        rich_help_panel=_PANEL_SOURCE,
    ),
    blend: str = typer.Option(
        "auto",
        "--blend",
        metavar="[auto|poisson|none]",
        help="poisson: blend the fill in the gradient domain (no seams, no colour steps at "
        "the hole's edge); none: paste it as is; auto: poisson, except for weights that "
        "reproduce their publisher's pipeline (LaMa, MI-GAN, SunnerLi: none). Known pixels "
        "are never changed.",
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of --method patchmatch (same seed, same bytes)."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Output file (its suffix gives the format) or existing folder for one image, "
        "output folder for a folder. [default: IMAGE_inpainted.SUFFIX beside the image, "
        "DIR_inpainted/ beside the folder]",
        rich_help_panel=_PANEL_IO,
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace existing output files (atomically), even the input itself.",
        rich_help_panel=_PANEL_IO,
        **FLAG,
    ),
    invert_mask: bool = typer.Option(
        False,
        "--invert-mask/--no-invert-mask",
        help="Mask files are black = hole.",
        rich_help_panel=_PANEL_MASK,
        **FLAG,
    ),
    dilate: int = typer.Option(
        0,
        "--dilate",
        min=0,
        metavar="N",
        help="Grow every hole by N pixels first (covers halos around objects).",
        rich_help_panel=_PANEL_MASK,
    ),
    strategy: Literal["auto", "full", "crop", "resize"] = typer.Option(
        "auto",
        "--strategy",
        help="auto: each hole region at the scale its depth needs (native when the model "
        "fills it there, else coarse-to-fine), windows above --crop-trigger. full: the whole "
        "image at native resolution. crop: one native-resolution window around each hole "
        "region. resize: shrink to --resize-limit, inpaint, scale back. Any strategy goes "
        "coarser where the model would not see a known pixel.",
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
        metavar="[" + "|".join(_FORMAT_NAMES) + "]",
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
        **FLAG,
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        metavar=DEVICE_METAVAR,
        callback=device_value,
        help="Where the model runs (auto: CUDA, then MPS, then CPU).",
    ),
) -> None:
    """Inpaint IMAGE (or every image in DIR) where MASK is white; known pixels stay bit-exact."""
    from pconv_cli.files import remove_stale_temporaries
    from pconv_cli.inpaint_jobs import RequestError, plan_jobs

    if weights and method:
        raise typer.BadParameter(
            "give --weights or --method, not both (one source at a time)", param_hint="--method"
        )
    if method is not None and method not in _METHODS:
        raise typer.BadParameter(
            f"unknown method {method!r}; choose from {', '.join(_METHODS)}", param_hint="--method"
        )
    if blend not in ("auto", "poisson", "none"):
        raise typer.BadParameter(
            f"{blend!r} is not one of auto, poisson, none", param_hint="--blend"
        )
    fmt = _format_option(file_format)
    try:  # every output is checked before torch and the model load (seconds)
        jobs = plan_jobs(source, mask, out, fmt, overwrite=overwrite)
    except RequestError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    for folder in {job.out.parent for job in jobs}:
        remove_stale_temporaries(folder)  # left by a run killed while writing

    from pconv_cli.inpainting import InpaintOptions

    options = InpaintOptions(
        invert_mask=invert_mask,
        dilate=dilate,
        strategy=strategy,
        margin=margin,
        resize_limit=resize_limit,
        crop_trigger=crop_trigger,
        blend=blend,
        seed=seed,
        file_format=fmt,
        quality=quality,
        concat=concat,
    )
    _run(jobs, (weights, method, device), options, folder=source.is_dir())
