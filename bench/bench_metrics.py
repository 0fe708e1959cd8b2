"""Batched torch metrics vs a per-image scikit-image loop (same numbers, how much faster).

200 composites at 256x256 (real photos, shipped eval masks, noisy fills), scored
with :func:`pconv_cli.evaluation.metrics.compute_metrics` in one call and with
scikit-image's ``peak_signal_noise_ratio`` / ``structural_similarity`` (plus a
numpy masked l1) image by image. Methods are timed round-robin; the script prints
median times, the speed-up and the largest differences:

    python bench/bench_metrics.py [--count 200] [--size 256] [--repeats 3] [--device cpu]

Goal (issue #6): >= 5x faster than the scikit-image loop, same numbers (1e-4).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pconv_cli.data.masks import load_mask  # noqa: E402
from pconv_cli.evaluation.metrics import compute_metrics  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field")


def make_data(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outputs, truths, holes): uint8 (N, S, S, 3) twice, bool (N, S, S)."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = []
    for name in PHOTOS:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos.append(Image.fromarray(image[..., :3]))
    mask_files = sorted((ROOT / "masks" / "eval-256").rglob("*.png"))
    truths = np.empty((count, size, size, 3), np.uint8)
    holes = np.empty((count, size, size), bool)
    for i in range(count):
        photo = photos[i % len(photos)]
        scale = rng.uniform(1.0, 1.6) * size / min(photo.size)
        resized = photo.resize((round(photo.width * scale) + 1, round(photo.height * scale) + 1))
        x = int(rng.integers(0, resized.width - size + 1))
        y = int(rng.integers(0, resized.height - size + 1))
        truths[i] = np.asarray(resized.crop((x, y, x + size, y + size)))
        mask = load_mask(mask_files[i % len(mask_files)])
        holes[i] = np.asarray(Image.fromarray(mask).resize((size, size))) if size != 256 else mask
    fill = np.clip(truths.astype(np.int16) + rng.integers(-40, 41, truths.shape), 0, 255)
    outputs = np.where(holes[..., None], fill.astype(np.uint8), truths)
    return outputs, truths, holes


def skimage_loop(outputs: np.ndarray, truths: np.ndarray, holes: np.ndarray) -> np.ndarray:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    values = np.empty((len(outputs), 3))
    for i, (out, truth, hole) in enumerate(zip(outputs, truths, holes, strict=True)):
        diff = np.abs(out.astype(np.float64) - truth.astype(np.float64)) / 255.0
        values[i, 0] = diff[hole].mean() * 100.0
        values[i, 1] = peak_signal_noise_ratio(truth, out, data_range=255)
        values[i, 2] = structural_similarity(
            truth,
            out,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )
    return values


def torch_batched(
    outputs: np.ndarray, truths: np.ndarray, holes: np.ndarray, device: torch.device
) -> np.ndarray:
    out = torch.from_numpy(outputs).to(device).permute(0, 3, 1, 2)
    truth = torch.from_numpy(truths).to(device).permute(0, 3, 1, 2)
    valid = ~torch.from_numpy(holes).to(device).unsqueeze(1)
    got = compute_metrics(out, truth, valid)
    return torch.stack([got["l1"], got["psnr"], got["ssim"]], dim=1).cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    outputs, truths, holes = make_data(args.count, args.size)

    def ours() -> np.ndarray:
        result = torch_batched(outputs, truths, holes, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    def reference() -> np.ndarray:
        return skimage_loop(outputs, truths, holes)

    ours()  # warm-up (kernel selection, allocator)
    times: dict[str, list[float]] = {"skimage loop": [], "pconv batched": []}
    results = {}
    for _ in range(args.repeats):
        for name, fn in (("skimage loop", reference), ("pconv batched", ours)):
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    ref, got = results["skimage loop"], results["pconv batched"]
    print(
        f"{args.count} images {args.size}x{args.size}, device {device}, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} repeats"
    )
    summary = {}
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        summary[name] = (best, median)
        print(
            f"  {name:14s} best {best:7.3f} s ({best / args.count * 1000:6.2f} ms/image)  "
            f"median {median:7.3f} s"
        )
    (ref_best, ref_median), (our_best, our_median) = summary.values()
    print(
        f"  speed-up: {ref_best / our_best:.1f}x best-of-{args.repeats}, "
        f"{ref_median / our_median:.1f}x median (goal >= 5x)"
    )
    for column, name in enumerate(("l1", "psnr", "ssim")):
        print(f"  max |diff| {name:4s}: {np.abs(got[:, column] - ref[:, column]).max():.2e}")


if __name__ == "__main__":
    main()
