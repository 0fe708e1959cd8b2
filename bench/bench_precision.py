"""Training-step speed of the 7-level PConv U-Net (or DeepFillv2's generator) at 256 (CPU or
GPU): fp32 eager (reference) vs channels_last vs bf16 autocast (vs fp16 autocast on CUDA) vs
torch.compile, measured in one run.

    python bench/bench_precision.py [--arch pconv|deepfillv2] [--batch 2] [--steps 5] [--vgg]
                                    [--no-compile] [--device cuda]

The PConv step is forward, the paper's loss (L1 + TV; ``--vgg`` adds perceptual and
style terms with a randomly initialised VGG16, same cost as ImageNet's), backward
and Adam, as ``pconv train`` runs it; the DeepFillv2 step is the generator's forward,
an L1 loss, backward and Adam. fp16 runs with a gradient scaler. Compilation time is
reported separately and not counted in the step time; every loss must be finite.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pconv_cli.models import build_model
from pconv_cli.train.losses import InpaintingLoss, VGG16Features


def make_batch(batch: int, size: int):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=g)
    coarse = (torch.rand(batch, 1, size // 16, size // 16, generator=g) > 0.35).float()
    mask = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest")
    return image, mask


def make_step(*, channels_last: bool, dtype, compile_model: bool, vgg: bool, device,
              arch: str = "pconv"):  # fmt: skip
    torch.manual_seed(0)
    options = {"layers": 7} if arch == "pconv" else {}
    model = build_model(arch, **options).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if arch == "pconv":
        loss_fn = InpaintingLoss(vgg=VGG16Features() if vgg else None).to(device)
    else:
        loss_fn = None
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    forward = torch.compile(model) if compile_model else model

    def step(image, mask):
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            output = forward(image, mask)
            if loss_fn is not None:
                total, _ = loss_fn(output, image, mask)
            else:
                total = (output.float() - image).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(total.detach())

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--vgg", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--arch", default="pconv", choices=["pconv", "deepfillv2"])
    args = parser.parse_args()
    device = torch.device(args.device)
    image, mask = (t.to(device) for t in make_batch(args.batch, args.size))
    variants = {
        "fp32 eager": {"channels_last": False, "dtype": None, "compile_model": False},
        "channels_last": {"channels_last": True, "dtype": None, "compile_model": False},
        "bf16 autocast": {"channels_last": False, "dtype": torch.bfloat16, "compile_model": False},
    }
    if device.type == "cuda":
        variants["fp16 autocast"] = {
            "channels_last": False, "dtype": torch.float16, "compile_model": False,
        }  # fmt: skip
    if not args.no_compile:
        variants["torch.compile"] = {"channels_last": False, "dtype": None, "compile_model": True}
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {args.arch}, "
        f"{args.size}px, batch {args.batch}, VGG {'on' if args.vgg else 'off'}"
    )
    steps, setup = {}, {}
    for name, options in variants.items():
        start = time.perf_counter()
        steps[name] = make_step(vgg=args.vgg, device=device, arch=args.arch, **options)
        steps[name](image, mask)  # warm-up (and compilation)
        setup[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in variants}
    losses = {}
    for _ in range(args.steps):  # round-robin so drift hits every variant alike
        for name, step in steps.items():
            start = time.perf_counter()
            losses[name] = step(image, mask)  # float() synchronises a GPU
            times[name].append(time.perf_counter() - start)
    reference = statistics.median(times["fp32 eager"])
    for name in variants:
        t = statistics.median(times[name])
        print(
            f"  {name:<14} {t * 1000:8.0f} ms/step  {reference / t:5.2f}x speed of fp32 eager"
            f"   (first step incl. setup {setup[name]:.1f} s, loss {losses[name]:.4f})"
        )
    broken = [name for name, loss in losses.items() if not math.isfinite(loss)]
    if broken:
        print(f"non-finite loss with {', '.join(broken)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
