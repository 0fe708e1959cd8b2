import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pconv_cli.data.datasets import InpaintingDataset, MaskSource, collate, resolve_images
from pconv_cli.train import (
    NonFiniteLossError,
    TrainCallbacks,
    TrainingError,
    TrainingInterrupted,
    losses,
    resolve_config,
    train,
)
from pconv_cli.weights import load_model, read_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"

TINY = {
    "data": str(EXAMPLES),
    "model": {"layers": 4, "width": 0.125},
    "size": 32,
    "batch": 2,
    "lr": 1e-3,
    "vgg_weights": "none",
    "workers": 0,
    "save_every": 5,
    "sample_every": 5,
    "log_every": 5,
    "samples": 2,
}


def _config(out, **changes):
    return resolve_config({**TINY, "out": str(out), **changes})


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "last.safetensors").net_state()


def _assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_dir_layout(tmp_path):
    summary = train(_config(tmp_path / "run", steps=10))
    run = tmp_path / "run"
    assert summary["step"] == 10
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == 1e-3 and config["init_from"] == "scratch" and config["stage"] == 1
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10]
    for key in ("loss", "valid", "hole", "tv", "lr", "images_per_s"):
        assert key in records[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000005.safetensors", "step-00000005.state.pt",
        "step-00000010.safetensors", "step-00000010.state.pt",
    ]  # fmt: skip
    weights = read_checkpoint(run / "last.safetensors")
    meta = weights.metadata
    assert meta["step"] == "10" and meta["stage"] == "1" and weights.config.layers == 4
    assert weights.family == "pconv_unet" and not load_model(run / "last.safetensors").training
    state = torch.load(run / "checkpoints" / "step-00000010.state.pt", weights_only=True)
    assert state["step"] == 10 and state["sampler_position"] == 20
    assert (run / "samples" / "step-00000010.png").is_file()
    assert (run / "loss.png").is_file()
    with pytest.raises(TrainingError, match="already holds a run"):
        train(_config(run, steps=10))


def test_keep_last(tmp_path):
    train(_config(tmp_path / "run", steps=20, keep_last=2))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.safetensors"))
    assert names == ["step-00000015.safetensors", "step-00000020.safetensors"]


def test_learning_lowers_hole_l1_on_real_photos(tmp_path):
    """~150 steps of a tiny net at 64x64 cut the hole L1 on those photos by >= 30%."""
    config = _config(
        tmp_path / "run", steps=150, size=64, batch=4, model={"layers": 4, "width": 0.25}, lr=2e-3,
        save_every=150, sample_every=150, log_every=50,
    )  # fmt: skip
    dataset = InpaintingDataset(
        resolve_images(EXAMPLES), MaskSource.parse("irregular"), size=64, seed=123
    )
    batch = collate([dataset[(i, 10**6 + i)] for i in range(len(dataset))])

    def hole_l1(model) -> float:
        model.eval()
        with torch.no_grad():
            out = model(batch["image"], batch["mask"]).clamp(0, 1)
        hole = 1 - batch["mask"]
        return ((out - batch["image"]).abs() * hole).sum().item() / (3 * hole.sum().item())

    torch.manual_seed(config.seed)
    from pconv_cli.models import build_model

    before = hole_l1(build_model("pconv", layers=4, width=0.25))
    train(config)
    after = hole_l1(load_model(tmp_path / "run" / "last.safetensors"))
    assert after <= 0.7 * before, (before, after)


def test_exact_resume(tmp_path):
    train(_config(tmp_path / "straight", steps=20, save_every=10))
    train(_config(tmp_path / "split", steps=10, save_every=10))
    train(resolve_config({"out": str(tmp_path / "split"), "steps": 20}, resume=True))
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(tmp_path / "split"))
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert config["steps"] == 20 and config["init_from"] == "resume"
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "log.jsonl").open()]
    assert steps == [5, 10, 15, 20]


