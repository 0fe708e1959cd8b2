"""``pconv eval``: bucketed l1 / PSNR / SSIM of models, classic methods and saved outputs.

A thin layer over :mod:`pconv_cli.evaluation.pairs` (images, masks, pairing),
:mod:`pconv_cli.evaluation.scoring` (sources, scoring) and
:mod:`pconv_cli.evaluation.report` (JSON, CSV, grid). torch, scikit-image and the
core are imported inside the command, so ``pconv --help`` stays light.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from pconv_cli.commands._options import DEVICE_METAVAR, FLAG, device_value

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from pconv_cli.evaluation.scoring import EvalResult, Source, SourceResult

DEFAULT_MASKS = "masks/eval-256"
"""The shipped evaluation set (relative to the working directory, else to the repository)."""

_METHODS = "zeros|mean|biharmonic|telea|ns|patchmatch"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def _mask_set_path(masks: Path) -> Path:
    """``--masks`` as given; the default also resolves from the repository checkout."""
    if masks.exists() or masks != Path(DEFAULT_MASKS):
        return masks
    shipped = Path(__file__).resolve().parents[2] / DEFAULT_MASKS
    return shipped if shipped.exists() else masks


def _check_options(
    *,
    crop: str,
    device: str,
    batch: int,
    limit: int | None,
    grid_count: int,
    methods: list[str],
    n_sources: int,
    outputs: dict[str, Path | None],
) -> None:
    """Cheap checks before anything is loaded (exit code 2 = usage error)."""
    from pconv_cli.devices import DEVICE_CHOICES
    from pconv_cli.evaluation.pairs import CROP_MODES
    from pconv_cli.inpainting.classic import METHODS

    if n_sources == 0:
        raise _fail("give at least one prediction source: --weights, --method or --predictions", 2)
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise _fail(f"unknown --method {unknown[0]!r}; choose from {', '.join(METHODS)}", 2)
    if crop not in CROP_MODES:
        raise _fail(f"--crop must be one of {', '.join(CROP_MODES)}, got {crop!r}", 2)
    if device not in DEVICE_CHOICES:
        raise _fail(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}", 2)
    for name, value in (("--batch", batch), ("--limit", limit), ("--grid-count", grid_count)):
        if value is not None and value < 1:
            raise _fail(f"{name} must be >= 1, got {value}", 2)
    from pconv_cli.files import writable_problem

    for name, path in outputs.items():
        problem = None if path is None else writable_problem(path)
        if problem:
            raise _fail(f"{name} {path}: {problem}; give a file path that can be written", 2)


def _progress() -> Progress:
    """A transient progress bar on stderr (hidden when stderr is not a terminal)."""
    from pconv_cli.commands._progress import progress_bar

    return progress_bar("eval", unit="pairs")


def _psnr_cell(psnr: float, infinite: int) -> str:
    if math.isinf(psnr):
        return "inf"
    if math.isnan(psnr):
        return "-"
    return f"{psnr:.2f}" + ("*" if infinite else "")


def _number(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _print_table(console: Console, result: EvalResult) -> None:
    """One row per bucket (+ overall); per source a column group l1 / PSNR / SSIM; count."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"pconv eval: {result.pairs} pairs", title_justify="left")
    table.add_column("hole ratio")
    table.add_column("border")
    for source in result.sources:
        table.add_column(f"{escape(source.label)}\nl1 ↓", justify="right")
        table.add_column("\nPSNR ↑", justify="right")
        table.add_column("\nSSIM ↑", justify="right")
    table.add_column("count", justify="right")
    per_source = [source.rows() for source in result.sources]
    for number, rows in enumerate(zip(*per_source, strict=True)):
        first = rows[0]
        if first.bucket == "overall" and number:
            table.add_section()
        border = "" if first.border is None else ("yes" if first.border else "no")
        cells = [escape(first.bucket), border]
        for row in rows:
            stats = row.stats
            cells += [
                _number(stats.l1, 3),
                _psnr_cell(stats.psnr, stats.psnr_inf),
                _number(stats.ssim, 4),
            ]
        table.add_row(*cells, str(first.stats.count))
    console.print(table)
    _print_notes(console, result.sources)


def _print_notes(console: Console, sources: list[SourceResult]) -> None:
    from rich.markup import escape

    for source in sources:
        if source.overall.psnr_inf and source.overall.psnr_finite:
            console.print(
                f"* {escape(source.label)}: PSNR means exclude the {source.overall.psnr_inf} "
                "output(s) identical to the truth (PSNR inf)"
            )


