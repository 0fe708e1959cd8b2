"""Published-weights converters against independent references, format detection, safe loading.

- MMagic: a synthetic checkpoint built from ``data/mmagic_pconv_keys.txt`` (random
  values, ``state_dict``/``meta``, mask updaters and loss keys). Converted and run on
  an RGB image, it must equal the *unconverted* weights run on the BGR image with
  MMagic's normalisation through ``bench/dense_pconv.py``'s dense-mask U-Net.
- naoto0804: a synthetic checkpoint with its key names; converted, it must equal a
  direct implementation of its layer math (``W^T(X*M)/sum(M) + b``, holes 0) and
  its U-Net layout, written below from its ``net.py``'s description.

Both comparisons run in float64, so 1e-5 is a loose bound.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.dense_pconv import DensePConvUNet
from pconv_cli.models import build_model
from pconv_cli.models.pconv.convert_mmagic import convert_mmagic_pconv
from pconv_cli.models.pconv.pconv_unet import PConvUNet, encoder_channels
from pconv_cli.weights import (
    WeightsError,
    detect_format,
    load_model,
    open_weights,
    read_checkpoint,
    read_weights_file,
    save_checkpoint,
)

DATA = Path(__file__).parent / "data"
MMAGIC_NAME = "pconv_256x256_stage2_4x2_places_20200619-1ffed0e8.pth"
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- synthetic files


def _mmagic_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (DATA / "mmagic_pconv_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        shapes[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return shapes


def _random_tensor(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Plausible random values: fan-in scaled convs, non-trivial BN statistics."""
    if key.endswith("num_batches_tracked"):
        return torch.tensor(1000, dtype=torch.long)
    if key.endswith("weight_mask_updater") or key.endswith("mask_conv.weight"):
        return torch.ones(1, 1, 1, 1).expand(shape)  # constant ones, tiny on disk
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        return torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    if key.endswith("bn.weight"):
        return torch.rand(shape, generator=g) + 0.5
    return (torch.rand(shape, generator=g) - 0.5) * 0.2  # biases, running means


