"""PConvUNet vs the plain-conv UNet vs the anchors' dense-mask PConv U-Net (CPU or CUDA).

Prints median times and ratios against the plain-conv UNet measured in the same
run (models are timed round-robin so drift hits all of them alike):

    python bench/bench_unet.py [--layers 7] [--size 256] [--repeats 15] [--device cuda]

Goal (issue #2): PConvUNet <= 1.05x the plain UNet for inference (batch 1) and for
a training step (forward + backward, batch 2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dense_pconv import DensePConvUNet
from pconv_cli.models.pconv.pconv_unet import PConvUNet, encoder_channels
from pconv_cli.models.pconv.unet import UNet


def make_inputs(batch: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=g)
    # A blobby hole mask covering roughly a third of the image (1 = valid).
    coarse = torch.rand(batch, 1, size // 16, size // 16, generator=g) > 0.35
    mask = torch.nn.functional.interpolate(coarse.float(), size=(size, size), mode="nearest")
    return image, mask


def inference_step(model, image, mask):
    with torch.inference_mode():
        model(image, mask)


def training_step(model, image, mask):
    model.zero_grad(set_to_none=True)
    out = model(image, mask)
    (out - image).abs().mean().backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(models: dict, step, image, mask, repeats: int, warmup: int = 2) -> dict[str, float]:
    for model in models.values():
        for _ in range(warmup):
            step(model, image, mask)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            _sync(image.device)
            start = time.perf_counter()
            step(model, image, mask)
            _sync(image.device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, medians: dict[str, float]) -> None:
    base = medians["unet (plain conv)"]
    print(f"\n{title}")
    for name, t in medians.items():
        print(f"  {name:<24} {t * 1000:8.1f} ms   {t / base:5.2f}x plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    pconv = PConvUNet(layers=args.layers, width=args.width)
    plain = UNet(layers=args.layers, width=args.width)
    dense = DensePConvUNet(encoder_channels(args.layers, args.width))
    dense.load_state_dict(pconv.state_dict())
    models = {
        "unet (plain conv)": plain,
        "pconv_unet (ours)": pconv,
        "dense pconv (anchors)": dense,
    }
    models = {name: model.to(device) for name, model in models.items()}
    print(
        f"torch {torch.__version__}, {device}, {args.threads} threads, layers={args.layers}, "
        f"width={args.width}, {args.size}x{args.size}"
    )

    image, mask = (t.to(device) for t in make_inputs(1, args.size))
    for m in models.values():
        m.eval()
    with torch.inference_mode():
        diff = (pconv(image, mask) - dense(image, mask)).abs().max().item()
    print(f"max |ours - dense| = {diff:.2e}")
    report("inference, batch 1", measure(models, inference_step, image, mask, args.repeats))

    image, mask = (t.to(device) for t in make_inputs(2, args.size, seed=1))
    for m in models.values():
        m.train()
    report(
        "training step (forward + backward), batch 2",
        measure(models, training_step, image, mask, max(3, args.repeats // 2)),
    )


if __name__ == "__main__":
    main()
