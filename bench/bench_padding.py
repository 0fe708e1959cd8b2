"""Partial-convolution padding vs zero padding: resnet50 at 224, in one run.

    python bench/bench_padding.py [--repeats 5] [--batch 8] [--arch resnet50]

Times inference (batch 1, no autograd) and a training step (forward, cross-entropy,
backward, SGD step; ``--batch`` images) of torchvision's model and of the same model
converted with ``convert_to_partial_padding``, round-robin so drift hits both alike,
and prints medians and the ratio partial / zero. Goal (issue #12): <= 1.03x.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pconv_cli.nn import convert_to_partial_padding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    options = parser.parse_args()
    import torchvision

    device = torch.device(options.device)
    torch.manual_seed(0)
    zero = torchvision.models.get_model(options.arch).to(device)
    partial = convert_to_partial_padding(copy.deepcopy(zero))
    models = {"zero padding": zero, "partial padding": partial}
    image = torch.randn(1, 3, options.size, options.size, device=device)
    batch = torch.randn(options.batch, 3, options.size, options.size, device=device)
    labels = torch.randint(0, 1000, (options.batch,), device=device)
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=1e-3) for name, m in models.items()}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def infer(model) -> float:
        model.eval()
        with torch.inference_mode():
            sync()
            start = time.perf_counter()
            model(image)
            sync()
        return time.perf_counter() - start

    def train_step(name) -> float:
        model = models[name].train()
        sync()
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(batch), labels)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        sync()
        return time.perf_counter() - start

    for name in models:  # warm-up (and the ratio caches)
        infer(models[name])
        train_step(name)
    times = {(kind, name): [] for kind in ("inference", "training") for name in models}
    for _ in range(options.repeats):
        for name in models:
            times[("inference", name)].append(infer(models[name]))
            times[("training", name)].append(train_step(name))
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{options.arch} at {options.size}, median of {options.repeats}")  # fmt: skip
    for kind, label in (("inference", "inference, batch 1"),
                        ("training", f"training step, batch {options.batch}")):  # fmt: skip
        base = statistics.median(times[(kind, "zero padding")])
        print(label)
        for name in models:
            median = statistics.median(times[(kind, name)])
            print(f"  {name:16s} {median * 1000:9.1f} ms   {median / base:5.3f}x zero padding")


if __name__ == "__main__":
    main()