def evaluate(
    folder: Path = typer.Option(
        ...,
        "--folder",
        "--data",
        "-f",
        help="Ground-truth images (png/jpg/...; searched recursively).",
    ),
    masks: Path = typer.Option(
        Path(DEFAULT_MASKS),
        "--masks",
        "--mask",
        "-m",
        help="Mask folder (its manifest.csv gives the buckets) or a manifest.csv.",
    ),
    weights: list[str] | None = typer.Option(
        None,
        "--weights",
        "-w",
        metavar="NAME|FILE",
        help="Score model weights: a zoo name (pconv weights list) or a file (repeatable). "
        "[default: the zoo's default entry when no --weights, --method or --predictions]",
    ),
    method: list[str] | None = typer.Option(
        None,
        "--method",
        metavar=f"[{_METHODS}]",
        help="Score a classic method (repeatable); telea/ns need the baselines extra (OpenCV). "
        "[default: none]",
    ),
    blend: str = typer.Option(
        "none",
        "--blend",
        metavar="[none|poisson]",
        help="none: one native pass per batch, pasted (MMagic's protocol). poisson: every "
        "pair as pconv inpaint writes it (its default strategy and Poisson blending), "
        "for --weights and --method alike.",
    ),
    predictions: list[Path] | None = typer.Option(
        None,
        "--predictions",
        "-p",
        metavar="DIR",
        help="Score saved outputs DIR/PAIR.png (repeatable); composited before scoring. "
        "[default: none]",
    ),
    invert_mask: bool = typer.Option(
        False,
        "--invert-mask",
        help="Mask files are black = hole (pconv's are white = hole).",
        **FLAG,
    ),
    crop: Literal["center", "resize"] = typer.Option(
        "center",
        "--crop",
        help="Map images to the mask size: center = cover then center-crop; resize = stretch.",
    ),
    pairing: str = typer.Option(
        "cycle",
        "--pairing",
        metavar="[cycle|all|FILE.csv]",
        help="cycle: pair k = image k mod N with mask k mod M (max(N, M) pairs); all: N x M; "
        "FILE.csv: columns image,mask[,name].",
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Score only the first N pairs. [default: all]"
    ),
    batch: int = typer.Option(8, "--batch", "-b", min=1, help="Pairs per batch."),
    device: str = typer.Option(
        "auto",
        "--device",
        metavar=DEVICE_METAVAR,
        callback=device_value,
        help="Device for --weights (auto: CUDA, then MPS, then CPU).",
    ),
    json_out: Path | None = typer.Option(
        None,
        "--json",
        help="Write config, per-bucket summary and per-image values as JSON. [default: none]",
    ),
    csv_out: Path | None = typer.Option(
        None, "--csv", help="Write the summary table as CSV. [default: none]"
    ),
    grid: Path | None = typer.Option(
        None,
        "--grid",
        help="Write PNGs of the best and worst pairs per source (pages of at most 16 rows: "
        "GRID, then GRID-2.png ...). [default: none]",
    ),
    grid_count: int = typer.Option(
        4, "--grid-count", min=1, help="Best and worst pairs per source."
    ),
    save_outputs: Path | None = typer.Option(
        None,
        "--save-outputs",
        metavar="DIR",
        help="Also save every scored composite as DIR/SOURCE/PAIR.png. [default: none]",
    ),
) -> None:
    """Score inpainting outputs with l1 / PSNR / SSIM per hole-ratio bucket (MMagic's definitions).

    Every source is scored on the same pairs, composited and rounded to uint8 first.
    """
    methods, checkpoints, folders = method or [], weights or [], predictions or []
    if blend not in ("none", "poisson"):
        raise _fail(f"--blend must be none or poisson, got {blend!r}", 2)
    if not (methods or checkpoints or folders):
        from pconv_cli.weights.zoo import DEFAULT_WEIGHTS

        checkpoints = [DEFAULT_WEIGHTS]
    _check_options(
        crop=crop,
        device=device,
        batch=batch,
        limit=limit,
        grid_count=grid_count,
        methods=methods,
        n_sources=len(methods) + len(checkpoints) + len(folders),
        outputs={"--json": json_out, "--csv": csv_out, "--grid": grid},
    )
    from pconv_cli.data.masks import MaskError
    from pconv_cli.devices import DeviceError
    from pconv_cli.evaluation.pairs import EvalError
    from pconv_cli.inpainting.classic import BaselineError
    from pconv_cli.weights.errors import WeightsError

    try:
        _run(
            folder=folder,
            masks=_mask_set_path(masks),
            methods=methods,
            checkpoints=checkpoints,
            folders=folders,
            blend=blend,
            invert_mask=invert_mask,
            crop=crop,
            pairing=pairing,
            limit=limit,
            batch=batch,
            device=device,
            json_out=json_out,
            csv_out=csv_out,
            grid=grid,
            grid_count=grid_count,
            save_outputs=save_outputs,
        )
    except (EvalError, MaskError, WeightsError, BaselineError, DeviceError) as error:
        raise _fail(str(error)) from None


