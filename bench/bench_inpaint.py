"""``pconv inpaint`` end to end vs a bare torch baseline, and the crop strategy on a 12 MP photo.

    python bench/bench_inpaint.py [--repeats 5] [--threads N] [--skip-large]

1. Cold start, 512x512 photo: ``pconv inpaint`` as a fresh process (import, load a
   pconv checkpoint of the full 7-level net, read image and mask, inpaint, write
   the JPEG) against a fresh process that imports torch + torchvision and runs one
   plain-conv ``UNet`` forward at 512x512 (and, stricter, the same without
   torchvision). Runs alternate so drift hits all; medians and ratios are
   printed. Goal (issue #7): <= 1.25x the torch + torchvision baseline.
2. ``--strategy crop`` on a 4000x3000 photo with a few small holes: wall time and
   peak RSS of the process (``os.wait4``), next to ``--strategy resize``.

The checkpoint has random weights (timing only). Everything lives in a temp dir.
Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHOTO = ROOT / "examples" / "images" / "astronaut.jpg"

BASELINE = """
import sys, torch{extra}
from pconv_cli.models.pconv.unet import UNet
torch.set_num_threads({threads})
net = UNet(layers=7).eval()
x = torch.rand(1, 3, 512, 512)
m = (torch.rand(1, 1, 512, 512) > 0.3).float()
with torch.inference_mode():
    net(x, m)
"""


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    env.setdefault("COLUMNS", "100")
    return env


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one subprocess, reaped with ``os.wait4``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Read stderr in full before waiting so a chatty child cannot block on the pipe.
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))}... failed:\n{err.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def make_inputs(folder: Path) -> dict[str, Path]:
    """512 px photo + irregular mask, 4000x3000 photo + small holes, a 7-level checkpoint."""
    from pconv_cli.data.masks import generate_mask, save_mask
    from pconv_cli.models import build_model
    from pconv_cli.weights.checkpoint import save_checkpoint

    photo = Image.open(PHOTO).convert("RGB")
    photo.resize((512, 512), Image.Resampling.BICUBIC).save(folder / "photo512.jpg", quality=95)
    hole = generate_mask("irregular", np.random.default_rng(0), size=(512, 512))
    save_mask(folder / "mask512.png", hole)

    photo.resize((4000, 3000), Image.Resampling.BICUBIC).save(folder / "photo12mp.jpg", quality=92)
    big = np.zeros((3000, 4000), dtype=bool)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:3000, :4000]
    for _ in range(4):  # four blobs of ~40-80 px radius
        cy, cx, r = rng.integers(200, 2800), rng.integers(200, 3800), rng.integers(40, 80)
        big |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    save_mask(folder / "mask12mp.png", big)

    save_checkpoint(folder / "pconv7.safetensors", build_model("pconv", layers=7))
    return {
        "photo512": folder / "photo512.jpg",
        "mask512": folder / "mask512.png",
        "photo12mp": folder / "photo12mp.jpg",
        "mask12mp": folder / "mask12mp.png",
        "weights": folder / "pconv7.safetensors",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-large", action="store_true", help="Only the 512x512 comparison.")
    args = parser.parse_args()
    env = _env(args.threads)
    py = sys.executable

    with tempfile.TemporaryDirectory(prefix="bench_inpaint_") as tmp:
        folder = Path(tmp)
        files = make_inputs(folder)
        pconv = [py, "-m", "pconv_cli", "inpaint", str(files["photo512"])]
        pconv += ["--mask", str(files["mask512"]), "--weights", str(files["weights"])]
        pconv += ["-o", str(folder / "out512.jpg"), "--device", "cpu"]
        baseline = [py, "-c", BASELINE.format(threads=args.threads, extra=", torchvision")]
        # Stricter, for information: the same without torchvision's import (pconv
        # inpaint never imports torchvision).
        bare = [py, "-c", BASELINE.format(threads=args.threads, extra="")]
        commands = {"torch+torchvision+UNet": baseline, "torch+UNet": bare, "pconv inpaint": pconv}

        for cmd in commands.values():  # warm the page cache for all
            run_measured(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(run_measured(cmd, env)[0])
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"cold start, 512x512, {args.threads} threads, median of {args.repeats}:")
        for name, values in times.items():
            spread = ", ".join(f"{t:.2f}" for t in values)
            print(f"  {name:<24} {med[name]:6.2f} s   ({spread})")
        ratio = med["pconv inpaint"] / med["torch+torchvision+UNet"]
        verdict = "meets" if ratio <= 1.25 else "misses"
        print(f"  ratio vs torch+torchvision+UNet {ratio:.2f}x ({verdict} the <= 1.25x goal)")
        strict = med["pconv inpaint"] / med["torch+UNet"]
        print(f"  ratio vs torch+UNet (no torchvision) {strict:.2f}x")

        if args.skip_large:
            return
        print("\n4000x3000 photo, 4 small holes (1 run each):")
        for strategy in ("crop", "resize"):
            cmd = [py, "-m", "pconv_cli", "inpaint", str(files["photo12mp"])]
            cmd += ["--mask", str(files["mask12mp"]), "--weights", str(files["weights"])]
            cmd += ["-o", str(folder / f"out12mp_{strategy}.jpg"), "--device", "cpu"]
            cmd += ["--strategy", strategy]
            elapsed, rss = run_measured(cmd, env)
            print(f"  --strategy {strategy:<7} {elapsed:6.2f} s   peak RSS {rss:7.0f} MiB")
        elapsed, rss = run_measured(baseline, env)
        print(f"  (baseline process: peak RSS {rss:.0f} MiB)")


if __name__ == "__main__":
    main()
