"""Inpainting metrics with MMagic's definitions, batched in torch (CPU or GPU).

Conventions:

- ``output`` and ``target`` are RGB batches (N, 3, H, W): **uint8** tensors hold
  0..255, **floating** tensors the [0, 1] scale (they are multiplied by 255).
  Score the *composited* output (known pixels from the target), as MMagic does.
- ``mask`` is (N, 1, H, W) or (N, H, W), **1 = valid, 0 = hole** (bool or float).
- Every function returns per-image values, a float64 tensor of shape (N,).

Definitions (all on the [0, 255] scale, RGB, no border crop):

- :func:`l1_error`: mean absolute error over hole pixels and channels, on the
  [0, 1] scale, times 100 (MMagic's masked ``MAE`` x 100). NaN for an image
  without holes.
- :func:`psnr`: whole image, ``10 log10(255^2 / MSE)``; ``inf`` for identical
  images (as scikit-image's ``peak_signal_noise_ratio``).
- :func:`ssim`: Gaussian window 11x11 (sigma 1.5, truncated at 3.5 sigma),
  ``C1 = (0.01*255)^2``, ``C2 = (0.03*255)^2``, population covariances, the SSIM
  map averaged over the image minus a 5-pixel border, per channel, then over
  channels: scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``.

Everything runs in float32 on values shifted by -128, channels-last, a few images
at a time so that the work stays in cache on a CPU. For uint8 inputs l1 and PSNR
are exact (integer differences, float64 sums); SSIM is within about 1e-5 of
scikit-image's float64 result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DATA_RANGE",
    "METRIC_NAMES",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "compute_metrics",
    "gaussian_kernel1d",
    "l1_error",
    "psnr",
    "ssim",
]

DATA_RANGE = 255.0
"""Value range the metrics are defined on (8-bit images)."""

METRIC_NAMES: tuple[str, ...] = ("l1", "psnr", "ssim")
"""Keys of :func:`compute_metrics`, in report order."""

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
"""scipy/scikit-image truncate the Gaussian at 3.5 sigma: radius 5, an 11-tap window."""

_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_SHIFT = 128.0
"""Subtracted from [0, 255] values before the SSIM moments: E[x^2] - E[x]^2 then loses far
fewer float32 digits, and an integer shift keeps uint8 differences exact."""
_CPU_PIXELS = 2**17
_GPU_PIXELS = 2**23
"""Pixels per step: two 256x256 images keep a CPU step's 16 maps in cache; GPUs want more."""


def _check_pair(output: Tensor, target: Tensor) -> None:
    if output.dim() != 4 or output.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) images, got output {tuple(output.shape)}")
    if output.shape != target.shape:
        raise ValueError(
            f"output {tuple(output.shape)} and target {tuple(target.shape)} differ in shape"
        )
    for image in (output, target):
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise TypeError(f"expected uint8 or floating images, got {image.dtype}")


def _hole(mask: Tensor, like: Tensor) -> Tensor:
    """(N, H, W) bool, True = hole, from a 1 = valid mask of (N, 1, H, W) or (N, H, W)."""
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask.squeeze(1)
    if mask.dim() != 3 or mask.shape[0] != like.shape[0]:
        raise ValueError(f"mask must be (N, 1, H, W) or (N, H, W), got {tuple(mask.shape)}")
    if mask.shape[1:] != like.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match images {tuple(like.shape)}")
    return ~mask if mask.dtype == torch.bool else mask < 0.5


def _shifted(images: Tensor) -> Tensor:
    """(N, 3, H, W) images as contiguous float32 NHWC on the [0, 255] scale minus :data:`_SHIFT`.

    Exact for uint8 (integers in float32).
    """
    nhwc = images.permute(0, 2, 3, 1).to(torch.float32)
    if images.is_floating_point():
        nhwc = nhwc * DATA_RANGE
    return nhwc.contiguous().sub_(_SHIFT)


