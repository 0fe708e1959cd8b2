"""``pconv eval``: bucketed l1 / PSNR / SSIM (and LPIPS, FID, P-IDS/U-IDS) of models,
classic methods and saved outputs.

A thin layer over :mod:`pconv_cli.evaluation.pairs` (images, masks, pairing),
:mod:`pconv_cli.evaluation.scoring` (sources, scoring),
:mod:`pconv_cli.evaluation.feature_metrics` (the network-based metrics),
:mod:`pconv_cli.evaluation.protocols` (``--protocol``),
:mod:`pconv_cli.evaluation.sharding` (``--gpus``/``--nproc``/torchrun) and
:mod:`pconv_cli.evaluation.report` (JSON, CSV, grid). torch, scikit-image and the
core are imported inside the command, so ``pconv --help`` stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
_FOLDERS = ("--save-outputs",)
"""Output options that name a folder (the others name a file)."""
_METRICS = "l1|psnr|ssim|lpips|fid|pids"
_PROTOCOLS = "nvidia-irregular|lama-places512|mat-places512"


def _fail(message: str, code: int = 1) -> Exception:
    """The error to raise: a usage error (exit code 2) or a failed job (1)."""
    from pconv_cli.errors import PconvError, UsageError

    return UsageError(message) if code == 2 else PconvError(message)


def _mask_set_path(masks: Path) -> Path:
    """``--masks`` as given; the default also resolves from the repository checkout."""
    if masks.exists() or masks != Path(DEFAULT_MASKS):
        return masks
    shipped = Path(__file__).resolve().parents[2] / DEFAULT_MASKS
    return shipped if shipped.exists() else masks


def _check_options(
    *,
    grid: Path | None,
    crop: str,
    device: str,
    batch: int,
    limit: int | None,
    grid_count: int,
    methods: list[str],
    n_sources: int,
    outputs: dict[str, Path | None],
    metrics: list[str] | None = None,
    metric_weights: list[str] | None = None,
    gpus: int | None = None,
    nproc: int | None = None,
    protocol: str | None = None,
    pinned: dict[str, bool] | None = None,
) -> tuple[tuple[str, ...], dict[str, Path]]:
    """Cheap checks before anything is loaded (exit code 2 = usage error).

    Returns the metric names (report order) and the ``--metric-weights`` files.
    """
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
    if device.split(":")[0].lower() not in DEVICE_CHOICES:  # cuda:N too, as the help says
        raise _fail(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}", 2)
    for name, value in (("--batch", batch), ("--limit", limit), ("--grid-count", grid_count)):
        if value is not None and value < 1:
            raise _fail(f"{name} must be >= 1, got {value}", 2)
    from pconv_cli.files import writable_problem

    for name, path in outputs.items():
        problem = None if path is None else writable_problem(path, folder=name in _FOLDERS)
        if problem:
            what = "folder" if name in _FOLDERS else "file path"
            raise _fail(f"{name} {path}: {problem}; give a {what} that can be written", 2)
    if grid is not None and grid.suffix.lower() != ".png":
        raise _fail(f"--grid {grid}: the grid is a PNG; name it {grid.stem}.png", 2)
    named = [path.resolve() for path in outputs.values() if path is not None]
    if len(set(named)) < len(named):
        raise _fail("--json, --csv, --grid and --save-outputs must name different paths", 2)
    return _check_metric_options(
        device=device, metrics=metrics, metric_weights=metric_weights, gpus=gpus, nproc=nproc,
        protocol=protocol, pinned=pinned,
    )  # fmt: skip


def _check_metric_options(
    *,
    device: str,
    metrics: list[str] | None,
    metric_weights: list[str] | None,
    gpus: int | None,
    nproc: int | None,
    protocol: str | None,
    pinned: dict[str, bool] | None,
) -> tuple[tuple[str, ...], dict[str, Path]]:
    """The metric names (report order) and ``--metric-weights`` files; usage errors."""
    from pconv_cli.evaluation.feature_metrics import check_metric_names
    from pconv_cli.evaluation.metric_weights import parse_metric_weights

    try:
        names = check_metric_names(metrics or [])
        files = parse_metric_weights(metric_weights or [])
    except ValueError as error:
        raise _fail(str(error), 2) from None
    if gpus and nproc:
        raise _fail("give --gpus or --nproc, not both", 2)
    if gpus and device not in ("auto", "cuda") and not device.startswith("cuda"):
        raise _fail(f"--gpus needs --device cuda (or auto), got --device {device}", 2)
    if protocol is not None:
        from pconv_cli.evaluation.protocols import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise _fail(f"unknown --protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}", 2)
        clash = [name for name, given in (pinned or {}).items() if given]
        if clash:
            raise _fail(f"--protocol {protocol} pins {clash[0]}; drop it", 2)
        names = PROTOCOLS[protocol].metrics
    return names, files


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


_HEADINGS = {"l1": "l1 ↓", "psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓"}


def _cell(name: str, stats) -> str:
    if name == "psnr":
        return _psnr_cell(stats.psnr, stats.psnr_inf)
    return _number(getattr(stats, name), 3 if name == "l1" else 4)


def _print_table(console: Console, result: EvalResult) -> None:
    """One row per bucket (+ overall); per source a column group of the per-pair metrics
    (l1 / PSNR / SSIM / LPIPS, those asked for); count. Set-level metrics follow."""
    from rich.markup import escape
    from rich.table import Table

    columns = [name for name in result.metrics if name in _HEADINGS]
    if columns:
        table = Table(title=f"pconv eval: {result.pairs} pairs", title_justify="left")
        table.add_column("hole ratio")
        table.add_column("border")
        for source in result.sources:
            for number, name in enumerate(columns):
                label = escape(source.label) if number == 0 else ""
                table.add_column(f"{label}\n{_HEADINGS[name]}", justify="right")
        table.add_column("count", justify="right")
        per_source = [source.rows() for source in result.sources]
        for number, rows in enumerate(zip(*per_source, strict=True)):
            first = rows[0]
            if first.bucket == "overall" and number:
                table.add_section()
            border = "" if first.border is None else ("yes" if first.border else "no")
            cells = [escape(first.bucket), border]
            for row in rows:
                cells += [_cell(name, row.stats) for name in columns]
            table.add_row(*cells, str(first.stats.count))
        console.print(table)
    _print_set_metrics(console, result)
    _print_notes(console, result.sources)


def _print_set_metrics(console: Console, result: EvalResult) -> None:
    """FID ↓, P-IDS ↑, U-IDS ↑ per source (and per mask set when a protocol splits them)."""
    from rich.markup import escape
    from rich.table import Table

    from pconv_cli.evaluation.feature_metrics import SET_METRIC_KEYS

    keys = [key for name in result.metrics for key in SET_METRIC_KEYS.get(name, ())]
    if not keys:
        return
    headings = {"fid": "FID ↓", "p_ids": "P-IDS ↑", "u_ids": "U-IDS ↑"}
    table = Table(title=f"set metrics: {result.pairs} pairs", title_justify="left")
    table.add_column("source")
    table.add_column("masks")
    for key in keys:
        table.add_column(headings[key], justify="right")
    for source in result.sources:
        groups = [("all", source.set_metrics), *source.set_metrics_by_bucket.items()]
        for number, (group, values) in enumerate(groups):
            label = escape(source.label) if number == 0 else ""
            cells = [_number(values.get(key, math.nan), 4) for key in keys]
            table.add_row(label, escape(group), *cells)
    console.print(table)


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
        "--invert-mask/--no-invert-mask",
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
    metric: list[str] | None = typer.Option(
        None,
        "--metric",
        metavar=f"[{_METRICS}]",
        help="Metrics to report (repeatable): lpips per pair (AlexNet, lpips v0.1); fid and "
        "pids (P-IDS/U-IDS) per source over the set (pytorch-fid's Inception); pids needs "
        "the metrics extra (scikit-learn). [default: l1, psnr, ssim]",
    ),
    metric_weights: list[str] | None = typer.Option(
        None,
        "--metric-weights",
        metavar="KEY=PATH",
        help="Local network file for a metric (repeatable); keys lpips-alex, lpips-alex-lin, "
        "fid-inception. [default: torch hub cache, downloaded once]",
    ),
    protocol: str | None = typer.Option(
        None,
        "--protocol",
        metavar=f"[{_PROTOCOLS}]",
        help="A pinned published protocol: its images (the first N of --folder, sorted), "
        "size, seeded mask sets (drawn into ~/.cache/pconv) and metrics. [default: none]",
    ),
    gpus: int | None = typer.Option(
        None,
        "--gpus",
        min=1,
        help="Evaluate on N local GPUs, one process each (or run the command under "
        "torchrun). [default: 1 process]",
    ),
    nproc: int | None = typer.Option(
        None,
        "--nproc",
        min=1,
        help="Evaluate in N local processes (gloo with --device cpu). [default: 1]",
    ),
) -> None:
    """Score inpainting outputs per hole-ratio bucket: l1 / PSNR / SSIM (MMagic's
    definitions), LPIPS, FID, P-IDS/U-IDS.

    Every source is scored on the same pairs, composited and rounded to uint8 first.
    """
    methods, checkpoints, folders = method or [], weights or [], predictions or []
    if blend not in ("none", "poisson"):
        raise _fail(f"--blend must be none or poisson, got {blend!r}", 2)
    if not (methods or checkpoints or folders):
        from pconv_cli.weights.zoo import DEFAULT_WEIGHTS

        checkpoints = [DEFAULT_WEIGHTS]
    names, metric_files = _check_options(
        grid=grid,
        crop=crop,
        device=device,
        batch=batch,
        limit=limit,
        grid_count=grid_count,
        methods=methods,
        n_sources=len(methods) + len(checkpoints) + len(folders),
        outputs={
            "--json": json_out,
            "--csv": csv_out,
            "--grid": grid,
            "--save-outputs": save_outputs,
        },
        metrics=metric,
        metric_weights=metric_weights,
        gpus=gpus,
        nproc=nproc,
        protocol=protocol,
        pinned={
            "--masks": masks != Path(DEFAULT_MASKS),
            "--metric": bool(metric),
            "--pairing": pairing != "cycle",
            "--crop": crop != "center",
            "--invert-mask": invert_mask,
        },
    )
    settings = {
        "folder": folder,
        "masks": _mask_set_path(masks),
        "methods": methods,
        "checkpoints": checkpoints,
        "folders": folders,
        "blend": blend,
        "invert_mask": invert_mask,
        "crop": crop,
        "pairing": pairing,
        "limit": limit,
        "batch": batch,
        "device": device,
        "json_out": json_out,
        "csv_out": csv_out,
        "grid": grid,
        "grid_count": grid_count,
        "save_outputs": save_outputs,
        "metrics": names,
        "metric_weights": metric_files,
        "protocol": protocol,
    }
    from pconv_cli.train.distributed import context_from_env

    processes = gpus or nproc or 1
    if context_from_env().enabled:  # under torchrun: this process is one rank
        run_worker(settings)
    elif processes > 1:
        _launch(settings, processes)
    else:
        _run(**settings)


def _launch(settings: dict, processes: int) -> None:
    """``--gpus N`` / ``--nproc N``: N local workers through the training launcher."""
    from pconv_cli.devices import resolve_device
    from pconv_cli.train.distributed import check_world_size, launch

    check_world_size(processes, resolve_device(settings["device"]))
    launch(run_worker, (settings,), processes=processes)  # workers start in this cwd


def run_worker(settings: dict) -> None:
    """One rank of a sharded evaluation (launched by ``--gpus``/``--nproc``, or torchrun).

    Errors propagate (PconvError: one line): the launcher reports the first one as a
    LaunchError, and under torchrun the app prints it like any other error.
    """
    import os

    import torch
    import torch.distributed as dist

    from pconv_cli.devices import resolve_device
    from pconv_cli.train.distributed import context_from_env, init_process_group

    ctx = context_from_env()
    device = resolve_device(settings["device"])
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(ctx.world_size, 1)))
    created = init_process_group(ctx, device)
    try:
        _run(**{**settings, "device": str(device)}, rank=ctx.rank, world_size=ctx.world_size)
    finally:
        if created:
            dist.destroy_process_group()


@dataclass
class _Inputs:
    """What a run scores: the planned pairs and the facts the report states about them."""

    images: list
    plan: list
    masks: Path
    mask_count: int
    crop: str
    manifest: Path | None = None
    facts: dict = field(default_factory=dict)
    by_bucket: bool = False


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
    metrics: tuple[str, ...] = ("l1", "psnr", "ssim"),
    metric_weights: dict[str, Path] | None = None,
    protocol: str | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> None:
    from rich.console import Console

    from pconv_cli.evaluation.pairs import PairLoader, list_images

    images = list_images(folder)
    labels = _source_labels(methods, checkpoints, folders)
    if protocol is not None:
        inputs = _protocol_inputs(protocol, images, limit, rank, world_size)
    else:
        inputs, mask_set = _mask_set_inputs(
            images, folder=folder, masks=masks, invert_mask=invert_mask, crop=crop,
            pairing=pairing, limit=limit,
        )  # fmt: skip
        _check_inputs_stay(
            folder=folder, masks=masks, mask_set=mask_set, plan=inputs.plan, pairing=pairing,
            checkpoints=checkpoints, folders=folders, labels=labels, save_outputs=save_outputs,
            reports={"--json": json_out, "--csv": csv_out, "--grid": grid},
        )  # fmt: skip
    loader = PairLoader(inputs.crop, invert_mask)
    suite = _metric_suite(metrics, device, metric_weights, rank)
    sources = _build_sources(methods, checkpoints, folders, device, labels, blend)
    sharded = world_size > 1
    work = _rank_work(inputs.plan, sources, batch, rank, world_size)
    kept = {
        "keep_records": json_out is not None,
        "grid_count": grid_count if grid is not None else 0,
    }
    result = _score(
        work, sources, loader, batch=batch, suite=suite, rank=rank, sharded=sharded,
        by_bucket=inputs.by_bucket, save_outputs=save_outputs, **kept,
    )  # fmt: skip
    if sharded:
        result = _gather(result, suite, by_bucket=inputs.by_bucket, **kept)
        if result is None:
            return
    with result:
        console = Console(width=max(100, 24 + 30 * len(sources)) if not _is_tty() else None)
        _print_table(console, result)
        config = _report_config(
            result, sources, suite, inputs, metrics=metrics, folder=folder,
            invert_mask=invert_mask, pairing="protocol" if protocol else pairing, limit=limit,
        )  # fmt: skip
        written = _write_reports(result, config, json_out, csv_out, grid)
    for path in written:
        typer.echo(f"Wrote {path}")


def _protocol_inputs(
    name: str, images: list, limit: int | None, rank: int, world_size: int
) -> _Inputs:
    """``--protocol``: its pairs, crop and mask cache; its facts go into the report."""
    plan, facts, mask_count = _protocol_plan(name, images, limit, rank, world_size)
    spec = facts.pop("_protocol")
    return _Inputs(
        images=images, plan=plan, masks=Path(str(facts["mask_cache"])), mask_count=mask_count,
        crop=spec.crop, facts=facts, by_bucket=spec.set_metrics_by_bucket,
    )  # fmt: skip


def _mask_set_inputs(
    images: list, *, folder: Path, masks: Path, invert_mask: bool, crop: str, pairing: str,
    limit: int | None,
):
    """``--masks``: the mask set paired with the images (and the mask set, for checks)."""
    from pconv_cli.evaluation.pairs import load_mask_set, plan_pairs

    mask_set = load_mask_set(masks, invert=invert_mask)
    plan = plan_pairs(images, mask_set, pairing, image_root=folder, limit=limit)
    inputs = _Inputs(
        images=images, plan=plan, masks=masks, mask_count=len(mask_set.entries), crop=crop,
        manifest=mask_set.manifest,
    )  # fmt: skip
    return inputs, mask_set


def _metric_suite(
    metrics: tuple[str, ...], device: str, metric_weights: dict[str, Path] | None, rank: int
):
    """The metrics to compute, their networks loaded (with a progress bar on rank 0)."""
    from pconv_cli.devices import resolve_device
    from pconv_cli.evaluation.feature_metrics import MetricSuite

    torch_device = resolve_device(device)
    suite = MetricSuite(metrics, device=str(torch_device), weights=metric_weights or {})
    if suite.wants_lpips or suite.wants_features:
        suite.load(progress=rank == 0)
    return suite


def _rank_work(plan: list, sources: list[Source], batch: int, rank: int, world_size: int):
    """The pairs this rank scores: all of them, or its shard (sources check the whole plan)."""
    if world_size <= 1:
        return plan
    from pconv_cli.evaluation.sharding import shard_plan

    work = shard_plan(plan, batch, rank, world_size)
    for source in sources:  # every rank checks the whole plan: same errors as one process
        source.prepare(plan)
    return work


def _score(
    work: list, sources: list[Source], loader, *, batch: int, suite, rank: int, sharded: bool,
    by_bucket: bool, save_outputs: Path | None, keep_records: bool, grid_count: int,
) -> EvalResult:
    """Score the pairs with a progress bar (drawn by rank 0); a shard keeps its records."""
    from pconv_cli.evaluation.scoring import evaluate

    with _progress() as progress:
        task = progress.add_task("pairs", total=len(work))
        return evaluate(
            work,
            sources,
            loader,
            batch_size=batch,
            keep_records=keep_records or sharded,
            grid_count=grid_count,
            save_outputs=save_outputs,
            on_progress=lambda n: progress.advance(task, n) if rank == 0 else None,
            suite=suite,
            finish=not sharded,
            by_bucket=by_bucket,
        )


def _gather(
    result: EvalResult, suite, *, by_bucket: bool, keep_records: bool, grid_count: int
) -> EvalResult | None:
    """Merge the shards on rank 0 and finish the set metrics; None on the other ranks."""
    from pconv_cli.evaluation.scoring import finish_set_metrics
    from pconv_cli.evaluation.sharding import gather_result

    with result:
        merged = gather_result(result, keep_records=keep_records, grid_count=grid_count)
    if merged is None:
        return None
    try:
        finish_set_metrics(merged, suite, by_bucket=by_bucket)
    except BaseException:
        merged.close()
        raise
    return merged


def _report_config(
    result: EvalResult, sources: list[Source], suite, inputs: _Inputs, *,
    metrics: tuple[str, ...], folder: Path, invert_mask: bool, pairing: str, limit: int | None,
) -> dict:
    """The run's configuration as the JSON report states it."""
    from pconv_cli.evaluation.report import build_config

    return build_config(
        metrics,
        folder=str(folder),
        masks=str(inputs.masks),
        manifest=None if inputs.manifest is None else str(inputs.manifest),
        invert_mask=invert_mask,
        crop=inputs.crop,
        resample="Pillow bicubic",
        pairing=pairing,
        image_count=len(inputs.images),
        mask_count=inputs.mask_count,
        pairs=result.pairs,
        limit=limit,
        sizes=sorted(f"{w}x{h}" for h, w in result.sizes),
        sources=[s.label for s in sources],
        **(
            {"metric_weights": suite.weight_files()}
            if suite.wants_lpips or suite.wants_features
            else {}
        ),
        **inputs.facts,
    )


