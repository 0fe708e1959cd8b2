"""``pconv classify``: classifiers through the generic loop (ClassifyTask) and their evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.models import build_model
from pconv_cli.nn import PartialPaddingConv2d
from pconv_cli.weights import read_checkpoint, save_checkpoint

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 classes of coloured noise; train 8 per class, val 4 per class, 36x44 px."""
    root = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for label, colour in enumerate(COLOURS):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 50, (36, 44, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _train(*args) -> CliRunner:
    result = CliRunner().invoke(app, ["classify", "train", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def _args(data: Path, out: Path, *extra) -> list:
    return ["--data", data, "--out", out, "--arch", "pd_resnet18", "--size", "32",
            "--batch", "8", "--lr", "0.02", "--workers", "0", "--device", "cpu",
            "--log-every", "1", *extra]  # fmt: skip


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    _train(*_args(data, out, "--epochs", "4"))
    return out


def test_training_logs_epochs_and_keeps_best_and_last(run):
    records = _records(run)
    steps = [r for r in records if "loss" in r]
    epochs = [r for r in records if "val_top1" in r]
    assert [r["step"] for r in steps] == list(range(1, 13))  # 24 images / 8 = 3 steps per epoch
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert all(0 <= r["val_top1"] <= r["val_top5"] <= 100 for r in epochs)
    assert steps[-1]["loss"] < steps[0]["loss"]  # the loss falls
    best = read_checkpoint(run / "best.safetensors")
    assert best.family == "pd_resnet18" and best.config.num_classes == 3
    assert json.loads(best.metadata["classes"]) == ["c0", "c1", "c2"]
    assert float(best.metadata["best"]) == max(r["val_top1"] for r in epochs)
    config = json.loads((run / "config.json").read_text())
    assert (config["lr_schedule"], config["momentum"], config["weight_decay"]) == (
        "step",
        0.9,
        1e-4,
    )
    state = torch.load(run / "checkpoints" / "step-00000012.state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"classifier"}


def test_resume_is_bit_exact(run, data, tmp_path):
    split = tmp_path / "split"
    _train(*_args(data, split, "--epochs", "2"))
    _train("--out", split, "--resume", "--epochs", "4")
    a, b = (
        read_checkpoint(run / "last.safetensors").state,
        read_checkpoint(split / "last.safetensors").state,
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["val_top1"] for r in _records(split) if "val_top1" in r] == [
        r["val_top1"] for r in _records(run) if "val_top1" in r
    ]


def test_two_process_ddp_with_sync_bn_equals_one_process(data, tmp_path):
    # One step (8 of the training images): BatchNorm over 4 images per rank, synchronised.
    # Over many steps tiny float differences grow chaotically with such small batches.
    small = tmp_path / "small"
    for split, count in (("train", 4), ("val", 2)):
        for label in range(2):
            target = small / split / f"c{label}"
            target.mkdir(parents=True)
            for source in sorted((data / split / f"c{label}").iterdir())[:count]:
                (target / source.name).write_bytes(source.read_bytes())
    _train(*_args(small, tmp_path / "ddp", "--epochs", "1", "--nproc", "2", "--sync-bn"))
    _train(*_args(small, tmp_path / "one", "--epochs", "1"))
    a = read_checkpoint(tmp_path / "ddp" / "last.safetensors").state
    b = read_checkpoint(tmp_path / "one" / "last.safetensors").state
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), rtol=1e-4, atol=1e-4, msg=key)
    ddp, one = (_records(tmp_path / run) for run in ("ddp", "one"))
    assert ddp[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-5)
    assert ddp[-1]["val_top1"] == one[-1]["val_top1"]


def test_eval_top1_equals_a_hand_count(data, tmp_path):
    # A classifier that always answers class 1: top-1 = the share of class-1 images, exactly.
    model = build_model("pd_resnet18", num_classes=3)
    with torch.no_grad():
        model.net.fc.weight.zero_()
        model.net.fc.bias.copy_(torch.tensor([0.0, 5.0, 1.0]))
    weights = save_checkpoint(tmp_path / "constant.safetensors", model, size=32,
                              classes=["c0", "c1", "c2"])  # fmt: skip
    report = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["classify", "eval", "--weights", str(weights), "--data",
                                      str(data / "val"), "--json", str(report)])  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = json.loads(report.read_text())
    assert scores["images"] == 12 and scores["top1"] == pytest.approx(100 * 4 / 12)
    assert scores["top5"] == 100.0  # 3 classes: always in the top 5
    assert scores["confusion"] == [[0, 4, 0], [0, 4, 0], [0, 4, 0]]
    assert "top-1 33.33%" in result.output


def test_building_from_a_plain_resnet18_file_with_another_head(tmp_path):
    torch.manual_seed(0)
    plain = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(plain.state_dict(), path)
    model = build_model("pd_resnet18", num_classes=5, weights=str(path))
    state = model.net.state_dict()
    for key, value in plain.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert model.net.fc.out_features == 5  # a fresh head for 5 classes
    assert isinstance(model.net.conv1, PartialPaddingConv2d)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_torchvision_weights_offline_say_where_to_put_the_file(monkeypatch, tmp_path):
    from pconv_cli.weights import WeightsError  # the hub path every published weights take

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as info:
        build_model("pd_resnet18", weights="IMAGENET1K_V1")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "args,message,code",
    [
        (["--data", "{tmp}", "--out", "{tmp}/o"], "no train/ folder", 1),
        (
            ["--data", "{data}", "--out", "{tmp}/o", "--arch", "pd_nonsense"],
            "unknown model family",
            2,
        ),
        (["--data", "{data}", "--out", "{tmp}/o", "--arch", "deepfillv2"], "not a classifier", 2),
        (
            ["--data", "{data}", "--out", "{tmp}/o", "--batch", "5", "--nproc", "2"],
            "does not split",
            2,
        ),
    ],
)
def test_bad_training_input_is_a_one_line_error(data, tmp_path, args, message, code):
    args = [a.format(tmp=tmp_path, data=data) for a in args]
    result = CliRunner().invoke(app, ["classify", "train", *args])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_weights_of_another_architecture_are_a_one_line_error(data, tmp_path):
    weights = save_checkpoint(
        tmp_path / "pconv.safetensors", build_model("pconv", layers=2, width=0.125)
    )
    result = CliRunner().invoke(
        app, ["classify", "eval", "--weights", str(weights), "--data", str(data / "val")]
    )
    assert result.exit_code == 1 and "not a classifier" in result.output
    resnet = save_checkpoint(tmp_path / "r.safetensors", build_model("resnet18", num_classes=3))
    wrong = CliRunner().invoke(app, ["classify", "eval", "--weights", str(resnet), "--data",
                                     str(data / "val"), "--arch", "pd_resnet18"])  # fmt: skip
    assert wrong.exit_code == 1 and "holds a resnet18, not a pd_resnet18" in wrong.output
    other = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11(num_classes=3).state_dict(), other)
    from pconv_cli.weights import WeightsError  # the same check as every weights file

    with pytest.raises(WeightsError, match=r"missing key conv1\.weight|unexpected key"):
        build_model("pd_resnet18", num_classes=3, weights=str(other))
