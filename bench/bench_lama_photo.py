"""``pconv inpaint --weights big-lama`` on a 12 MP photo with a 12 % hole, vs the default model.

    python bench/bench_lama_photo.py [--size 4000x3000] [--threads N] [--keep DIR]

The real big-lama weights cannot be downloaded everywhere, and time and memory do not
depend on the weight values, so the bench writes a release in LaMa's publisher layout
with seeded random weights: a folder ``big-lama/`` with ``config.yaml`` (big-lama's
``generator`` and ``discriminator`` sections: 18 FFC blocks, ngf 64, ratio 0.75,
sigmoid; 51 M generator parameters; the other sections trimmed) and
``models/best.ckpt`` (a Lightning 1.2 style checkpoint pickling OmegaConf-like
objects, written by ``tests/lama_reference.py``'s :func:`write_release`, the helper
the tests' ``release`` fixture uses; here with a random discriminator too). The real
``best.ckpt`` is larger (it also holds the evaluator's and the perceptual loss's
tensors), so reading it takes a little longer than reading this one.

The photo and the hole are ``bench/bench_inpaint.py``'s ``object`` case: scikit-image's
``coffee.png`` upscaled bicubic to ``--size`` with a light fixed-seed grain, JPEG q92,
and one filled ellipse (1.3:1) of 12 % of the pixels over the cup. Two commands, each
in a child process, the first as the reference for the ratio (same run):

    pconv inpaint photo.jpg --mask hole.png -o out_default.png --device cpu
    pconv inpaint photo.jpg --mask hole.png --weights RELEASE -o out_lama.png --device cpu

(the bundled default model, and the random-weight big-lama release; ``--strategy auto``
and ``--blend auto`` for both: Poisson for the default model, none for LaMa). Printed:
wall seconds around the child, its peak resident set size (``ru_maxrss`` from
``os.wait4``: the whole process, Python, torch, the weights and the image included),
the model line and the strategy / passes / blend the command reports, the scales for
the default model and, for LaMa, the crop window(s) (``plan_windows`` called here
with the arguments ``pconv inpaint`` uses: LaMa declares no fill radius, so every hole
region is filled at native resolution in one window with 128 px of context). Run by
hand; nothing here is a test.

Measured on the 2-core development machine (one other job running), 2026-12-03
07:48 UTC, ``OMP_NUM_THREADS=1 python bench/bench_lama_photo.py --threads 1``::

    1 thread(s), 2 CPUs, load average 1.4 at the start
    photo 4000x3000 (scikit-image coffee, upscaled, grain), one ellipse of 12.0 % of
          the pixels
    release big-lama/: config.yaml + models/best.ckpt (222 MiB), random weights,
          generator 50,975,875 parameters

    default model: pconv-bsds300 (pconv weights, pconv_unet(layers=7, width=0.5,
          upsampling=nearest, normalization=minus_one_one)) on cpu
      pconv inpaint     15.3 s   peak RSS   1496 MiB
      reported: crop, 31 passes, blend poisson; scales 1/32, 1/16, 1/8, 1/4, 1/2, 1

    big-lama: big-lama (lama weights, lama(ngf=64, n_downsampling=3, n_blocks=18,
          max_features=1024, ratio_g=0.75, enable_lfu=False, out_act=sigmoid, ndf=64,
          disc_layers=4)) on cpu
      pconv inpaint     58.7 s   peak RSS   3558 MiB
      reported: crop, 1 pass, blend none; scales 1 (native only)
      native window(s) (plan_windows as the command calls it): 1800x1448 at
          (1100, 476)

    big-lama / default model: time 3.84x, peak RSS 2.38x

Where LaMa's peak comes from (the same generator on a (1, 4, 1448, 1800) input in a
separate script, the kernel's peak mark reset before each top-level layer, same day):
the forward alone took 53.5 s and added 2,566 MiB to the 761 MiB of the loaded
process; the largest layer peaks are the last ``ConvTranspose2d`` (128 -> 64 channels,
output 636 MiB at full resolution: +1,909 MiB, 4.2 s), the first ``FFCBNAct``
(the 7x7 convolution, 4 -> 64 channels, after LaMa's ``ReflectionPad2d``: +1,323 MiB,
about twice its 636 MiB output) and the second-to-last transposed convolution
(+865 MiB); the 18 FFC blocks at 1/8 scale add under 320 MiB each. The transposed
convolution's workspace is torch's (LaMa's own code calls the same op); that layer
alone, timed three times each way, took 4.3 s with oneDNN and 2.2 s with it disabled
(``torch.backends.mkldnn.flags(enabled=False)``), for a similar peak (+1.9 vs +2.0 GiB).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_inpaint import (  # noqa: E402
    _env,
    _hole_fraction,
    _size,
    make_large,
    run_measured,
)

BIG_LAMA_YAML = """\
run_title: b18_ffc075_batch8x15
training_model:
  kind: default
  concat_mask: true
