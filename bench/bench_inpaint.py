"""``pconv inpaint`` as users run it: a 12 MP photo with a spoon hole and an object hole,
the Poisson blend alone, and the 512 px cold start against a bare torch baseline.

    python bench/bench_inpaint.py [--cases spoon object poisson cold] [--size 4000x3000]
                                  [--threads N] [--repeats 5]

Cases (``--cases``, all by default):

- ``spoon``: ``pconv inpaint photo.jpg --mask spoon.png -o out.jpg`` (the bundled
  default model, ``--strategy auto``, ``--blend auto`` = Poisson) on a photo-like
  ``--size`` picture: scikit-image's ``coffee.png`` (600x400) upscaled bicubic, with
  a light fixed-seed grain (sigma 2/255) so it is not unnaturally smooth, saved as
  JPEG q92; the hole is ``examples/masks/coffee.png`` (the spoon, 5.1 % of the
  pixels) scaled to the same size. The same command with ``--blend none`` runs
  right after it; the ratio auto / none is printed (what the Poisson blend costs
  inside the command).
- ``object``: the same two commands with one filled ellipse of 12 % of the pixels
  over the cup (an object removal).
- ``poisson``: :func:`~pconv_cli.inpainting.blending.poisson_blend` called directly
  on the ``object`` case, in a fresh process per fill: on the default model's own
  fill (``inpaint(..., blend="none")``, made in another child and saved as PNG) and
  on a fill that is the photo shrunk 64x and scaled back up, plus 0.05 (smooth, with
  a colour offset to blend away); its own seconds (no import, no I/O) and the
  memory it adds (the kernel's peak-RSS mark reset just before the call, minus the
  RSS before it).
- ``cold``: issue #7's cold start at 512x512: ``pconv inpaint`` as a fresh process
  (a 7-level pconv checkpoint of random weights) against a fresh process that
  imports torch + torchvision and runs one plain-conv ``UNet`` forward; runs
  alternate; medians of ``--repeats``; goal <= 1.25x.

Each command runs in a child process; wall time is measured around it and peak
memory is the child's peak resident set size (the whole process, Python and torch
included). The ``spoon``/``object`` commands run ``pconv_cli.cli.main`` with the same
arguments through a small ``python -c`` wrapper that first runs the 7-level net's
fill-radius probe (``pconv_unet._reach(7)``, which every run of the default model
does once, lru_cached), reads its peak, resets the kernel's peak mark
(``/proc/self/clear_refs``) and reports the rest of the run's peak at exit: the peak
printed is the larger of the two (``ru_maxrss`` from ``os.wait4`` only sees the part
after the reset), and the split is printed under it. The ``cold`` and ``poisson``
children report ``ru_maxrss`` as is. "scales" are the working scales the command
reports. The ratios against issue #19's old figures (19.5 s / 2.4 GB for
the spoon hole with the 0.x crop path, measured on another day and load) are text
for orientation only; the auto / none ratios are measured in the same run.
Everything lives in a temp dir. Run by hand; nothing here is a test.

Measured on the 2-core development machine with one other job running, 2026-12-03
07:45 UTC, after the reach probe was made to measure 8 alignments at a time (it
peaked at ~2 GB before, whatever the photo), ``OMP_NUM_THREADS=1 python
bench/bench_inpaint.py --threads 1``::

    1 thread(s), 2 CPUs, load average 1.5 at the start
    photo 4000x3000 (scikit-image coffee, upscaled, grain),
    bundled default model, --strategy auto

    spoon: 5.1 % of the pixels are hole
      pconv inpaint               11.42 s   peak RSS   1422 MiB
        scales 1/16, 1/8, 1/4, 1/2, 1; crop, 26 passes, blend poisson
        one-time fill-radius probe peak 631 MiB, rest of the run 1422 MiB
      pconv inpaint --blend none   8.98 s   peak RSS   1402 MiB
        scales 1/16, 1/8, 1/4, 1/2, 1; crop, 26 passes, blend none
        one-time fill-radius probe peak 629 MiB, rest of the run 1402 MiB
      auto / none (what Poisson costs inside the command): time 1.27x,
        peak RSS 1.01x, rest of the run 1.01x
      vs issue #19's old figures for this hole (0.x crop path, 19.5 s / 2.4 GB,
        another run; text only): time 0.59x, peak RSS 0.58x

    object: 12.0 % of the pixels are hole
      pconv inpaint               11.61 s   peak RSS   1501 MiB
        scales 1/32, 1/16, 1/8, 1/4, 1/2, 1; crop, 31 passes, blend poisson
        one-time fill-radius probe peak 622 MiB, rest of the run 1501 MiB
      pconv inpaint --blend none   9.48 s   peak RSS   1443 MiB
        scales 1/32, 1/16, 1/8, 1/4, 1/2, 1; crop, 31 passes, blend none
        one-time fill-radius probe peak 623 MiB, rest of the run 1443 MiB
      auto / none (what Poisson costs inside the command): time 1.22x,
        peak RSS 1.04x, rest of the run 1.04x

    poisson_blend alone, object case (12.0 % hole;
      the call only, in a fresh process, no import or I/O):
      on the default model's fill           2.92 s, adds 581 MiB
      on a smooth fill, 0.05 too bright     2.83 s, adds 610 MiB

    cold start, 512x512, median of 5:
      torch+torchvision+UNet     3.81 s   peak RSS  1090 MiB   (3.81, 3.99, 3.79, 3.84, 3.60)
      torch+UNet                 2.50 s   peak RSS   942 MiB   (2.51, 2.50, 2.43, 2.55, 2.37)
      pconv inpaint              5.07 s   peak RSS  1032 MiB   (5.15, 5.16, 5.01, 5.07, 4.99)
      ratio vs torch+torchvision+UNet 1.33x (misses the <= 1.25x goal)
      ratio vs torch+UNet (no torchvision) 2.03x
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
SPOON = ROOT / "examples" / "masks" / "coffee.png"
CASES = ("spoon", "object", "poisson", "cold")
OLD_SPOON = (19.5, 2.4 * 1024)
"""Issue #19's figures for the spoon hole with the 0.x crop path: seconds, MiB."""

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