def _mmagic_checkpoint(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {k: _random_tensor(k, s, g) for k, s in _mmagic_shapes().items()}
    state["loss_percep.vgg.features.0.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    state["generator.loss_tv.weight"] = torch.ones(1)  # a loss entry under generator. too
    meta = {"mmedit_version": "0.4.0", "iter": 500000, "epoch": 1, "time": "Fri Jun 19 2020"}
    return {"meta": meta, "state_dict": state}


def _naoto_state(layers: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    """Key names and shapes of naoto0804's ``PConvUNet(layer_size=7)`` state dict."""
    g = torch.Generator().manual_seed(seed)
    spec = encoder_channels(layers, 1.0)
    shapes: dict[str, tuple[int, ...]] = {}

    def block(name, c_in, c_out, k, *, bn, bias):
        shapes[f"{name}.conv.input_conv.weight"] = (c_out, c_in, k, k)
        if bias:
            shapes[f"{name}.conv.input_conv.bias"] = (c_out,)
        shapes[f"{name}.conv.mask_conv.weight"] = (c_out, c_in, k, k)
        if bn:
            for p in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{name}.bn.{p}"] = (c_out,)
            shapes[f"{name}.bn.num_batches_tracked"] = ()

    c_in = 3
    for level, (c_out, k) in enumerate(spec, start=1):
        block(f"enc_{level}", c_in, c_out, k, bn=level > 1, bias=False)  # conv_bias=False
        c_in = c_out
    skips = [3] + [c for c, _ in spec[:-1]]
    for level in range(layers, 0, -1):
        c_out = 3 if level == 1 else spec[level - 2][0]
        block(f"dec_{level}", c_in + skips[level - 1], c_out, 3, bn=level > 1, bias=level == 1)
        c_in = c_out
    state = {k: _random_tensor(k, s, g) for k, s in shapes.items()}
    for key, value in state.items():
        if key.endswith("input_conv.weight"):  # its layer divides by sum(M), not sum(M)/sum(1)
            state[key] = value * value[0].numel()
    return state


@pytest.fixture(scope="module")
def mmagic_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mmagic") / MMAGIC_NAME
    torch.save(_mmagic_checkpoint(), path)
    return path


@pytest.fixture(scope="module")
def naoto_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("naoto") / "1000000.pth"
    optimizer = {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]}
    torch.save({"n_iter": 1000000, "model": _naoto_state(), "optimizer": optimizer}, path)
    return path


def _test_inputs(size: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An RGB image with 8-bit values in [0, 1] and a blobby mask (1 = valid), float64."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (1, 3, size, size), generator=g).double() / 255.0
    coarse = (torch.rand(1, 1, size // 8, size // 8, generator=g) > 0.3).double()
    mask = F.interpolate(coarse, scale_factor=8, mode="nearest")
    return image, mask


# --------------------------------------------------------------------------- MMagic


@pytest.mark.slow
def test_mmagic_converted_net_on_rgb_equals_raw_weights_on_bgr(mmagic_file):
    weights = read_weights_file(mmagic_file)
    state, config = weights.net_state(), weights.config
    assert weights.source_format == "mmagic"
    assert (weights.family, config.layers, config.width) == ("pconv_unet", 7, 1.0)
    assert config.normalization == "minus_one_one"
    assert not any("mask_updater" in k or "loss" in k for k in state)
    with torch.device("meta"):
        expected_keys = set(PConvUNet(layers=7).state_dict())
    assert set(state) == expected_keys
    model = load_model(str(mmagic_file)).double()

    # The independent path: raw MMagic tensors (generator. stripped, loss keys and the
    # non-persistent mask updaters dropped) in the dense-mask reference, fed BGR.
    raw = torch.load(mmagic_file, weights_only=True)["state_dict"]
    raw = {
        k.removeprefix("generator."): v
        for k, v in raw.items()
        if k.startswith("generator.") and "mask_updater" not in k
    }
    del raw["loss_tv.weight"]
    reference = DensePConvUNet(encoder_channels(7, 1.0))
    reference.load_state_dict(raw)
    reference.double().eval()

    image, mask = _test_inputs()
    bgr_255 = image.flip(1) * 255.0
    x = (bgr_255 - 127.5) / 127.5
    with torch.no_grad():
        out_bgr = reference(x * mask, mask.expand(-1, 3, -1, -1))
        expected = (out_bgr.flip(1) + 1.0) / 2.0
        got = model(image, mask)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert expected.std() > 0.05  # the nets compute something non-trivial


def test_mmagic_flips_only_the_colour_channels():
    ckpt = _mmagic_checkpoint(seed=3)
    raw = ckpt["state_dict"]
    state, family, _ = convert_mmagic_pconv(raw)
    assert family == "pconv_unet"
    enc1 = raw["generator.encoder.enc1.conv.weight"]
    dec1 = raw["generator.decoder.dec1.conv.weight"]
    assert torch.equal(state["encoder.enc1.conv.weight"], enc1[:, [2, 1, 0]])
    assert torch.equal(state["decoder.dec1.conv.weight"][:, :64], dec1[[2, 1, 0], :64])
    assert torch.equal(state["decoder.dec1.conv.weight"][:, 64:], dec1[[2, 1, 0]][:, [66, 65, 64]])
    assert torch.equal(
        state["decoder.dec1.conv.bias"], raw["generator.decoder.dec1.conv.bias"].flip(0)
    )
    assert torch.equal(state["encoder.enc2.conv.weight"], raw["generator.encoder.enc2.conv.weight"])


# --------------------------------------------------------------------------- naoto0804


def _naoto_pconv(x, mask, weight, bias, stride, padding):
    """naoto0804's layer math: W^T(X*M) / sum(M) + b where sum(M) > 0, else 0.

    ``mask`` has one channel per input channel, so sum(M) runs over C_in*k*k.
    """
    raw = F.conv2d(x * mask, weight, None, stride, padding)
    sums = F.conv2d(mask, torch.ones_like(weight), None, stride, padding)
    valid = sums > 0
    out = raw / torch.where(valid, sums, torch.ones_like(sums))
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    out = torch.where(valid, out, torch.zeros_like(out))
    return out, valid.to(x.dtype)


def _naoto_unet(state, x, mask, layers=7):
    """Its U-Net: enc_k stride 2 (BN from level 2, ReLU), dec_k nearest x2 up, cat
    [upsampled, skip] for features and masks, 3x3 conv, BN + LeakyReLU(0.2) but dec_1."""

    def layer(name, h, m, *, stride, act):
        w = state[f"{name}.conv.input_conv.weight"]
        b = state.get(f"{name}.conv.input_conv.bias")
        h, m = _naoto_pconv(h, m, w, b, stride, w.shape[-1] // 2)
        if f"{name}.bn.weight" in state:
            h = F.batch_norm(
                h,
                state[f"{name}.bn.running_mean"],
                state[f"{name}.bn.running_var"],
                state[f"{name}.bn.weight"],
                state[f"{name}.bn.bias"],
                training=False,
                eps=1e-5,
            )
        return act(h) if act else h, m

    feats, masks = [x], [mask]
    h, m = x, mask
    for level in range(1, layers + 1):
        h, m = layer(f"enc_{level}", h, m, stride=2, act=F.relu)
        feats.append(h)
        masks.append(m)
    for level in range(layers, 0, -1):
        h = torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), feats[level - 1]], 1)
        m = torch.cat([F.interpolate(m, scale_factor=2, mode="nearest"), masks[level - 1]], 1)
        act = None if level == 1 else (lambda t: F.leaky_relu(t, 0.2))
        h, m = layer(f"dec_{level}", h, m, stride=1, act=act)
    return h


@pytest.mark.slow
def test_naoto0804_converted_net_equals_its_layer_math(naoto_file):
    weights = read_weights_file(naoto_file)
    state = weights.net_state()
    assert weights.source_format == "naoto0804"
    assert weights.config.normalization == "imagenet"
    assert torch.count_nonzero(state["encoder.enc1.conv.bias"]) == 0  # it has no enc_1 bias
    model = load_model(str(naoto_file)).double()

    raw = {k: v.double() for k, v in _naoto_state().items()}
    image, mask = _test_inputs(seed=1)
    with torch.no_grad():
        x = (image - IMAGENET_MEAN) / IMAGENET_STD
        expected = _naoto_unet(raw, x, mask.expand(-1, 3, -1, -1)) * IMAGENET_STD + IMAGENET_MEAN
        got = model(image, mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (expected - expected.mean((2, 3), keepdim=True)).std() > 0.05  # not trivial


def test_naoto0804_flat_state_dict_with_module_prefix(tmp_path):
    """Some copies of its release are the bare state dict, some saved from DataParallel."""
    state = _naoto_state(layers=3, seed=2)
    path = tmp_path / "partialconv.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    weights = read_weights_file(path)
    converted = weights.state
    assert weights.source_format == "naoto0804"
    w = state["enc_2.conv.input_conv.weight"]
    torch.testing.assert_close(converted["encoder.enc2.conv.weight"], w / (64 * 5 * 5))
    assert "encoder.enc2.conv.bias" not in converted


# --------------------------------------------------------------------------- pconv files


def _tiny_model(**kw):
    return build_model("pconv", layers=3, width=0.125, **kw).eval()


def test_pconv_checkpoint_roundtrip_keeps_metadata(tmp_path):
    model = _tiny_model(normalization="imagenet", upsampling="bilinear")
    path = save_checkpoint(tmp_path / "tiny.safetensors", model, step=7)
    weights = open_weights(str(path))
    assert weights.source_format == "pconv" and weights.family == "pconv_unet"
    assert (weights.config.normalization, weights.config.upsampling) == ("imagenet", "bilinear")
    assert weights.metadata["step"] == "7"
    loaded = load_model(str(path))
    assert not loaded.training and loaded.normalization == "imagenet"
    image, mask = torch.rand(1, 3, 24, 40), (torch.rand(1, 1, 24, 40) > 0.3).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, mask), model(image, mask))
    assert read_checkpoint(path).config == model.config


def test_bare_pconv_state_dict_pth_is_recognised(tmp_path):
    model = _tiny_model()
    path = tmp_path / "bare.pth"
    torch.save(model.net.state_dict(), path)
    weights = read_weights_file(path)
    assert detect_format(weights.state) == "pconv"
    assert (weights.config.layers, weights.config.width) == (3, 0.125)
    assert "assumed" in weights.metadata
    loaded = load_model(str(path))
    image, mask = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, mask), model(image, mask))


