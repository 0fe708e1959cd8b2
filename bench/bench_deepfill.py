"""DeepFillv2 on this machine: generator inference, contextual-attention memory, a training step.

    python bench/bench_deepfill.py [--repeats 3] [--sizes 256 512 1024] [--attention 512 1024 2048]
                                   [--device cuda] [--skip attention]

1. Generator inference (width 1.0 = MMagic's net, batch 1, fp32, no autograd) at each
   size: median seconds.
2. Contextual attention alone on the (1, 96, S/4, S/4) features of an S x S image with
   a hole, chunked (pconv's default working-set budget) vs unchunked (all queries at
   once, as the reference implementations compute it): the resident memory it adds
   (peak sampled every 5 ms minus the level before the call), in a fresh process
   each, and time; the ratio chunked/unchunked.
   An unchunked run whose score maps would not fit in this machine's memory is not
   started: its estimate is printed instead. (CPU memory: always on the CPU.)
3. One training step (discriminator + generator update, batch 2, 256 px): median seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _attention_worker(size: int, chunked: bool) -> dict:
    import threading

    import torch

    from pconv_cli.nn.attention import DEFAULT_MAX_BYTES, contextual_attention

    torch.manual_seed(0)
    h = w = size // 4
    features = torch.randn(1, 96, h, w)
    mask = torch.ones(1, 1, h, w)
    mask[..., h // 4 : h // 2, w // 3 : 2 * w // 3] = 0
    base = _rss_kib()
    peak = [base]
    done = threading.Event()

    def sample() -> None:  # the peak resident memory while attention runs
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with torch.no_grad():
        out = contextual_attention(features, mask, max_bytes=DEFAULT_MAX_BYTES if chunked else None)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    return {
        "seconds": elapsed,
        "peak_mib": (peak[0] - base) / 1024,
        "finite": bool(out.isfinite().all()),
    }


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 8 * 2**30


def bench_attention(sizes: list[int]) -> None:
    print("\ncontextual attention, (1, 96, S/4, S/4) features, fp32")
    print(f"  {'image':>9}  {'chunked':>22}  {'unchunked':>26}  {'memory ratio':>12}")
    for size in sizes:
        rows = {}
        for chunked in (True, False):
            queries = (size // 8) ** 2
            needed = 3 * 4 * queries * queries  # scores, fused scores, softmax
            if not chunked and needed > 0.8 * _available_bytes():
                rows[chunked] = None, f"not run: needs ~{needed / 2**30:.0f} GiB"
                continue
            code = (
                f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); "
                "from bench.bench_deepfill import _attention_worker; "
                f"print(json.dumps(_attention_worker({size}, {chunked!r})))"
            )
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if done.returncode != 0:
                rows[chunked] = None, f"failed ({done.stderr.strip().splitlines()[-1][:40]})"
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows[chunked] = result, f"{result['peak_mib']:7.0f} MiB {result['seconds']:7.1f} s"
        ratio = "-"
        if rows[True][0] and rows[False][0]:
            ratio = f"{rows[True][0]['peak_mib'] / max(rows[False][0]['peak_mib'], 1):.3f}x"
        print(f"  {size:>5}^2  {rows[True][1]:>22}  {rows[False][1]:>26}  {ratio:>12}")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_inference(sizes: list[int], repeats: int, device) -> None:
    import torch

    from pconv_cli.models import build_model

    torch.manual_seed(0)
    model = build_model("deepfillv2").eval().to(device)
    print(f"\ngenerator inference (width 1.0, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters), batch 1, fp32, {device}, median of {repeats}")  # fmt: skip
    for size in sizes:
        image = torch.rand(1, 3, size, size, device=device)
        mask = torch.ones(1, 1, size, size, device=device)
        mask[..., size // 4 : size // 2, size // 4 : 3 * size // 4] = 0
        times = []
        with torch.inference_mode():
            model(image, mask)  # warm-up
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                model(image, mask)
                _sync(device)
                times.append(time.perf_counter() - start)
        print(f"  {size:>5}^2  {statistics.median(times):8.3f} s")


def bench_training(repeats: int, device) -> None:
    import torch

    from pconv_cli.models import build_model
    from pconv_cli.models.deepfillv2.task import DeepFillTask
    from pconv_cli.train.config import TrainConfig
    from pconv_cli.train.tasks import StepContext

    torch.manual_seed(0)
    model = build_model("deepfillv2").to(device)
    config = TrainConfig(arch="deepfillv2", lr=1e-4,
                         loss_weights=dict(DeepFillTask.loss_weights))  # fmt: skip
    task = DeepFillTask(config, model, device=device)
    for module in task.modules().values():
        module.to(device)
    task.prepare()
    optimizers = task.configure_optimizers()
    scalers = {k: torch.amp.GradScaler(device.type, enabled=False) for k in optimizers}
    image = torch.rand(2, 3, 256, 256, device=device)
    mask = torch.ones(2, 1, 256, 256, device=device)
    mask[..., 64:160, 80:200] = 0
    times = []
    for step in range(repeats + 1):
        context = StepContext(
            modules=task.modules(), optimizers=optimizers, scalers=scalers,
            device=device, amp_dtype=None, memory_format=torch.contiguous_format,
            step=step + 1, describe_failure=lambda name, value: f"{name} {value}",
        )  # fmt: skip
        _sync(device)
        start = time.perf_counter()
        task.training_step({"image": image, "mask": mask}, context)
        _sync(device)
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    print(f"\ntraining step (D + G updates), batch 2, 256 px: {statistics.median(times):.2f} s "
          f"(median of {repeats})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--attention", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["inference", "attention", "training"]
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (not attention)")
    options = parser.parse_args()
    import torch

    device = torch.device(options.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{device}")  # fmt: skip
    if "inference" not in options.skip:
        bench_inference(options.sizes, options.repeats, device)
    if "attention" not in options.skip:
        bench_attention(options.attention)
    if "training" not in options.skip:
        bench_training(options.repeats, device)


if __name__ == "__main__":
    main()
