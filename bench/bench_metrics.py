"""Batched torch metrics vs a per-image scikit-image loop (same numbers, how much faster).

200 composites at 256x256 (real photos, shipped eval masks, noisy fills), scored
with :func:`pconv_cli.evaluation.metrics.compute_metrics` in one call and with
scikit-image's ``peak_signal_noise_ratio`` / ``structural_similarity`` (plus a
numpy masked l1) image by image. Methods are timed round-robin; the script prints
median times, the speed-up and the largest differences:

    python bench/bench_metrics.py [--count 200] [--size 256] [--repeats 3] [--device cpu]

Goal (issue #6): >= 5x faster than the scikit-image loop, same numbers (1e-4).

``--networks`` benches the network metrics instead (issue #22): pairs/s of LPIPS,
FID and P-IDS/U-IDS against the reference packages in the same run (the ``lpips``
package, pytorch-fid's InceptionV3 + ``calculate_frechet_distance``), and the time of
all three metrics for two sources over ``--pairs`` pairs (default 24) at ``--size``
through :func:`pconv_cli.evaluation.scoring.evaluate` (goal: well under 200 s on 2
CPU cores). Real network files are used when they are in the torch hub cache, else
random ones in the reference layouts (the speed is the same):

    python bench/bench_metrics.py --networks [--pairs 24] [--size 256]
"""

from __future__ import annotations

import argparse
import math
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


def _network_files(folder: Path) -> dict[str, Path]:
    """Hub-cache files where present, else random files in the reference layouts."""
    from torchvision.models import alexnet, inception_v3

    from pconv_cli.evaluation.metric_weights import METRIC_WEIGHTS, metric_weights_path

    files: dict[str, Path] = {}
    for key in METRIC_WEIGHTS:
        try:
            files[key] = metric_weights_path(key, progress=False)
            print(f"  {key}: {files[key]} (real weights)")
            continue
        except Exception:  # offline: random weights, same speed
            pass
        path = folder / f"{key}.pth"
        if key == "lpips-alex":
            torch.save(alexnet(weights=None).state_dict(), path)
        elif key == "lpips-alex-lin":
            chans = (64, 192, 384, 256, 256)
            torch.save(
                {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(chans)},
                path,
            )
        else:
            net = inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=True)
            for module in net.modules():  # BN statistics of random images: O(1) activations
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.momentum = None
            with torch.no_grad():
                net.train()(torch.rand(4, 3, 299, 299) * 2 - 1)
            torch.save(net.state_dict(), path)
        files[key] = path
        print(f"  {key}: random weights (offline)")
    return files


