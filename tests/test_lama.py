"""The ``lama`` family: LaMa's layout, LaMa's arithmetic, LaMa's release files, pconv's commands.

References: the publisher's key list (``data/lama_big_keys.txt``, from LaMa's own
``FFCResNetGenerator`` and ``NLayerDiscriminator`` built with big-lama's config), a
functional float64 generator with numpy's FFT and LaMa's ``predict.py`` around it
(``lama_reference.py``), numpy's symmetric padding, hand-written parses of YAML, and
release files written in the publisher's layout (a Lightning ``best.ckpt`` pickling
OmegaConf-like objects, ``config.yaml``, the zip).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lama_reference import (
    Payload,
    lightning_checkpoint,
    publisher_state,
    reference_generator,
    reference_inpaint,
    save_checkpoint,
    write_release,
    zip_release,
)
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.models import build_model
from pconv_cli.models.lama import ffc
from pconv_cli.models.lama.config_yaml import parse_yaml, resolve
from pconv_cli.models.lama.ffc import reflect_conv2d
from pconv_cli.models.lama.network import LamaConfig, NLayerDiscriminator, pad_symmetric
from pconv_cli.weights import WeightsError, load_model, open_weights, read_checkpoint
from pconv_cli.weights.safe_pickle import RefusedGlobal, load_restricted

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
TINY = {"ngf": 4, "n_downsampling": 3, "n_blocks": 2, "ndf": 4, "disc_layers": 2}

CONFIG_YAML = """\
run_title: tiny_ffc   # a LaMa training configuration, OmegaConf's block style
training_model:
  kind: default
  concat_mask: true
losses:
  l1:
    weight_missing: 0
    weight_known: 10
visualizer:
  key_order:
  - image
  - inpainted
  kind: directory
location:
  out_root_dir: /experiments/${env:USER}/inpainting
generator:
  kind: ffc_resnet
  input_nc: 4
  output_nc: 3
  ngf: 4
  n_downsampling: 3
  n_blocks: 2
  add_out_act: sigmoid
  init_conv_kwargs:
    ratio_gin: 0
    ratio_gout: 0
    enable_lfu: false
  downsample_conv_kwargs:
    ratio_gin: ${generator.init_conv_kwargs.ratio_gout}
    ratio_gout: ${generator.downsample_conv_kwargs.ratio_gin}
    enable_lfu: false
  resnet_conv_kwargs:
    ratio_gin: 0.75
    ratio_gout: ${generator.resnet_conv_kwargs.ratio_gin}
    enable_lfu: false
discriminator:
  kind: pix2pixhd_nlayer
  input_nc: 3
  ndf: 4
  n_layers: 2
evaluator:
  metrics: []
trainer:
  kwargs:
    log_gpu_memory: None
    val_check_interval: ${trainer.kwargs.limit_train_batches}
    limit_train_batches: 25000
"""

CONFIG_TREE = {  # CONFIG_YAML as LaMa's OmegaConf holds it (interpolations unresolved)
    "run_title": "tiny_ffc",
    "training_model": {"kind": "default", "concat_mask": True},
    "losses": {"l1": {"weight_missing": 0, "weight_known": 10}},
    "visualizer": {"key_order": ["image", "inpainted"], "kind": "directory"},
    "location": {"out_root_dir": "/experiments/${env:USER}/inpainting"},
    "generator": {
        "kind": "ffc_resnet", "input_nc": 4, "output_nc": 3, "ngf": 4, "n_downsampling": 3,
        "n_blocks": 2, "add_out_act": "sigmoid",
        "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
        "downsample_conv_kwargs": {
            "ratio_gin": "${generator.init_conv_kwargs.ratio_gout}",
            "ratio_gout": "${generator.downsample_conv_kwargs.ratio_gin}",
            "enable_lfu": False,
        },
        "resnet_conv_kwargs": {
            "ratio_gin": 0.75, "ratio_gout": "${generator.resnet_conv_kwargs.ratio_gin}",
            "enable_lfu": False,
        },
    },
    "discriminator": {"kind": "pix2pixhd_nlayer", "input_nc": 3, "ndf": 4, "n_layers": 2},
    "evaluator": {"metrics": []},
    "trainer": {"kwargs": {
        "log_gpu_memory": "None", "val_check_interval": "${trainer.kwargs.limit_train_batches}",
        "limit_train_batches": 25000,
    }},
}  # fmt: skip


def _keys() -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in (DATA / "lama_big_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        keys[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return keys


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights and BatchNorm statistics far from their defaults (BN is not the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var") or (name.endswith("weight") and tensor.dim() == 1):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
    return module


def _tiny_nets(seed: int = 0):
    model = build_model("lama", **TINY).eval()
    _randomize(model.net, seed)
    with torch.no_grad():  # outputs spread over (0, 1) rather than a saturated sigmoid
        model.net.model[-2].weight.mul_(0.05)
    discriminator = _randomize(NLayerDiscriminator(model.config), seed + 1)
    return model, discriminator


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A tiny LaMa release in the publisher's layout, and the nets it was made from."""
    model, discriminator = _tiny_nets()
    root = tmp_path_factory.mktemp("lama") / "big-lama"
    state = publisher_state(model.net, discriminator)
    write_release(root, state, CONFIG_YAML, CONFIG_TREE)
    return root, state, model, discriminator


