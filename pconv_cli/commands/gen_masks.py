"""``pconv gen-masks``: write a reproducible, optionally NVIDIA-bucketed set of mask PNGs.

Files are PNG mode L, white (255) = hole. Mask number ``k`` (its row in
``manifest.csv``, which lists masks in generation order) is drawn from
``numpy.random.default_rng([seed, k])``, so the same options give byte-identical
files whatever ``--workers``. Never imports torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer

from pconv_cli.core.masks import (
    MANIFEST_NAME,
    MASK_KINDS,
    NVIDIA_BUCKETS,
    ManifestRow,
    MaskError,
    bucket_label,
    check_mask_request,
    format_ratio_range,
    generate_mask,
    hole_ratio_of,
    parse_ratio_range,
    resolve_kind,
    save_mask,
    touches_border,
    write_manifest,
)

if TYPE_CHECKING:
    from rich.progress import Progress

HALVES: tuple[tuple[str, bool], ...] = (("border", True), ("no-border", False))
"""Sub-folders of each bucket with ``--nvidia-buckets`` (sorted = generation order)."""


@dataclass(frozen=True)
class MaskJob:
    """Everything needed to draw and write mask number ``index`` (picklable for workers)."""

    index: int
    file: str  # relative to OUT_DIR, '/'-separated
    kind: str
    height: int
    width: int
    hole_ratio: tuple[float, float] | None
    border: bool | None
    margin: int | None
    seed: int
    bucket: str | None  # the requested NVIDIA bucket, if any


def make_mask_file(out_dir: str, job: MaskJob) -> ManifestRow:
    """Draw ``job``'s mask, save it under ``out_dir`` and describe it for the manifest."""
    rng = np.random.default_rng([job.seed, job.index])
    kind = resolve_kind(job.kind, rng)
    hole = generate_mask(
        kind,
        rng,
        size=(job.height, job.width),
        hole_ratio=job.hole_ratio,
        border=job.border,
        margin=job.margin,
    )
    path = Path(out_dir, job.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_mask(path, hole)
    ratio = hole_ratio_of(hole)
    return ManifestRow(
        file=job.file,
        width=job.width,
        height=job.height,
        hole_ratio=ratio,
        bucket=job.bucket or bucket_label(ratio) or "",
        touches_border=touches_border(hole),
        kind=kind,
        seed=job.seed,
    )


def make_mask_files(out_dir: str, jobs: list[MaskJob]) -> list[ManifestRow]:
    """Worker entry point: one chunk of jobs, in order."""
    return [make_mask_file(out_dir, job) for job in jobs]


def plan_jobs(
    *,
    count: int,
    size: tuple[int, int],
    kind: str,
    hole_ratio: tuple[float, float] | None,
    border: bool | None,
    margin: int | None,
    seed: int,
    nvidia_buckets: bool,
) -> list[MaskJob]:
    """All masks to write, in generation order (file names sort the same way)."""
    height, width = size
    template = MaskJob(0, "", kind, height, width, hole_ratio, border, margin, seed, None)
    digits = max(5, len(str(count - 1)))
    if not nvidia_buckets:
        return [replace(template, index=i, file=f"{i:0{digits}d}.png") for i in range(count)]
    jobs: list[MaskJob] = []
    for lo, hi in NVIDIA_BUCKETS:
        label = format_ratio_range(lo, hi)
        for half, half_border in HALVES:
            for i in range(count):
                file = f"{label}/{half}/{i:0{digits}d}.png"
                job = replace(template, index=len(jobs), file=file, hole_ratio=(lo, hi))
                jobs.append(replace(job, border=half_border, bucket=label))
    return jobs


def _chunks(jobs: list[MaskJob], size: int) -> Iterator[list[MaskJob]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def run_jobs(
    out_dir: Path,
    jobs: list[MaskJob],
    workers: int,
    on_done: Callable[[int], None],
) -> list[ManifestRow]:
    """Write every job's file (in ``workers`` processes) and return rows in job order."""
    if workers <= 1 or len(jobs) <= 1:
        rows = []
        for job in jobs:
            rows.append(make_mask_file(str(out_dir), job))
            on_done(1)
        return rows
    import multiprocessing

    chunk = max(1, min(64, math.ceil(len(jobs) / (workers * 8))))
    results: dict[int, list[ManifestRow]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future[list[ManifestRow]], int] = {
            pool.submit(make_mask_files, str(out_dir), part): part[0].index
            for part in _chunks(jobs, chunk)
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    first = pending.pop(future)
                    results[first] = future.result()
                    on_done(len(results[first]))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return [row for first in sorted(results) for row in results[first]]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def _resolve_size(size: int, height: int | None, width: int | None) -> tuple[int, int]:
    return (size if height is None else height, size if width is None else width)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise _fail(f"OUT_DIR {out_dir} exists and is not a folder", 2)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise _fail(f"OUT_DIR {out_dir} is not empty; pass --overwrite to write into it", 2)


def _remove_outputs(out_dir: Path, jobs: list[MaskJob], created_out_dir: bool) -> None:
    """After a failure: delete the mask files this run planned and the empty folders left."""
    folders = set()
    for job in jobs:
        path = out_dir / job.file
        path.unlink(missing_ok=True)
        folders.update(p for p in path.parents if out_dir in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if created_out_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def _progress() -> Progress:
    """A transient progress bar on stderr (hidden when stderr is not a terminal)."""
    from pconv_cli.commands._progress import progress_bar

    return progress_bar("gen-masks")


def gen_masks(
    out_dir: Path = typer.Argument(..., help="Folder for the PNG masks and manifest.csv."),
    count: int = typer.Option(
        100, "--count", "-n", help="Masks to write (per bucket half with --nvidia-buckets)."
    ),
    size: int = typer.Option(512, "--size", help="Square mask side in pixels."),
    height: int | None = typer.Option(None, "--height", help="Mask height (overrides --size)."),
    width: int | None = typer.Option(None, "--width", help="Mask width (overrides --size)."),
    kind: str = typer.Option(
        "irregular",
        "--kind",
        metavar="[" + "|".join(MASK_KINDS) + "]",
        help="irregular = MMagic (training default), brush = DeepFillv2, box = rectangles, "
        "thin/medium/thick = LaMa-like presets, mixed = a weighted mix.",
    ),
    hole_ratio: str | None = typer.Option(
        None,
        "--hole-ratio",
        metavar="LO-HI",
        help="Keep hole ratios in LO <= r < HI, e.g. 0.1-0.2 (default: the kind's own range).",
    ),
    border: bool | None = typer.Option(
        None,
        "--border/--no-border",
        help="Require a hole touching the edge / keep holes --margin px away from it "
        "(default: either).",
    ),
    margin: int | None = typer.Option(
        None, "--margin", help="Hole-free band for --no-border (default: 50 px at 512, scaled)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed; mask k is drawn from numpy default_rng of (seed, k)."
    ),
    workers: int = typer.Option(1, "--workers", "-j", help="Processes (output is identical)."),
    nvidia_buckets: bool = typer.Option(
        False,
        "--nvidia-buckets",
        help="NVIDIA test-set layout: buckets 0.01-0.1 ... 0.5-0.6, each with border/ and "
        "no-border/ halves of --count masks.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Write into a non-empty OUT_DIR, replacing files of the same names.",
    ),
) -> None:
    """Generate seeded inpainting masks (PNG, white = hole) and their manifest.csv."""
    mask_size = _resolve_size(size, height, width)
    ratio_range = _validated_ratio_range(
        count, workers, seed, kind, mask_size, hole_ratio, border, margin, nvidia_buckets
    )
    _check_out_dir(out_dir, overwrite)
    jobs = plan_jobs(
        count=count,
        size=mask_size,
        kind=kind,
        hole_ratio=ratio_range,
        border=border,
        margin=margin,
        seed=seed,
        nvidia_buckets=nvidia_buckets,
    )
    started = time.perf_counter()
    rows = _write_mask_set(out_dir, jobs, workers)
    elapsed = time.perf_counter() - started
    typer.echo(
        f"Wrote {len(rows)} {kind} masks ({mask_size[1]}x{mask_size[0]}, seed {seed}) to "
        f"{out_dir} in {elapsed:.1f} s ({len(rows) / max(elapsed, 1e-9):.0f} masks/s); "
        f"manifest: {out_dir / MANIFEST_NAME}"
    )


def _validated_ratio_range(
    count: int,
    workers: int,
    seed: int,
    kind: str,
    size: tuple[int, int],
    hole_ratio: str | None,
    border: bool | None,
    margin: int | None,
    nvidia_buckets: bool,
) -> tuple[float, float] | None:
    """Check every option before anything is written; return the parsed --hole-ratio."""
    for name, value, minimum in (
        ("--count", count, 1),
        ("--workers", workers, 1),
        ("--seed", seed, 0),
    ):
        if value < minimum:
            raise _fail(f"{name} must be >= {minimum}, got {value}", 2)
    if nvidia_buckets and (hole_ratio is not None or border is not None):
        raise _fail(
            "--nvidia-buckets sets the hole ratios and border halves itself; "
            "drop --hole-ratio/--border/--no-border",
            2,
        )
    try:
        ratio_range = None if hole_ratio is None else parse_ratio_range(hole_ratio)
    except MaskError as error:
        raise _fail(f"--hole-ratio: {error}", 2) from None
    try:
        if nvidia_buckets:
            requests = [
                (bucket, half_border) for bucket in NVIDIA_BUCKETS for _, half_border in HALVES
            ]
        else:
            requests = [(ratio_range, border)]
        for request_ratio, request_border in requests:
            check_mask_request(kind, size, request_ratio, request_border, margin)
    except MaskError as error:
        raise _fail(str(error), 2) from None
    return ratio_range


def _write_mask_set(out_dir: Path, jobs: list[MaskJob], workers: int) -> list[ManifestRow]:
    """Write all masks with a progress bar, then the manifest; on failure remove them all."""
    created_out_dir = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # present = complete set
        with _progress() as progress:
            task = progress.add_task("masks", total=len(jobs))
            rows = run_jobs(out_dir, jobs, workers, lambda n: progress.advance(task, n))
        write_manifest(out_dir / MANIFEST_NAME, rows)
    except BaseException as error:
        _remove_outputs(out_dir, jobs, created_out_dir)
        if isinstance(error, MaskError):
            raise _fail(str(error)) from None
        if isinstance(error, OSError):
            raise _fail(f"cannot write masks to {out_dir}: {error.strerror or error}") from None
        raise
    return rows
