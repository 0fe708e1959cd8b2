"""Files and run directories written by pconv 0.1 (checkpoint metadata ``arch``/``layers``/...,
one optimizer per state file, model options at the top of config.json) still load and resume."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pconv_cli.models import build_model
from pconv_cli.train import resolve_config, train
from pconv_cli.weights import load_model, open_weights, read_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _as_v1_checkpoint(path: Path, arch: str) -> None:
    """Rewrite a checkpoint's metadata the way pconv 0.1 wrote it."""
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    config = json.loads(meta.pop("config"))
    del meta["family"], meta["format_version"]
    meta.update(
        arch=arch,
        layers=str(config["layers"]),
        width=repr(float(config["width"])),
        upsampling=config["upsampling"],
        normalization=config["normalization"],
    )
    save_file(tensors, str(path), metadata=meta)


def test_a_version_1_checkpoint_loads_with_its_architecture(tmp_path):
    from pconv_cli.weights import save_checkpoint

    for family, arch in (("pconv_unet", "pconv"), ("unet", "unet")):
        model = build_model(family, layers=3, width=0.125, normalization="imagenet").eval()
        path = save_checkpoint(tmp_path / f"{arch}.safetensors", model, step=12)
        _as_v1_checkpoint(path, arch)
        weights = open_weights(str(path))
        assert weights.family == family and weights.config == model.config
        assert weights.metadata["step"] == "12"
        loaded = load_model(str(path))
        image, mask = torch.rand(2, 3, 20, 28), (torch.rand(2, 1, 20, 28) > 0.4).float()
        with torch.no_grad():
            torch.testing.assert_close(loaded(image, mask), model(image, mask))


def test_a_version_1_run_directory_resumes_exactly(tmp_path):
    options = {
        "data": str(EXAMPLES), "model": {"layers": 4, "width": 0.125}, "size": 32, "batch": 2,
        "lr": 1e-3, "vgg_weights": "none", "workers": 0, "save_every": 4, "log_every": 4,
        "samples": 1,
    }  # fmt: skip
    train(resolve_config({**options, "out": str(tmp_path / "straight"), "steps": 8}))
    old = tmp_path / "old"
    train(resolve_config({**options, "out": str(old), "steps": 4}))
    # turn the run directory into what pconv 0.1 left behind
    config = json.loads((old / "config.json").read_text())
    model = config.pop("model")
    config.update(model, arch="pconv")
    config["loss_weights"] = {"valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0,
                              "tv": 0.1}  # fmt: skip
    (old / "config.json").write_text(json.dumps(config))
    for path in [old / "last.safetensors", *old.glob("checkpoints/*.safetensors")]:
        _as_v1_checkpoint(path, "pconv")
    for path in old.glob("checkpoints/*.state.pt"):
        state = torch.load(path, weights_only=True)
        state["optimizer"] = state.pop("optimizers")["generator"]
        state["scaler"] = state.pop("scalers")["generator"]
        torch.save(state, path)

    resumed = resolve_config({"out": str(old), "steps": 8}, resume=True)
    assert resumed.arch == "pconv_unet" and resumed.model["layers"] == 4
    train(resumed)
    a = read_checkpoint(tmp_path / "straight" / "last.safetensors").state
    b = read_checkpoint(old / "last.safetensors").state
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
