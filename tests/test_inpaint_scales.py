"""Never ask a model for more than it sees: update masks, working scales, the strategy hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pconv_cli.inpainting import Strategy, inpaint, scale_level
from pconv_cli.inpainting.api import describe_scales
from pconv_cli.inpainting.strategy import capacity_of, label_regions, region_depths
from pconv_cli.models import build_model


def _photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 216, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))[:height, :width].copy()


def _square(shape, top, left, side):
    hole = np.zeros(shape, dtype=bool)
    hole[top : top + side, left : left + side] = True
    return hole


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("pconv", layers=3, width=0.125).eval()


class _Dec1Spy:
    """Forward hook on ``dec1``'s partial conv: records its update mask, and writes NaN where
    it is 0, so any pixel the net did not see poisons whatever it reaches."""

    def __init__(self, model):
        self.masks: list[torch.Tensor] = []
        self.handle = model.net.decoder.dec1.conv.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        out, new_mask = output
        self.masks.append(new_mask.detach().clone())
        return out.masked_fill(new_mask == 0, float("nan")), new_mask

    def close(self):
        self.handle.remove()


def test_update_mask_is_the_forward_pass_mask(net):
    spy = _Dec1Spy(net)
    try:
        rng = np.random.default_rng(1)
        for shape in ((37, 53), (64, 64), (90, 41)):
            valid = torch.from_numpy(rng.random(shape) > 0.97)[None, None].float()
            valid[..., :20, :30] = 0  # a wide hole
            with torch.inference_mode():
                net(torch.rand(1, 3, *shape), valid)
            computed = net.net.update_mask(valid)
            assert torch.equal(computed, spy.masks[-1][..., : shape[0], : shape[1]])
            assert computed.shape == (1, 1, *shape) and set(computed.unique().tolist()) <= {0, 1}
    finally:
        spy.close()


def test_reach_is_where_the_update_mask_stops(net):
    reach = net.net.reach
    assert reach == 15  # 3 levels: kernels 7, 5, 5 then three 3x3 decoder levels
    shape = (128, 128)

    def seen_all(top, left, side):
        hole = _square(shape, top, left, side)
        seen = net.net.update_mask(torch.from_numpy(~hole)[None, None].float())[0, 0] > 0
        return bool(seen[torch.from_numpy(hole)].all())

    for top, left in ((20, 20), (21, 26), (37, 43)):  # every alignment to the stride grid
        assert seen_all(top, left, 2 * reach - 1)  # depth = reach: all seen
        assert not seen_all(top, left, 4 * reach + 1)  # depth 2 * reach + 1: not all
    assert net.net.fill_radius == pytest.approx(reach / 4)
    assert capacity_of(net).fill_radius == pytest.approx(reach / 4)
    assert capacity_of(net).update_mask is not None


@pytest.mark.parametrize("strategy", ["auto", "full", "crop", "resize"])
@pytest.mark.parametrize("blend", ["none", "poisson"])
def test_no_unseen_pixel_reaches_the_output(net, strategy, blend):
    image = _photo(96, 120).astype(np.float32) / 255  # float in: NaN would survive to the output
    hole = _square(image.shape[:2], 18, 30, 60)  # depth 30 > reach 15
    raw = torch.from_numpy(~hole)[None, None].float()
    spy = _Dec1Spy(net)
    try:
        with torch.inference_mode():  # the native pass alone: the hole's centre is unseen
            out = net(torch.from_numpy(image).permute(2, 0, 1)[None], raw)
        assert bool(torch.isnan(out).any()) and bool((spy.masks[-1] == 0).any())
        spy.masks.clear()
        plan = Strategy(strategy, resize_limit=100, crop_trigger=64, margin=16, min_window=32)
        result = inpaint(image, hole, net, strategy=plan, blend=blend)
    finally:
        spy.close()
    assert np.isfinite(result.image).all()  # no pixel whose update mask stayed 0
    assert len(spy.masks) >= 2 and min(result.scales) < 1.0  # coarser passes were needed
    np.testing.assert_array_equal(result.image[~hole], image[~hole])


def test_scale_level_is_the_smallest_power_of_two_that_fits():
    assert [scale_level(d, 10) for d in (0, 5, 10, 10.5, 20, 20.5, 40, 41, 1000)] == [
        0, 0, 0, 1, 1, 2, 2, 3, 7,
    ]  # fmt: skip
    assert scale_level(1e6, None) == 0  # no declared radius: native (classic methods)
    assert scale_level(float("inf"), 10) == 0  # all hole: nothing to see at any scale


def test_depth_is_the_distance_to_the_nearest_known_pixel():
    hole = _square((50, 60), 10, 10, 21)  # a 21 px square: its centre is 11 px from outside
    edge = np.zeros((50, 60), dtype=bool)
    edge[:7] = True  # the top 7 rows, edge to edge: the image's edge is not a known pixel
    labels, count = label_regions(hole | edge)
    depths = region_depths(hole | edge, labels, count)
    assert depths[labels[20, 20]] == 11
    assert depths[labels[0, 44]] == 7  # row 0 is 7 rows above the first known row


class Flat(torch.nn.Module):
    """Fills with a constant and records calls; declares a fill radius (and maybe a size)."""

    def __init__(self, radius=None, working_size=None):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.fill_radius = radius
        self.working_size = working_size
        self.calls: list[tuple[int, int]] = []

    def forward(self, image, mask):
        assert image.min() >= 0 and image.max() <= 1
        assert bool((image * (1 - mask) == 0).all())  # holes arrive zeroed
        self.calls.append(tuple(image.shape[-2:]))
        return torch.full_like(image, 0.25)


def test_auto_scales_are_deterministic_and_follow_the_depth():
    image = _photo(160, 200, seed=3)
    hole = _square((160, 200), 40, 50, 81)  # depth 41
    small = _square((160, 200), 5, 170, 9)  # depth 5: native
    model = Flat(radius=10)
    first = inpaint(image, hole | small, model, blend="none")
    second = inpaint(image, hole | small, Flat(radius=10), blend="none")
    np.testing.assert_array_equal(first.image, second.image)
    assert first.scales == (0.125, 0.25, 0.5, 1.0)  # 41 / 2**3 <= 10 < 41 / 2**2
    assert describe_scales(first.scales).startswith("filled at scales 1/8, 1/4, 1/2, 1")
    assert inpaint(image, small, Flat(radius=10), blend="none").scales == (1.0,)
    assert inpaint(image, small, Flat(radius=10), blend="none").note is None
    native = inpaint(image, hole, Flat(radius=10), strategy="full", blend="none")
    assert native.scales == (1.0,)  # full: native when the net sees (no update mask here)


def test_a_family_may_force_its_working_size():
    image = _photo(150, 230, seed=4)
    hole = _square((150, 230), 30, 40, 50)
    model = Flat(working_size=64)
    result = inpaint(image, hole, model, strategy="crop", blend="none")
    assert model.calls and set(model.calls) == {(64, 64)}
    assert (result.image[hole] == 64).all()  # 0.25 in 8 bits
    np.testing.assert_array_equal(result.image[~hole], image[~hole])


def test_deep_passes_cost_follows_the_hole_not_the_image():
    image = _photo(1200, 1600, seed=5)
    hole = _square((1200, 1600), 500, 700, 100)  # depth 50, radius 10: three levels
    model = Flat(radius=10)
    inpaint(image, hole, model, blend="none")
    assert max(h * w for h, w in model.calls) < 200 * 200  # windows around the hole only


class _ShadePerLevel(torch.nn.Module):
    """A filler that answers a flat colour per working level (``shades[k]``), the level of
    each call read from a first run's recorded passes (the runs are deterministic)."""

    def __init__(self, radius, levels=None, shades=None):
        super().__init__()
        self.fill_radius = radius
        self.levels, self.shades, self.calls = levels, shades, 0

    def forward(self, image, mask):
        shade = 0.5 if self.levels is None else self.shades[self.levels[self.calls]]
        self.calls += 1
        return torch.full_like(image, shade)