POISSON = """
import json, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from pconv_cli.inpainting.blending import poisson_blend
torch.set_num_threads({threads})

def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

def chw(array):
    return torch.from_numpy(np.asarray(array, dtype=np.float32) / 255).permute(2, 0, 1)

photo = Image.open(sys.argv[1]).convert("RGB")
pixels = np.asarray(photo)
hole = np.asarray(Image.open(sys.argv[2])) > 127
if sys.argv[3] != "smooth":  # a fill saved by FILL
    fill = np.asarray(Image.open(sys.argv[3]).convert("RGB"))
else:  # the photo shrunk 64x and scaled back up, 0.05 too bright
    w, h = photo.size
    coarse = photo.resize((w // 64, h // 64), Image.Resampling.BOX).resize((w, h))
    fill = np.clip(np.asarray(coarse, np.float32) + 12.75, 0, 255)
image, fill, mask = chw(pixels), chw(fill), torch.from_numpy(hole)
base = kib("VmRSS")
try:
    Path("/proc/self/clear_refs").write_text("5")
    exact = True
except OSError:
    exact = False
start = time.perf_counter()
poisson_blend(image, fill, mask)
seconds = time.perf_counter() - start
added = (kib("VmHWM") - base) / 1024 if exact else None
print(json.dumps({{"seconds": seconds, "added_mib": added, "hole": float(hole.mean())}}))
"""


FILL = """
import sys
import numpy as np, torch
from PIL import Image
from pconv_cli.inpainting import inpaint
from pconv_cli.weights.loading import load_model
torch.set_num_threads({threads})
pixels = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
hole = np.asarray(Image.open(sys.argv[2])) > 127
fill = inpaint(pixels, hole, load_model("pconv-bsds300"), blend="none").image
Image.fromarray(fill).save(sys.argv[3])
"""

