"""Mask generation speed: masks/s per kind, and the ``pconv gen-masks`` goal run.

    python bench/bench_masks.py [--size 512] [--per-kind 200] [--count 1000] [--workers 2]

1. In-process, one core: masks/s of ``generate_mask`` for each kind at its default
   hole ratio, and with ``hole_ratio`` set to each NVIDIA bucket (border/no-border
   halves alternating), plus ``save_mask`` (PNG) per mask.
2. The command as a user runs it, wall clock including interpreter start and worker
   spawn: ``pconv gen-masks TMP --count 1000 --size 512 --kind irregular --workers 2``,
   and the same with ``--nvidia-buckets``.

Goal (issue #3): 1000 irregular masks at 512 in <= 10 s with --workers 2.
Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pconv_cli.data.masks import (  # noqa: E402
    MASK_KINDS,
    NVIDIA_BUCKETS,
    generate_mask,
    save_mask,
)

GOAL_SECONDS = 10.0


def masks_per_second(kind: str, size: int, count: int, bucketed: bool) -> float:
    started = time.perf_counter()
    for index in range(count):
        options = {}
        if bucketed:
            options = {
                "hole_ratio": NVIDIA_BUCKETS[index % len(NVIDIA_BUCKETS)],
                "border": bool(index // len(NVIDIA_BUCKETS) % 2),
            }
        generate_mask(kind, np.random.default_rng([0, index]), size=(size, size), **options)
    return count / (time.perf_counter() - started)


def saves_per_second(size: int, count: int) -> float:
    holes = [
        generate_mask("irregular", np.random.default_rng([1, i]), size=(size, size))
        for i in range(count)
    ]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        for index, hole in enumerate(holes):
            save_mask(Path(folder) / f"{index:05d}.png", hole)
        return count / (time.perf_counter() - started)


def time_command(args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pconv_cli", "gen-masks", str(Path(folder) / "m"), *args]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--per-kind", type=int, default=200, help="masks per kind and mode")
    parser.add_argument("--count", type=int, default=1000, help="masks in the command run")
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    size = options.size

    print(f"generate_mask at {size}x{size}, one core, {options.per_kind} masks each (masks/s)")
    print(f"{'kind':<10} {'default ratio':>14} {'NVIDIA buckets':>15}")
    for kind in MASK_KINDS:
        natural = masks_per_second(kind, size, options.per_kind, bucketed=False)
        bucketed = masks_per_second(kind, size, options.per_kind, bucketed=True)
        print(f"{kind:<10} {natural:>14.0f} {bucketed:>15.0f}")
    print(f"save_mask (PNG) at {size}x{size}: {saves_per_second(size, options.per_kind):.0f}/s")

    common = ["--size", str(size), "--kind", "irregular", "--workers", str(options.workers)]
    seconds = time_command(["--count", str(options.count), *common])
    verdict = "meets" if seconds <= GOAL_SECONDS else "MISSES"
    print(
        f"pconv gen-masks --count {options.count} {' '.join(common)}: {seconds:.2f} s wall "
        f"({options.count / seconds:.0f} masks/s), {verdict} the {GOAL_SECONDS:.0f} s goal"
    )
    per_half = max(1, round(options.count / (len(NVIDIA_BUCKETS) * 2)))
    seconds = time_command(["--nvidia-buckets", "--count", str(per_half), *common])
    total = per_half * len(NVIDIA_BUCKETS) * 2
    print(
        f"pconv gen-masks --nvidia-buckets --count {per_half} {' '.join(common)}: "
        f"{seconds:.2f} s wall for {total} masks ({total / seconds:.0f} masks/s)"
    )


if __name__ == "__main__":
    main()
