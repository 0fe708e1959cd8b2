"""Batched l1 / PSNR / SSIM against scikit-image and hand-computed values."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pconv_cli.evaluation.metrics import (
    compute_metrics,
    gaussian_kernel1d,
    l1_error,
    psnr,
    ssim,
)

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "examples" / "images").glob("*.jpg"))
TOL = 1e-4


def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """The reference: scikit-image with Wang et al.'s settings, (H, W, 3) arrays."""
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )


def sk_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return peak_signal_noise_ratio(a, b, data_range=255)


def nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) numpy -> (N, 3, H, W) tensor (same dtype)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def noisy(rng: np.random.Generator, image: np.ndarray, amplitude: int) -> np.ndarray:
    noise = rng.integers(-amplitude, amplitude + 1, image.shape)
    return np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def photo(path: Path, size: int = 96) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))


def test_gaussian_kernel_matches_scipy():
    from scipy.ndimage import gaussian_filter1d

    impulse = np.zeros(21)
    impulse[10] = 1.0
    expected = gaussian_filter1d(impulse, 1.5, truncate=3.5, mode="constant")[5:16]
    kernel = gaussian_kernel1d().numpy()
    assert kernel.shape == (11,)
    np.testing.assert_allclose(kernel, expected, atol=1e-15)