def _invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


# --------------------------------------------------------------------------- layout


def test_keys_and_shapes_equal_lamas_big_lama():
    keys = _keys()
    generator = {k.removeprefix("generator."): v for k, v in keys.items() if "generator." in k}
    disc = {k.removeprefix("discriminator."): v for k, v in keys.items() if "discriminator." in k}
    assert len(generator) == 989 and len(disc) == 32
    with torch.device("meta"):
        model = build_model("lama")  # big-lama's config is the default
        discriminator = NLayerDiscriminator(LamaConfig())
    assert {k: tuple(v.shape) for k, v in model.net.state_dict().items()} == generator
    assert {k: tuple(v.shape) for k, v in discriminator.state_dict().items()} == disc
    parameters = sum(p.numel() for p in model.net.parameters())
    assert parameters == 50_975_875  # Big LaMa's 51 M


def test_config_options_are_validated():
    with pytest.raises(ValueError, match="ratio_g"):
        LamaConfig(ratio_g=1.0)
    with pytest.raises(ValueError, match="out_act"):
        LamaConfig(out_act="relu")
    with pytest.raises(ValueError, match="n_downsampling"):
        LamaConfig(n_downsampling=0)


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize("size", [(16, 16), (24, 40), (64, 32)])
def test_generator_equals_the_functional_reference(size):
    model, _ = _tiny_nets(seed=3)
    state = publisher_state(model.net)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 4, *size, generator=generator, dtype=torch.float64)
    x[:, 3:] = (x[:, 3:] > 0.6).double()
    x[:, :3] *= 1 - x[:, 3:]
    expected = reference_generator(state, x, n_downsampling=3, n_blocks=2)
    with torch.no_grad():
        ours = model.net.double().generate(x)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


def test_float32_generator_is_close_to_float64():
    model, _ = _tiny_nets(seed=4)
    x = torch.rand(1, 4, 40, 24)
    with torch.no_grad():
        single = model.net.generate(x)
        double = model.net.double().generate(x.double())
    torch.testing.assert_close(single.double(), double, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "channels,kernel,stride,padding,size",
    [(8, 3, 2, 1, (33, 20)), (8, 3, 2, 1, (32, 21)), (16, 3, 1, 1, (17, 9)),
     (8, 7, 1, 3, (30, 12))],
)  # fmt: skip
def test_banded_reflection_convolutions_are_the_same_floats(
    channels, kernel, stride, padding, size
):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, channels, *size, generator=generator)
    weight = torch.randn(6, channels, kernel, kernel, generator=generator)
    bias = torch.randn(6, generator=generator)
    whole = F.conv2d(F.pad(x, (padding,) * 4, mode="reflect"), weight, bias, stride=stride)
    row = 2 * channels * (size[1] + 2 * padding) * 4
    for band_rows in (1, 2, 5):
        banded = reflect_conv2d(x, weight, bias, stride=stride, padding=padding,
                                band_bytes=row * (kernel + band_rows * stride))  # fmt: skip
        assert torch.equal(banded, whole)


def test_memory_saving_inference_gives_the_same_floats(monkeypatch):
    """In-place BatchNorm and banded convolutions (no autograd) against plain modules."""
    model, _ = _tiny_nets(seed=8)
    x = torch.rand(2, 4, 48, 40)
    plain = model.net.generate(x.clone().requires_grad_(True)).detach()  # autograd: plain path
    monkeypatch.setattr(ffc, "BAND_BYTES", 1)  # one output row per band
    with torch.no_grad():
        saving = model.net.generate(x)
    assert torch.equal(saving, plain)


