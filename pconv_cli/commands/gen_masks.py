"""``pconv gen-masks``: write a reproducible, optionally NVIDIA-bucketed set of mask PNGs.

Files are PNG mode L, white (255) = hole; see ``pconv_cli.data.mask_sets`` for the
seeding that makes them byte-identical whatever ``--workers``. This module imports
only typer at load time (``pconv --help`` stays fast); numpy and the mask library
are imported when the command runs. Never imports torch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pconv_cli.commands._options import FLAG
from pconv_cli.data.mask_kinds import MASK_KINDS

MAX_MASKS = 1_000_000
"""Most masks one ``gen-masks`` run writes (its plan alone would fill the memory beyond)."""

if TYPE_CHECKING:
    from rich.progress import Progress

    from pconv_cli.data.mask_sets import MaskJob
    from pconv_cli.data.masks import ManifestRow


def _fail(message: str, code: int = 1) -> Exception:
    """The error to raise: a usage error (exit code 2) or a failed job (1)."""
    from pconv_cli.errors import PconvError, UsageError

    return UsageError(message) if code == 2 else PconvError(message)


def _resolve_size(size: int, height: int | None, width: int | None) -> tuple[int, int]:
    return (size if height is None else height, size if width is None else width)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise _fail(f"OUT_DIR {out_dir} exists and is not a folder", 2)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise _fail(f"OUT_DIR {out_dir} is not empty; pass --overwrite to write into it", 2)
    from pconv_cli.files import writable_problem

    problem = writable_problem(out_dir, folder=True) or (
        writable_problem(out_dir.resolve().parent, folder=True) if out_dir.exists() else None
    )  # the new set is written beside OUT_DIR, then swapped in
    if problem:
        raise _fail(f"OUT_DIR {out_dir}: {problem}", 2)


def _cpus() -> int:
    """CPUs this process may use (1000 --workers on 8 CPUs would only cost memory)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
    height: int | None = typer.Option(
        None, "--height", help="Mask height (overrides --size). [default: --size]"
    ),
    width: int | None = typer.Option(
        None, "--width", help="Mask width (overrides --size). [default: --size]"
    ),
    kind: str = typer.Option(
        "irregular",
        "--kind",
        metavar="[" + "|".join(MASK_KINDS) + "]",
        help="irregular = MMagic (training default), brush = DeepFillv2, box = rectangles, "
        "thin/medium/thick = LaMa-like presets, occlusion = NVIDIA-like test masks (thin "
        "curvy bands, blobs), mixed = a weighted mix; A+B (e.g. mixed+occlusion) picks one "
        "of them per mask.",
    ),
    hole_ratio: str | None = typer.Option(
        None,
        "--hole-ratio",
        metavar="LO-HI",
        help="Keep hole ratios in LO <= r < HI, e.g. 0.1-0.2 [default: the kind's own range]",
    ),
    border: bool | None = typer.Option(
        None,
        "--border/--no-border",
        help="Require a hole touching the edge / keep holes --margin px away from it "
        "[default: either]",
        **FLAG,
    ),
    margin: int | None = typer.Option(
        None, "--margin", help="Hole-free band for --no-border. [default: 50 px at 512, scaled]"
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed; mask k is drawn from numpy default_rng of (seed, k)."
    ),
    workers: int = typer.Option(
        1, "--workers", "-j", help="Processes, at most the CPUs (output is identical)."
    ),
    nvidia_buckets: bool = typer.Option(
        False,
        "--nvidia-buckets",
        help="NVIDIA test-set layout: buckets 0.01-0.1 ... 0.5-0.6, each with border/ and "
        "no-border/ halves of --count masks.",
        **FLAG,
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Write into a non-empty OUT_DIR, replacing files of the same names (the new set "
        "is written beside it and swapped in when complete).",
        **FLAG,
    ),
) -> None:
    """Generate seeded inpainting masks (PNG, white = hole) and their manifest.csv."""
    from pconv_cli.data.mask_sets import plan_jobs
    from pconv_cli.data.masks import MANIFEST_NAME

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
    rows = _write_mask_set(out_dir, jobs, min(workers, _cpus()))  # the same files either way
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
    from pconv_cli.data.mask_sets import HALVES
    from pconv_cli.data.masks import (
        NVIDIA_BUCKETS,
        MaskError,
        check_mask_request,
        parse_ratio_range,
    )

    for name, value, minimum in (
        ("--count", count, 1),
        ("--workers", workers, 1),
        ("--seed", seed, 0),
    ):
        if value < minimum:
            raise _fail(f"{name} must be >= {minimum}, got {value}", 2)
    total = count * (len(NVIDIA_BUCKETS) * len(HALVES) if nvidia_buckets else 1)
    if total > MAX_MASKS:
        raise _fail(
            f"--count {count} asks for {total:,} masks; a set holds at most {MAX_MASKS:,} "
            "(write several sets with different --seed)",
            2,
        )
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
    """Write all masks with a progress bar, then the manifest; on failure none stay."""
    from pconv_cli.data.mask_sets import write_mask_set
    from pconv_cli.data.masks import MaskError

    try:
        with _progress() as progress:
            task = progress.add_task("masks", total=len(jobs))
            return write_mask_set(out_dir, jobs, workers, lambda n: progress.advance(task, n))
    except MaskError as error:
        raise _fail(str(error)) from None
    except OSError as error:
        raise _fail(f"cannot write masks to {out_dir}: {error.strerror or error}") from None
