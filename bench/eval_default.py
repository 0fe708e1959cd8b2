"""Score the default path of ``pconv inpaint`` against OpenCV Telea, per NVIDIA bucket.

"The default path" is what ``pconv inpaint photo --mask m.png`` does as typed: the
bundled default weights (or ``--weights``), :func:`pconv_cli.inpainting.inpaint` with
its default strategy and ``--blend auto`` (Poisson for PConv); only hole pixels change.
``--blend none --blend auto`` scores both compositings side by side. Each photo is mapped
to the mask size as ``pconv eval`` does (``--crop center``: scaled so that it covers the
mask, then centre-cropped); mask ``i`` of the set (``manifest.csv`` order) is paired with
photos ``(i * per_mask + j) mod n`` for ``j < per_mask``, photos sorted by path.

Per bucket and overall: mean hole PSNR (MSE over hole pixels and channels), mean
whole-image PSNR (``pconv eval``'s psnr; per pair it differs from the hole PSNR by a
constant, so method differences are equal), mean SSIM (``pconv eval``'s) and the share
of pairs where the default beats Telea's hole PSNR.

    python bench/eval_default.py --photos /data/bsds300/val --masks masks/sel-occlusion \\
        --per-mask 2 --weights pconv-bsds300 --weights runs/s3/last.safetensors
    python bench/eval_default.py --photos report/photos --masks masks/eval-256 --per-mask 5 \\
        --json report.json

Images: uint8 RGB; masks: files white = hole (``hole`` arrays True = hole).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pconv_cli.data.images import IMAGE_SUFFIXES
from pconv_cli.data.masks import NVIDIA_BUCKETS, format_ratio_range, load_mask, read_manifest
from pconv_cli.evaluation.metrics import compute_metrics
from pconv_cli.evaluation.pairs import map_to_size
from pconv_cli.inpainting import inpaint
from pconv_cli.inpainting.classic import inpaint_classic


def list_photos(folders: list[Path]) -> list[Path]:
    photos = sorted(
        path
        for folder in folders
        for path in (folder.rglob("*") if folder.is_dir() else [folder])
        if path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not photos:
        raise SystemExit(f"no photos in {', '.join(map(str, folders))}")
    return photos


def load_masks(folder: Path) -> list[tuple[np.ndarray, str]]:
    """(hole, bucket label) of every mask of a set, in manifest order."""
    rows = read_manifest(folder / "manifest.csv")
    return [(load_mask(folder / row.file), row.bucket) for row in rows]


def hole_psnr(result: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    diff = result[hole].astype(np.float64) - truth[hole].astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def telea(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    output = inpaint_classic("telea", image, hole)
    result = image.copy()
    result[hole] = np.clip(np.rint(output[hole] * 255.0), 0, 255).astype(np.uint8)
    return result


def scores(result: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    to_tensor = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None]  # noqa: E731
    metrics = compute_metrics(
        to_tensor(result), to_tensor(truth), torch.from_numpy(~hole)[None, None]
    )
    return {
        "hole_psnr": hole_psnr(result, truth, hole),
        "psnr": float(metrics["psnr"][0]),
        "ssim": float(metrics["ssim"][0]),
    }


def evaluate(args: argparse.Namespace) -> dict:
    from pconv_cli.weights import zoo
    from pconv_cli.weights.loading import load_model

    torch.set_grad_enabled(False)
    photos = list_photos(args.photos)
    masks = load_masks(args.masks)
    size = masks[0][0].shape
    images: dict[int, np.ndarray] = {}

    def photo(index: int) -> np.ndarray:
        if index not in images:
            with Image.open(photos[index]) as opened:
                image = map_to_size(opened.convert("RGB"), size, "center")
            images[index] = np.asarray(image, dtype=np.uint8)
        return images[index]

    specs = args.weights or [zoo.DEFAULT_WEIGHTS]
    blends = args.blend or ["auto"]
    models = {spec: load_model(spec).eval() for spec in specs}
    runs = {(spec if len(blends) == 1 else f"{spec}+{blend}"): (spec, blend)
            for spec in specs for blend in blends}  # fmt: skip
    labels = ["telea", *runs]
    per_pair: list[dict] = []
    start = time.perf_counter()
    for i, (hole, bucket) in enumerate(masks):
        for j in range(args.per_mask):
            index = (i * args.per_mask + j) % len(photos)
            truth = photo(index)
            row = {"mask": i, "photo": str(photos[index]), "bucket": bucket,
                   "telea": scores(telea(truth, hole), truth, hole)}  # fmt: skip
            for label, (spec, blend) in runs.items():
                result = inpaint(truth, hole, models[spec], blend=blend).image
                row[label] = scores(result, truth, hole)
            per_pair.append(row)
    seconds = time.perf_counter() - start
    return {"photos": len(photos), "pairs": len(per_pair), "labels": labels,
            "seconds": seconds, "per_pair": per_pair}  # fmt: skip


def summarise(result: dict) -> list[dict]:
    """Bucket rows (NVIDIA order, then 'overall') of mean metrics per label."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in result["per_pair"]:
        groups[row["bucket"]].append(row)
        groups["overall"].append(row)
    order = [format_ratio_range(*b) for b in NVIDIA_BUCKETS] + ["overall"]
    table = []
    for bucket in [b for b in order if b in groups] + sorted(set(groups) - set(order)):
        rows = groups[bucket]
        entry: dict = {"bucket": bucket, "pairs": len(rows)}
        for label in result["labels"]:
            for metric in ("hole_psnr", "psnr", "ssim"):
                values = [r[label][metric] for r in rows if math.isfinite(r[label][metric])]
                entry[f"{label}:{metric}"] = float(np.mean(values)) if values else math.nan
            if label != "telea":
                wins = [r[label]["hole_psnr"] > r["telea"]["hole_psnr"] for r in rows]
                entry[f"{label}:wins"] = float(np.mean(wins))
        table.append(entry)
    return table


