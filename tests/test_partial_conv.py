import itertools

import numpy as np
import pytest
import torch
from reference import cpu_fp16_autocast_supported, naive_partial_conv

from pconv_cli.nn.partial_conv import ChannelMask, PartialConv2d


def _random_mask(shape, rng, hole_block=True):
    """Binary mask (1 = valid) with a solid hole block so some windows are fully masked."""
    mask = (rng.random(shape) > 0.4).astype(np.float64)
    if hole_block:
        mask[..., 1:6, 0:6] = 0.0
    return mask


def _layer(c_in, c_out, k, *, bias, multi, **conv_kwargs):
    layer = PartialConv2d(c_in, c_out, k, bias=bias, multi_channel=multi, **conv_kwargs).double()
    with torch.no_grad():
        if bias:
            layer.bias.uniform_(-1, 1)  # a nonzero bias must still vanish in holes
    return layer


CASES = list(
    itertools.product(
        [1, 2],  # stride
        [0, 1, 2, 3],  # padding
        [1, 2],  # dilation
        [1, 2],  # groups
        [True, False],  # bias
        [False, True],  # multi-channel mask
    )
)


@pytest.mark.parametrize("stride,padding,dilation,groups,bias,multi", CASES)
def test_matches_naive_window_loop(stride, padding, dilation, groups, bias, multi):
    rng = np.random.default_rng(stride * 1000 + padding * 100 + dilation * 10 + groups)
    c_in, c_out, k = 4, 6, 3
    x = rng.standard_normal((2, c_in, 8, 9))
    mask = _random_mask((2, c_in if multi else 1, 8, 9), rng)
    layer = _layer(
        c_in,
        c_out,
        k,
        bias=bias,
        multi=multi,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    out, new_mask = layer(torch.from_numpy(x), torch.from_numpy(mask))
    ref_out, ref_mask = naive_partial_conv(
        x,
        mask,
        layer.weight.detach().numpy(),
        layer.bias.detach().numpy() if bias else None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    assert new_mask.shape == (2, 1, *out.shape[2:])
    np.testing.assert_allclose(out.detach().numpy(), ref_out, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(new_mask.numpy(), ref_mask)
    holes = ref_mask[:, 0] == 0
    if holes.any():
        assert np.all(out.detach().numpy().transpose(1, 0, 2, 3)[:, holes] == 0.0)


def test_fully_masked_windows_are_zero_with_bias():
    layer = _layer(3, 5, 3, bias=True, multi=False, padding=1)
    x = torch.randn(1, 3, 10, 10, dtype=torch.float64)
    mask = torch.ones(1, 1, 10, 10, dtype=torch.float64)
    mask[..., 2:8, 2:8] = 0  # windows centred in 3:7 see only holes
    out, new_mask = layer(x, mask)
    assert torch.all(out[..., 3:7, 3:7] == 0)
    assert torch.all(new_mask[..., 3:7, 3:7] == 0)
    assert torch.all(new_mask[..., 2, 2] == 1)  # touches one valid pixel
    assert not torch.all(out[..., 2, 2] == 0)


def test_single_channel_mask_on_multichannel_layer_means_every_channel():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 7, 7))
    mask1 = _random_mask((1, 1, 7, 7), rng)
    layer = _layer(4, 3, 3, bias=True, multi=True, padding=1)
    out, _ = layer(torch.from_numpy(x), torch.from_numpy(mask1))
    ref, _ = naive_partial_conv(
        x,
        np.repeat(mask1, 4, axis=1),
        layer.weight.detach().numpy(),
        layer.bias.detach().numpy(),
        padding=1,
    )
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10, atol=1e-10)


def test_channel_mask_equals_dense_multichannel_formula():
    """Grouped masks (the U-Net's concatenations) match the dense multi-channel mask."""
    torch.manual_seed(1)
    n, h, w = 2, 12, 11
    m_a = (torch.rand(n, 1, h, w) > 0.5).float()
    m_b = (torch.rand(n, 1, h, w) > 0.3).float()
    m_c = (torch.rand(n, 3, h, w) > 0.5).float()  # a dense group
    grouped = ChannelMask.cat([ChannelMask.of(m_a, 5), ChannelMask.of(m_b, 2), ChannelMask.of(m_c)])
    dense = grouped.dense()
    assert dense.shape == (n, 10, h, w) == grouped.shape
    assert torch.equal(dense[:, :5], m_a.expand(-1, 5, -1, -1))
    x = torch.randn(n, 10, h, w)
    layer = PartialConv2d(10, 4, 3, stride=2, padding=1, multi_channel=True)
    out_grouped, mask_grouped = layer(x, grouped)
    out_dense, mask_dense = layer(x, dense)
    ref, ref_mask = naive_partial_conv(
        x.double().numpy(),
        dense.double().numpy(),
        layer.weight.detach().double().numpy(),
        layer.bias.detach().double().numpy(),
        stride=2,
        padding=1,
    )
    np.testing.assert_allclose(out_grouped.detach().numpy(), ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out_dense.detach().numpy(), ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(mask_grouped, mask_dense)
    np.testing.assert_array_equal(mask_grouped.numpy(), ref_mask)
    # masked_input=True skips the (idempotent for binary masks) input masking
    out_pre, _ = layer(grouped.apply(x), grouped, masked_input=True)
    torch.testing.assert_close(out_pre, out_grouped)


def test_mask_shape_errors_are_clear():
    layer = PartialConv2d(4, 2, 3, padding=1)
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="multi_channel=True"):
        layer(x, torch.ones(1, 4, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        layer(x, torch.ones(1, 1, 7, 8))
    multi = PartialConv2d(4, 2, 3, padding=1, multi_channel=True)
    with pytest.raises(ValueError, match="expects 4"):
        multi(x, ChannelMask.of(torch.ones(1, 1, 8, 8), 3))


# -- partial convolution as padding ------------------------------------------------------


def test_padding_mode_ratio_map_3x3():
    layer = PartialConv2d(1, 1, 3, padding=1, bias=False).double()
    with torch.no_grad():
        layer.weight.fill_(1.0)
    x = torch.ones(1, 1, 5, 6, dtype=torch.float64)
    out, new_mask = layer(x)
    raw = torch.nn.functional.conv2d(x, layer.weight, padding=1)  # 9 inside, 6 edges, 4 corners
    ratio = out / raw
    expected = torch.ones(5, 6, dtype=torch.float64)
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = 1.5
    expected[0, 0] = expected[0, -1] = expected[-1, 0] = expected[-1, -1] = 2.25
    torch.testing.assert_close(ratio[0, 0], expected, rtol=0, atol=1e-8)
    # and exactly the reference formula winsize / (valid + eps), eps = 1e-8
    valid = 9 / expected
    torch.testing.assert_close(ratio[0, 0], 9 / (valid + 1e-8), rtol=1e-14, atol=0)
    assert torch.all(new_mask == 1)
    assert new_mask.shape == (1, 1, 5, 6)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 2, 1), (1, 3, 2), (2, 3, 1)])