CLI = """
import atexit, sys
from pathlib import Path
from pconv_cli.models.pconv.pconv_unet import _reach

def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

# The fill-radius probe every run of a 7-level PConv U-Net does once (lru_cached), first:
# its peak, then the rest of the run's, after the kernel's peak mark is reset.
_reach(7)
probe = kib("VmHWM")
try:
    Path("/proc/self/clear_refs").write_text("5")
except OSError:
    probe = None

def report():
    again = _reach.cache_info().misses > 1  # the CLI probed another depth itself
    sys.stderr.write(f"\\nBENCH-PEAK {probe} {kib('VmHWM')} {again}\\n")

atexit.register(report)
sys.argv = ["pconv", *sys.argv[1:]]
from pconv_cli.cli import main
main()
"""


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    env.setdefault("COLUMNS", "100")
    return env


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stdout + stderr) of one child, reaped with ``os.wait4``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Read the output in full before waiting so a chatty child cannot block on the pipe.
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))}... failed:\n{out[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, out


def _summary(output: str) -> str:
    """'scales 1/16, ..., 1; crop, 26 passes, blend poisson' from ``pconv inpaint``'s lines."""
    scales = re.search(r"filled at scales ([0-9/, ]+)", output)
    wrote = re.search(r"wrote .* \(([^)]*)\)", output)
    parts = [f"scales {scales.group(1).strip()}" if scales else "scale 1 only"]
    if wrote:
        parts.append(wrote.group(1))
    return "; ".join(parts)


def make_small(folder: Path) -> dict[str, Path]:
    """512 px photo + irregular mask and a 7-level checkpoint (random weights)."""
    from pconv_cli.data.masks import generate_mask, save_mask
    from pconv_cli.models import build_model
    from pconv_cli.weights.checkpoint import save_checkpoint

    photo = Image.open(PHOTO).convert("RGB")
    photo.resize((512, 512), Image.Resampling.BICUBIC).save(folder / "photo512.jpg", quality=95)
    hole = generate_mask("irregular", np.random.default_rng(0), size=(512, 512))
    save_mask(folder / "mask512.png", hole)
    save_checkpoint(folder / "pconv7.safetensors", build_model("pconv", layers=7))
    return {
        "photo512": folder / "photo512.jpg",
        "mask512": folder / "mask512.png",
        "weights": folder / "pconv7.safetensors",
    }


def make_large(folder: Path, width: int, height: int) -> dict[str, Path]:
    """The photo-like ``width`` x ``height`` coffee photo, the spoon mask, the 12 % ellipse."""
    import skimage

    source = Path(skimage.__file__).parent / "data" / "coffee.png"
    photo = Image.open(source).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(photo, dtype=np.float32)
    grain = np.random.default_rng(0).normal(0.0, 2.0, pixels.shape).astype(np.float32)
    pixels = np.clip(pixels + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "photo.jpg", quality=92)

    spoon = Image.open(SPOON).convert("L").resize((width, height), Image.Resampling.BILINEAR)
    Image.fromarray((np.asarray(spoon) > 127).astype(np.uint8) * 255).save(folder / "spoon.png")

    # One ellipse (1.3:1) of 12 % of the pixels over the cup.
    yy, xx = np.ogrid[:height, :width]
    semi_x = np.sqrt(0.12 * width * height * 1.3 / np.pi)
    semi_y = semi_x / 1.3
    cy, cx = 0.40 * height, 0.50 * width
    ellipse = ((yy - cy) / semi_y) ** 2 + ((xx - cx) / semi_x) ** 2 <= 1.0
    Image.fromarray(ellipse.astype(np.uint8) * 255).save(folder / "object.png")
    return {"photo": folder / "photo.jpg", "spoon": folder / "spoon.png",
            "object": folder / "object.png"}  # fmt: skip


def _hole_fraction(path: Path) -> float:
    return float((np.asarray(Image.open(path)) > 127).mean())


def _peaks(output: str, rss: float) -> tuple[float, float | None, str]:
    """(process peak, rest-of-run peak or None, note) in MiB from the ``CLI`` wrapper's line.

    Resetting the peak mark also resets what ``wait4`` reports, so the process peak is the
    larger of the probe's and ``rss`` (the rest of the run's).
    """
    found = re.search(r"BENCH-PEAK (\S+) (\S+) (\S+)", output)
    if not found or found.group(1) == "None":
        return rss, None, "peak not split"
    probe, rest = int(found.group(1)) / 1024, int(found.group(2)) / 1024
    note = f"one-time fill-radius probe peak {probe:.0f} MiB, rest of the run {rest:.0f} MiB"
    if found.group(3) == "True":
        note += " (the CLI probed another depth too)"
    return max(probe, rss), rest, note


def bench_hole(name: str, files: dict[str, Path], folder: Path, env: dict[str, str]) -> None:
    mask = files[name]
    print(f"\n{name}: {_hole_fraction(mask) * 100:.1f} % of the pixels are hole")
    results = {}
    for blend in ("auto", "none"):
        cmd = [sys.executable, "-c", CLI, "inpaint", str(files["photo"]), "--mask", str(mask)]
        cmd += ["-o", str(folder / f"out_{name}_{blend}.jpg"), "--device", "cpu"]
        if blend != "auto":
            cmd += ["--blend", blend]
        elapsed, rss, output = run_measured(cmd, env)
        peak, rest, note = _peaks(output, rss)
        results[blend] = (elapsed, peak, rest)
        flag = "" if blend == "auto" else " --blend none"
        print(f"  pconv inpaint{flag:<13} {elapsed:6.2f} s   peak RSS {peak:6.0f} MiB")
        print(f"    {_summary(output)}")
        print(f"    {note}")
    (t_auto, m_auto, r_auto), (t_none, m_none, r_none) = results["auto"], results["none"]
    rest_ratio = f", rest of the run {r_auto / r_none:.2f}x" if r_auto and r_none else ""
    print(f"  auto / none (what Poisson costs inside the command): time {t_auto / t_none:.2f}x,")
    print(f"    peak RSS {m_auto / m_none:.2f}x{rest_ratio}")
    if name == "spoon":
        old_t, old_m = OLD_SPOON
        print(f"  vs issue #19's old figures for this hole (0.x crop path, {old_t} s / "
              f"{old_m / 1024:.1f} GB,")  # fmt: skip
        print(f"    another run; text only): time {t_auto / old_t:.2f}x, "
              f"peak RSS {m_auto / old_m:.2f}x")  # fmt: skip


def bench_poisson(files: dict[str, Path], folder: Path, env: dict[str, str], threads: int) -> None:
    model_fill = folder / "fill_object.png"
    cmd = [sys.executable, "-c", FILL.format(threads=threads)]
    run_measured([*cmd, str(files["photo"]), str(files["object"]), str(model_fill)], env)
    fills = {str(model_fill): "the default model's fill",
             "smooth": "a smooth fill, 0.05 too bright"}  # fmt: skip
    for index, (kind, name) in enumerate(fills.items()):
        cmd = [sys.executable, "-c", POISSON.format(threads=threads)]
        cmd += [str(files["photo"]), str(files["object"]), kind]
        _, _, output = run_measured(cmd, env)
        found = json.loads(output.strip().splitlines()[-1])
        if not index:
            print(f"\npoisson_blend alone, object case ({found['hole'] * 100:.1f} % hole;")
            print("  the call only, in a fresh process, no import or I/O):")
        added = found["added_mib"]
        added_text = f"adds {added:.0f} MiB" if added is not None else "added memory unknown"
        print(f"  on {name:<32} {found['seconds']:6.2f} s, {added_text}")


def bench_cold(folder: Path, env: dict[str, str], threads: int, repeats: int) -> None:
    py = sys.executable
    files = make_small(folder)
    pconv = [py, "-m", "pconv_cli", "inpaint", str(files["photo512"])]
    pconv += ["--mask", str(files["mask512"]), "--weights", str(files["weights"])]
    pconv += ["-o", str(folder / "out512.jpg"), "--device", "cpu", "--overwrite"]
    baseline = [py, "-c", BASELINE.format(threads=threads, extra=", torchvision")]
    # Stricter, for information: the same without torchvision's import (pconv
    # inpaint never imports torchvision).
    bare = [py, "-c", BASELINE.format(threads=threads, extra="")]
    commands = {"torch+torchvision+UNet": baseline, "torch+UNet": bare, "pconv inpaint": pconv}

    for cmd in commands.values():  # warm the page cache for all
        run_measured(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, float] = {}
    for _ in range(repeats):
        for name, cmd in commands.items():
            elapsed, peak, _ = run_measured(cmd, env)
            times[name].append(elapsed)
            rss[name] = max(rss.get(name, 0.0), peak)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\ncold start, 512x512, median of {repeats}:")
    for name, values in times.items():
        spread = ", ".join(f"{t:.2f}" for t in values)
        print(f"  {name:<24} {med[name]:6.2f} s   peak RSS {rss[name]:5.0f} MiB   ({spread})")
    ratio = med["pconv inpaint"] / med["torch+torchvision+UNet"]
    verdict = "meets" if ratio <= 1.25 else "misses"
    print(f"  ratio vs torch+torchvision+UNet {ratio:.2f}x ({verdict} the <= 1.25x goal)")
    strict = med["pconv inpaint"] / med["torch+UNet"]
    print(f"  ratio vs torch+UNet (no torchvision) {strict:.2f}x")


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--size", type=_size, default=(4000, 3000), help="WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=5, help="Runs of the cold start.")
    args = parser.parse_args()
    env = _env(args.threads)
    width, height = args.size
    print(f"{args.threads} thread(s), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench_inpaint_") as tmp:
        folder = Path(tmp)
        if {"spoon", "object", "poisson"} & set(args.cases):
            files = make_large(folder, width, height)
            print(f"photo {width}x{height} (scikit-image coffee, upscaled, grain),")
            print("bundled default model, --strategy auto")
        for case in args.cases:
            if case in ("spoon", "object"):
                bench_hole(case, files, folder, env)
            elif case == "poisson":
                bench_poisson(files, folder, env, args.threads)
            elif case == "cold":
                bench_cold(folder, env, args.threads, args.repeats)


if __name__ == "__main__":
    main()