class _InterruptAt(TrainCallbacks):
    """Sends this process SIGINT (Ctrl-C) once step ``step`` is done."""

    def __init__(self, step):
        self.step = step

    def on_step(self, step, loss):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_and_resume_matches_straight_run(tmp_path):
    train(_config(tmp_path / "straight", steps=12, save_every=100))
    with pytest.raises(TrainingInterrupted, match="stopped by SIGINT at step 8") as info:
        train(_config(tmp_path / "cut", steps=12, save_every=100), _InterruptAt(7))
    # the signal came after step 7: the step under way (8) completes on every rank, then a save
    assert info.value.step == 8
    assert (tmp_path / "cut" / "checkpoints" / "step-00000008.state.pt").is_file()
    train(resolve_config({"out": str(tmp_path / "cut")}, resume=True))
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(tmp_path / "cut"))


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from pconv_cli.weights import checkpoint

    real_save = checkpoint.write_safetensors
    calls = {"n": 0}

    def dying_save(path, tensors, metadata):
        calls["n"] += 1
        if calls["n"] > 2:  # step 5 writes 2 files; die half-way through step 10's first
            Path(path).write_bytes(b"partial")
            raise KeyboardInterrupt
        return real_save(path, tensors, metadata)

    monkeypatch.setattr(checkpoint, "write_safetensors", dying_save)
    with pytest.raises(TrainingInterrupted, match="nothing saved") as info:
        train(_config(tmp_path / "run", steps=10, save_every=5))
    assert info.value.checkpoint is None
    monkeypatch.setattr(checkpoint, "write_safetensors", real_save)
    run = tmp_path / "run"
    leftovers = [p.name for p in run.rglob("*.tmp")]
    assert leftovers == []
    meta = read_checkpoint(run / "checkpoints" / "step-00000005.safetensors").metadata
    assert meta["step"] == "5"
    # the torn step-10 pair is ignored by resume (its weights file never appeared)
    train(resolve_config({"out": str(run), "steps": 10}, resume=True))
    train(_config(tmp_path / "straight", steps=10, save_every=5))
    _assert_same_weights(_weights(run), _weights(tmp_path / "straight"))


def test_non_finite_loss_stops_with_the_step(tmp_path, monkeypatch):
    real_forward = losses.InpaintingLoss.forward
    calls = {"n": 0}

    def poisoned(self, output, target, mask):
        total, terms = real_forward(self, output, target, mask)
        calls["n"] += 1
        return (total * float("nan"), terms) if calls["n"] == 8 else (total, terms)

    monkeypatch.setattr(losses.InpaintingLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"at step 8; the last good checkpoint is step 5"):
        train(_config(tmp_path / "run", steps=10, save_every=5))
    assert read_checkpoint(tmp_path / "run" / "last.safetensors").metadata["step"] == "5"


def test_stage2_freezes_encoder_bn_and_decoder_learns(tmp_path):
    train(_config(tmp_path / "stage1", steps=5))
    init = tmp_path / "stage1" / "last.safetensors"
    no_lr = {k: v for k, v in TINY.items() if k != "lr"}
    config = resolve_config(
        {**no_lr, "out": str(tmp_path / "stage2"), "stage": 2, "init": str(init), "steps": 5}
    )
    assert config.lr == 5e-5 and config.freeze_encoder_bn and config.init_from == "init"
    train(config)
    before, after = _weights(tmp_path / "stage1"), _weights(tmp_path / "stage2")
    encoder_bn = [k for k in before if k.startswith("encoder.") and ".bn." in k]
    assert encoder_bn
    for key in encoder_bn:
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["decoder.dec1.conv.weight"], after["decoder.dec1.conv.weight"])
    key = "decoder.dec2.bn.running_mean"
    assert not torch.equal(before[key], after[key])
    assert not torch.equal(before["encoder.enc2.conv.weight"], after["encoder.enc2.conv.weight"])
    with pytest.raises(TrainingError, match="--init"):
        resolve_config({**TINY, "out": str(tmp_path / "x"), "stage": 2})
    with pytest.raises(TrainingError, match="conflicts"):
        resolve_config(
            {**TINY, "out": str(tmp_path / "x"), "init": str(init), "model": {"layers": 5}}
        )


