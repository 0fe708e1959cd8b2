from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.dense_pconv import DensePConvUNet
from pconv_cli.models import composite
from pconv_cli.models.pconv.pconv_unet import PConvUNet, encoder_channels
from pconv_cli.models.pconv.unet import UNet

DATA = Path(__file__).parent / "data"


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so eval mode is a real test."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _blob_mask(n, h, w, *, cell=8, p_hole=0.35, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = (torch.rand(n, 1, -(-h // cell), -(-w // cell), generator=g) > p_hole).float()
    return F.interpolate(coarse, scale_factor=cell, mode="nearest")[..., :h, :w]


def _pair(layers, width, seed=0):
    model = PConvUNet(layers=layers, width=width)
    _randomize_bn(model, seed)
    dense = DensePConvUNet(encoder_channels(layers, width))
    dense.load_state_dict(model.state_dict())
    return model, dense


def test_parameter_counts_match_mmagic_and_paper():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        assert count(PConvUNet(layers=7)) == 25_779_860
        assert count(PConvUNet(layers=8)) == 32_859_796


def test_state_dict_matches_mmagic_generator_keys():
    expected = {}
    for line in (DATA / "mmagic_pconv_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        if "weight_mask_updater" in key:
            continue
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        expected[key.removeprefix("generator.")] = dims
    with torch.device("meta"):
        state = PConvUNet(layers=7).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_width_scales_channels():
    assert encoder_channels(5, 0.25) == [(16, 7), (32, 5), (64, 5), (128, 3), (128, 3)]
    model = PConvUNet(layers=5, width=0.25)
    assert model.decoder.dec1.conv.weight.shape == (3, 16 + 3, 3, 3)
    with pytest.raises(ValueError):
        PConvUNet(layers=9)
    with pytest.raises(ValueError):
        PConvUNet(upsampling="bicubic-ish")


@pytest.mark.parametrize("train", [False, True])
def test_cheap_masks_equal_dense_multichannel_reference(train):
    """The grouped 1-channel mask path equals MMagic-style dense C-channel masks."""
    model, dense = _pair(5, 0.25)
    model.train(train)
    dense.train(train)
    image = torch.rand(2, 3, 64, 96)
    mask = _blob_mask(2, 64, 96, cell=8)
    out = model(image, mask)
    ref = dense(image, mask)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    if train:  # gradients agree too
        out.square().mean().backward()
        ref.square().mean().backward()
        for (name, p), q in zip(model.named_parameters(), dense.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_three_channel_masks_differing_per_channel():
    model, dense = _pair(4, 0.25, seed=2)
    model.eval()
    dense.eval()
    image = torch.rand(1, 3, 32, 32)
    mask = torch.cat([_blob_mask(1, 32, 32, cell=4, seed=s) for s in range(3)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(image, mask), dense(image, mask), rtol=1e-5, atol=1e-5)
        # a 1-channel mask means the same mask on all three channels
        single = mask[:, :1]
        torch.testing.assert_close(model(image, single), model(image, single.expand(-1, 3, -1, -1)))


def test_any_size_pads_with_hole_and_crops():
    model, dense = _pair(5, 0.25, seed=1)
    model.eval()
    dense.eval()
    h, w = 50, 77
    image = torch.rand(1, 3, h, w)
    mask = _blob_mask(1, h, w, cell=5)
    with torch.no_grad():
        out = model(image, mask)
        # Reference: pad by hand to 64x96, the padding being hole, then crop.
        padded_image = F.pad(image, (0, 96 - w, 0, 64 - h))
        padded_mask = F.pad(mask, (0, 96 - w, 0, 64 - h), value=0.0)
        ref = dense(padded_image, padded_mask)[..., :h, :w]
    assert out.shape == image.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_odd_size_full_depth_net():
    model = PConvUNet(layers=7, width=0.25).eval()
    image = torch.rand(1, 3, 200, 317)
    mask = _blob_mask(1, 200, 317, cell=16)
    with torch.no_grad():
        out = model(image, mask)
    assert out.shape == (1, 3, 200, 317)
    assert torch.isfinite(out).all()
    plain = UNet(layers=7, width=0.25).eval()
    with torch.no_grad():
        assert plain(image, mask).shape == (1, 3, 200, 317)


def test_composite_keeps_valid_pixels_bit_exact():
    model = PConvUNet(layers=4, width=0.25).eval()
    image = torch.rand(2, 3, 48, 40)
    mask = _blob_mask(2, 48, 40, cell=6)
    with torch.no_grad():
        out = model(image, mask)
    result = composite(image, out, mask)
    valid = mask.expand_as(image).bool()
    assert torch.equal(result[valid], image[valid])
    assert torch.equal(result[~valid], out[~valid])
    three = composite(image, out, mask.expand(-1, 3, -1, -1))
    assert torch.equal(three, result)


def test_all_hole_input_is_finite():
    model = PConvUNet(layers=4, width=0.25).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))
    assert torch.isfinite(out).all()


def test_freeze_encoder_bn_survives_train():
    model = PConvUNet(layers=4, width=0.25)
    model.freeze_encoder_bn()
    model.train()
    encoder_bns = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    decoder_bns = [m for m in model.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert encoder_bns and decoder_bns
    assert all(not m.training for m in encoder_bns)
    assert all(m.training for m in decoder_bns)
    assert all(not p.requires_grad for m in encoder_bns for p in m.parameters())
    assert all(p.requires_grad for m in decoder_bns for p in m.parameters())
    assert model.encoder.enc2.conv.weight.requires_grad
    before = [m.running_mean.clone() for m in encoder_bns]
    dec_before = decoder_bns[0].running_mean.clone()
    model(torch.rand(2, 3, 32, 32), _blob_mask(2, 32, 32, cell=4)).mean().backward()
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, encoder_bns, strict=True))
    assert not torch.equal(dec_before, decoder_bns[0].running_mean)
    assert all(m.weight.grad is None for m in encoder_bns)
    model.eval()
    model.train()
    assert all(not m.training for m in encoder_bns)
    model.freeze_encoder_bn(False)
    assert all(m.training for m in encoder_bns)
    assert all(p.requires_grad for m in encoder_bns for p in m.parameters())


