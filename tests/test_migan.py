"""MI-GAN (family ``migan``): the publisher's layout, its generator and its demo.py steps.

References: ``tests/data/migan_{512,256}_keys.txt`` (every key and shape of MI-GAN's
``lib/model_zoo/migan_inference.py`` ``Generator(resolution=R).state_dict()``, made by
instantiating MI-GAN's code under torch 2.14), a functional MI-GAN over a state dict in
that layout that uses the stored ``filter_const`` / ``noise_const`` buffers, and
``scripts/demo.py`` written out with PIL/OpenCV (``publisher_reference.py``). Nets are small
(few channels); weights are random and saved as MI-GAN saves them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from publisher_reference import demo_reference, migan_forward
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.data.resize import resize_like_opencv
from pconv_cli.models import build_model
from pconv_cli.models.migan.convert import filter_pattern
from pconv_cli.models.migan.pipeline import inpaint_migan, plan_windows
from pconv_cli.weights import (
    ZOO,
    WeightsError,
    fetch_weights,
    load_model,
    open_weights,
    read_checkpoint,
)

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
SMALL = {"channel_base": 256, "channel_max": 16}


def _keys(name: str) -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in (DATA / name).read_text().splitlines():
        key, shape = line.split(" ", 1)
        keys[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return keys


def publisher_state(model) -> dict[str, torch.Tensor]:
    """The net's tensors in MI-GAN's file layout: plus a ``filter_const`` per upsampler."""
    state = {}
    for key, value in model.net.state_dict().items():
        if key.endswith("upsample.filter.weight"):
            resolution = int(key.split(".")[1][1:])  # synthesis.b<res>. ...
            state[key.replace("filter.weight", "filter_const")] = filter_pattern(resolution)
        state[key] = value
    return state


def _random_migan(resolution: int, seed: int = 0, **options):
    """A small MI-GAN with random weights (outputs mostly inside [-1, 1])."""
    torch.manual_seed(seed)
    model = build_model("migan", resolution=resolution, **{**SMALL, **options}).eval()
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            if "filter" in name:
                continue
            if "noise_strength" in name:
                p.fill_(0.3)
            else:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            if "torgb" in name:
                p.mul_(0.2)
    return model


def _save_publisher_file(model, path: Path) -> Path:
    torch.save(publisher_state(model), path)
    return path


def _photo(width: int, height: int, name: str = "coffee.jpg") -> np.ndarray:
    image = Image.open(EXAMPLES / name).convert("RGB").resize((width, height), Image.BICUBIC)
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


@pytest.mark.parametrize("resolution, parameters", [(512, 5_973_366), (256, 5_943_617)])
def test_keys_and_shapes_equal_migans_generator(resolution, parameters):
    keys = _keys(f"migan_{resolution}_keys.txt")
    with torch.device("meta"):
        model = build_model("migan", resolution=resolution)
    ours = {k: tuple(v.shape) for k, v in publisher_state(model).items()}
    assert ours == keys
    assert list(ours) == list(keys)  # MI-GAN's order: synthesis first
    assert sum(p.numel() for p in model.net.parameters()) == parameters
    assert parameters == sum(
        int(np.prod(s)) for k, s in keys.items() if not k.endswith(("_const",))
    )
    # the converter drops exactly the filter_const buffers
    assert set(model.net.state_dict()) == {k for k in keys if not k.endswith("filter_const")}


def test_a_published_layout_file_converts_and_loads(tmp_path):
    model = _random_migan(64)
    path = _save_publisher_file(model, tmp_path / "migan_64_random.pt")
    weights = open_weights(str(path))
    assert (weights.family, weights.source_format) == ("migan", "migan")
    assert weights.config.resolution == 64
    assert (weights.config.channel_base, weights.config.channel_max) == (256, 16)
    loaded = load_model(str(path))
    for key, value in model.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key


def test_a_wrong_filter_const_is_refused(tmp_path):
    state = publisher_state(_random_migan(32))
    state["synthesis.b16.upsample.filter_const"] = torch.ones(1, 1, 16, 16)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="filter_const is not the upsampling pattern"):
        open_weights(str(tmp_path / "bad.pt"))


# --------------------------------------------------------------------------- generator


@pytest.mark.parametrize("resolution", [32, 128])
def test_generate_equals_migans_forward_with_its_stored_buffers(resolution):
    model = _random_migan(resolution, seed=resolution)
    state = publisher_state(model)
    torch.manual_seed(1)
    mask = (torch.rand(2, 1, resolution, resolution) > 0.3).float()
    image = torch.rand(2, 3, resolution, resolution) * 2 - 1
    x = torch.cat([mask - 0.5, image * mask], 1)
    with torch.no_grad():
        expected = migan_forward(state, x, resolution)
        ours = model.net.generate(x)
    assert expected.abs().max() > 0.5  # not a degenerate net
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_any_size_runs_and_the_training_size_uses_the_stored_noise():
    model = _random_migan(32)
    net = model.net
    for height, width in [(32, 32), (37, 53), (64, 96), (8, 200)]:
        image = torch.rand(1, 3, height, width) * 2 - 1
        mask = (torch.rand(1, 1, height, width) > 0.5).float()
        with torch.no_grad():
            assert net(image, mask).shape == (1, 3, height, width)
    conv = net.synthesis.b32.conv2
    noise = conv._noise(32, 32)
    assert torch.equal(noise, conv.noise_const * conv.noise_strength)
    tiled = conv._noise(70, 40)
    assert tiled.shape == (70, 40)
    assert torch.equal(tiled[32:64, :32], noise) and torch.equal(tiled[64:, 32:], noise[:6, :8])
    # zero insertion + blur equals nearest x pattern + blur at any size
    up = net.synthesis.b16.upsample
    x = torch.randn(1, 3, 5, 7)
    pattern = torch.zeros(1, 1, 10, 14)
    pattern[..., ::2, ::2] = 1
    nearest = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * pattern
    expected = torch.nn.functional.conv2d(
        torch.nn.functional.pad(nearest, (2, 1, 2, 1)), up.filter.weight, groups=3
    )
    assert torch.equal(up(x), expected)


def test_native_pipeline_runs_the_net_at_the_images_size():
    model = _random_migan(32, pipeline="native")
    image, mask = torch.rand(1, 3, 40, 50), (torch.rand(1, 1, 40, 50) > 0.4).float()
    with torch.no_grad():
        out = model(image, mask)
        expected = (model.net(image * 2 - 1, mask) + 1) / 2
    torch.testing.assert_close(out, expected)


# --------------------------------------------------------------------------- demo.py


@pytest.mark.parametrize("size", [(48, 40), (64, 64), (23, 61)])
def test_demo_pipeline_equals_demo_py_written_out(size):
    model = _random_migan(64, seed=3)
    width, height = size
    image = _photo(width, height)
    known = ~_holes(height, width, [(5, 6, 12, 15), (20, 3, 9, 9)])
    expected = demo_reference(model.net.generate, image, known, 64)
    result, windows = inpaint_migan(model.net.generate, image, known, 64)
    np.testing.assert_array_equal(result, expected)
    assert len(windows) == 1
    np.testing.assert_array_equal(result[known], image[known])
    assert np.abs(result[~known].astype(int) - image[~known]).mean() > 5  # holes were filled
    # the model's forward (what inpaint, eval and serve call) gives the same pixels
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(x, torch.from_numpy(known)[None, None].float())
    np.testing.assert_array_equal(np.rint(out[0].permute(1, 2, 0).numpy() * 255), result)


def test_large_images_get_one_onnx_placed_window_per_hole_group():
    res = 64
    hole = _holes(300, 400, [(10, 20, 5, 6), (12, 40, 4, 4), (250, 350, 20, 30)])
    windows = plan_windows(hole, res, padding=8)
    assert len(windows) == 2
    first, second = windows
    # ONNX arithmetic: box rows 10..15, cols 20..43 -> crop max(23 + 16, 64) = 64,
    # centred at (12, 31), offset 32: rows 0..44 shifted to 0..64, cols -1..63 -> 0..64
    assert (first.top, first.left, first.height, first.width) == (0, 0, 64, 64)
    # box rows 250..269, cols 350..379: crop 64, centre (259, 364): rows 227..291, cols 332..396
    assert (second.top, second.left, second.height, second.width) == (227, 332, 64, 64)
    # a box wider than res gets a bigger square, overlapping windows merge: the union box
    # rows 100..109, cols 50..239 -> crop 189 + 16 = 205, centre (104, 144), offset 102:
    # cols 42..246 (204 < 205: ONNX widens both sides by the 1 px excess) -> 41..247
    wide = plan_windows(_holes(600, 800, [(100, 50, 10, 150), (100, 230, 10, 10)]), res, padding=8)
    assert [(w.top, w.left, w.height, w.width) for w in wide] == [(1, 41, 206, 206)]
    # clipped at the image: the whole picture
    whole = plan_windows(_holes(300, 400, [(100, 50, 10, 150)]), res)
    assert [(w.top, w.left, w.height, w.width) for w in whole] == [(0, 0, 300, 400)]


def test_large_images_run_demo_py_on_each_window():
    model = _random_migan(64, seed=5)
    image = _photo(200, 150)
    hole = _holes(150, 200, [(10, 10, 8, 10), (120, 170, 10, 12)])
    result, windows = inpaint_migan(model.net.generate, image, ~hole, 64, padding=8)
    assert len(windows) == 2
    expected = image.copy()
    for window in windows:
        rows, cols = window.slices
        filled = demo_reference(model.net.generate, image[rows, cols], ~hole[rows, cols], 64)
        expected[rows, cols][hole[rows, cols]] = filled[hole[rows, cols]]
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(result[~hole], image[~hole])


def test_resizing_without_opencv_stays_within_one_grey_level():
    image = _photo(61, 47)
    for size, mode in [((64, 64), "cubic"), ((30, 20), "cubic"), ((100, 90), "linear"),
                       ((31, 24), "linear"), ((256, 256), "linear")]:  # fmt: skip
        cv = resize_like_opencv(image, size, mode, use_opencv=True)
        torch_made = resize_like_opencv(image, size, mode, use_opencv=False)
        assert cv.shape == torch_made.shape == (size[1], size[0], 3)
        assert np.abs(cv.astype(int) - torch_made).max() <= 1, (size, mode)


# --------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def migan_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("migan")
    return _save_publisher_file(_random_migan(64, seed=7), folder / "migan_64_random.pt")


def test_convert_round_trips(migan_file, tmp_path):
    out = tmp_path / "migan.safetensors"
    _invoke("weights", "convert", migan_file, "-o", out)
    back = read_checkpoint(out)
    original = open_weights(str(migan_file))
    assert back.family == "migan" and back.config == original.config
    assert back.state.keys() == original.state.keys()
    for key in back.state:
        assert torch.equal(back.state[key], original.state[key]), key
    image, mask = torch.rand(1, 3, 50, 70), (torch.rand(1, 1, 50, 70) > 0.3).float()
    with torch.no_grad():
        converted = load_model(str(out))(image, mask)
        assert torch.equal(converted, load_model(str(migan_file))(image, mask))


def test_inpaint_command_runs_migans_pipeline(migan_file, tmp_path):
    image = _photo(90, 70)
    Image.fromarray(image).save(tmp_path / "photo.png")
    hole = _holes(70, 90, [(20, 30, 15, 20)])
    save_mask(tmp_path / "mask.png", hole)
    output = _invoke(
        "inpaint", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--weights",
        migan_file, "-o", tmp_path / "out.png", "--device", "cpu",
    )  # fmt: skip
    assert "migan" in output
    result = np.asarray(Image.open(tmp_path / "out.png"))
    model = load_model(str(migan_file))
    np.testing.assert_array_equal(result, demo_reference(model.net.generate, image, ~hole, 64))
    np.testing.assert_array_equal(result[~hole], image[~hole])


def test_eval_scores_migan_beside_telea(migan_file, tmp_path):
    pytest.importorskip("cv2")
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(2):
        save_mask(masks / f"{i}.png", _holes(48, 48, [(8 + 6 * i, 10, 14, 20)]))
    report = tmp_path / "eval.json"
    _invoke("eval", "--folder", EXAMPLES, "--masks", masks, "--weights", migan_file,
            "--method", "telea", "--device", "cpu", "--limit", "3", "--json", report)  # fmt: skip
    sources = json.loads(report.read_text())["sources"]
    ours = sources["migan_64_random"]
    assert ours["checkpoint"]["family"] == "migan" and len(ours["images"]) == 3
    assert "telea" in sources


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_training_is_refused_in_one_line(migan_file, tmp_path, command):
    args = ["--init", migan_file] if command == "finetune" else ["--arch", "migan"]
    result = CliRunner().invoke(app, [command, "--data", str(EXAMPLES), "--out",
                                      str(tmp_path / "run"), *map(str, args)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "migan is inference only" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_zoo_entries_and_hand_downloads(tmp_path, monkeypatch):
    for name, resolution in [("migan-512-places2", 512), ("migan-256-places2", 256),
                             ("migan-256-ffhq", 256)]:  # fmt: skip
        entry = ZOO[name]
        assert entry.family == "migan" and entry.config["resolution"] == resolution
        assert entry.source_format == "migan" and entry.license.startswith("MIT")
        assert entry.sha256_prefix is None  # MI-GAN publishes none
        assert entry.filename == f"migan_{resolution}_{name.rsplit('-', 1)[1]}.pt"
    assert ZOO["migan-512-places2"].metrics["places2-512 (paper, FID)"]["fid"] == 10.00
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match=r"download migan_256_ffhq\.pt from https://drive"):
        fetch_weights(ZOO["migan-256-ffhq"])
    assert not any(tmp_path.rglob("*.pt"))
    output = _invoke("weights", "list")
    assert "migan-256-places2" in output and "by hand" in output
