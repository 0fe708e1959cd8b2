"""General training options: hole-ratio ranges of generated masks, the crop scale, the
learning-rate schedule (what the default model's recipe needs, for any family)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.datasets import DataError, InpaintingDataset, MaskSource, resolve_images
from pconv_cli.data.masks import hole_ratio_of
from pconv_cli.train import resolve_config, train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.mark.parametrize("kind", ["irregular", "mixed"])
def test_hole_ratio_range_of_generated_training_masks(kind):
    source = MaskSource.parse(kind, hole_ratio="0.01-0.6")
    ratios = np.array(
        [hole_ratio_of(source.draw(np.random.default_rng([5, k]), 64)) for k in range(240)]
    )
    assert ratios.min() >= 0.01 and ratios.max() < 0.6
    # uniform over the range: every NVIDIA bucket gets its share (40 expected of 240)
    counts, _ = np.histogram(ratios, bins=[0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert counts.min() >= 20, counts
    default = [hole_ratio_of(MaskSource.parse(kind).draw(np.random.default_rng(k), 64))
               for k in range(40)]  # fmt: skip
    if kind == "irregular":  # MMagic's own range: nothing below 15 %
        assert min(default) >= 0.15


def test_hole_ratio_errors(tmp_path):
    with pytest.raises(DataError, match="--hole-ratio"):
        MaskSource.parse("irregular", hole_ratio="0.6-0.1")
    with pytest.raises(DataError, match="generated masks"):
        MaskSource.parse(str(EXAMPLES), hole_ratio="0.1-0.2")
    result = CliRunner().invoke(
        app, ["train", "--data", str(EXAMPLES), "--out", str(tmp_path / "r"), "--hole-ratio", "x"]
    )
    assert result.exit_code == 2 and "--hole-ratio" in result.output
    assert not (tmp_path / "r").exists()


def test_crop_size_sets_the_scale(tmp_path):
    """A crop of --crop-size pixels resized to --size: a 2x2 checker of 32 px squares seen
    through a 64 px crop at size 32 has 16 px squares."""
    checker = (np.indices((128, 128)).sum(0) // 32 % 2 * 255).astype(np.uint8)
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(np.stack([checker] * 3, -1)).save(folder / "c.png")
    paths = resolve_images(folder)
    for crop_size, period in [(64, 16), (32, 32)]:
        data = InpaintingDataset(
            paths, MaskSource.parse("box"), size=32, crop_size=crop_size, flip=False, seed=1
        )
        row = data[0]["image"][0, 16].numpy()
        edges = np.flatnonzero(np.abs(np.diff(row)) > 0.5)
        assert len(edges) >= 1 and np.all(np.diff(edges) == period), (crop_size, edges)


def test_cosine_schedule_in_a_run(tmp_path):
    config = resolve_config({
        "data": str(EXAMPLES), "out": str(tmp_path / "run"), "model": {"layers": 3, "width": 0.125},
        "size": 32, "batch": 2, "steps": 8, "lr": 1e-3, "lr_schedule": "cosine",
        "vgg_weights": "none", "workers": 0, "log_every": 2, "save_every": 8, "samples": 0,
        "masks": "irregular", "hole_ratio": "0.05-0.3", "crop_size": 48,
    })  # fmt: skip
    train(config)
    log = (tmp_path / "run" / "log.jsonl").read_text()
    records = [json.loads(line) for line in log.splitlines()]
    for record in records:  # the lr of the interval's last step (0-based step - 1)
        expected = 1e-3 * 0.5 * (1 + math.cos(math.pi * (record["step"] - 1) / 8))
        assert record["lr"] == pytest.approx(expected)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["hole_ratio"] == "0.05-0.3" and saved["crop_size"] == 48


def test_default_model_preset_has_a_recipe_per_stage(tmp_path):
    from pconv_cli.models import build_model
    from pconv_cli.weights import save_checkpoint

    base = {"data": str(EXAMPLES), "out": str(tmp_path / "run"), "preset": "default-model"}
    first = resolve_config(base)
    assert (first.size, first.crop_size, first.batch, first.lr_schedule) == (128, 160, 8, "cosine")
    assert first.model["width"] == 0.5 and first.model["layers"] == 7
    assert (first.masks, first.hole_ratio, first.vgg_weights) == ("mixed", "0.01-0.6", "none")
    init = save_checkpoint(tmp_path / "w.safetensors", build_model("pconv", layers=3, width=0.125))
    second = resolve_config({**base, "stage": 2, "init": str(init)})
    assert (second.size, second.crop_size, second.batch, second.steps) == (256, None, 4, 800)
    assert second.lr == 1e-4 and second.freeze_encoder_bn and second.hole_ratio == "0.01-0.6"
    assert first.loss_weights["tv"] == 0.1 and second.loss_weights["tv"] == 6.0
    assert second.loss_weights["hole"] == 6.0  # the preset changes one term, not the others
    mine = resolve_config({**base, "stage": 2, "init": str(init), "loss_weights": {"tv": 2.0}})
    assert mine.loss_weights["tv"] == 2.0  # a user's --loss-tv beats the preset's
    assert second.model["layers"] == 3  # the model is the init's
    # the user's options still win over the preset's
    assert resolve_config({**base, "steps": 7, "lr": 1e-3}).steps == 7


def test_default_model_stage_3_continues_stage_2(tmp_path):
    """The preset's stage 3 (NVIDIA-like masks, SSIM term) starts from OUT/stage2's newest
    checkpoint and writes OUT/stage3; its options are the preset's."""
    run = tmp_path / "run"
    tiny = ["--data", str(EXAMPLES), "--size", "32", "--batch", "2", "--workers", "0",
            "--vgg-weights", "none", "--device", "cpu", "--save-every", "1"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(app, ["train", *tiny, "--layers", "3", "--width", "0.125",
                                "--out", str(run), "--steps", "1"])  # fmt: skip
    assert first.exit_code == 0, first.output
    for stage in (2, 3):
        result = runner.invoke(app, ["train", "--preset", "default-model", *tiny, "--out",
                                     str(run), "--stage", str(stage), "--steps", "2"])  # fmt: skip
        assert result.exit_code == 0, result.output
    third = json.loads((run / "stage3" / "config.json").read_text())
    assert third["init"] == str(run / "stage2" / "checkpoints" / "step-00000002.safetensors")
    assert third["masks"] == "mixed+occlusion" and third["hole_ratio"] == "0.01-0.6"
    assert third["loss_weights"]["ssim"] == 0.5 and third["loss_weights"]["tv"] == 6.0
    assert third["loss_weights"]["valid"] == 0.0 and third["loss_weights"]["hole"] == 6.0
    assert third["freeze_encoder_bn"] and third["lr_schedule"] == "cosine"
    logged = [json.loads(line) for line in (run / "stage3" / "log.jsonl").read_text().splitlines()]
    assert any("ssim" in entry for entry in logged)
    second = json.loads((run / "stage2" / "config.json").read_text())
    assert second["loss_weights"]["ssim"] == 0.0 and second["masks"] == "mixed"