def test_bilinear_upsampling_runs_and_keeps_holes_masked():
    model = PConvUNet(layers=3, width=0.25, upsampling="bilinear").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 24, 24), _blob_mask(1, 24, 24, cell=3))
    assert out.shape == (1, 3, 24, 24) and torch.isfinite(out).all()


def test_bad_inputs_are_rejected():
    model = PConvUNet(layers=3, width=0.25)
    with pytest.raises(ValueError, match="image"):
        model(torch.rand(1, 4, 16, 16), torch.ones(1, 1, 16, 16))
    with pytest.raises(ValueError, match="mask"):
        model(torch.rand(1, 3, 16, 16), torch.ones(1, 2, 16, 16))
    with pytest.raises(ValueError, match="mask"):
        model(torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 15))


@pytest.mark.slow
def test_paper_net_512_matches_dense_reference():
    """The full 8-level paper net at 512x512 (the one slow test)."""
    model, dense = _pair(8, 1.0, seed=3)
    model.eval()
    dense.eval()
    image = torch.rand(1, 3, 512, 512)
    mask = _blob_mask(1, 512, 512, cell=32)
    with torch.no_grad():
        out = model(image, mask)
        ref = dense(image, mask)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_channels_last_and_bf16_autocast():
    model = PConvUNet(layers=5, width=0.25).eval()
    image = torch.rand(2, 3, 64, 64)
    mask = _blob_mask(2, 64, 64, cell=8)
    with torch.no_grad():
        ref = model(image, mask)
        model_cl = model.to(memory_format=torch.channels_last)
        out_cl = model_cl(image.contiguous(memory_format=torch.channels_last), mask)
        torch.testing.assert_close(out_cl, ref, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(image, mask)
            all_hole = model(image, torch.zeros_like(mask))
    assert torch.isfinite(out_bf16).all() and torch.isfinite(all_hole).all()
    torch.testing.assert_close(out_bf16.float(), ref, rtol=0.05, atol=0.05)
