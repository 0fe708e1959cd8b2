"""Partial-convolution padding: the drop-in layer against an independent per-window loop,
and the converter on torchvision classifiers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torchvision
from reference import naive_partial_conv

from pconv_cli.nn import PartialPaddingConv2d, convert_to_partial_padding

CASES = [
    # (kernel, stride, padding, dilation, groups, bias)
    (k, s, p, d, g, b)
    for k, s, p, d, g, b in itertools.product(
        (1, 3, 4), (1, 2), (0, 1, 2), (1, 2), (1, 2), (False, True)
    )
    if not (k == 1 and d == 2)
]


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups,bias", CASES)
def test_equals_the_per_window_formula(kernel, stride, padding, dilation, groups, bias):
    torch.manual_seed(0)
    layer = PartialPaddingConv2d(
        4, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias
    ).double()
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    if (9 + 2 * padding - dilation * (kernel - 1)) < 1 or (
        8 + 2 * padding - dilation * (kernel - 1)
    ) < 1:
        pytest.skip("no output")
    ones = np.ones((2, 1, 9, 8))  # no mask: the image is valid, the padding is the hole
    expected, _ = naive_partial_conv(
        x.numpy(), ones, layer.weight.detach().numpy(),
        None if layer.bias is None else layer.bias.detach().numpy(),
        stride=stride, padding=padding, dilation=dilation, groups=groups,
    )  # fmt: skip
    got = layer(x)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10, atol=1e-10)


def test_ratios_are_1_inside_1_5_on_edges_2_25_in_corners():
    layer = PartialPaddingConv2d(1, 1, 3, padding=1, bias=False)
    scale, update = layer.ratio(5, 6, torch.device("cpu"), torch.float32)  # no bias: the ratio
    assert update is None  # every output window sees the image
    expected = torch.ones(5, 6)
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = 1.5
    expected[0, 0] = expected[0, -1] = expected[-1, 0] = expected[-1, -1] = 2.25
    torch.testing.assert_close(scale[0, 0], expected)
    assert scale.dtype == torch.float32
    # cached per size: the same tensor object comes back, another size computes anew
    assert layer.ratio(5, 6, torch.device("cpu"), torch.float32)[0] is scale
    assert layer.ratio(6, 6, torch.device("cpu"), torch.float32)[0] is not scale


def test_state_dict_is_that_of_conv2d():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    partial = PartialPaddingConv2d(3, 8, 3, padding=1)
    assert list(partial.state_dict()) == list(conv.state_dict()) == ["weight", "bias"]
    partial.load_state_dict(conv.state_dict())
    x = torch.randn(1, 3, 10, 10)
    torch.testing.assert_close(partial(x)[..., 1:-1, 1:-1], conv(x)[..., 1:-1, 1:-1])


def test_gradcheck_float64():
    torch.manual_seed(1)
    layer = PartialPaddingConv2d(2, 3, 3, stride=2, padding=1).double()
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_bf16_autocast_is_finite_with_a_float32_ratio():
    layer = PartialPaddingConv2d(3, 4, 3, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(2, 3, 16, 16))
    assert torch.isfinite(out).all()
    scale, _ = layer.ratio(16, 16, torch.device("cpu"), torch.float32)
    assert scale.dtype == torch.float32


def test_convert_resnet18_keeps_keys_values_and_loads_plain_weights():
    torch.manual_seed(2)
    plain = torchvision.models.resnet18(num_classes=10).eval()
    reference = {k: v.clone() for k, v in plain.state_dict().items()}
    converted = convert_to_partial_padding(torchvision.models.resnet18(num_classes=10)).eval()
    converted.load_state_dict(reference)  # a plain resnet18 state dict loads as it is
    assert list(converted.state_dict()) == list(reference)
    assert all(torch.equal(converted.state_dict()[k], v) for k, v in reference.items())
    kinds = {type(m).__name__ for m in converted.modules() if isinstance(m, torch.nn.Conv2d)}
    assert kinds == {"PartialPaddingConv2d", "Conv2d"}  # 1x1 convs (no padding) stay plain
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(converted(x), plain(x))
        for module in converted.modules():  # with the ratio forced to 1: the plain model
            if isinstance(module, PartialPaddingConv2d):
                assert module._ratio_cache  # filled by the call above, reused below
                for ratio, _, regions in module._ratio_cache.values():
                    ratio.fill_(1.0)
                    for _, _, strip, _ in regions:
                        strip.fill_(1.0)
        torch.testing.assert_close(converted(x), plain(x))


def test_convert_shares_parameters_in_place():
    model = torchvision.models.vgg11()
    weight = model.features[0].weight
    converted = convert_to_partial_padding(model)
    assert converted is model and isinstance(model.features[0], PartialPaddingConv2d)
    assert model.features[0].weight is weight


@pytest.mark.parametrize(
    "name",
    ["resnet18", "vgg11_bn", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v3_small",
     "efficientnet_b0", "convnext_tiny", "regnet_y_400mf"],
)  # fmt: skip
def test_convert_any_torchvision_classifier(name):
    torch.manual_seed(3)
    model = torchvision.models.get_model(name, num_classes=7).eval()
    parameters = sum(p.numel() for p in model.parameters())
    keys = list(model.state_dict())
    converted = convert_to_partial_padding(model)
    assert sum(p.numel() for p in converted.parameters()) == parameters
    assert list(converted.state_dict()) == keys
    assert any(isinstance(m, PartialPaddingConv2d) for m in converted.modules())
    with torch.no_grad():
        out = converted(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 7) and torch.isfinite(out).all()


def test_a_ratio_cached_under_inference_mode_serves_training_too():
    layer = PartialPaddingConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        layer(x)  # fills the cache
    layer(x.requires_grad_()).sum().backward()  # reuses it with autograd
    assert layer.weight.grad is not None
