"""MI-GAN 512's forward against LaMa and other generators: time (same run) and counted FLOPs.

    python bench/bench_migan.py [--repeats 5] [--threads N]

Nets, all with seeded random weights (time and FLOPs do not depend on the values):
MI-GAN 512 (family ``migan``), Big-LaMa's generator (family ``lama`` with its default,
big-lama's configuration: 18 FFC blocks, 51 M parameters), LaMa-Fourier's (the same
with 9 blocks: 27.05 M parameters, the count the MI-GAN paper lists for its LaMa, so
the paper's 8x is against LaMa-Fourier, not Big-LaMa), the PConv U-Net at its paper
size (8 levels, 512 px) and DeepFillv2. Each net gets the image in its own scale
(``model.normalize``) and a mask (1 = valid) with coarse random holes. Times are
medians over round-robin repeats of one 512x512 forward (batch 1, ``inference_mode``);
FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts 2; it counts
convolutions and matrix products, not LaMa's ``rfftn``/``irfftn``, which are
O(n log n) and small beside its convolutions; the MI-GAN paper's 15.7 GFLOPs and
LaMa's 128.1 are multiply-add counts of fvcore, which also counts some element-wise
ops). The paper's claim: LaMa needs about 8x the compute of MI-GAN 512. Run by hand;
nothing here is a test.

Measured on the 2-core development machine, 2026-12-03 07:54 UTC (load average 0.4
at the start, 0.9 at the end), ``OMP_NUM_THREADS=1 python bench/bench_migan.py
--threads 1``::

    512x512, batch 1, CPU, 1 threads, median of 5:
      net                        params   GFLOPs  x MI-GAN        ms  x MI-GAN
      MI-GAN 512                  5.97M     30.2     1.00x    1633.6     1.00x
      Big-LaMa (18 blocks)       50.98M    439.8    14.59x    4132.9     2.53x
      LaMa-Fourier (9 blocks)    27.05M    254.6     8.45x    2789.7     1.71x
      PConv U-Net (8 levels)     32.86M     76.0     2.52x     859.3     0.53x
      DeepFillv2                  4.41M    288.0     9.55x    4532.5     2.77x
      (GFLOPs: torch.utils.flop_counter, a multiply-add = 2; LaMa's FFTs not counted)
      measured Big-LaMa (18 blocks) / MI-GAN 512: 14.59x the FLOPs, 2.53x the time
      measured LaMa-Fourier (9 blocks) / MI-GAN 512: 8.45x the FLOPs, 1.71x the time
      MI-GAN 512: 15.1 G multiply-adds counted
      LaMa-Fourier (9 blocks): 127.3 G multiply-adds counted
      Big-LaMa (18 blocks): 219.9 G multiply-adds counted
      paper: MI-GAN 512 15.7 G, LaMa (27.05 M parameters = LaMa-Fourier) 128.1 G:
        8.16x FLOPs, 4.52x parameters
      MI-GAN 512 with its demo pipeline (resizing, quantising, compositing):
        1679.9 ms = 1.03x the net alone
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pconv_cli.models import build_model

SIZE = 512
PAPER = {"MI-GAN 512": (5.98e6, 15.7e9), "LaMa": (27.05e6, 128.1e9)}
"""(parameters, GFLOPs = multiply-adds) from the MI-GAN paper, Tables 1-2; its LaMa has
LaMa-Fourier's parameter count (9 FFC blocks), not Big-LaMa's 51 M."""


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, SIZE, SIZE, generator=g)
    coarse = torch.rand(1, 1, SIZE // 32, SIZE // 32, generator=g) > 0.3
    return image, torch.nn.functional.interpolate(coarse.float(), size=(SIZE, SIZE))


def _nets() -> dict[str, tuple[torch.nn.Module, torch.nn.Module]]:
    """name -> (net taking (image in its scale, mask 1 = valid) at 512 px, its normalize)."""
    models = {
        "MI-GAN 512": build_model("migan", resolution=512),
        "Big-LaMa (18 blocks)": build_model("lama"),  # the family's defaults are big-lama's
        "LaMa-Fourier (9 blocks)": build_model("lama", n_blocks=9),
        "PConv U-Net (8 levels)": build_model("pconv_unet", layers=8),
        "DeepFillv2": build_model("deepfillv2"),
    }
    return {name: (model.net.eval(), model.normalize) for name, model in models.items()}


def _flops(net: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(image, mask)
    return counter.get_total_flops()


def _times(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each ``runs[name]()``, timed round-robin (drift hits all alike)."""
    with torch.inference_mode():
        for run in runs.values():
            run()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image, mask = _inputs()
    nets = _nets()
    inputs = {name: normalize(image) for name, (_, normalize) in nets.items()}
    flops = {name: _flops(net, inputs[name], mask) for name, (net, _) in nets.items()}
    runs = {name: partial(net, inputs[name], mask) for name, (net, _) in nets.items()}
    pipeline = build_model("migan", resolution=512).eval()
    pipeline.net.load_state_dict(nets["MI-GAN 512"][0].state_dict())
    runs["pipeline"] = partial(pipeline, image, mask)  # demo.py's steps around the net
    times = _times(runs, args.repeats)
    base = "MI-GAN 512"
    print(f"\n512x512, batch 1, CPU, {args.threads} threads, median of {args.repeats}:")
    print(f"  {'net':<24} {'params':>8} {'GFLOPs':>8} {'x MI-GAN':>9} {'ms':>9} {'x MI-GAN':>9}")
    for name, (net, _) in nets.items():
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(
            f"  {name:<24} {params:7.2f}M {flops[name] / 1e9:8.1f} "
            f"{flops[name] / flops[base]:8.2f}x {times[name] * 1000:9.1f} "
            f"{times[name] / times[base]:8.2f}x"
        )
    print("  (GFLOPs: torch.utils.flop_counter, a multiply-add = 2; LaMa's FFTs not counted)")
    for name in ("Big-LaMa (18 blocks)", "LaMa-Fourier (9 blocks)"):
        print(
            f"  measured {name} / MI-GAN 512: {flops[name] / flops[base]:.2f}x the FLOPs, "
            f"{times[name] / times[base]:.2f}x the time"
        )
    for name in (base, "LaMa-Fourier (9 blocks)", "Big-LaMa (18 blocks)"):
        print(f"  {name}: {flops[name] / 2e9:.1f} G multiply-adds counted")
    mi_params, mi_flops = PAPER["MI-GAN 512"]
    lama_params, lama_flops = PAPER["LaMa"]
    print(
        f"  paper: MI-GAN 512 15.7 G, LaMa ({lama_params / 1e6:.2f} M parameters = "
        f"LaMa-Fourier) {lama_flops / 1e9:.1f} G: {lama_flops / mi_flops:.2f}x FLOPs, "
        f"{lama_params / mi_params:.2f}x parameters"
    )
    ratio = times["pipeline"] / times[base]
    print(
        f"  MI-GAN 512 with its demo pipeline (resizing, quantising, compositing): "
        f"{times['pipeline'] * 1000:.1f} ms = {ratio:.2f}x the net alone"
    )


if __name__ == "__main__":
    main()