@pytest.mark.parametrize("size", [(1, 1), (3, 8), (9, 5), (16, 16), (21, 30)])
@pytest.mark.parametrize("multiple,minimum", [(8, 1), (8, 16), (16, 1)])
def test_symmetric_padding_equals_numpy(size, multiple, minimum):
    x = torch.arange(2 * size[0] * size[1], dtype=torch.float32).reshape(1, 2, *size)
    h, w = size
    out_h = max(minimum, h + (-h) % multiple)
    out_w = max(minimum, w + (-w) % multiple)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (0, out_h - h), (0, out_w - w)), "symmetric")
    np.testing.assert_array_equal(pad_symmetric(x, multiple, minimum).numpy(), expected)


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (16, 24), (5, 7)])
def test_inference_equals_lamas_predict(size, release):
    _, state, model, _ = release
    rng = np.random.default_rng(size[0])
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    hole = rng.random(size) < 0.3
    hole[: size[0] // 2, : size[1] // 3] = True
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    valid = torch.from_numpy(~hole)[None, None].float()
    with torch.no_grad():
        raw = model(image_t, valid)
    assert raw.shape == (1, 3, *size)
    if min(size) < 16:  # LaMa's own code cannot run below 16 px; pconv pads further
        return
    expected = reference_inpaint(state, image, hole, n_downsampling=3, n_blocks=2)
    ours = raw[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(ours[hole], expected[hole], rtol=0, atol=2e-6)
    np.testing.assert_array_equal(expected[~hole], image[~hole] / np.float32(255))


# --------------------------------------------------------------------------- config.yaml


def test_yaml_subset_reads_lamas_config_style():
    assert parse_yaml(CONFIG_YAML) == CONFIG_TREE
    resolved = resolve(parse_yaml(CONFIG_YAML))
    assert resolved["generator"]["downsample_conv_kwargs"]["ratio_gout"] == 0
    assert resolved["generator"]["resnet_conv_kwargs"]["ratio_gout"] == 0.75
    assert resolved["trainer"]["kwargs"]["val_check_interval"] == 25000
    assert resolved["location"]["out_root_dir"] == "/experiments/${env:USER}/inpainting"


def test_yaml_scalars_lists_and_errors():
    text = (
        "a: 'it''s # not a comment'\nb: \"x\\ty\"\nc: [1, 2.5, x]\nd: {}\ne: ~\n"
        "f: 1.0e-3\nf2: 1e-3\ng: yes\nh:\n  - k: 1\n    l: 2\n  - m\ni: -7\nj: .5\nk: 0x1f\n"
        "l: -.inf  # a comment\n"
    )
    assert parse_yaml(text) == {  # as PyYAML's safe_load reads it (1e-3 has no dot: text)
        "a": "it's # not a comment", "b": "x\ty", "c": [1, 2.5, "x"], "d": {}, "e": None,
        "f": 0.001, "f2": "1e-3", "g": True, "h": [{"k": 1, "l": 2}, "m"], "i": -7, "j": 0.5,
        "k": 31, "l": float("-inf"),
    }  # fmt: skip
    for bad in ("a: &anchor 1\n", "a: |\n  text\n", "a: 1\n  b: 2\n"):
        with pytest.raises(ValueError, match="line"):
            parse_yaml(bad)


# --------------------------------------------------------------------------- the release


def _expected_state(state: dict) -> dict:
    out = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
    out.update({k: v for k, v in state.items() if k.startswith("discriminator.")})
    return out


def _assert_state(weights, expected: dict):
    assert weights.state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(weights.state[key], value), key


def test_every_release_layout_reads_the_same_weights(release, tmp_path):
    root, state, model, _ = release
    expected = _expected_state(state)
    alone = tmp_path / "alone" / "best.ckpt"  # no config.yaml anywhere near
    alone.parent.mkdir()
    shutil.copy(root / "models" / "best.ckpt", alone)
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(root / "models" / "best.ckpt", beside / "last.ckpt")
    (beside / "config.yaml").write_text(CONFIG_YAML.replace("ngf: 4", "ngf: 4  # beside"))
    sources = {
        root: "config.yaml",
        root.parent: "config.yaml",  # the folder the zip was unpacked into
        root / "models" / "best.ckpt": "config.yaml",  # config.yaml in the folder above
        beside / "last.ckpt": "config.yaml",
        alone: "hyper_parameters",
        zip_release(root, tmp_path / "big-lama.zip"): "config.yaml",
    }
    for source, origin in sources.items():
        weights = open_weights(str(source))
        assert weights.family == "lama" and weights.source_format == "lama", source
        assert weights.metadata["config_from"] == origin, source
        assert weights.config == model.config, source
        _assert_state(weights, expected)


def test_checkpoint_without_config_falls_back_to_the_shapes(release, tmp_path):
    _, state, model, _ = release
    path = save_checkpoint(tmp_path / "bare.ckpt", lightning_checkpoint(state, None))
    weights = open_weights(str(path))
    assert weights.metadata["config_from"] == "tensor shapes"
    assert "out_act=sigmoid" in weights.metadata["assumed"]
    assert weights.config == model.config
    # a bare state dict (weights-only pickle, no Lightning objects): the converter
    torch.save({k: v for k, v in state.items() if k.startswith("generator.")}, tmp_path / "g.pth")
    weights = open_weights(str(tmp_path / "g.pth"))
    assert weights.source_format == "lama"
    assert weights.config == LamaConfig(**{**TINY, "ndf": 64, "disc_layers": 4})


def test_a_model_loads_from_the_folder_and_matches_the_nets(release):
    root, _, model, _ = release
    loaded = load_model(str(root))
    x, mask = torch.rand(2, 3, 35, 29), (torch.rand(2, 1, 35, 29) > 0.4).float()
    with torch.no_grad():
        assert torch.equal(loaded(x, mask), model(x, mask))


def test_config_yaml_decides_over_the_pickled_hyper_parameters(release, tmp_path):
    _, state, _, _ = release
    folder = tmp_path / "release"
    write_release(folder, state, CONFIG_YAML.replace("add_out_act: sigmoid", "add_out_act: false"),
                  CONFIG_TREE)  # fmt: skip
    assert open_weights(str(folder)).config.out_act == "none"


@pytest.mark.parametrize(
    "change,message",
    [
        (("kind: ffc_resnet", "kind: pix2pixhd_global"), "not LaMa's FFC ResNet"),
        (("  add_out_act: sigmoid", "  add_out_act: sigmoid\n  out_ffc: true"), "out_ffc"),
        (("    ratio_gin: 0.75", "    ratio_gin: 0.75\n    gated: true"), "gated"),
        (("n_blocks: 2", "n_blocks: [2"), "config.yaml"),
    ],
)
def test_unsupported_configs_are_one_line_errors(release, tmp_path, change, message):
    _, state, _, _ = release
    folder = write_release(tmp_path / "r", state, CONFIG_YAML.replace(*change), CONFIG_TREE)
    with pytest.raises(WeightsError, match=message) as info:
        open_weights(str(folder))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- no code runs


def test_a_planted_payload_does_not_run(release, tmp_path):
    _, state, _, _ = release
    marker = tmp_path / "pwned"
    payload = Payload(f"touch {marker}")
    pickle.loads(pickle.dumps(payload))  # a plain unpickler runs it: the payload is real
    assert marker.exists()
    marker.unlink()
    places = {
        "top": lightning_checkpoint(state, CONFIG_TREE, extra=payload),
        "callbacks": lightning_checkpoint(state, CONFIG_TREE, callbacks={"cb": payload}),
        "config": lightning_checkpoint(state, {**CONFIG_TREE, "run_title": payload}),
    }
    for place, checkpoint in places.items():
        folder = tmp_path / place
        (folder / "models").mkdir(parents=True)
        (folder / "config.yaml").write_text(CONFIG_YAML)
        save_checkpoint(folder / "models" / "best.ckpt", checkpoint)
        with pytest.raises(WeightsError, match=r"refused to load .*posix\.system") as info:
            open_weights(str(folder))
        assert "\n" not in str(info.value)
        assert not marker.exists(), place
        result = CliRunner().invoke(app, ["weights", "convert", str(folder), "-o",
                                          str(tmp_path / f"{place}.safetensors")])  # fmt: skip
        assert result.exit_code == 1 and "refused to load" in result.output
        assert not marker.exists(), place


def test_only_the_named_namespaces_become_stand_ins(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return print, ("ran",)

    class Thing:  # pickled as a call Thing(1, 2) of module omegaconf_extra
        def __init__(self, *args):
            self.args = args

        def __reduce__(self):
            return Thing, (1, 2)

    Thing.__module__, Thing.__qualname__ = "omegaconf_extra", "Thing"
    module = types.ModuleType("omegaconf_extra")
    module.Thing = Thing
    monkeypatch.setitem(sys.modules, "omegaconf_extra", module)
    path = tmp_path / "x.pt"
    torch.save({"a": torch.ones(2), "b": Evil()}, path)
    with pytest.raises(RefusedGlobal, match=r"builtins\.print"):
        load_restricted(path, inert=("omegaconf",))
    torch.save({"a": Thing()}, path)
    with pytest.raises(RefusedGlobal, match=r"omegaconf_extra\.Thing"):
        load_restricted(path, inert=("omegaconf",))  # a prefix of the name is not its namespace
    loaded = load_restricted(path, inert=("omegaconf_extra",))
    assert loaded["a"].inert_name == "omegaconf_extra.Thing" and loaded["a"].args == (1, 2)
    assert not isinstance(loaded["a"], Thing)


# --------------------------------------------------------------------------- commands


def test_convert_gives_a_pickle_free_file_that_loads_back_identically(release, tmp_path):
    root, state, model, _ = release
    out = tmp_path / "lama.safetensors"
    _invoke("weights", "convert", root, "-o", out)
    converted = read_checkpoint(out)
    assert converted.family == "lama" and converted.config == model.config
    _assert_state(converted, _expected_state(state))
    assert out.read_bytes()[8:9] == b"{"  # safetensors: a JSON header, no pickle
    x, mask = torch.rand(1, 3, 24, 40), (torch.rand(1, 1, 24, 40) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(load_model(str(out))(x, mask), model(x, mask))


def test_the_zoo_name_reads_the_zip_from_the_hub_cache(release, tmp_path, monkeypatch):
    root, state, model, _ = release
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    zip_release(root, hub / "checkpoints" / "big-lama.zip")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    out = tmp_path / "big-lama.safetensors"
    _invoke("weights", "convert", "big-lama", "-o", out)
    converted = read_checkpoint(out)
    assert converted.config == model.config
    _assert_state(converted, _expected_state(state))
    assert "big-lama" in _invoke("weights", "list")


def test_inpaint_with_the_folder_keeps_known_pixels_and_matches_lama(release, tmp_path):
    root, state, _, _ = release
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    hole = np.zeros((45, 61), bool)
    hole[10:30, 5:40] = True
    hole[:, 58:] = True  # touches the border
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    _invoke("inpaint", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--weights",
            root, "-o", out, "--strategy", "full", "--device", "cpu")  # fmt: skip
    result = np.asarray(Image.open(out).convert("RGB"))
    np.testing.assert_array_equal(result[~hole], image[~hole])
    expected = reference_inpaint(state, image, hole, n_downsampling=3, n_blocks=2)
    rounded = np.rint(np.clip(expected, 0, 1) * 255).astype(int)  # pconv's to_uint8
    truncated = np.clip(expected * 255, 0, 255).astype(np.uint8).astype(int)  # LaMa's predict.py
    assert np.abs(result.astype(int) - rounded)[hole].max() <= 1  # float32 vs float64 ties
    assert np.abs(result.astype(int) - truncated)[hole].max() <= 1  # within 1 grey level
    assert (result.astype(int) == rounded)[hole].mean() > 0.99


def test_eval_scores_the_folder_beside_telea(release, tmp_path):
    root, _, _, _ = release
    report = tmp_path / "eval.json"
    output = _invoke("eval", "--folder", EXAMPLES, "--weights", root, "--method", "telea",
                     "--limit", "3", "--json", report, "--device", "cpu")  # fmt: skip
    assert "telea" in output
    sources = json.loads(report.read_text())["sources"]
    assert len(sources) == 2


def test_inpaint_names_a_refused_release_in_one_line(release, tmp_path):
    _, state, _, _ = release
    folder = tmp_path / "evil"
    (folder / "models").mkdir(parents=True)
    save_checkpoint(folder / "models" / "best.ckpt",
                    lightning_checkpoint(state, CONFIG_TREE, extra=Payload("true")))  # fmt: skip
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "p.png")
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "m.png")
    args = ["inpaint", tmp_path / "p.png", "--mask", tmp_path / "m.png", "--weights", folder]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1
    assert "refused to load" in result.output and "Traceback" not in result.output
    assert os.path.exists(folder)