def _timed(fn, repeats: int = 1):
    best, value = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def bench_networks(pairs: int, size: int, device: torch.device) -> None:
    import tempfile

    from pconv_cli.evaluation.feature_metrics import MetricSuite
    from pconv_cli.evaluation.set_metrics import (
        FeatureSpool,
        RealFactor,
        frechet_distance,
        gaussian_stats,
        inception_discriminative_scores,
    )

    print(f"{pairs} pairs {size}x{size}, device {device}, torch threads {torch.get_num_threads()}")
    outputs, truths, _ = make_data(pairs, size)
    out_t = torch.from_numpy(outputs).permute(0, 3, 1, 2)
    truth_t = torch.from_numpy(truths).permute(0, 3, 1, 2)
    with tempfile.TemporaryDirectory() as tmp:
        files = _network_files(Path(tmp))
        suite = MetricSuite(("lpips", "fid", "pids"), device=str(device), weights=files).load()
        batches = [slice(i, i + 8) for i in range(0, pairs, 8)]

        # LPIPS: ours vs the lpips package on the same weights
        ours_t, ours = _timed(
            lambda: np.concatenate([suite.lpips(out_t[b], truth_t[b]) for b in batches])
        )
        line = f"  lpips      pconv {pairs / ours_t:7.2f} pairs/s"
        try:
            import lpips

            ref = lpips.LPIPS(
                net="alex", pnet_rand=True, model_path=str(files["lpips-alex-lin"]), verbose=False
            )
            trunk = torch.load(files["lpips-alex"], map_location="cpu")
            for block in (
                ref.net.slice1,
                ref.net.slice2,
                ref.net.slice3,
                ref.net.slice4,
                ref.net.slice5,
            ):
                for name, layer in block.named_children():
                    for param in ("weight", "bias"):
                        if f"features.{name}.{param}" in trunk:
                            getattr(layer, param).data.copy_(trunk[f"features.{name}.{param}"])
            ref = ref.to(device).eval()

            def reference():
                with torch.no_grad():
                    return np.concatenate(
                        [
                            ref(
                                (out_t[b].to(device).float() / 127.5 - 1),
                                truth_t[b].to(device).float() / 127.5 - 1,
                            )
                            .flatten()
                            .cpu()
                            .numpy()
                            for b in batches
                        ]
                    )

            ref_t, expected = _timed(reference)
            diff = np.abs(ours - expected).max()
            line += f" | lpips package {pairs / ref_t:7.2f} pairs/s | ratio {ref_t / ours_t:.2f}x"
            line += f" | max |diff| {diff:.1e}"
        except ImportError:
            line += " (lpips package not installed: no reference)"
        print(line)

        # FID: features of truths and outputs, then the distance
        def fid_ours():
            real, fake = FeatureSpool(), FeatureSpool()
            for b in batches:
                real.append(suite.features(truth_t[b]))
                fake.append(suite.features(out_t[b]))
            value = frechet_distance(RealFactor(gaussian_stats(real)), gaussian_stats(fake))
            return value, real.read(), fake.read()

        fid_t, (fid, real_rows, fake_rows) = _timed(fid_ours)
        line = f"  fid        pconv {pairs / fid_t:7.2f} pairs/s"
        try:
            import pytorch_fid.inception as fid_inception
            from pytorch_fid.fid_score import calculate_frechet_distance

            fid_inception.load_state_dict_from_url = lambda *a, **k: torch.load(
                files["fid-inception"], map_location="cpu"
            )
            ref_net = fid_inception.InceptionV3([3]).to(device).eval()

            def fid_reference():
                with torch.no_grad():
                    acts = [
                        np.concatenate(
                            [
                                ref_net(x[b].to(device).float() / 255)[0].flatten(1).cpu().numpy()
                                for b in batches
                            ]
                        ).astype(np.float64)
                        for x in (truth_t, out_t)
                    ]
                stats = [(a.mean(0), np.cov(a, rowvar=False)) for a in acts]
                return calculate_frechet_distance(*stats[0], *stats[1])

            start = time.perf_counter()
            try:
                expected = fid_reference()
            except ValueError as error:  # sqrtm of a near-singular product (few images)
                expected, failure = math.nan, str(error)
            ref_t = time.perf_counter() - start
            line += f" | pytorch-fid {pairs / ref_t:7.2f} pairs/s | ratio {ref_t / fid_t:.2f}x"
            if math.isnan(expected):
                line += f" | pytorch-fid failed: {failure} (pconv: FID {fid:.4f})"
            else:
                line += f" | rel diff {abs(fid - expected) / abs(expected):.1e}"
        except ImportError:
            line += " (pytorch-fid not installed: no reference)"
        print(line)
        ids_t, _ = _timed(lambda: inception_discriminative_scores(real_rows, fake_rows))
        print(
            f"  pids (SVM) pconv {pairs / ids_t:7.2f} pairs/s (LinearSVC fit on the features above)"
        )

        # all three metrics, two sources, through the harness
        end_t = bench_eval(pairs, size, files, device)
        print(
            f"  pconv eval: lpips + fid + pids, 2 sources x {pairs} pairs: {end_t:.1f} s "
            "(goal: well under 200 s)"
        )


def bench_eval(pairs: int, size: int, files: dict[str, Path], device: torch.device) -> float:
    import tempfile

    from PIL import Image

    from pconv_cli.data.masks import save_mask
    from pconv_cli.evaluation.feature_metrics import MetricSuite
    from pconv_cli.evaluation.pairs import PairLoader, list_images, load_mask_set, plan_pairs
    from pconv_cli.evaluation.scoring import MethodSource, evaluate

    _, truths, holes = make_data(pairs, size, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "masks").mkdir()
        for i, (truth, hole) in enumerate(zip(truths, holes, strict=True)):
            Image.fromarray(truth).save(root / "images" / f"{i:03d}.png")
            save_mask(root / "masks" / f"{i:03d}.png", hole)
        plan = plan_pairs(list_images(root / "images"), load_mask_set(root / "masks"), "cycle")
        start = time.perf_counter()
        suite = MetricSuite(
            ("l1", "psnr", "ssim", "lpips", "fid", "pids"), device=str(device), weights=files
        ).load()
        sources = [MethodSource("mean"), MethodSource("zeros")]
        with evaluate(plan, sources, PairLoader(), batch_size=8, suite=suite) as result:
            assert all("fid" in s.set_metrics for s in result.sources)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--networks", action="store_true", help="bench LPIPS/FID/P-IDS instead")
    parser.add_argument("--pairs", type=int, default=24)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.networks:
        bench_networks(args.pairs, args.size, device)
        return

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