losses:
  l1:
    weight_missing: 0
    weight_known: 10
  adversarial:
    kind: r1
    weight: 10
    gp_coef: 0.001
    mask_as_fake_target: true
  feature_matching:
    weight: 100
  resnet_pl:
    weight: 30
generator:
  kind: ffc_resnet
  input_nc: 4
  output_nc: 3
  ngf: 64
  n_downsampling: 3
  n_blocks: 18
  add_out_act: sigmoid
  init_conv_kwargs:
    ratio_gin: 0
    ratio_gout: 0
    enable_lfu: false
  downsample_conv_kwargs:
    ratio_gin: ${generator.init_conv_kwargs.ratio_gout}
    ratio_gout: ${generator.downsample_conv_kwargs.ratio_gin}
    enable_lfu: false
  resnet_conv_kwargs:
    ratio_gin: 0.75
    ratio_gout: ${generator.resnet_conv_kwargs.ratio_gin}
    enable_lfu: false
discriminator:
  kind: pix2pixhd_nlayer
  input_nc: 3
  ndf: 64
  n_layers: 4
"""
"""big-lama's ``config.yaml``: its generator and discriminator sections as published
(interpolations included), the loss weights, the rest trimmed."""


def write_big_lama(root: Path) -> tuple[Path, int]:
    """A big-lama release with seeded random weights in ``root``; (folder, generator params)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from lama_reference import publisher_state, write_release

    from pconv_cli.models import build_model
    from pconv_cli.models.lama.config_yaml import parse_yaml
    from pconv_cli.models.lama.network import NLayerDiscriminator

    torch.manual_seed(0)
    model = build_model("lama")  # its defaults are big-lama's configuration
    state = publisher_state(model.net, NLayerDiscriminator(model.config))
    write_release(root, state, BIG_LAMA_YAML, parse_yaml(BIG_LAMA_YAML))
    return root, sum(p.numel() for p in model.net.parameters())


def lama_windows(hole_path: Path) -> list:
    """The crop windows ``pconv inpaint --strategy auto`` gives LaMa for this hole."""
    from pconv_cli.inpainting.strategy import DEFAULT_MARGIN, DEFAULT_MIN_WINDOW, plan_windows

    hole = np.asarray(Image.open(hole_path)) > 127
    multiple = 8  # LaMa's size_multiple (2**n_downsampling)
    return plan_windows(hole, margin=DEFAULT_MARGIN, min_size=max(DEFAULT_MIN_WINDOW, multiple),
                        multiple=multiple)  # fmt: skip


def _reported(output: str) -> dict[str, str]:
    model = re.search(r"pconv inpaint with (.*)", output)
    wrote = re.search(r"wrote .* \(([^)]*)\)\s*$", output, re.MULTILINE)
    scales = re.search(r"filled at scales ([0-9/, ]+)", output)
    return {
        "model": model.group(1).strip() if model else "?",
        "run": wrote.group(1) if wrote else "?",
        "scales": scales.group(1).strip() if scales else "1 (native only)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_size, default=(4000, 3000), help="WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", type=Path, help="Write the files here instead of a temp dir.")
    args = parser.parse_args()
    env = _env(args.threads)
    width, height = args.size
    print(f"{args.threads} thread(s), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench_lama_photo_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files = make_large(folder, width, height)
        photo, hole = files["photo"], files["object"]
        release, params = write_big_lama(folder / "big-lama")
        ckpt_mib = (release / "models" / "best.ckpt").stat().st_size / 2**20
        print(f"photo {width}x{height} (scikit-image coffee, upscaled, grain), one ellipse "
              f"of {_hole_fraction(hole) * 100:.1f} % of the pixels")  # fmt: skip
        print(f"release {release.name}/: config.yaml + models/best.ckpt ({ckpt_mib:.0f} MiB), "
              f"random weights, generator {params:,} parameters")  # fmt: skip

        runs = {"default model": [], "big-lama": ["--weights", str(release)]}
        results = {}
        for name, extra in runs.items():
            out = folder / f"out_{name.split()[0].replace('-', '_')}.png"
            cmd = [sys.executable, "-m", "pconv_cli", "inpaint", str(photo), "--mask", str(hole)]
            cmd += [*extra, "-o", str(out), "--device", "cpu"]
            seconds, peak, output = run_measured(cmd, env)
            results[name] = (seconds, peak)
            reported = _reported(output)
            print(f"\n{name}: {reported['model']}")
            print(f"  pconv inpaint {seconds:8.1f} s   peak RSS {peak:6.0f} MiB")
            print(f"  reported: {reported['run']}; scales {reported['scales']}")
            if name == "big-lama" and reported["run"].startswith("crop"):
                windows = lama_windows(hole)
                sizes = ", ".join(f"{w.width}x{w.height} at ({w.left}, {w.top})"
                                  for w in windows)  # fmt: skip
                print(f"  native window(s) (plan_windows as the command calls it): {sizes}")

        (t_ref, m_ref), (t_lama, m_lama) = results["default model"], results["big-lama"]
        print(f"\nbig-lama / default model: time {t_lama / t_ref:.2f}x, "
              f"peak RSS {m_lama / m_ref:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
