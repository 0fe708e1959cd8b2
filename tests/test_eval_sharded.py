"""``pconv eval --nproc 2`` (2 gloo processes on CPU) gives the one-process report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from metric_nets import lpips_heads_file, make_alexnet, make_inception
from PIL import Image

from pconv_cli.data.masks import save_mask
from pconv_cli.evaluation.sharding import shard_plan

pytest.importorskip("lpips")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "examples" / "images").glob("*.jpg"))


def _eval(tmp: Path, *args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pconv_cli", "eval", *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=tmp, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """3 photos x 7 masks of 40 px (cycle: 7 pairs), and the metric networks."""
    root = tmp_path_factory.mktemp("sharded")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for path in PHOTOS[:3]:
        with Image.open(path) as photo:
            photo.convert("RGB").resize((48, 40), Image.BICUBIC).save(images / f"{path.stem}.png")
    for i in range(7):
        hole = np.zeros((40, 40), bool)
        hole[2 + 4 * i : 12 + 4 * i, 3 * i : 3 * i + 10 + i] = True
        save_mask(masks / f"m{i}.png", hole)
    return {
        "root": root,
        "images": images,
        "masks": masks,
        "alex": make_alexnet(root / "alex.pth"),
        "inception": make_inception(root / "inception.pth"),
    }


def test_shards_are_whole_batches_in_turn():
    plan = list(range(11))
    assert shard_plan(plan, 3, 0, 2) == [0, 1, 2, 6, 7, 8]
    assert shard_plan(plan, 3, 1, 2) == [3, 4, 5, 9, 10]
    assert (
        sorted(shard_plan(plan, 2, 0, 3) + shard_plan(plan, 2, 1, 3) + shard_plan(plan, 2, 2, 3))
        == plan
    )


def test_two_processes_give_the_one_process_report(data):
    args = [
        "--folder", data["images"], "--masks", data["masks"], "--method", "mean",
        "--method", "zeros", "--device", "cpu", "--batch", "2",
        "--metric-weights", f"lpips-alex={data['alex']}",
        "--metric-weights", f"lpips-alex-lin={lpips_heads_file()}",
        "--metric-weights", f"fid-inception={data['inception']}",
    ]  # fmt: skip
    for name in ("l1", "psnr", "ssim", "lpips", "fid", "pids"):
        args += ["--metric", name]
    root = data["root"]
    one = _eval(root, *args, "--json", "one.json", "--csv", "one.csv", "--grid", "one.png",
                "--grid-count", "2")  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    two = _eval(root, *args, "--nproc", "2", "--json", "two.json", "--csv", "two.csv",
                "--grid", "two.png", "--grid-count", "2")  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    first = json.loads((root / "one.json").read_text())
    second = json.loads((root / "two.json").read_text())
    assert first["config"] == second["config"]
    assert first["sources"] == second["sources"]  # per-pair values bit for bit, and the rest
    assert len(first["sources"]["mean"]["images"]) == 7
    assert first["sources"]["mean"]["set_metrics"]["fid"] > 0
    assert (root / "one.csv").read_bytes() == (root / "two.csv").read_bytes()
    assert (root / "one.png").read_bytes() == (root / "two.png").read_bytes()


def test_a_failing_worker_is_one_line(data, tmp_path):
    result = _eval(tmp_path, "--folder", data["images"], "--masks", data["masks"],
                   "--method", "zeros", "--device", "cpu", "--nproc", "2", "--metric", "lpips",
                   "--metric-weights", f"lpips-alex={tmp_path / 'missing.pth'}")  # fmt: skip
    assert result.returncode == 1
    assert "no such file" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