def test_no_step_where_a_finer_band_meets_the_coarser_fill():
    """Each level fills with its own flat shade (26, 64 and 102 grey levels apart from each
    other by 38): pasted as is, the band's outer edge would be a 38-level step; cross-faded,
    neighbouring hole pixels differ by a few levels at most."""
    from pconv_cli.inpainting.api import ModelFiller
    from pconv_cli.inpainting.scales import fill_levels
    from pconv_cli.inpainting.strategy import scale_level

    image = np.full((160, 160, 3), 128, np.uint8)
    hole = _square((160, 160), 30, 30, 100)  # depth 50
    radius = 20
    top = np.where(hole, scale_level(50.0, radius), 0)
    labels = hole.astype(np.int32)
    with torch.inference_mode():
        first = fill_levels(image, hole, top, labels, ModelFiller(_ShadePerLevel(radius)),
                            fill_radius=radius)  # fmt: skip
    levels = [k for k, _ in first.passes]
    assert sorted(set(levels)) == [0, 1, 2]
    shades = {0: 26 / 255, 1: 64 / 255, 2: 102 / 255}
    model = _ShadePerLevel(radius, levels, shades)
    with torch.inference_mode():
        patch = fill_levels(image, hole, top, labels, ModelFiller(model), fill_radius=radius)
    values = patch.values.permute(1, 2, 0).numpy()[..., 0] * 255
    inside = patch.hole
    assert model.calls == len(levels)
    step_x = np.abs(np.diff(values, axis=1))[inside[:, 1:] & inside[:, :-1]]
    step_y = np.abs(np.diff(values, axis=0))[inside[1:] & inside[:-1]]
    assert max(step_x.max(), step_y.max()) < 6.0
    assert np.allclose(values[inside][:1], 26, atol=0.5)  # the first band row: native shade
    centre = values[patch.hole.shape[0] // 2, patch.hole.shape[1] // 2]
    assert abs(centre - 102) < 1.0  # the deepest pixels keep the coarsest fill