@pytest.mark.parametrize("shape", [(11, 11), (32, 32), (37, 50), (64, 29)])
def test_random_uint8_matches_skimage(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    b = noisy(rng, a, 40)
    b[1] = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)  # unrelated image
    got = compute_metrics(nchw(b), nchw(a), torch.ones(3, 1, *shape))
    for i in range(3):
        assert got["psnr"][i].item() == pytest.approx(sk_psnr(a[i], b[i]), abs=TOL)
        assert got["ssim"][i].item() == pytest.approx(sk_ssim(a[i], b[i]), abs=TOL)


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(11, 40),
    width=st.integers(11, 40),
    amplitude=st.integers(0, 255),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_size_and_noise_matches_skimage(height, width, amplitude, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    b = noisy(rng, a, amplitude)
    assert ssim(nchw(b), nchw(a)).item() == pytest.approx(sk_ssim(a[0], b[0]), abs=TOL)
    if amplitude:
        assert psnr(nchw(b), nchw(a)).item() == pytest.approx(sk_psnr(a[0], b[0]), abs=TOL)


def test_real_photos_match_skimage():
    rng = np.random.default_rng(0)
    truths = np.stack([photo(p) for p in PHOTOS])
    outputs = np.stack([noisy(rng, t, 6) for t in truths])
    # Smooth regions are the hard case for float32 SSIM: add a blurred copy.
    outputs[0] = np.asarray(Image.fromarray(truths[0]).resize((24, 24)).resize((96, 96)))
    got = compute_metrics(nchw(outputs), nchw(truths), torch.ones(len(PHOTOS), 1, 96, 96))
    for i in range(len(PHOTOS)):
        assert got["psnr"][i].item() == pytest.approx(sk_psnr(truths[i], outputs[i]), abs=TOL)
        assert got["ssim"][i].item() == pytest.approx(sk_ssim(truths[i], outputs[i]), abs=TOL)


def test_flat_bright_and_dark_regions_stay_accurate():
    """E[x^2] - E[x]^2 near 255 is where float32 loses digits; the centring must hold."""
    rng = np.random.default_rng(1)
    a = np.zeros((48, 48, 3), np.uint8)
    a[:, :24], a[:, 24:] = 254, 1
    a = noisy(rng, a, 1)
    b = noisy(rng, a, 1)
    assert ssim(nchw(b[None]), nchw(a[None])).item() == pytest.approx(sk_ssim(a, b), abs=1e-5)


def test_float_inputs_are_the_unit_scale():
    rng = np.random.default_rng(2)
    a = rng.random((2, 40, 40, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    got = compute_metrics(nchw(b), nchw(a), torch.ones(2, 1, 40, 40))
    for i in range(2):
        a255, b255 = a[i] * 255, b[i] * 255
        assert got["psnr"][i].item() == pytest.approx(sk_psnr(a255, b255), abs=TOL)
        assert got["ssim"][i].item() == pytest.approx(sk_ssim(a255, b255), abs=TOL)


def test_uint8_rounding_cases():
    """A float composite rounded to uint8 scores exactly like the saved uint8 image."""
    rng = np.random.default_rng(3)
    truth = photo(PHOTOS[0], 64)
    raw = rng.random((64, 64, 3))
    raw[:8] = (np.arange(8)[:, None, None] + 0.5) / 255  # exact .5 ties: half to even
    rounded = np.round(raw * 255).astype(np.uint8)
    assert rounded[0, 0, 0] == 0 and rounded[1, 0, 0] == 2 and rounded[3, 0, 0] == 4
    as_float = torch.from_numpy(rounded).permute(2, 0, 1)[None].double() / 255
    as_uint8 = torch.from_numpy(rounded).permute(2, 0, 1)[None]
    target = torch.from_numpy(truth).permute(2, 0, 1)[None]
    mask = torch.ones(1, 1, 64, 64)
    for output in (as_float, as_uint8):
        assert psnr(output, target).item() == pytest.approx(sk_psnr(truth, rounded), abs=TOL)
        assert ssim(output, target).item() == pytest.approx(sk_ssim(truth, rounded), abs=TOL)
    # uint8 pairs are scored with integer sums: PSNR is exact.
    assert psnr(as_uint8, target).item() == sk_psnr(truth, rounded)
    assert l1_error(as_uint8, target, mask).isnan().all()  # no hole pixels


def test_hand_computed_psnr():
    target = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    output = target.clone()
    output[0, 1, 2, 3] = 255  # one wrong value out of 48: MSE = 255^2 / 48
    assert psnr(output, target).item() == pytest.approx(10 * math.log10(48), abs=1e-12)
    output[0, :, :, :2] = 51  # plus 24 values off by 51
    mse = (255**2 + 24 * 51**2) / 48
    assert psnr(output, target).item() == pytest.approx(20 * math.log10(255 / math.sqrt(mse)))


def test_l1_counts_only_hole_pixels():
    target = torch.full((2, 3, 16, 16), 100, dtype=torch.uint8)
    output = target.clone()
    mask = torch.ones(2, 1, 16, 16)
    mask[:, :, 4:8, 4:12] = 0  # 32 hole pixels
    output[:, :, mask[0, 0] == 1] = 0  # valid pixels wildly wrong: must not count
    output[0, :, 4:8, 4:12] = 151  # holes off by 51 in every channel -> 51/255*100 = 20
    output[1, 0, 4:8, 4:12] = 151  # one channel of three off by 51 -> 20 / 3
    got = l1_error(output, target, mask)
    assert got.tolist() == pytest.approx([20.0, 20.0 / 3])
    bool_mask = mask.bool().squeeze(1)  # (N, H, W) bool works too
    assert l1_error(output, target, bool_mask).tolist() == pytest.approx([20.0, 20.0 / 3])
    float_out = output.double() / 255
    assert l1_error(float_out, target.double() / 255, mask).tolist() == pytest.approx(
        [20.0, 20.0 / 3]
    )


def test_perfect_prediction():
    rng = np.random.default_rng(4)
    image = nchw(rng.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8))
    mask = torch.ones(2, 1, 24, 24)
    mask[:, :, 5:9] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warnings either
        got = compute_metrics(image, image.clone(), mask)
    assert got["l1"].tolist() == [0.0, 0.0]
    assert got["psnr"].tolist() == [math.inf, math.inf]
    assert got["ssim"].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert all(v.dtype == torch.float64 and v.shape == (2,) for v in got.values())


def test_batches_score_like_single_images():
    """More images than one SSIM chunk (8): every image gets its own value."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (11, 20, 20, 3), dtype=np.uint8)
    b = noisy(rng, a, 30)
    mask = torch.from_numpy(rng.random((11, 1, 20, 20)) > 0.3)
    batched = compute_metrics(nchw(b), nchw(a), mask)
    for i in range(11):
        single = compute_metrics(nchw(b[i : i + 1]), nchw(a[i : i + 1]), mask[i : i + 1])
        for name in batched:
            assert batched[name][i].item() == pytest.approx(single[name].item(), abs=1e-9)


def test_empty_batch():
    empty = torch.zeros(0, 3, 16, 16, dtype=torch.uint8)
    assert ssim(empty, empty).shape == (0,)
    assert psnr(empty, empty).shape == (0,)


@pytest.mark.parametrize(
    ("output", "target", "message"),
    [
        (torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17), "differ in shape"),
        (torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), r"\(N, 3, H, W\)"),
        (torch.zeros(1, 3, 10, 16), torch.zeros(1, 3, 10, 16), "at least 11"),
    ],
)
def test_bad_shapes(output, target, message):
    with pytest.raises(ValueError, match=message):
        ssim(output, target)


def test_bad_mask_shape():
    image = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="mask"):
        l1_error(image, image, torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match="does not match"):
        l1_error(image, image, torch.ones(1, 1, 8, 8))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    rng = np.random.default_rng(6)
    a = nchw(rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    b = nchw(noisy(rng, a.permute(0, 2, 3, 1).numpy(), 20))
    mask = torch.rand(4, 1, 64, 64) > 0.5
    cpu = compute_metrics(b, a, mask)
    gpu = compute_metrics(b.cuda(), a.cuda(), mask.cuda())
    for name in cpu:
        assert gpu[name].device.type == "cuda"
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], atol=1e-5, rtol=0)
