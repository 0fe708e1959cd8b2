"""Writing a mask set: numbered (or NVIDIA-bucketed) PNG masks plus ``manifest.csv``.

Mask number ``k`` (its row in the manifest, which lists masks in generation order)
is drawn from ``numpy.random.default_rng([seed, k])``, so the same options give
byte-identical files whatever the number of worker processes. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pconv_cli.data.masks import (
    MANIFEST_NAME,
    NVIDIA_BUCKETS,
    ManifestRow,
    bucket_label,
    format_ratio_range,
    generate_mask,
    hole_ratio_of,
    resolve_kind,
    save_mask,
    touches_border,
    write_manifest,
)

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


def remove_outputs(out_dir: Path, jobs: list[MaskJob], created_out_dir: bool) -> None:
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


def write_mask_set(
    out_dir: Path,
    jobs: list[MaskJob],
    workers: int,
    on_done: Callable[[int], None] = lambda n: None,
) -> list[ManifestRow]:
    """Write every mask, then the manifest (present = complete set); all or nothing.

    On any failure the files this call planned are removed again and the error
    propagates.
    """
    created_out_dir = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
        rows = run_jobs(out_dir, jobs, workers, on_done)
        write_manifest(out_dir / MANIFEST_NAME, rows)
    except BaseException:
        remove_outputs(out_dir, jobs, created_out_dir)
        raise
    return rows
