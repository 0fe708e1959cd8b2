"""Training the ``lama`` family: LaMa's losses against hand-written references, the ADE20k
encoder in CSAIL's layout, and ``pconv train`` / ``pconv finetune`` end to end.

References: LaMa's generator and discriminator losses transcribed from its
definitions with R1 by finite differences, CSAIL's dilated ResNet-50 as functions of
its state dict (``lama_reference.py``), CSAIL's key list
(``data/ade20k_resnet50dilated_keys.txt``, from LaMa's ``models/ade20k``). No download:
the encoder is written with random weights into a temporary hub cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lama_reference import (
    lama_discriminator_loss,
    lama_generator_loss,
    publisher_state,
    reference_resnet50_dilated,
    write_release,
)
from test_lama import CONFIG_TREE, CONFIG_YAML, TINY, _randomize, _tiny_nets
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.models.lama.losses import (
    EncoderWeightsError,
    ResnetDilated,
    ResNetPL,
    ade20k_encoder_path,
    load_ade20k_encoder,
)
from pconv_cli.models.lama.network import NLayerDiscriminator
from pconv_cli.train import StepContext, TrainConfig, get_task
from pconv_cli.train.losses import NonSaturatingR1
from pconv_cli.weights import read_checkpoint

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
TRAIN = [
    "--arch", "lama", "--preset", "demo", "--data", EXAMPLES, "--size", "32", "--batch", "2",
    "--workers", "0", "--log-every", "1", "--save-every", "2", "--sample-every", "2",
    "--device", "cpu", "--seed", "5",
]  # fmt: skip


def _invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache in which nothing can be downloaded."""
    directory = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(directory))

    def no_download(url, *args, **kwargs):
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return directory


def _encoder_file(hub: Path, seed: int = 0) -> dict:
    """CSAIL's encoder layout with random weights, where pconv looks for it."""
    state = _randomize(ResnetDilated(), seed).state_dict()
    path = ade20k_encoder_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state), path)
    return state


# --------------------------------------------------------------------------- losses


def _batch(seed: int = 0, size=(2, 3, 24, 32)):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(size, generator=generator, dtype=torch.float64)
    pred = torch.rand(size, generator=generator, dtype=torch.float64)
    hole = (torch.rand((size[0], 1, *size[2:]), generator=generator) < 0.4).double()
    return image, pred, hole


def test_generator_terms_equal_lamas_generator_loss():
    model, discriminator = _tiny_nets(seed=1)
    config = TrainConfig(arch="lama", loss_weights={**get_task("lama").loss_weights,
                                                    "resnet_pl": 0.0})  # fmt: skip
    task = get_task("lama")(config, model, device=torch.device("cpu"))
    task.discriminator = discriminator.double().train()
    image, pred, hole = _batch()
    total, terms = task._generator_terms(pred, image, 1 - hole)
    expected = lama_generator_loss(pred, image, hole, discriminator)
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=0)
    assert set(terms) == {"l1_known", "l1_hole", "adversarial", "feature_matching"}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_discriminator_loss_equals_lamas(mode):
    """R1 by finite differences in eval mode (samples independent); in training mode (LaMa's,
    BatchNorm on the batch) the rest of LaMa's formula with R1 through autograd."""
    discriminator = _randomize(NLayerDiscriminator(_tiny_nets()[0].config), 2).double()
    getattr(discriminator, mode)()
    image, pred, hole = _batch(1, size=(2, 3, 16, 16))
    real = image.clone().requires_grad_(True)
    loss, terms = NonSaturatingR1(r1_weight=0.001).discriminator_loss(
        discriminator(real)[0], discriminator(pred)[0], real, fake_region=hole
    )
    expected = lama_discriminator_loss(image, pred, hole, discriminator, gp_coef=0.001)
    torch.testing.assert_close(loss, expected, rtol=1e-7 if mode == "eval" else 1e-12, atol=0)
    assert terms["r1"] > 0
    loss.backward()  # R1 keeps its graph: the penalty reaches the weights
    assert all(p.grad is not None for p in discriminator.parameters())


