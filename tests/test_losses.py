import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from pconv_cli.train.losses import (
    InpaintingLoss,
    LossWeights,
    VGG16Features,
    VGGWeightsError,
    gram_matrix,
    load_vgg16_features,
    total_variation,
)


def test_valid_and_hole_terms_hand_computed():
    output = torch.zeros(1, 3, 2, 2)
    target = torch.ones(1, 3, 2, 2)
    target[0, 0, 0, 0] = 3.0  # |0 - 3| in the hole for one channel
    mask = torch.ones(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 0.0  # one hole pixel
    _, terms = InpaintingLoss(vgg=None)(output, target, mask)
    # paper normalisation: divide by all C*H*W = 12 elements
    assert terms["hole"].item() == pytest.approx((3 + 1 + 1) / 12)
    assert terms["valid"].item() == pytest.approx(9 / 12)


def test_gram_normalisation_hand_computed():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, C=2, H=1, W=2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram_matrix(features), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gram_matrix(features.bfloat16()).dtype == torch.float32


def test_tv_only_on_the_dilated_hole_of_the_composite():
    # One row of 6 pixels; the hole is pixel 2, its 1-pixel dilation is pixels 1..3.
    target = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0, 50.0]).view(1, 1, 1, 6)
    output = torch.full_like(target, 100.0)
    mask = torch.ones(1, 1, 1, 6)
    mask[..., 2] = 0
    # composite = [0, 10, 100, 30, 40, 50]; pairs inside {1,2,3}: (1,2) and (2,3)
    expected = (abs(100 - 10) + abs(30 - 100)) / 6
    loss = InpaintingLoss(LossWeights(valid=0, hole=0, tv=1.0), vgg=None)
    total, terms = loss(output, target, mask)
    assert terms["tv"].item() == pytest.approx(expected)
    assert total.item() == pytest.approx(expected)
    # the helper on its own, in 2-D: vertical pairs count too
    image = torch.tensor([[0.0, 1.0], [4.0, 9.0]]).view(1, 1, 2, 2)
    region = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    assert total_variation(image, region).item() == pytest.approx((1 + 4) / 4)


@pytest.fixture(scope="module")
def random_vgg16():
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval()


@pytest.fixture(scope="module")
def vgg_file(random_vgg16, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.pth"
    torch.save(random_vgg16.state_dict(), path)
    return path


def test_vgg_weights_from_a_local_file_match_torchvision(random_vgg16, vgg_file):
    features = load_vgg16_features(vgg_file)
    x = torch.rand(2, 3, 32, 32)
    pools = features(x)
    normalised = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        ref1 = random_vgg16.features[:5](normalised)
        ref2 = random_vgg16.features[5:10](ref1)
        ref3 = random_vgg16.features[10:17](ref2)
    for got, ref, shape in zip(
        pools, (ref1, ref2, ref3), [(64, 16), (128, 8), (256, 4)], strict=True
    ):
        assert got.shape == (2, shape[0], shape[1], shape[1])
        torch.testing.assert_close(got, ref)
    assert not any(p.requires_grad for p in features.parameters())


def test_perceptual_and_style_terms_hand_computed(vgg_file):
    vgg = load_vgg16_features(vgg_file)
    torch.manual_seed(1)
    output = torch.rand(2, 3, 16, 16)
    target = torch.rand(2, 3, 16, 16)
    mask = torch.ones(2, 1, 16, 16)
    mask[..., 4:12, 3:9] = 0
    total, terms = InpaintingLoss(vgg=vgg)(output, target, mask)
    comp = mask * target + (1 - mask) * output
    f_out, f_comp, f_gt = vgg(output), vgg(comp), vgg(target)

    def gram(f):
        n, c, h, w = f.shape
        flat = f.reshape(n, c, h * w)
        return flat @ flat.transpose(1, 2) / (c * h * w)

    expected = {
        "perceptual_out": sum((a - b).abs().mean() for a, b in zip(f_out, f_gt, strict=True)),
        "perceptual_comp": sum((a - b).abs().mean() for a, b in zip(f_comp, f_gt, strict=True)),
        "style_out": sum(
            (gram(a) - gram(b)).abs().mean() for a, b in zip(f_out, f_gt, strict=True)
        ),
        "style_comp": sum(
            (gram(a) - gram(b)).abs().mean() for a, b in zip(f_comp, f_gt, strict=True)
        ),
    }
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, rtol=1e-5, atol=1e-7, msg=name)
    w = LossWeights()
    manual = (
        w.valid * terms["valid"] + w.hole * terms["hole"] + w.tv * terms["tv"]
        + w.perceptual * (terms["perceptual_out"] + terms["perceptual_comp"])
        + w.style * (terms["style_out"] + terms["style_comp"])
    )  # fmt: skip
    torch.testing.assert_close(total, manual)


