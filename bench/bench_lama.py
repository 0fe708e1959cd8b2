"""LaMa's generator on this machine: pconv's code against LaMa's own, and under torch.compile.

    python bench/bench_lama.py [--lama-repo DIR] [--sizes 512 1024] [--repeats 2]
                               [--compile-sizes 512 1024] [--compile-generator]

1. Big-LaMa's generator (LaMa's config: 18 FFC blocks, 51 M parameters; seeded random
   weights, the same tensors for both codes), batch 1, fp32, CPU, under ``no_grad`` (as
   LaMa's ``predict.py``), on ``[masked image, hole]`` at S x S, each code in a fresh
   process: median seconds over ``--repeats`` runs after a warm-up; the peak of the
   tensors the forward allocates (torch's profiler memory timeline, weights and input
   excluded: what the code itself needs, whatever the allocator does) and the resident
   memory the forward adds (the kernel's peak-RSS mark, reset just before the call,
   minus the RSS before it: what the process costs, allocator caching included); and
   whether the outputs are the same floats (a float64 checksum).
   LaMa's code is ``saicinpainting/training/modules/ffc.py`` of a checkout of
   advimman/lama (``--lama-repo``, or ``$LAMA_REPO``); without one that part is
   skipped with a message. Its training-only imports (kornia, pytorch_lightning) are
   stubbed if missing. Printed: ratios pconv / LaMa (goal <= 1.0).
2. ``torch.compile`` (inductor, CPU) of the FFT path: one residual block's spectral
   transform (1x1 conv, ``rfftn``, 1x1 conv + BN + ReLU on the spectrum, ``irfftn``,
   1x1 conv) on the (1, 384, S/8, S/8) global features of an S x S image: compile
   seconds, compiled vs eager seconds, largest difference of the outputs.
   ``--compile-generator`` also compiles the whole generator at the first size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIG_LAMA = {
    "input_nc": 4, "output_nc": 3, "ngf": 64, "n_downsampling": 3, "n_blocks": 18,
    "add_out_act": "sigmoid",
    "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
}  # fmt: skip


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _lama_generator(repo: Path):
    """LaMa's FFCResNetGenerator from a checkout, its training-only imports stubbed."""
    sys.path.insert(0, str(repo))
    for name, attrs in (
        ("kornia", {}), ("kornia.geometry", {}),
        ("kornia.geometry.transform", {"rotate": None}),
        ("pytorch_lightning", {"seed_everything": lambda *a, **k: None}),
    ):  # fmt: skip
        try:
            __import__(name)
        except ImportError:
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            sys.modules[name] = module
    from saicinpainting.training.modules.ffc import FFCResNetGenerator

    return FFCResNetGenerator(**BIG_LAMA)