def test_finetune_freeze_encoder(tmp_path):
    train(_config(tmp_path / "stage1", steps=5))
    init = tmp_path / "stage1" / "last.safetensors"
    train(resolve_config({**TINY, "out": str(tmp_path / "ft"), "stage": 2, "init": str(init),
                          "steps": 5, "freeze_encoder": True}))  # fmt: skip
    before, after = _weights(tmp_path / "stage1"), _weights(tmp_path / "ft")
    for key in before:
        if key.startswith("encoder."):
            assert torch.equal(before[key], after[key]), key


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "pconv_cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_cli_train_demo_preset_and_errors(tmp_path):
    out = tmp_path / "demo"
    result = _cli("train", "--data", str(EXAMPLES), "--out", str(out), "--preset", "demo",
                  "--steps", "4", "--size", "64", "--workers", "0", "--log-every", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: --vgg-weights none" in result.stderr.replace("\n", " ")
    assert (out / "last.safetensors").is_file() and (out / "loss.png").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "demo" and config["model"]["width"] == 0.25
    assert config["size"] == 64 and config["arch"] == "pconv_unet"

    again = _cli("train", "--data", str(EXAMPLES), "--out", str(out), "--preset", "demo")
    assert again.returncode == 1 and "already holds a run" in again.stderr
    assert "Traceback" not in again.stderr

    resumed = _cli("train", "--out", str(out), "--resume", "--steps", "6")
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(out / "last.safetensors").metadata["step"] == "6"

    ft = _cli("finetune", "--init", str(out / "last.safetensors"), "--data", str(EXAMPLES),
              "--out", str(tmp_path / "ft"), "--steps", "2", "--size", "64", "--batch", "2",
              "--vgg-weights", "none", "--workers", "0")  # fmt: skip
    assert ft.returncode == 0, ft.stderr
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["lr"] == 5e-5

    (tmp_path / "empty").mkdir()
    empty = _cli("train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "e"))
    assert empty.returncode == 1 and "no images found" in empty.stderr
    assert "Traceback" not in empty.stderr

    missing_vgg = _cli("train", "--data", str(EXAMPLES), "--out", str(tmp_path / "v"),
                       "--vgg-weights", str(tmp_path / "vgg.pth"))  # fmt: skip
    assert missing_vgg.returncode == 1 and "--vgg-weights" in missing_vgg.stderr
    assert "Traceback" not in missing_vgg.stderr
    assert not (tmp_path / "v" / "checkpoints").exists()  # stopped before training


def test_corrupt_file_is_counted_in_a_run(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(EXAMPLES, data)
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    messages = []

    class Collect(TrainCallbacks):
        def on_message(self, text):
            messages.append(text)

    summary = train(_config(tmp_path / "run", data=str(data), steps=10, batch=3), Collect())
    assert summary["skipped_images"] == 1
    assert sum("skipped unreadable image" in m for m in messages) == 1  # logged once
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert record["skipped_images"] == 1


def test_finetune_from_an_mmagic_checkpoint(tmp_path):
    """--init takes a published-format file: MMagic's .pth is converted on the fly."""
    from test_weights_formats import _mmagic_checkpoint

    from pconv_cli.weights import open_weights

    path = tmp_path / "pconv_256x256_stage2_4x2_places_20200619-1ffed0e8.pth"
    torch.save(_mmagic_checkpoint(), path)
    config = resolve_config(
        {"data": str(EXAMPLES), "out": str(tmp_path / "ft"), "stage": 2, "init": str(path),
         "size": 64, "batch": 2, "steps": 2, "vgg_weights": "none", "workers": 0,
         "samples": 1}
    )  # fmt: skip
    assert (config.arch, config.model["layers"], config.model["width"]) == ("pconv_unet", 7, 1.0)
    assert config.model["normalization"] == "minus_one_one" and config.lr == 5e-5
    train(config)
    before, after = open_weights(str(path)).net_state(), _weights(tmp_path / "ft")
    assert torch.equal(before["encoder.enc3.bn.running_var"], after["encoder.enc3.bn.running_var"])
    assert torch.equal(before["encoder.enc2.bn.weight"], after["encoder.enc2.bn.weight"])
    assert not torch.equal(before["decoder.dec1.conv.weight"], after["decoder.dec1.conv.weight"])


def test_full_disk_during_a_save_is_one_error_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
):
    from pconv_cli.train import run_dir

    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the state file of step 10 (step 5's was the first)
            Path(path).write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter "
                               "failed writing file data/0: file write failed")  # fmt: skip
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(run_dir.torch, "save", full_disk)
    with pytest.raises(TrainingError, match=r"cannot save the checkpoint of step 10 .*"
                       r"file write failed; step 5 is intact$"):  # fmt: skip
        train(_config(tmp_path / "run", steps=10, save_every=5))
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000005.safetensors", "step-00000005.state.pt"
    ]
    assert read_checkpoint(run / "last.safetensors").metadata["step"] == "5"


def test_stale_temporaries_of_a_killed_save_go_on_the_next_start(tmp_path):
    train(_config(tmp_path / "run", steps=4, save_every=2))
    stale = tmp_path / "run" / "checkpoints" / ".step-00000006.safetensors.k3j2h1.tmp"
    stale.write_bytes(b"x" * 1000)
    foreign = tmp_path / "run" / "checkpoints" / "notes.tmp"  # not of pconv's naming: kept
    foreign.write_text("mine")
    train(resolve_config({"out": str(tmp_path / "run"), "steps": 6}, resume=True))
    assert not stale.exists()
    assert foreign.read_text() == "mine"