def test_missing_vgg_file_is_a_clear_error(tmp_path):
    with pytest.raises(VGGWeightsError, match="file not found"):
        load_vgg16_features(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(VGGWeightsError, match="not a VGG16 state dict"):
        load_vgg16_features(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(VGGWeightsError, match="features"):
        load_vgg16_features(wrong)


def test_imagenet_weights_offline_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(VGGWeightsError) as info:
        load_vgg16_features("imagenet")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message and "--vgg-weights" in message
    assert "\n" not in message
    with pytest.raises(VGGWeightsError, match="not in the torch hub cache"):
        load_vgg16_features("imagenet", download=False)


def test_imagenet_weights_come_from_the_hub_cache(tmp_path, monkeypatch, random_vgg16):
    """The real loading path: torchvision's URL and file name, torch.hub's cache dir."""
    cache = tmp_path / "checkpoints"
    cache.mkdir()
    torch.save(random_vgg16.state_dict(), cache / "vgg16-397923af.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)  # must not download
    features = load_vgg16_features("imagenet", download=False)
    torch.testing.assert_close(features.features[0].weight, random_vgg16.features[0].weight)
    assert isinstance(features, VGG16Features)


def test_hole_ssim_term_matches_scikit_image_and_weighs_images_alike():
    """With a whole-image hole the term is 1 - scikit-image's SSIM (Gaussian, sigma 1.5);
    a small hole's image weighs as much as a large hole's (mean over the hole's windows)."""
    from skimage.metrics import structural_similarity

    from pconv_cli.train.losses import hole_ssim_loss

    torch.manual_seed(0)
    target = torch.rand(2, 3, 48, 40, dtype=torch.float64)
    output = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    everything = torch.ones(2, 1, 48, 40, dtype=torch.float64)
    reference = np.mean([
        structural_similarity(
            output[i].permute(1, 2, 0).numpy(), target[i].permute(1, 2, 0).numpy(),
            channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(2)
    ])  # fmt: skip
    assert abs(float(hole_ssim_loss(output, target, everything)) - (1 - reference)) < 1e-9
    # one image with a 4x4 hole, one with a whole-image hole: each counts half
    small = torch.zeros(1, 1, 48, 40, dtype=torch.float64)
    small[..., 20:24, 18:22] = 1
    comp = torch.where(small.bool(), output[:1], target[:1])
    both = hole_ssim_loss(torch.cat([comp, output[1:]]), target, torch.cat([small, everything[1:]]))
    alone = [
        hole_ssim_loss(comp, target[:1], small),
        hole_ssim_loss(output[1:], target[1:], everything[1:]),
    ]
    assert abs(float(both) - float(sum(alone)) / 2) < 1e-12
    # the small hole's term: 1 - scikit-image's SSIM map averaged over the window centres
    # (5-pixel border cropped) within 5 px (a square) of the hole, not over the whole image
    _, full_map = structural_similarity(
        comp[0].permute(1, 2, 0).numpy(), target[0].permute(1, 2, 0).numpy(), channel_axis=2,
        data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True,
    )  # fmt: skip
    near = np.zeros((48, 40), bool)
    near[15:29, 13:27] = True
    expected = (1 - full_map[near]).mean()
    assert abs(float(alone[0]) - expected) < 1e-9
    assert expected > 5 * (1 - full_map[5:-5, 5:-5]).mean()
    # no hole, no loss; and the term joins the total only with a weight
    assert float(hole_ssim_loss(target, target, torch.zeros_like(everything))) == 0
    loss = InpaintingLoss(LossWeights(ssim=0.5))
    mask = torch.ones(2, 1, 48, 40)
    mask[..., 10:30, 10:30] = 0
    total, terms = loss(output.float(), target.float(), mask)
    plain_total, plain_terms = InpaintingLoss()(output.float(), target.float(), mask)
    assert "ssim" in terms and "ssim" not in plain_terms
    assert abs(float(total - plain_total) - 0.5 * float(terms["ssim"])) < 1e-5
