"""SunnerLi's P-Conv (families ``sunnerli_pconv`` and ``sunnerli_unet``): his layout, his
layer, his nets' quirks and his test.py.

References: ``tests/data/sunnerli_{pconv,unet}_keys.txt`` (every key and shape of his
``PartialUNet().state_dict()`` and ``UNet().state_dict()``, made by instantiating his
``lib/model.py`` under torch 2.14, VGG19 of his loss included), his partial convolution
one output pixel at a time and his ``test.py`` written out with OpenCV
(``publisher_reference.py``). Nets are narrow (``base`` 2-4) with random weights saved as
his code saves them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from publisher_reference import naive_sunnerli_pconv, reference_test_py
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.models import build_model
from pconv_cli.models.sunnerli.network import SunnerLiPartialConv2d
from pconv_cli.weights import ZOO, WeightsError, load_model, open_weights, read_checkpoint

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _keys(name: str) -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in (DATA / name).read_text().splitlines():
        key, shape = line.split(" ", 1)
        keys[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return keys


def publisher_state(model, *, vgg: bool = True, legacy: bool = False) -> dict[str, torch.Tensor]:
    """The net's tensors in his file layout: a ones ``mask_conv`` beside each ``img_conv``,
    the encoder's (unused) BatchNorms, his VGG19 (first layer only unless ``vgg`` is the
    full list); ``legacy`` leaves out ``num_batches_tracked`` as PyTorch 0.4 did."""
    state: dict[str, torch.Tensor] = {}
    for key, value in model.net.state_dict().items():
        if legacy and key.endswith("num_batches_tracked"):
            continue
        if key.endswith("pconv.img_conv.1.weight"):
            level = key.split(".")[0]
            if level.startswith("down") and level != "down1":
                c = value.shape[0]
                state[f"{level}.norm.weight"] = torch.rand(c)
                state[f"{level}.norm.bias"] = torch.rand(c)
                state[f"{level}.norm.running_mean"] = torch.rand(c)
                state[f"{level}.norm.running_var"] = torch.rand(c) + 1
                if not legacy:
                    state[f"{level}.norm.num_batches_tracked"] = torch.tensor(7)
            state[key.replace("img_conv", "mask_conv")] = torch.ones_like(value)
        state[key] = value
    if vgg:
        state["vgg.conv1_1.weight"] = torch.randn(64, 3, 3, 3)
        state["vgg.conv1_1.bias"] = torch.randn(64)
    return state


def _random_net(family: str, base: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(family, base=base).eval()
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            if p.dim() == 4:
                fan_in = p[0].numel()
                scale = 0.5 * fan_in**0.5 if family == "sunnerli_pconv" else 1.5 / fan_in**0.5
                p.copy_(torch.randn_like(p) * scale * (10 if name.startswith("up1.") else 1))
            else:
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else p.normal_(0, 0.1))
        for name, b in model.net.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model


def _photo(width: int, height: int) -> np.ndarray:
    image = Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").resize((width, height))
    return np.asarray(image).copy()


def _holes(height: int, width: int, boxes) -> np.ndarray:
    hole = np.zeros((height, width), dtype=bool)
    for top, left, h, w in boxes:
        hole[top : top + h, left : left + w] = True
    return hole


def _invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("family, keys_file, parameters", [
    ("sunnerli_pconv", "sunnerli_pconv_keys.txt", 32_859_348),
    ("sunnerli_unet", "sunnerli_unet_keys.txt", 32_202_115),
])  # fmt: skip
def test_keys_and_shapes_equal_his_models(family, keys_file, parameters):
    keys = _keys(keys_file)
    with torch.device("meta"):
        model = build_model(family)
    ours = {k: tuple(v.shape) for k, v in publisher_state(model, vgg=False).items()}
    his = {k: s for k, s in keys.items() if not k.startswith("vgg.")}
    assert ours == his
    assert len(keys) - len(his) == 32  # his VGG19: 16 convs
    encoder_norms = tuple(f"down{level}.norm." for level in range(2, 9))
    kept = {k for k in his if ".mask_conv." not in k and not k.startswith(encoder_norms)}
    assert set(model.net.state_dict()) == kept
    assert sum(p.numel() for p in model.net.parameters()) == parameters


def test_legacy_files_convert_load_and_convert_back(tmp_path):
    model = _random_net("sunnerli_pconv", base=2)
    path = tmp_path / "pconv_256_retrain.pth"
    torch.save(publisher_state(model, legacy=True), path, _use_new_zipfile_serialization=False)
    weights = open_weights(str(path))
    assert (weights.family, weights.source_format, weights.config.base) == (
        "sunnerli_pconv", "sunnerli", 2,
    )  # fmt: skip
    loaded = load_model(str(path))
    for key, value in model.net.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.net.state_dict()[key], value), key
    out = tmp_path / "sunnerli.safetensors"
    _invoke("weights", "convert", path, "-o", out)
    back = read_checkpoint(out)
    assert back.family == "sunnerli_pconv" and back.state.keys() == weights.state.keys()
    assert all(torch.equal(back.state[k], weights.state[k]) for k in back.state)


def test_mask_kernels_must_be_ones(tmp_path):
    state = publisher_state(_random_net("sunnerli_pconv", base=2))
    state["up3.pconv.mask_conv.1.weight"] = state["up3.pconv.mask_conv.1.weight"] * 2
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="not a kernel of ones"):
        open_weights(str(tmp_path / "bad.pth"))


# --------------------------------------------------------------------------- layer and nets


@pytest.mark.parametrize("stride, padding, kernel", [(2, 3, 7), (1, 1, 3), (2, 1, 3)])
def test_his_partial_conv_equals_the_per_window_loop(stride, padding, kernel):
    torch.manual_seed(stride + kernel)
    layer = SunnerLiPartialConv2d(3, 5, kernel, stride, padding).double()
    x = torch.randn(1, 3, 11, 9, dtype=torch.float64)
    mask = (torch.rand(1, 3, 11, 9) > 0.6).double() * torch.rand(1, 3, 11, 9).double()
    mask[..., :6, :5] = 0  # windows with S = 0 get the bias
    with torch.no_grad():
        out, new_mask = layer(x, mask)
    ref_out, ref_mask = naive_sunnerli_pconv(
        x[0].numpy(), mask[0].numpy(), layer.img_conv[-1].weight.detach().numpy(),
        layer.img_conv[-1].bias.detach().numpy(), stride, padding,
    )  # fmt: skip
    np.testing.assert_allclose(out[0].numpy(), ref_out, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(new_mask[0, 0].numpy(), ref_mask, rtol=1e-12)
    assert (ref_mask < 1).any() and (ref_mask > 0).any() and (ref_mask == 0).any()


def test_odd_sizes_crop_and_the_encoder_batchnorm_changes_nothing(tmp_path):
    model = _random_net("sunnerli_pconv", base=2, seed=4)
    image = torch.rand(1, 3, 45, 71) * 2 - 1
    mask = (torch.rand(1, 1, 45, 71) > 0.3).float()
    with torch.no_grad():
        out = model.net(image, mask)
    assert out.shape == (1, 3, 45, 71) and out.abs().max() <= 1
    state = publisher_state(model)
    torch.save(state, tmp_path / "a.pth")
    for key in [k for k in state if k.startswith("down4.norm.") and "num_batches" not in k]:
        state[key] = state[key] * 3 + 1
    torch.save(state, tmp_path / "b.pth")
    with torch.no_grad():
        a = load_model(str(tmp_path / "a.pth")).net(image, mask)
        b = load_model(str(tmp_path / "b.pth")).net(image, mask)
    assert torch.equal(a, b) and torch.equal(a, out)


def test_unet_ignores_the_mask_and_pads_to_128():
    model = _random_net("sunnerli_unet", base=2)
    image = torch.rand(1, 3, 70, 90) * 2 - 1
    mask = (torch.rand(1, 1, 70, 90) > 0.3).float()
    with torch.no_grad():
        out = model.net(image, mask)
        bgr = torch.zeros(1, 3, 128, 128)
        bgr[..., :70, :90] = image.flip(1) * mask
        expected = model.net.generate(bgr).flip(1)[..., :70, :90]
    assert torch.equal(out, expected)
    with torch.no_grad():
        unmasked = model.net(image * mask, torch.ones_like(mask))
    assert torch.equal(out, unmasked)  # only the masked image reaches his U-Net


# --------------------------------------------------------------------------- test.py


@pytest.mark.parametrize("family", ["sunnerli_pconv", "sunnerli_unet"])
@pytest.mark.parametrize("size", [(90, 70), (300, 260)])
def test_pipeline_equals_test_py_written_out(family, size):
    model = _random_net(family, seed=2)
    width, height = size
    image = _photo(width, height)
    hole = _holes(height, width, [(10, 20, 25, 30), (40, 5, 8, 60)])
    expected = reference_test_py(model.net.generate, image, ~hole, 256)
    result = model.run_arrays(image, ~hole)
    np.testing.assert_array_equal(result, expected)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(x, torch.from_numpy(~hole)[None, None].float())
    np.testing.assert_array_equal(np.rint(out[0].permute(1, 2, 0).numpy() * 255), result)
    assert np.abs(result.astype(int) - image).mean() > 3  # not the input


@pytest.fixture(scope="module")
def sunnerli_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sunnerli") / "pconv_random.pth"
    torch.save(publisher_state(_random_net("sunnerli_pconv", seed=9)), path)
    return path


def test_inpaint_and_eval_commands(sunnerli_file, tmp_path):
    image = _photo(120, 90)
    Image.fromarray(image).save(tmp_path / "photo.png")
    hole = _holes(90, 120, [(30, 40, 20, 30)])
    save_mask(tmp_path / "mask.png", hole)
    output = _invoke("inpaint", tmp_path / "photo.png", "--mask", tmp_path / "mask.png",
                     "--weights", sunnerli_file, "-o", tmp_path / "out.png")  # fmt: skip
    assert "sunnerli_pconv" in output
    result = np.asarray(Image.open(tmp_path / "out.png"))
    model = load_model(str(sunnerli_file))
    np.testing.assert_array_equal(result[~hole], image[~hole])
    expected = reference_test_py(model.net.generate, image, ~hole, 256)
    np.testing.assert_array_equal(result[hole], expected[hole])

    pytest.importorskip("cv2")
    masks = tmp_path / "masks"
    masks.mkdir()
    save_mask(masks / "0.png", _holes(64, 64, [(10, 10, 20, 30)]))
    report = tmp_path / "eval.json"
    _invoke("eval", "--folder", EXAMPLES, "--masks", masks, "--weights", sunnerli_file,
            "--method", "telea", "--device", "cpu", "--limit", "2", "--json", report)  # fmt: skip
    sources = json.loads(report.read_text())["sources"]
    assert sources["pconv_random"]["checkpoint"]["family"] == "sunnerli_pconv"
    assert len(sources["pconv_random"]["images"]) == 2 and "telea" in sources


def test_training_is_refused_and_zoo_entries(sunnerli_file, tmp_path):
    result = CliRunner().invoke(app, ["finetune", "--init", str(sunnerli_file), "--data",
                                      str(EXAMPLES), "--out", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2 and "sunnerli_pconv is inference only" in result.output
    names = [n for n in ZOO if n.startswith("sunnerli-")]
    assert len(names) == 5
    for name in names:
        entry = ZOO[name]
        assert entry.sha256_prefix is None and entry.source_format == "sunnerli"
        assert entry.url.startswith("https://drive.usercontent.google.com/download?id=")
        assert entry.filename.endswith(".pth") and entry.colour_order == "bgr"
    assert ZOO["sunnerli-pconv-places365"].filename == "pconv_256_retrain.pth"
    assert ZOO["sunnerli-unet-places365-v1"].family == "sunnerli_unet"
    assert ZOO["sunnerli-pconv-places365-224-v1"].config["size"] == 224