def test_padding_mode_equals_all_valid_mask(stride, padding, dilation):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 8))
    layer = _layer(
        3, 4, 3, bias=True, multi=False, stride=stride, padding=padding, dilation=dilation
    )
    out, new_mask = layer(torch.from_numpy(x))
    ref, ref_mask = naive_partial_conv(
        x,
        np.ones((2, 1, 7, 8)),
        layer.weight.detach().numpy(),
        layer.bias.detach().numpy(),
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(new_mask.numpy(), ref_mask)


def test_padding_mode_caches_ratio_per_shape(monkeypatch):
    layer = PartialConv2d(2, 2, 3, padding=1)
    calls = []
    original = layer._ratio_and_mask
    monkeypatch.setattr(layer, "_ratio_and_mask", lambda s: calls.append(s.shape) or original(s))
    for _ in range(3):
        layer(torch.randn(2, 2, 8, 8))
    layer(torch.randn(1, 2, 8, 8))  # batch size does not matter
    assert len(calls) == 1
    layer(torch.randn(1, 2, 9, 8))
    assert len(calls) == 2
    layer.double()  # moving/casting the layer drops the cache
    layer(torch.randn(1, 2, 8, 8).double())
    layer(torch.randn(1, 2, 8, 8).double())
    assert len(calls) == 3


# -- reduced precision -------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype",
    [
        torch.bfloat16,
        pytest.param(
            torch.float16,
            marks=pytest.mark.skipif(
                not cpu_fp16_autocast_supported(), reason="no fp16 autocast on CPU"
            ),
        ),
    ],
)
def test_autocast_is_finite_and_holes_stay_zero(dtype):
    # 1024 channels x 3x3: winsize 9216, and 9216 / 1e-8 overflows fp16 and bf16 rounding
    # would make mask sums above 256 inexact: both must be computed in float32.
    layer = PartialConv2d(1024, 8, 3, padding=1, multi_channel=True)
    x = torch.randn(2, 1024, 12, 12)
    mask = torch.ones(2, 1, 12, 12)
    mask[..., 3:10, 3:10] = 0
    with torch.autocast("cpu", dtype=dtype):
        out, new_mask = layer(x, mask)
        padded_out, _ = layer(x)
    assert out.dtype == dtype
    assert new_mask.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(padded_out).all()
    assert torch.all(out[..., 4:9, 4:9] == 0)
    assert torch.all(new_mask[..., 4:9, 4:9] == 0)
    ref, _ = layer(x, mask)
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.1)


def test_half_precision_layer_has_no_nan_in_holes():
    layer = PartialConv2d(64, 4, 3, padding=1, multi_channel=True, bias=True).to(torch.bfloat16)
    x = torch.randn(1, 64, 8, 8, dtype=torch.bfloat16)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bfloat16)
    mask[..., 0, 0] = 1
    out, new_mask = layer(x, mask)
    assert torch.isfinite(out).all()
    assert torch.all(out[..., 3:, 3:] == 0)
    assert new_mask.sum() == 4  # windows around (0, 0)


def test_gradcheck_float64():
    layer = PartialConv2d(2, 3, 3, stride=1, padding=1, bias=True, multi_channel=True).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    weight = layer.weight.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)
    mask = torch.ones(1, 2, 5, 5, dtype=torch.float64)
    mask[0, 0, 1:3, 1:4] = 0
    mask[0, 1, 2:5, 0:2] = 0

    def run(x, weight, bias):
        params = {"weight": weight, "bias": bias}
        return torch.func.functional_call(layer, params, (x, mask))[0]

    assert torch.autograd.gradcheck(run, (x, weight, bias))
    assert torch.autograd.gradcheck(
        lambda x, w, b: torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))[0],
        (x, weight, bias),
    )


def test_padding_cache_from_inference_mode_serves_training_too():
    layer = PartialConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        layer(x)
    out, _ = layer(x.requires_grad_())
    out.sum().backward()
    assert layer.weight.grad is not None
