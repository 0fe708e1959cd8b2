"""The bundled default model: in the package, checked by its hash, loaded with no network,
better than Telea on real photos, and what ``pconv inpaint photo.jpg --mask m.png`` uses."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.models import build_model
from pconv_cli.weights import (
    DEFAULT_WEIGHTS,
    cached_weights_path,
    get_weights,
    load_model,
    save_checkpoint,
)
from pconv_cli.weights.hub import sha256_of

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EVAL_MASKS = ROOT / "masks" / "eval-256"
ENTRY = get_weights(DEFAULT_WEIGHTS)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No socket may connect or resolve a name; an empty torch hub cache."""

    def refuse(*args, **kwargs):
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))


def test_the_default_is_bundled_and_matches_its_entry():
    assert ENTRY.bundled and not ENTRY.url
    path = cached_weights_path(ENTRY)
    assert path.is_file() and path.parent.name == "bundled"
    assert path.stat().st_size <= 15 * 2**20
    assert len(ENTRY.sha256_prefix) == 64 and sha256_of(path) == ENTRY.sha256_prefix
    assert ENTRY.recipe and len(ENTRY.data_sha256) == 64 and ENTRY.metrics


def test_the_default_loads_without_network(offline):
    model = load_model(DEFAULT_WEIGHTS)
    assert model.family == ENTRY.family
    assert {k: getattr(model.config, k) for k in ENTRY.config} == dict(ENTRY.config)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("example.com", 80))  # the guard itself works


def test_half_storage_keeps_outputs_within_one_grey_level(tmp_path):
    """``weights convert --half`` (how the bundled file is stored) on a trained-like net."""
    torch.manual_seed(0)
    model = build_model("pconv", layers=4, width=0.25).eval()
    for module in model.modules():  # BN statistics away from their initial 0/1
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    full = save_checkpoint(tmp_path / "full.safetensors", model)
    result = CliRunner().invoke(
        app, ["weights", "convert", str(full), "-o", str(tmp_path / "half.safetensors"), "--half"]
    )
    assert result.exit_code == 0, result.output
    half_path = tmp_path / "half.safetensors"
    assert half_path.stat().st_size < 0.6 * full.stat().st_size
    image = (
        torch.from_numpy(
            np.array(Image.open(EXAMPLES / "images" / "astronaut.jpg").resize((64, 64)))
        )
        .permute(2, 0, 1)[None]
        .float()
        / 255
    )
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 16:40, 20:50] = 0
    with torch.no_grad():
        reference = load_model(str(full))(image, mask)
        halved = load_model(str(half_path))(image, mask)
    grey = (reference.clamp(0, 1) * 255 - halved.clamp(0, 1) * 255).abs().max().item()
    assert grey <= 1.0, grey