def gaussian_kernel1d(
    sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE, *, dtype=torch.float64
) -> Tensor:
    """scipy.ndimage's normalised 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / (sigma * sigma) * x * x)
    return (phi / phi.sum()).to(dtype)


def _filter_valid(maps: Tensor, kernel: Tensor) -> Tensor:
    """Separable Gaussian, 'valid' region only: (N, C, H, W) -> (N, C, H-2r, W-2r).

    scikit-image filters with scipy's ``mode='reflect'`` and then crops the
    radius from every side, so padded values never reach the mean: the 'valid'
    convolution is exactly the cropped map. (A Gaussian is symmetric, so
    cross-correlation equals convolution.)
    """
    channels, taps = maps.shape[1], kernel.numel()
    row = kernel.view(1, 1, 1, taps).expand(channels, 1, 1, taps).contiguous()
    col = kernel.view(1, 1, taps, 1).expand(channels, 1, taps, 1).contiguous()
    return F.conv2d(F.conv2d(maps, row, groups=channels), col, groups=channels)


def _masked_l1(diff: Tensor, hole: Tensor) -> Tensor:
    """l1 per image from NHWC differences (0..255 scale) and (N, H, W) holes, float64 (N,).

    A float64 batched matrix product sums |diff| over the holes: exact for integer
    differences and never subject to TF32 matmul settings.
    """
    n = diff.shape[0]
    weights = hole.reshape(n, 1, -1).to(torch.float64)
    per_channel = torch.bmm(weights, diff.abs().to(torch.float64).reshape(n, -1, 3))
    count = weights.sum(dim=(1, 2)) * 3
    return per_channel.sum(dim=(1, 2)) / count / DATA_RANGE * 100.0


def _moments(x: Tensor, y: Tensor, kernel: Tensor) -> Tensor:
    """Gaussian moments (N, 12, h, w) of shifted NHWC ``x`` and ``y``.

    Lanes: E[x], E[y], E[x^2 + y^2], E[xy] (3 channels each); 'valid' region only.
    """
    squares = (x * x).addcmul_(y, y)
    maps = torch.cat([x, y, squares, x * y], dim=-1)  # NHWC = channels-last NCHW
    return _filter_valid(maps.permute(0, 3, 1, 2), kernel).contiguous()


def _ssim_of_moments(moments: Tensor) -> Tensor:
    """Mean SSIM per image from Gaussian moments (N, 12, h, w) of x, y shifted by -128.

    Lanes: E[x], E[y], E[x^2 + y^2], E[xy], 3 channels each. With D = E[x] - E[y]
    and P = E[x] E[y] (shifted), SSIM's terms become
    ``2 mu_x mu_y + C1 = 2 (P + s (E[x] + E[y]) + s^2) + C1`` (s = 128),
    ``mu_x^2 + mu_y^2 + C1 = D^2 + that``, ``2 cov + C2 = 2 (E[xy] - P) + C2`` and
    ``var_x + var_y + C2 = E[x^2 + y^2] - D^2 - 2 P + C2``.
    """
    c1 = (_SSIM_K1 * DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * DATA_RANGE) ** 2
    mx, my, mxxyy, mxy = moments.split(3, dim=1)
    prod = mx * my
    diff = mx - my
    lum_num = torch.add(prod, mx.add_(my), alpha=_SHIFT).mul_(2).add_(2 * _SHIFT**2 + c1)
    lum_den = torch.addcmul(lum_num, diff, diff)
    cs_num = torch.sub(mxy, prod).mul_(2).add_(c2)
    cs_den = mxxyy.addcmul_(diff, diff, value=-1).add_(prod, alpha=-2).add_(c2)
    ssim_map = lum_num.mul_(cs_num).div_(lum_den.mul_(cs_den))
    return ssim_map.mean(dim=(2, 3)).to(torch.float64).mean(dim=1)


def _scores(output: Tensor, target: Tensor, mask: Tensor | None, want: tuple[str, ...]):
    """Per-image metrics in ``want``, a chunk of images at a time (see the module docstring)."""
    _check_pair(output, target)
    if output.device.type == "mps":  # no float64 there: score on the CPU
        output, target = output.cpu(), target.cpu()
        mask = None if mask is None else mask.cpu()
    hole = None if mask is None else _hole(mask, output)
    n, _, height, width = output.shape
    kernel = None
    if "ssim" in want:
        kernel = gaussian_kernel1d(dtype=torch.float32).to(output.device)
        if min(height, width) < kernel.numel():
            raise ValueError(
                f"ssim needs images of at least {kernel.numel()} px, got {width}x{height}"
            )
    budget = _CPU_PIXELS if output.device.type == "cpu" else _GPU_PIXELS
    step = max(1, budget // (height * width))
    results: dict[str, list[Tensor]] = {name: [] for name in want}
    for start in range(0, n, step):
        stop = min(n, start + step)
        x, y = _shifted(output[start:stop]), _shifted(target[start:stop])
        if "l1" in want or "psnr" in want:
            diff = x - y
            if "psnr" in want:
                mse = diff.square().sum(dim=(1, 2, 3), dtype=torch.float64) / diff[0].numel()
                results["psnr"].append(10.0 * torch.log10(DATA_RANGE**2 / mse))
            if "l1" in want:
                assert hole is not None
                results["l1"].append(_masked_l1(diff, hole[start:stop]))
        if kernel is not None:
            results["ssim"].append(_ssim_of_moments(_moments(x, y, kernel)))
    empty = torch.zeros(0, dtype=torch.float64, device=output.device)
    return {name: torch.cat(values) if values else empty for name, values in results.items()}


def l1_error(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |output - target| over hole pixels (``mask == 0``) and channels, [0, 1] scale, x100.

    Returns (N,) float64; NaN for an image without hole pixels.
    """
    return _scores(output, target, mask, ("l1",))["l1"]


def psnr(output: Tensor, target: Tensor) -> Tensor:
    """Whole-image PSNR in dB on the [0, 255] scale: ``10 log10(255^2 / MSE)``.

    Returns (N,) float64; ``inf`` where the images are identical (MSE 0).
    """
    return _scores(output, target, None, ("psnr",))["psnr"]


def ssim(output: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM per image (Gaussian 11x11, sigma 1.5, per channel then averaged).

    Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=-1)``; needs H, W >= 11.
    Returns (N,) float64, 1 for identical images.
    """
    return _scores(output, target, None, ("ssim",))["ssim"]


def compute_metrics(output: Tensor, target: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """``{'l1', 'psnr', 'ssim'}`` per image ((N,) float64) of a composited ``output``.

    ``mask`` is 1 = valid; inputs as in the module docstring (uint8 0..255 or
    float [0, 1]). One pass over the images computes all three.
    """
    return _scores(output, target, mask, METRIC_NAMES)
