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
    MaskError,
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


def _keep_other_files(old: Path, new: Path) -> None:
    """Hard-link into ``new`` every file of ``old`` it lacks (``--overwrite`` replaces files of
    the same names and keeps the rest): the very same files, never copies. A file that
    cannot be linked (another file system, a permission) stops the swap before ``old`` is
    touched. Folders are recreated with their mode, times (and owner, as root)."""
    import os
    import shutil

    folders: list[tuple[Path, Path]] = [(old, new)]
    try:
        for folder, dirs, files in os.walk(old):
            source_folder = Path(folder)
            target_folder = new / source_folder.relative_to(old)
            for name in dirs:
                source, target = source_folder / name, target_folder / name
                if source.is_symlink():
                    if not target.exists() and not target.is_symlink():
                        os.symlink(os.readlink(source), target)
                    continue
                target.mkdir(exist_ok=True)
                folders.append((source, target))
            for name in files:
                source, target = source_folder / name, target_folder / name
                if not target.exists() and not target.is_symlink():
                    os.link(source, target, follow_symlinks=False)
        for source, target in reversed(folders):  # deepest first: filling changes the times
            shutil.copystat(source, target, follow_symlinks=False)
            if os.geteuid() == 0:
                info = source.stat()
                os.chown(target, info.st_uid, info.st_gid)
    except OSError as error:
        where = error.filename or old
        raise MaskError(
            f"cannot keep {where} in the new set ({error.strerror or error}); nothing was "
            f"changed: move it out of {old} or write the set to an empty folder"
        ) from None


def _check_swappable(out_dir: Path) -> None:
    """An existing OUT_DIR is replaced by a new folder: it must not be a mount point, nor
    hold the current folder (the shell in it would be left in a deleted folder)."""
    import os

    from pconv_cli.files import is_inside

    if not out_dir.is_dir():
        return
    if os.path.ismount(out_dir):
        raise MaskError(f"OUT_DIR {out_dir} is a mount point; write the set to a folder inside it")
    if is_inside(Path.cwd(), out_dir):
        raise MaskError(
            f"OUT_DIR {out_dir} holds the current folder; run gen-masks from outside it"
        )


def _swap_in(new: Path, out_dir: Path) -> None:
    """Put the complete set ``new`` at ``out_dir`` (the old folder, if any, goes away)."""
    import os
    import secrets
    import shutil

    from pconv_cli.files import temporary_prefix

    if not out_dir.exists():
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(new, 0o777 & ~umask)  # mkdtemp made it 0700
        os.rename(new, out_dir)
        return
    _keep_other_files(out_dir, new)
    old = out_dir.parent / f"{temporary_prefix(out_dir)}{secrets.token_hex(4)}.old"
    os.rename(out_dir, old)  # from here to the next rename, a crash leaves both aside:
    os.rename(new, out_dir)  # the next run puts the old set back (recover_mask_set)
    shutil.rmtree(old, ignore_errors=True)


def recover_mask_set(out_dir: Path) -> None:
    """Clean up after a gen-masks run that was killed: its unfinished new set goes; a set
    moved aside by an interrupted swap is put back if ``out_dir`` is missing."""
    import re
    import shutil

    from pconv_cli.files import remove_stale_temporaries, temporary_prefix, writer_alive

    remove_stale_temporaries(out_dir.parent)  # unfinished .new sets of dead writers
    name = re.escape(temporary_prefix(out_dir).rsplit(".", 2)[0])
    mine = re.compile(name + r"\.(?P<pid>\d+)\.[a-z0-9_]{8}\.old")
    for old in sorted(out_dir.parent.glob(".*.old")):
        found = mine.fullmatch(old.name)
        if not found or not old.is_dir() or writer_alive(int(found["pid"])):
            continue
        if not out_dir.exists():
            old.rename(out_dir)
        else:
            shutil.rmtree(old, ignore_errors=True)


def write_mask_set(
    out_dir: Path,
    jobs: list[MaskJob],
    workers: int,
    on_done: Callable[[int], None] = lambda n: None,
) -> list[ManifestRow]:
    """Write every mask and the manifest into a new folder beside ``out_dir``, then swap
    it in: all or nothing, and an existing set stays untouched until the new one is complete.

    Files of an existing ``out_dir`` that the new set does not replace are kept. On
    any failure (a full disk, Ctrl-C) the new folder is removed, the error
    propagates and ``out_dir`` is as it was.
    """
    import shutil
    import tempfile

    from pconv_cli.files import temporary_prefix

    if out_dir.is_symlink():
        out_dir = out_dir.resolve()  # swap the folder it points to, keep the link
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_mask_set(out_dir)
    _check_swappable(out_dir)
    new = Path(tempfile.mkdtemp(prefix=temporary_prefix(out_dir), suffix=".new",
                                dir=out_dir.parent))  # fmt: skip
    try:
        rows = run_jobs(new, jobs, workers, on_done)
        write_manifest(new / MANIFEST_NAME, rows)
        _swap_in(new, out_dir)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return rows
