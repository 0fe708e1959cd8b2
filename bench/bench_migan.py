"""MI-GAN 512's forward against a reference generator: time (same run) and counted FLOPs.

    python bench/bench_migan.py [--repeats 5] [--threads N]

The reference is LaMa's generator (family ``lama``, Big-LaMa's default configuration)
when this checkout has that family, else the PConv U-Net at its paper size (8 levels,
512 px), and DeepFillv2 beside it. Nets get random weights; times are medians over
round-robin repeats of one 512x512 forward (batch 1, ``inference_mode``), FLOPs come
from ``torch.utils.flop_counter`` (a multiply-add counts 2; the MI-GAN paper's 15.7
GFLOPs and LaMa's 128.1 are multiply-add counts of fvcore, which also counts some
element-wise ops). The paper's claim: LaMa needs about 8x the compute of MI-GAN 512.
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

from pconv_cli.models import build_model, list_models

SIZE = 512
PAPER = {"MI-GAN 512": (5.98e6, 15.7e9), "LaMa (Big)": (27.05e6, 128.1e9)}
"""(parameters, GFLOPs = multiply-adds) from the MI-GAN paper, Tables 1-2."""


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, SIZE, SIZE, generator=g)
    coarse = torch.rand(1, 1, SIZE // 32, SIZE // 32, generator=g) > 0.3
    return image, torch.nn.functional.interpolate(coarse.float(), size=(SIZE, SIZE))


def _nets() -> dict[str, torch.nn.Module]:
    """name -> a net taking (image in the net's scale, mask 1 = valid) at 512 px."""
    nets = {"MI-GAN 512": build_model("migan", resolution=512).net}
    if "lama" in list_models():
        nets["LaMa (lama family)"] = build_model("lama").net
    else:
        nets["PConv U-Net (8 levels)"] = build_model("pconv_unet", layers=8).net
        nets["DeepFillv2"] = build_model("deepfillv2").net
    return {name: net.eval() for name, net in nets.items()}


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
    if "LaMa (lama family)" not in nets:
        print("no lama family in this checkout: the reference is the PConv U-Net (and DeepFillv2)")
    flops = {name: _flops(net, image * 2 - 1, mask) for name, net in nets.items()}
    runs = {name: partial(net, image * 2 - 1, mask) for name, net in nets.items()}
    pipeline = build_model("migan", resolution=512).eval()
    pipeline.net.load_state_dict(nets["MI-GAN 512"].state_dict())
    runs["pipeline"] = partial(pipeline, image, mask)  # demo.py's steps around the net
    times = _times(runs, args.repeats)
    base = "MI-GAN 512"
    print(f"\n512x512, batch 1, CPU, {args.threads} threads, median of {args.repeats}:")
    print(f"  {'net':<24} {'params':>8} {'GFLOPs':>8} {'x MI-GAN':>9} {'ms':>9} {'x MI-GAN':>9}")
    for name, net in nets.items():
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(
            f"  {name:<24} {params:7.2f}M {flops[name] / 1e9:8.1f} "
            f"{flops[name] / flops[base]:8.2f}x {times[name] * 1000:9.1f} "
            f"{times[name] / times[base]:8.2f}x"
        )
    print(f"  MI-GAN 512: {flops[base] / 2e9:.2f} G multiply-adds counted (paper: 15.7 GFLOPs)")
    mi_params, mi_flops = PAPER["MI-GAN 512"]
    lama_params, lama_flops = PAPER["LaMa (Big)"]
    print(
        f"  paper: LaMa / MI-GAN 512 = {lama_flops / mi_flops:.2f}x FLOPs, "
        f"{lama_params / mi_params:.2f}x parameters"
    )
    ratio = times["pipeline"] / times[base]
    print(
        f"  MI-GAN 512 with its demo pipeline (resizing, quantising, compositing): "
        f"{times['pipeline'] * 1000:.1f} ms = {ratio:.2f}x the net alone"
    )


if __name__ == "__main__":
    main()