def test_encoder_keys_and_arithmetic_equal_csails():
    keys = {}
    for line in (DATA / "ade20k_resnet50dilated_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        keys[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    encoder = ResnetDilated()
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == keys
    _randomize(encoder, 3).double().train()
    x = torch.randn(2, 3, 24, 40, dtype=torch.float64)
    expected = reference_resnet50_dilated(encoder.state_dict(), x)
    with torch.no_grad():
        ours = encoder(x)
    assert [tuple(f.shape[-2:]) for f in ours] == [(6, 10), (3, 5), (3, 5), (3, 5)]
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_resnet_pl_loads_the_encoder_from_the_hub_cache(hub):
    state = _encoder_file(hub)
    loss = ResNetPL(load_ade20k_encoder()).train()  # BN on batch statistics, as in LaMa
    assert not any(p.requires_grad for p in loss.parameters())
    image, pred, _ = _batch(2, size=(2, 3, 24, 24))
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    features_pred = reference_resnet50_dilated(state, (pred - mean) / std)
    features_image = reference_resnet50_dilated(state, (image - mean) / std)
    pairs = zip(features_pred, features_image, strict=True)
    expected = sum(((p - t) ** 2).mean() for p, t in pairs)
    torch.testing.assert_close(loss(pred, image).double(), expected, rtol=1e-4, atol=0)


def test_a_wrong_or_missing_encoder_is_a_one_line_error_with_advice(hub):
    with pytest.raises(EncoderWeightsError, match=r"--loss resnet_pl=0") as info:
        load_ade20k_encoder()
    assert "\n" not in str(info.value)
    path = ade20k_encoder_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(EncoderWeightsError, match=r"conv1\.weight"):
        load_ade20k_encoder()


def test_gradient_clipping_of_step_update():
    layer = torch.nn.Linear(3, 1, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    step = StepContext(
        modules={"net": layer}, optimizers={"net": optimizer},
        scalers={"net": torch.amp.GradScaler("cpu", enabled=False)}, device=torch.device("cpu"),
        amp_dtype=None, memory_format=torch.contiguous_format, step=1,
        describe_failure=lambda name, value: "",
    )  # fmt: skip
    before = layer.weight.detach().clone()
    step.update("net", 1000 * layer(torch.ones(1, 3)).sum(), max_grad_norm=1.0)
    moved = layer.weight.detach() - before
    assert torch.linalg.vector_norm(moved).item() == pytest.approx(1.0, rel=1e-6)


# --------------------------------------------------------------------------- commands


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.safetensors").state


def test_train_resumes_exactly_and_keeps_the_discriminator_rate(tmp_path, hub):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    output = _invoke("train", *TRAIN, "--out", whole, "--steps", "4")
    assert "without LaMa's perceptual loss" in output  # the demo preset sets resnet_pl=0
    _invoke("train", *TRAIN, "--out", parts, "--steps", "2")
    _invoke("train", "--out", parts, "--resume", "--steps", "4", "--workers", "0")
    a, b = _weights(whole), _weights(parts)
    assert a.keys() == b.keys() and any(k.startswith("discriminator.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    state = torch.load(whole / "checkpoints" / "step-00000004.state.pt", weights_only=False)
    lr_g = state["optimizers"]["generator"]["param_groups"][0]["lr"]
    lr_d = state["optimizers"]["discriminator"]["param_groups"][0]["lr"]
    assert lr_g == 1e-3 and lr_d == pytest.approx(1e-4)
    record = json.loads((whole / "log.jsonl").read_text().splitlines()[-1])
    for term in ("l1_known", "adversarial", "feature_matching", "d_loss", "r1"):
        assert term in record


def test_train_with_resnet_pl_uses_the_cached_encoder(tmp_path, hub):
    _encoder_file(hub)
    out = tmp_path / "run"
    _invoke("train", *TRAIN, "--out", out, "--steps", "1", "--loss", "resnet_pl=30")
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert record["resnet_pl"] > 0


def test_train_without_the_encoder_names_the_offline_option(tmp_path, hub):
    args = ["train", *TRAIN, "--out", tmp_path / "r", "--steps", "1", "--loss", "resnet_pl=30"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1
    assert "--loss resnet_pl=0" in result.output and "Traceback" not in result.output


def test_finetune_starts_from_the_release_folder_with_its_discriminator(tmp_path, hub):
    model, discriminator = _tiny_nets(seed=6)
    state = publisher_state(model.net, discriminator)
    release = write_release(tmp_path / "big-lama", state, CONFIG_YAML, CONFIG_TREE)
    out = tmp_path / "ft"
    output = _invoke("finetune", "--init", release, "--data", EXAMPLES, "--out", out,
                     "--steps", "1", "--lr", "1e-12", "--size", "32", "--batch", "2",
                     "--workers", "0", "--device", "cpu", "--loss", "resnet_pl=0")  # fmt: skip
    assert "starts from scratch" not in output
    tuned = read_checkpoint(out / "last.safetensors")
    assert tuned.family == "lama" and tuned.config == model.config
    assert tuned.metadata["stage"] == "2"
    for key, value in state.items():
        if key.startswith("generator."):
            name = key.removeprefix("generator.")
        elif key.startswith("discriminator."):
            name = key
        else:
            continue
        if value.is_floating_point() and "running" not in name:  # BN statistics move
            torch.testing.assert_close(tuned.state[name], value, rtol=0, atol=1e-9, msg=name)
    assert TINY["ngf"] == tuned.config.ngf