def print_table(result: dict, table: list[dict]) -> None:
    labels = result["labels"]
    print(f"{result['pairs']} pairs, {result['photos']} photos, {result['seconds']:.0f} s")
    for metric, digits in (("hole_psnr", 2), ("psnr", 2), ("ssim", 4)):
        print(f"\n{metric}")
        print("| bucket | pairs | " + " | ".join(labels) + " |")
        print("|---|---|" + "---|" * len(labels))
        for entry in table:
            cells = [f"{entry[f'{label}:{metric}']:.{digits}f}" for label in labels]
            print(f"| {entry['bucket']} | {entry['pairs']} | " + " | ".join(cells) + " |")
    print("\nshare of pairs whose hole PSNR beats Telea's")
    for entry in table:
        wins = ", ".join(f"{label} {entry[f'{label}:wins']:.0%}" for label in labels[1:])
        print(f"{entry['bucket']}: {wins}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, action="append", required=True,
                        help="photo folder or file (repeatable)")  # fmt: skip
    parser.add_argument("--masks", type=Path, required=True, help="mask set with manifest.csv")
    parser.add_argument("--per-mask", type=int, default=2, help="photos per mask")
    parser.add_argument("--weights", action="append",
                        help="zoo name or file (repeatable; default: the default)")  # fmt: skip
    parser.add_argument("--blend", action="append", choices=("auto", "poisson", "none"),
                        help="compositing (repeatable; default: auto)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write per-pair scores and the table here")
    args = parser.parse_args()
    from pconv_cli.errors import PconvError

    try:
        result = evaluate(args)
    except PconvError as exc:
        raise SystemExit(f"Error: {exc}") from None
    table = summarise(result)
    print_table(result, table)
    if args.json:
        args.json.write_text(json.dumps({**result, "table": table}, indent=1))


if __name__ == "__main__":
    main()