def test_unet_bare_state_dict_is_recognised_as_unet(tmp_path):
    model = build_model("unet", layers=2, width=0.125)
    path = tmp_path / "unet.pth"
    torch.save({"state_dict": model.net.state_dict()}, path)
    assert read_weights_file(path).family == "unet"


# --------------------------------------------------------------------------- safe loading


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"generator.x": torch.zeros(1)}, "meta": _RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match=r"refused to load .*system") as info:
        open_weights(str(path))
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_numpy_values_in_metadata_still_load(tmp_path, legacy):
    """Training loops store numpy floats in ``meta`` (best scores...): that is data."""
    import numpy as np

    state = {f"generator.{k}": v for k, v in _tiny_model().net.state_dict().items()}
    meta = {"best_psnr": np.float64(22.7), "iters": np.arange(3), "seed": np.int64(0)}
    path = tmp_path / "with_numpy.pth"
    torch.save({"meta": meta, "state_dict": state}, path, _use_new_zipfile_serialization=not legacy)
    if legacy:  # as numpy 1 wrote it: numpy.core.multiarray.scalar
        path.write_bytes(
            path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        )
    assert open_weights(str(path)).source_format == "mmagic"


def test_truncated_checkpoints_give_clear_errors(tmp_path, mmagic_file):
    pth = tmp_path / "cut.pth"
    pth.write_bytes(mmagic_file.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        open_weights(str(pth))
    legacy = tmp_path / "legacy.pth"
    torch.save({"a": torch.zeros(1000)}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        open_weights(str(legacy))
    tiny = save_checkpoint(tmp_path / "tiny.safetensors", _tiny_model())
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny.read_bytes()[:-500])
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        open_weights(str(cut))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        open_weights(str(empty))
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a checkpoint"):
        open_weights(str(text))


def test_wrong_architecture_names_first_mismatching_key_and_shape(tmp_path):
    # A pconv checkpoint whose metadata claims width 0.25 for width-0.125 tensors.
    path = save_checkpoint(tmp_path / "tiny.safetensors", _tiny_model())
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    meta["config"] = json.dumps({**json.loads(meta["config"]), "width": 0.25})
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(
        WeightsError,
        match=r"encoder\.enc1\.conv\.weight has shape \(8, 3, 7, 7\), the model expects "
        r"\(16, 3, 7, 7\)",
    ):
        load_model(str(path))
    # A naoto0804 file with a BN layer missing.
    state = _naoto_state(layers=3, seed=4)
    del state["enc_3.bn.running_var"]
    naoto = tmp_path / "naoto.pth"
    torch.save({"model": state}, naoto)
    with pytest.raises(WeightsError, match=r"missing key encoder\.enc3\.bn\.running_var"):
        load_model(str(naoto))


def test_unrecognised_keys_and_unknown_names(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"backbone.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=r"not a recognised checkpoint.*backbone"):
        open_weights(str(path))
    with pytest.raises(WeightsError, match="no such file and no such published weights"):
        open_weights("mmagic-place")
    with pytest.raises(WeightsError, match="not found"):
        open_weights(str(tmp_path / "missing.pth"))
