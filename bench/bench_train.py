"""Training throughput at 256 px: the real data pipeline vs the model step alone.

    python bench/bench_train.py [--width 1.0] [--batch 4] [--steps 8] [--workers 1]

Both runs do the same training step (PConvUNet forward, the paper's full loss with a
VGG16 of random weights, which costs the same as ImageNet's, backward, Adam). The
reference feeds one batch kept in memory; the pipeline run decodes, crops and flips
``examples/images`` and draws irregular masks through the DataLoader, as
``pconv train`` does. Goal (issue #4): the pipeline adds at most 5%.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pconv_cli.data.datasets import (  # noqa: E402
    InfiniteSampler,
    InpaintingDataset,
    MaskSource,
    collate,
    resolve_images,
)
from pconv_cli.models import build_model  # noqa: E402
from pconv_cli.train.losses import InpaintingLoss, VGG16Features  # noqa: E402


def make_step(width: float, layers: int, vgg: bool):
    torch.manual_seed(0)
    model = build_model("pconv", layers=layers, width=width).train()
    loss_fn = InpaintingLoss(vgg=VGG16Features() if vgg else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

    def step(image, mask):
        total, _ = loss_fn(model(image, mask), image, mask)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return step


def timed(step, batches, steps: int, warmup: int = 2) -> float:
    """Seconds per step after ``warmup`` steps; ``batches`` is an iterator of dicts."""
    for _ in range(warmup):
        b = next(batches)
        step(b["image"], b["mask"])
    start = time.perf_counter()
    for _ in range(steps):
        b = next(batches)
        step(b["image"], b["mask"])
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT / "examples" / "images")
    parser.add_argument("--no-vgg", action="store_true", help="leave out perceptual/style")
    args = parser.parse_args()

    dataset = InpaintingDataset(
        resolve_images(args.data), MaskSource.parse("irregular"), size=args.size
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, sampler=InfiniteSampler(len(dataset)),
        num_workers=args.workers, collate_fn=collate, persistent_workers=args.workers > 0,
    )  # fmt: skip
    fixed = collate([dataset[i % len(dataset)] for i in range(args.batch)])

    def repeat():
        while True:
            yield fixed

    start = time.perf_counter()
    n_items = 50
    for i in range(n_items):
        dataset[(i % len(dataset), i)]
    per_item = (time.perf_counter() - start) / n_items

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}px, "
        f"batch {args.batch}, width {args.width}, layers {args.layers}, "
        f"{args.workers} loader workers, VGG {'off' if args.no_vgg else 'on'}"
    )
    print(f"data pipeline alone: {per_item * 1000:.1f} ms per item (one process)")
    # Alternate the two measurements so drift on the machine hits both alike.
    ref_times, pipe_times = [], []
    pipeline = iter(loader)
    for _ in range(2):
        ref_times.append(
            timed(make_step(args.width, args.layers, not args.no_vgg), repeat(), args.steps)
        )
        pipe_times.append(
            timed(make_step(args.width, args.layers, not args.no_vgg), pipeline, args.steps)
        )
    ref, pipe = min(ref_times), min(pipe_times)
    print(f"model step alone  : {args.batch / ref:7.2f} images/s ({ref * 1000:.0f} ms/step)")
    print(f"with data pipeline: {args.batch / pipe:7.2f} images/s ({pipe * 1000:.0f} ms/step)")
    print(f"pipeline overhead : {pipe / ref:.3f}x (goal <= 1.05x)")


if __name__ == "__main__":
    main()
