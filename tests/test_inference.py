"""core.inference: strategies change only hole pixels, crop windows, resize, dilation, modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pconv_cli.inpainting import (
    LoadedImage,
    choose_strategy,
    dilate_holes,
    inpaint_image,
    output_image,
    plan_windows,
    predict,
)
from pconv_cli.models import build_model, composite


class SpyModel(torch.nn.Module):
    """Fills with a constant colour and records the (H, W) of every call.

    Its output is a function of the pixel position only, so a window pass and a
    full pass must agree on it: good for checking what is pasted where.
    """

    def __init__(self, colour=(0.2, 0.6, 1.0), multiple: int = 8):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device
        self.colour = torch.tensor(colour).view(1, 3, 1, 1)
        self.size_multiple = multiple
        self.calls: list[tuple[int, int]] = []

    def forward(self, image, mask):
        assert image.min() >= 0 and image.max() <= 1 and set(mask.unique().tolist()) <= {0.0, 1.0}
        self.calls.append(tuple(image.shape[-2:]))
        return self.colour.expand_as(image) + 0.0 * image


FILL = np.array([51, 153, 255], np.uint8)  # SpyModel's colour in 8 bits


def _photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _holes(height, width, boxes):
    hole = np.zeros((height, width), dtype=bool)
    for top, left, bottom, right in boxes:
        hole[top:bottom, left:right] = True
    return hole


@pytest.mark.parametrize("strategy", ["full", "crop", "resize"])
def test_every_strategy_changes_only_hole_pixels(strategy):
    image = _photo(700, 900)
    hole = _holes(700, 900, [(10, 10, 40, 60), (600, 800, 690, 895), (300, 300, 330, 420)])
    model = SpyModel()
    result = inpaint_image(model, image, hole, strategy=strategy, resize_limit=300)
    assert result.strategy == strategy
    assert result.image.dtype == np.uint8 and result.image.shape == image.shape
    np.testing.assert_array_equal(result.image[~hole], image[~hole])
    if strategy != "resize":  # resize blends the constant with upsampled neighbours at edges
        assert (result.image[hole] == FILL).all()
    else:
        assert model.calls == [(233, 300)]
        inner = _holes(700, 900, [(305, 305, 325, 415)])
        assert (result.image[inner] == FILL).all()


def test_crop_runs_one_window_per_region_at_native_resolution():
    image = _photo(3000, 4000)
    hole = _holes(
        3000, 4000, [(100, 100, 120, 130), (1500, 2000, 1540, 2100), (2990, 3990, 3000, 4000)]
    )
    model = SpyModel(multiple=128)
    result = inpaint_image(model, image, hole)  # auto: above the crop trigger
    assert result.strategy == "crop"
    assert len(result.windows) == 3
    assert all(h % 128 == 0 and w % 128 == 0 and h >= 256 for h, w in model.calls)
    corner = result.windows[-1]  # shifted inward at the bottom-right corner
    assert (corner.top + corner.height, corner.left + corner.width) == (3000, 4000)
    np.testing.assert_array_equal(result.image[~hole], image[~hole])


def test_crop_equals_full_for_a_position_independent_model():
    image = _photo(300, 500, seed=2)
    hole = _holes(300, 500, [(20, 20, 50, 50), (200, 400, 260, 480)])
    full = inpaint_image(SpyModel(), image, hole, strategy="full").image
    crop = inpaint_image(SpyModel(), image, hole, strategy="crop", margin=8, min_window=64).image
    np.testing.assert_array_equal(crop, full)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(20, 200),
    width=st.integers(20, 200),
    seed=st.integers(0, 10_000),
    margin=st.integers(0, 30),
    min_size=st.integers(1, 80),
    multiple=st.sampled_from([1, 8, 32]),
)
def test_plan_windows_cover_all_holes_disjointly(height, width, seed, margin, min_size, multiple):
    rng = np.random.default_rng(seed)
    hole = rng.random((height, width)) > 0.995
    hole[rng.integers(0, height), rng.integers(0, width)] = True
    windows = plan_windows(hole, margin=margin, min_size=min_size, multiple=multiple)
    coverage = np.zeros(hole.shape, dtype=np.int32)
    for window in windows:
        assert window.top >= 0 and window.top + window.height <= height
        assert window.left >= 0 and window.left + window.width <= width
        for side, limit in ((window.height, height), (window.width, width)):
            assert side == limit or (side % multiple == 0 and side >= min_size)
        coverage[window.slices] += 1
    assert coverage.max() == 1  # disjoint
    assert coverage[hole].min() == 1  # every hole pixel is in a window


def test_plan_windows_give_each_region_its_margin():
    hole = _holes(1000, 1000, [(480, 480, 520, 520)])
    (window,) = plan_windows(hole, margin=100, min_size=64, multiple=1)
    assert (window.top, window.left, window.height, window.width) == (380, 380, 240, 240)
    near_edge = _holes(1000, 1000, [(0, 990, 10, 1000)])
    (window,) = plan_windows(near_edge, margin=100, min_size=256, multiple=128)
    assert (window.top, window.left, window.height, window.width) == (0, 744, 256, 256)
    assert plan_windows(np.zeros((10, 10), bool)) == []


def test_choose_strategy():
    assert choose_strategy("auto", (1024, 768)) == "full"
    assert choose_strategy("auto", (1025, 10)) == "crop"
    assert choose_strategy("auto", (600, 600), crop_trigger=512) == "crop"
    assert choose_strategy("resize", (10, 10)) == "resize"
    with pytest.raises(ValueError, match="strategy"):
        choose_strategy("tiles", (10, 10))


def test_dilate_holes_is_a_disc_of_radius_n():
    hole = np.zeros((11, 11), dtype=bool)
    hole[5, 5] = True
    grown = dilate_holes(hole, 2)
    assert grown.sum() == 13  # the pixels within Euclidean distance 2
    assert grown[5, 3] and grown[4, 4] and not grown[3, 3]
    assert dilate_holes(hole, 0) is hole
    edge = np.zeros((5, 5), dtype=bool)
    edge[0, 0] = True
    assert dilate_holes(edge, 1).sum() == 3


def test_no_hole_returns_the_image_without_running_the_model():
    image = _photo(40, 50)
    model = SpyModel()
    result = inpaint_image(model, image, np.zeros((40, 50), bool))
    np.testing.assert_array_equal(result.image, image)
    assert model.calls == []


def test_real_net_odd_size_and_tensor_api():
    model = build_model("pconv", layers=3, width=0.125).eval()
    image = _photo(33, 51, seed=3)
    hole = _holes(33, 51, [(5, 5, 20, 30)])
    out = predict(model, image, hole)
    assert out.shape == (33, 51, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    result = inpaint_image(model, image, hole, strategy="full")
    np.testing.assert_array_equal(result.image[~hole], image[~hole])

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    mask = torch.from_numpy(~hole)[None, None].float()
    with torch.inference_mode():
        blended = composite(x, model(x, mask).clamp(0, 1), mask)
    assert torch.equal(blended[mask.expand_as(x) == 1], x[mask.expand_as(x) == 1])


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_output_image_keeps_mode_alpha_and_known_pixels(mode):
    rng = np.random.default_rng(1)
    channels = {"L": 1, "LA": 2, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (12, 16, channels), dtype=np.uint8)
    upright = Image.fromarray(array[..., 0] if channels == 1 else array, mode)
    loaded = LoadedImage(
        path=None, rgb=np.asarray(upright.convert("RGB")), upright=upright, format="PNG"
    )
    hole = _holes(12, 16, [(2, 3, 6, 9)])
    rgb = loaded.rgb.copy()
    rgb[hole] = (10, 200, 30)
    out = np.asarray(output_image(loaded, rgb, hole))
    assert out.shape == np.asarray(upright).shape
    original = np.asarray(upright)
    np.testing.assert_array_equal(out[~hole], original[~hole])
    if mode != "L":
        np.testing.assert_array_equal(out[..., -1], original[..., -1])  # alpha untouched
    if mode == "RGBA":
        assert (out[hole][:, :3] == (10, 200, 30)).all()