def _inputs(size: int):
    import torch

    generator = torch.Generator().manual_seed(size)
    image = torch.rand(1, 3, size, size, generator=generator)
    hole = torch.zeros(1, 1, size, size)
    hole[..., size // 4 : size // 2, size // 5 : 3 * size // 5] = 1
    return torch.cat([image * (1 - hole), hole], 1)


def _allocated_peak_mib(run, x) -> float:
    """Peak of the tensors ``run(x)`` allocates (torch's memory timeline, parameters and
    inputs excluded)."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Category, MemoryProfileTimeline

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                                  record_shapes=True, with_stack=True) as prof:  # fmt: skip
        run(x)
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    names = [None, *Category]
    keep = [i for i, c in enumerate(names) if c not in (Category.PARAMETER, Category.INPUT)]
    return float(np.asarray(sizes)[:, keep].sum(axis=1).max()) / 2**20


def _worker(impl: str, size: int, repeats: int, repo: str | None) -> dict:
    import torch

    from pconv_cli.models import build_model

    torch.manual_seed(0)
    ours = build_model("lama").eval()  # big-lama's config
    if impl == "lama":
        net = _lama_generator(Path(repo)).eval()
        net.load_state_dict(ours.net.state_dict())
        del ours
        run = net
    else:
        run = ours.net.generate
    x = _inputs(size)
    with torch.no_grad():  # LaMa's predict.py runs under no_grad
        base = _status_kib("VmRSS")
        exact = _reset_peak()
        out = run(x)
        peak = _status_kib("VmHWM") if exact else 0
        checksum = float(out.double().sum())
        del out
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - start)
    return {
        "impl": impl, "size": size, "seconds": statistics.median(times),
        "added_mib": (peak - base) / 1024 if exact else None, "checksum": checksum,
        "allocated_mib": _allocated_peak_mib(run, x),
    }  # fmt: skip


def _compile_worker(size: int, repeats: int, whole: bool) -> dict:
    import torch

    from pconv_cli.models import build_model

    torch.manual_seed(0)
    net = build_model("lama").eval().net
    if whole:
        fn, x = net.generate, _inputs(size)
    else:  # the FFT path of the first residual block
        block = net.model[2 + net.config.n_downsampling]
        fn = block.conv1.ffc.convg2g
        channels = fn.conv1[0].in_channels
        x = torch.randn(1, channels, size // 8, size // 8)
    compiled = torch.compile(fn)
    with torch.no_grad():
        eager = fn(x)
        start = time.perf_counter()
        out = compiled(x)
        compile_seconds = time.perf_counter() - start
        times = {"eager": [], "compiled": []}
        for _ in range(max(repeats, 3)):
            for name, run in (("eager", fn), ("compiled", compiled)):
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    return {
        "size": size, "what": "generator" if whole else "spectral transform",
        "shape": list(x.shape), "compile_seconds": compile_seconds,
        "eager": statistics.median(times["eager"]),
        "compiled": statistics.median(times["compiled"]),
        "max_abs_diff": float((out - eager).abs().max()),
    }  # fmt: skip


def _spawn(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lama-repo", default=os.environ.get("LAMA_REPO"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile-sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--compile-generator", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--compile-worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, size = args.worker
        print(json.dumps(_worker(impl, int(size), args.repeats, args.lama_repo)))
        return
    if args.compile_worker:
        size, whole = args.compile_worker
        print(json.dumps(_compile_worker(size, args.repeats, bool(whole))))
        return

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    repo = Path(args.lama_repo) if args.lama_repo else None
    if repo is None or not (repo / "saicinpainting" / "training" / "modules" / "ffc.py").is_file():
        print("LaMa's code not found (--lama-repo DIR or $LAMA_REPO: a checkout of "
              "advimman/lama): comparing against it is skipped")  # fmt: skip
        repo = None
    extra = ["--lama-repo", str(repo)] if repo else []
    if args.sizes:
        print("\nbig-lama generator, batch 1, fp32, CPU, no autograd")
        print("| size | code | seconds | tensors allocated, peak (MiB) | RSS added (MiB) |")
        print("| --- | --- | --- | --- | --- |")
    for size in args.sizes:
        results = {}
        for impl in ("pconv", "lama") if repo else ("pconv",):
            r = _spawn("--worker", impl, str(size), "--repeats", str(args.repeats), *extra)
            results[impl] = r
            rss = f"{r['added_mib']:,.0f}" if r["added_mib"] is not None else "n/a"
            print(f"| {size}x{size} | {impl} | {r['seconds']:.2f} | {r['allocated_mib']:,.0f} "
                  f"| {rss} |")  # fmt: skip
        if "lama" in results:
            a, b = results["pconv"], results["lama"]
            same = "same floats" if a["checksum"] == b["checksum"] else "OUTPUTS DIFFER"
            rss = (f"{a['added_mib'] / b['added_mib']:.2f}x" if a["added_mib"] and
                   b["added_mib"] else "n/a")  # fmt: skip
            print(f"| {size}x{size} | pconv / LaMa | {a['seconds'] / b['seconds']:.2f}x | "
                  f"{a['allocated_mib'] / b['allocated_mib']:.2f}x | {rss} ({same}) |")
    runs = [(size, 0) for size in args.compile_sizes]
    if args.compile_generator and args.compile_sizes:
        runs.append((args.compile_sizes[0], 1))
    for size, whole in runs:
        r = _spawn("--compile-worker", str(size), str(whole), "--repeats", str(args.repeats))
        ratio = r["compiled"] / r["eager"]
        print(f"torch.compile, {r['what']} {tuple(r['shape'])} ({size}x{size} image): "
              f"compiled in {r['compile_seconds']:.0f} s; {r['compiled'] * 1e3:.1f} ms vs "
              f"eager {r['eager'] * 1e3:.1f} ms ({ratio:.2f}x), max |diff| "
              f"{r['max_abs_diff']:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