def test_the_default_beats_telea_on_real_photos(tmp_path):
    """Bundled photos x the shipped NVIDIA-style masks (4 per bucket, 0.01-0.6), 256x256:
    the mean PSNR over the same pairs, hence the mean hole PSNR, is higher than Telea's."""
    pytest.importorskip("cv2", reason="needs the baselines extra (OpenCV)")
    rows = list(csv.DictReader((EVAL_MASKS / "manifest.csv").open()))
    photos = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask"])
        for bucket in sorted({row["bucket"] for row in rows}):
            masks = [row["file"] for row in rows if row["bucket"] == bucket][::5]
            for k, mask in enumerate(masks[:4]):
                writer.writerow([photos[k % len(photos)], mask])
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, [
        "eval", "--folder", str(EXAMPLES / "images"), "--masks", str(EVAL_MASKS),
        "--pairing", str(pairs), "--weights", DEFAULT_WEIGHTS, "--method", "telea",
        "--device", "cpu", "--json", str(report),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    sources = json.loads(report.read_text())["sources"]
    assert set(sources) == {DEFAULT_WEIGHTS, "telea"}
    psnr = {
        name: np.mean([pair["psnr"] for pair in source["images"]])
        for name, source in sources.items()
    }
    assert psnr[DEFAULT_WEIGHTS] > psnr["telea"], psnr


def test_inpaint_as_typed_writes_beside_the_photo_with_the_default(tmp_path):
    photo = tmp_path / "photo.jpg"
    mask = tmp_path / "m.png"
    shutil.copyfile(EXAMPLES / "images" / "coffee.jpg", photo)
    shutil.copyfile(EXAMPLES / "masks" / "coffee.png", mask)
    result = CliRunner().invoke(app, ["inpaint", str(photo), "--mask", str(mask)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "photo_inpainted.jpg"
    assert out.is_file() and DEFAULT_WEIGHTS in result.output
    assert Image.open(out).format == "JPEG" and Image.open(out).size == Image.open(photo).size
    # the default model's own result, written by pconv's writer: the same bytes
    again = tmp_path / "again.jpg"
    result = CliRunner().invoke(
        app, ["inpaint", str(photo), "--mask", str(mask), "-w", DEFAULT_WEIGHTS, "-o", str(again)]
    )
    assert result.exit_code == 0 and again.read_bytes() == out.read_bytes()
    # and the hole really was filled by the network, not left or blurred flat
    hole = np.asarray(Image.open(mask)) > 127
    filled = np.asarray(Image.open(out).convert("RGB")).astype(float)
    assert filled[hole].std(axis=0).mean() > 5


def test_weights_list_marks_the_default():
    result = CliRunner().invoke(app, ["weights", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"{DEFAULT_WEIGHTS}" in result.output and "(default)" in result.output
    assert "bundled" in result.output
    assert "mmagic-places gives the best quality" in result.output


def test_keep_float32_keeps_the_matching_tensors(tmp_path):
    from safetensors import safe_open

    model = build_model("pconv", layers=3, width=0.125)
    full = save_checkpoint(tmp_path / "full.safetensors", model, size=64)
    out = tmp_path / "mixed.safetensors"
    runner = CliRunner()
    result = runner.invoke(app, [
        "weights", "convert", str(full), "-o", str(out), "--half",
        "--keep-float32", "encoder.enc1.*", "--keep-float32", "decoder.dec1.conv.*",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    with safe_open(out, "pt") as handle:
        names = handle.keys()  # a safetensors handle is not iterable
        dtypes = {key: handle.get_tensor(key).dtype for key in names}
        assert handle.metadata()["size"] == "64"  # the training size travels along
    for key, dtype in dtypes.items():
        if not dtype.is_floating_point:
            continue
        keep = key.startswith("encoder.enc1.") or key.startswith("decoder.dec1.conv.")
        assert dtype == (torch.float32 if keep else torch.float16), key
    assert {k for k, d in dtypes.items() if d == torch.float32} >= {"encoder.enc1.conv.weight"}
    # mistakes are one-line errors, and nothing is written
    for extra, message in (
        (["--half", "--keep-float32", "encoder.nope*"], "matches no tensor"),
        (["--keep-float32", "encoder.enc1.*"], "needs --half"),
    ):
        bad = tmp_path / "bad.safetensors"
        result = runner.invoke(app, ["weights", "convert", str(full), "-o", str(bad), *extra])
        assert result.exit_code == 2 and message in result.output and not bad.exists()


def test_the_bundled_file_is_float16_but_its_outer_levels():
    from safetensors import safe_open

    with safe_open(cached_weights_path(ENTRY), "pt") as handle:
        names = handle.keys()
        convs = {key: handle.get_tensor(key).dtype for key in names if key.endswith("conv.weight")}
    assert len(convs) == 14
    for key, dtype in convs.items():
        level = int(key.split(".")[1][3:])  # encoder.enc3.conv.weight -> 3
        assert dtype == (torch.float32 if level <= 3 else torch.float16), key
