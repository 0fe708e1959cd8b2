"""pconv's PatchMatch against OpenCV Telea and scikit-image biharmonic: time, memory, hole PSNR.

    python bench/bench_patchmatch.py [--sizes 512 2000] [--threads N] [--limit 120]

For each size S: scikit-image's ``astronaut.png`` (512x512; resized bicubic to S x S
when S differs) and one filled ellipse (1.4:1) of 6 % of the pixels over the
astronaut's right shoulder (orange suit, the edge of the harness strap; the same
relative place at every size). Each method fills it through the classic registry
(:func:`pconv_cli.inpainting.classic.inpaint_classic`, the raw fill, no Poisson
blend), in a child process of its own:

- seconds of the call alone (imports and I/O excluded), median of ``--repeats``;
- peak RSS of the child (``ru_maxrss`` from ``os.wait4``: Python, numpy and the
  method's library included; torch for PatchMatch, OpenCV for Telea) and the memory
  the call adds (the kernel's peak-RSS mark reset just before the first call, minus
  the RSS before it);
- hole PSNR: the fill rounded to uint8 against the photo, over the hole's pixels only.

Ratios are against Telea at the same size. Biharmonic's time grows faster than
the hole: at sizes above 512 its time is first estimated from its run at the
smallest size (time x (hole pixels ratio) ** 1.5, sparse direct solves on a 2-D
grid) and it is skipped with a note when the estimate exceeds ``--limit`` seconds;
otherwise it runs, stopped at ``--limit``. Run by hand; nothing here is a test.

Measured on 2 CPU cores shared with a training run and two other jobs (load average
~4-5), 2026-12-03 07:03 UTC, ``OMP_NUM_THREADS=1 python bench/bench_patchmatch.py
--threads 1`` (1.7 minutes)::

    1 thread(s), 2 CPUs, load average 4.8 at the start; raw fills (no blend)

    512x512, hole 15734 px (6.0 %):
      method       seconds  vs Telea  peak RSS MiB  call adds MiB  hole PSNR dB
      telea           0.02      1.0x            61             12         14.25
      patchmatch      4.34    203.4x           726            150         14.98
      biharmonic      0.65     30.2x           143            110          9.52

    2000x2000, hole 239997 px (6.0 %):
      method       seconds  vs Telea  peak RSS MiB  call adds MiB  hole PSNR dB
      telea           0.62      1.0x           200            129         13.63
      patchmatch     61.19     98.0x          1433            897         14.92
      biharmonic     19.54     31.3x          1704           1650         12.08

Reading: Telea is 100-200x faster than PatchMatch with 7-12x less peak memory;
PatchMatch's fill scores the best hole PSNR at both sizes (+0.7 dB over Telea at 512,
+1.3 dB at 2000) and is the only one of the three with texture. Biharmonic (its
estimate, 0.65 s x 15.3 ** 1.5 = 39 s, was under the limit, so it ran) is 3-7x
faster than PatchMatch but overshoots on this hole: a bright, nearly white blob over the
orange suit at 512 px (9.5 dB), less at 2000 px where the upscaled photo is smoother
(12.1 dB); its sparse solve takes the most memory (1.65 GB at 2000 px).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("telea", "patchmatch", "biharmonic")
HOLE_FRACTION = 0.06

WORKER = """
import json, statistics, sys, time
from pathlib import Path
import numpy as np
from PIL import Image
from pconv_cli.inpainting.classic import check_method, inpaint_classic

def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

method, photo, mask, out, repeats, threads = sys.argv[1:7]
check_method(method)
if method == "patchmatch":
    import torch
    torch.set_num_threads(int(threads))
    from pconv_cli.inpainting import patchmatch  # noqa: F401  (import outside the timing)
elif method == "biharmonic":
    import skimage.restoration  # noqa: F401
else:
    import cv2
    cv2.setNumThreads(int(threads))
image = np.asarray(Image.open(photo).convert("RGB"))
hole = np.asarray(Image.open(mask)) > 127
base = kib("VmRSS")
try:
    Path("/proc/self/clear_refs").write_text("5")
    exact = True
except OSError:
    exact = False
times = []
for _ in range(int(repeats)):
    start = time.perf_counter()
    fill = inpaint_classic(method, image, hole, seed=0)
    times.append(time.perf_counter() - start)
    if len(times) == 1:
        added = (kib("VmHWM") - base) / 1024 if exact else None