def _run(
    *,
    folder: Path,
    masks: Path,
    methods: list[str],
    checkpoints: list[str],
    folders: list[Path],
    blend: str,
    invert_mask: bool,
    crop: str,
    pairing: str,
    limit: int | None,
    batch: int,
    device: str,
    json_out: Path | None,
    csv_out: Path | None,
    grid: Path | None,
    grid_count: int,
    save_outputs: Path | None,
) -> None:
    from rich.console import Console

    from pconv_cli.evaluation.pairs import PairLoader, list_images, load_mask_set, plan_pairs
    from pconv_cli.evaluation.report import build_config
    from pconv_cli.evaluation.scoring import evaluate

    images = list_images(folder)
    mask_set = load_mask_set(masks, invert=invert_mask)
    plan = plan_pairs(images, mask_set, pairing, image_root=folder, limit=limit)
    loader = PairLoader(crop, invert_mask)
    sources = _build_sources(methods, checkpoints, folders, device, blend)

    with _progress() as progress:
        task = progress.add_task("pairs", total=len(plan))
        result = evaluate(
            plan,
            sources,
            loader,
            batch_size=batch,
            keep_records=json_out is not None,
            grid_count=grid_count if grid is not None else 0,
            save_outputs=save_outputs,
            on_progress=lambda n: progress.advance(task, n),
        )
    with result:
        console = Console(width=max(100, 24 + 30 * len(sources)) if not _is_tty() else None)
        _print_table(console, result)
        config = build_config(
            folder=str(folder),
            masks=str(masks),
            manifest=None if mask_set.manifest is None else str(mask_set.manifest),
            invert_mask=invert_mask,
            crop=crop,
            resample="Pillow bicubic",
            pairing=pairing,
            image_count=len(images),
            mask_count=len(mask_set.entries),
            pairs=result.pairs,
            limit=limit,
            sizes=sorted(f"{w}x{h}" for h, w in result.sizes),
            sources=[s.label for s in sources],
        )
        written = _write_reports(result, config, json_out, csv_out, grid)
    for path in written:
        typer.echo(f"Wrote {path}")


def _build_sources(
    methods: list[str], checkpoints: list[str], folders: list[Path], device: str, blend: str
) -> list[Source]:
    """Sources in column order: methods, then weights, then prediction folders."""
    from pconv_cli.devices import resolve_device
    from pconv_cli.evaluation.scoring import (
        MethodSource,
        ModelSource,
        PredictionsSource,
        unique_labels,
    )

    labels = iter(
        unique_labels(
            [*methods, *_weights_labels(checkpoints), *(p.name or str(p) for p in folders)]
        )
    )
    sources: list[Source] = [MethodSource(m, next(labels), blend=blend) for m in methods]
    if checkpoints:
        torch_device = resolve_device(device)
        sources += [
            ModelSource(c, torch_device, next(labels), blend=blend) for c in checkpoints
        ]
    sources += [PredictionsSource(p, next(labels)) for p in folders]
    return sources


def _weights_labels(specs: list[str]) -> list[str]:
    """Readable, distinct labels: a file's stem, with its folder where stems repeat
    (``run-a/last`` and ``run-b/last``); zoo names as they are."""
    stems = [Path(spec).stem or spec for spec in specs]
    labels = []
    for spec, stem in zip(specs, stems, strict=True):
        path = Path(spec)
        if stems.count(stem) > 1 and path.parent.name:
            stem = f"{path.parent.name}/{stem}"
        labels.append(stem)
    return labels


def _is_tty() -> bool:
    import sys

    return sys.stdout.isatty()


def _write_reports(
    result: EvalResult,
    config: dict,
    json_out: Path | None,
    csv_out: Path | None,
    grid: Path | None,
) -> list[Path]:
    from pconv_cli.evaluation.pairs import EvalError
    from pconv_cli.evaluation.report import write_csv, write_grid, write_json

    written = []
    try:
        if json_out is not None:
            written.append(write_json(json_out, config, result))
        if csv_out is not None:
            written.append(write_csv(csv_out, result))
        if grid is not None:
            written += write_grid(grid, result)
    except OSError as error:
        raise EvalError(
            f"cannot write {error.filename or 'a report'}: {error.strerror or error}"
        ) from None
    return written