def _source_labels(methods: list[str], checkpoints: list[str], folders: list[Path]) -> list[str]:
    """The column label of every source, in column order (methods, weights, folders)."""
    from pconv_cli.evaluation.scoring import unique_labels

    return unique_labels(
        [*methods, *_weights_labels(checkpoints), *(p.name or str(p) for p in folders)]
    )


def _check_inputs_stay(
    *,
    folder: Path,
    masks: Path,
    mask_set,
    plan,
    pairing: str,
    checkpoints: list[str],
    folders: list[Path],
    labels: list[str],
    save_outputs: Path | None,
    reports: dict[str, Path | None],
) -> None:
    """Refuse (before any scoring) outputs that would replace a file the run reads, or
    write pictures into a folder it reads recursively (they would be read next time)."""
    from pconv_cli.evaluation.pairs import index_images
    from pconv_cli.evaluation.scoring import save_outputs_folder
    from pconv_cli.files import input_clash, is_inside, remove_stale_temporaries

    files: list[Path] = [entry.path for entry in plan.images]
    files += [entry.path for entry in mask_set.entries]
    files += [path for entry in plan.explicit for path in (entry[0].path, entry[1].path)]
    if mask_set.manifest is not None:
        files.append(mask_set.manifest)
    if Path(pairing).is_file():
        files.append(Path(pairing))
    files += [Path(spec) for spec in checkpoints if Path(spec).is_file()]
    for predictions in folders:
        files += [p for paths in index_images(predictions, "--predictions").values() for p in paths]
    read_folders = [folder, *folders]
    if mask_set.manifest is None and Path(masks).is_dir():
        read_folders.append(mask_set.root)  # every image file under it is a mask
    for option, path in reports.items():
        if path is None:
            continue
        clash = input_clash(path, files, read_folders if option == "--grid" else ())
        if clash:
            raise _fail(f"{option} {path}: {clash}; write the report elsewhere", 2)
        remove_stale_temporaries(path.parent)
    if save_outputs is None:
        return
    for label in labels:
        target = save_outputs_folder(save_outputs, label)
        clash = input_clash(target, (), read_folders)
        if not clash:
            inside = [f for f in read_folders if is_inside(f, target)]
            inside_files = {str(f.resolve()) for f in files if is_inside(f, target)}
            root = target.resolve()
            for pair in plan if inside or inside_files else ():
                out = root / f"{pair.name}.png"
                if str(out) in inside_files or any(is_inside(out, f) for f in inside):
                    clash = f"{out} would replace or join the inputs of this run"
                    break
        if clash:
            raise _fail(
                f"--save-outputs {save_outputs}: {label}'s outputs go to {target}: {clash}; "
                "choose a folder outside the inputs",
                2,
            )


def _protocol_plan(name: str, images, limit: int | None, rank: int, world_size: int):
    """The protocol's plan; rank 0 draws missing masks first, the others wait for it."""
    from pconv_cli.evaluation.protocols import get_protocol, prepare_protocol

    protocol = get_protocol(name)
    if world_size > 1:
        import torch.distributed as dist

        if rank == 0:
            prepare_protocol(protocol, images, limit=limit)
        dist.barrier()
    plan, facts = prepare_protocol(protocol, images, limit=limit)
    facts["_protocol"] = protocol
    return plan, facts, len(plan)


def _build_sources(
    methods: list[str], checkpoints: list[str], folders: list[Path], device: str,
    labels: list[str], blend: str = "none",
) -> list[Source]:
    """Sources in column order: methods, then weights, then prediction folders."""
    from pconv_cli.devices import resolve_device
    from pconv_cli.evaluation.scoring import MethodSource, ModelSource, PredictionsSource

    labels = iter(labels)
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