result = image.copy()
result[hole] = np.clip(np.rint(fill[hole] * 255), 0, 255).astype(np.uint8)
Image.fromarray(result).save(out)
print(json.dumps({"seconds": statistics.median(times), "added_mib": added, "runs": times}))
"""


def _env(threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))


def run_measured(cmd: list[str], env: dict[str, str], limit: float | None) -> dict | None:
    """Run the worker; its JSON plus ``peak_mib`` (``ru_maxrss`` via ``os.wait4``).

    With a ``limit`` a watchdog thread kills the child when it runs longer (None back).
    """
    import threading

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stopped = threading.Event()

    def watchdog() -> None:
        if not stopped.wait(limit):
            proc.kill()

    if limit is not None:
        threading.Thread(target=watchdog, daemon=True).start()
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    stopped.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if limit is not None and proc.returncode < 0 and time.perf_counter() - start >= limit:
        return None
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{out[-2000:]}")
    found = json.loads(out.strip().splitlines()[-1])
    found["wall"] = time.perf_counter() - start
    found["peak_mib"] = usage.ru_maxrss / 1024
    return found


def make_inputs(folder: Path, size: int) -> tuple[Path, Path]:
    import skimage

    photo = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB")
    if photo.size != (size, size):
        photo = photo.resize((size, size), Image.Resampling.BICUBIC)
    photo_path = folder / f"photo{size}.png"
    photo.save(photo_path)
    yy, xx = np.ogrid[:size, :size]
    semi_x = np.sqrt(HOLE_FRACTION * size * size * 1.4 / np.pi)
    semi_y = semi_x / 1.4
    cy, cx = 0.62 * size, 0.30 * size
    hole = ((yy - cy) / semi_y) ** 2 + ((xx - cx) / semi_x) ** 2 <= 1.0
    mask_path = folder / f"mask{size}.png"
    Image.fromarray(hole.astype(np.uint8) * 255).save(mask_path)
    return photo_path, mask_path


def hole_psnr(result: Path, truth: Path, mask: Path) -> float:
    hole = np.asarray(Image.open(mask)) > 127
    a = np.asarray(Image.open(result).convert("RGB"), dtype=np.float64)[hole]
    b = np.asarray(Image.open(truth).convert("RGB"), dtype=np.float64)[hole]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2000])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=1, help="Calls per child (median).")
    parser.add_argument("--limit", type=float, default=120.0,
                        help="Seconds biharmonic may take above the smallest size.")  # fmt: skip
    args = parser.parse_args()
    env = _env(args.threads)
    sizes = sorted(args.sizes)
    print(f"{args.threads} thread(s), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start; raw fills (no blend)")  # fmt: skip
    biharmonic_first: tuple[int, float] | None = None  # (hole pixels, seconds)
    with tempfile.TemporaryDirectory(prefix="bench_patchmatch_") as tmp:
        folder = Path(tmp)
        for size in sizes:
            photo, mask = make_inputs(folder, size)
            pixels = int((np.asarray(Image.open(mask)) > 127).sum())
            print(f"\n{size}x{size}, hole {pixels} px ({pixels / size**2 * 100:.1f} %):")
            rows = {}
            for method in METHODS:
                limit = None
                if method == "biharmonic" and biharmonic_first is not None:
                    first_pixels, first_seconds = biharmonic_first
                    estimate = first_seconds * (pixels / first_pixels) ** 1.5
                    if estimate > args.limit:
                        print(f"  {method} skipped: estimated {estimate:.0f} s > --limit "
                              f"{args.limit:.0f} s")  # fmt: skip
                        print(f"    (from {first_seconds:.2f} s at {first_pixels} hole px)")
                        continue
                    limit = args.limit
                out = folder / f"{method}{size}.png"
                cmd = [sys.executable, "-c", WORKER, method, str(photo), str(mask), str(out)]
                cmd += [str(args.repeats), str(args.threads)]
                found = run_measured(cmd, env, limit)
                if found is None:
                    print(f"  {method:<11} stopped after {args.limit:.0f} s (--limit)")
                    continue
                if method == "biharmonic" and biharmonic_first is None:
                    biharmonic_first = (pixels, found["seconds"])
                found["psnr"] = hole_psnr(out, photo, mask)
                rows[method] = found
            telea = rows.get("telea")
            print("  method       seconds  vs Telea  peak RSS MiB  call adds MiB  hole PSNR dB")
            for method, found in rows.items():
                added = found["added_mib"]
                added_text = f"{added:13.0f}" if added is not None else f"{'?':>13}"
                ratio = f"{found['seconds'] / telea['seconds']:7.1f}x" if telea else f"{'':8}"
                seconds, peak, psnr = found["seconds"], found["peak_mib"], found["psnr"]
                print(f"  {method:<11} {seconds:8.2f}  {ratio}  {peak:12.0f}  {added_text}  "
                      f"{psnr:12.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
