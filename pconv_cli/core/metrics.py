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

uint8 inputs make l1 and PSNR exact (integer sums); SSIM runs in float32 on
mean-centred values, within 1e-5 of scikit-image's float64 result.
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
_SSIM_CHUNK = 8
"""Images per SSIM step: keeps the 15 filtered maps of a chunk small enough for cache."""


def _check_pair(output: Tensor, target: Tensor) -> None:
    if output.dim() != 4 or output.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) images, got output {tuple(output.shape)}")
    if output.shape != target.shape:
        raise ValueError(
            f"output {tuple(output.shape)} and target {tuple(target.shape)} differ in shape"
        )


def _to_255(image: Tensor, dtype: torch.dtype) -> Tensor:
    """uint8 as is, floats times 255, as ``dtype``."""
    if image.dtype == torch.uint8:
        return image.to(dtype)
    if not image.is_floating_point():
        raise TypeError(f"expected uint8 or floating images, got {image.dtype}")
    return image.to(dtype) * DATA_RANGE


def _abs_diff(output: Tensor, target: Tensor) -> Tensor:
    """|output - target| on the [0, 255] scale: int32 for uint8 pairs, float64 otherwise."""
    if output.dtype == torch.uint8 and target.dtype == torch.uint8:
        return (output.to(torch.int32) - target.to(torch.int32)).abs()
    return (_to_255(output, torch.float64) - _to_255(target, torch.float64)).abs()


def _hole(mask: Tensor, like: Tensor) -> Tensor:
    """(N, 1, H, W) bool, True = hole, from a 1 = valid mask."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != like.shape[0]:
        raise ValueError(f"mask must be (N, 1, H, W) or (N, H, W), got {tuple(mask.shape)}")
    if mask.shape[2:] != like.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match images {tuple(like.shape)}")
    return mask < 0.5 if mask.dtype != torch.bool else ~mask


def l1_error(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |output - target| over hole pixels (``mask == 0``) and channels, [0, 1] scale, x100.

    Returns (N,) float64; NaN for an image without hole pixels.
    """
    _check_pair(output, target)
    hole = _hole(mask, output)
    diff = _abs_diff(output, target)
    total = (diff * hole).sum(dim=(1, 2, 3)).to(torch.float64)  # exact int64 for uint8
    count = hole.sum(dim=(1, 2, 3)).to(torch.float64) * output.shape[1]
    return total / count / DATA_RANGE * 100.0


def psnr(output: Tensor, target: Tensor) -> Tensor:
    """Whole-image PSNR in dB on the [0, 255] scale: ``10 log10(255^2 / MSE)``.

    Returns (N,) float64; ``inf`` where the images are identical (MSE 0).
    """
    _check_pair(output, target)
    diff = _abs_diff(output, target)
    if diff.is_floating_point():
        sse = (diff * diff).sum(dim=(1, 2, 3))
    else:
        sse = (diff * diff).sum(dim=(1, 2, 3), dtype=torch.int64).to(torch.float64)
    mse = sse / diff[0].numel()
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


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
    radius from every side, so the padded values never reach the mean: the
    'valid' convolution is exactly the cropped map. (Gaussian is symmetric, so
    cross-correlation equals convolution.)
    """
    channels = maps.shape[1]
    taps = kernel.numel()
    row = kernel.view(1, 1, 1, taps).expand(channels, 1, 1, taps)
    col = kernel.view(1, 1, taps, 1).expand(channels, 1, taps, 1)
    maps = maps.contiguous(memory_format=torch.channels_last)  # depthwise conv is fastest so
    return F.conv2d(F.conv2d(maps, row, groups=channels), col, groups=channels)


def _ssim_chunk(x: Tensor, y: Tensor, kernel: Tensor, c1: float, c2: float) -> Tensor:
    """Mean SSIM of each image of a chunk (float32 [0, 255] inputs), float64 (N,)."""
    channels = x.shape[1]
    # Shift both images by the same per-channel constant: variances and covariance
    # do not change, and float32 loses far less in E[x^2] - E[x]^2 near zero.
    shift = (x.mean(dim=(2, 3), keepdim=True) + y.mean(dim=(2, 3), keepdim=True)) / 2
    x, y = x - shift, y - shift
    moments = _filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel)
    mx, my, mxx, myy, mxy = moments.split(channels, dim=1)
    var_x, var_y, cov = mxx - mx * mx, myy - my * my, mxy - mx * my
    mx, my = mx + shift, my + shift
    numerator = (2 * mx * my + c1) * (2 * cov + c2)
    denominator = (mx * mx + my * my + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(dim=(2, 3), dtype=torch.float64).mean(dim=1)


def ssim(output: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM per image (Gaussian 11x11, sigma 1.5, per channel then averaged).

    Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=-1)``; needs H, W >= 11.
    Returns (N,) float64, 1 for identical images.
    """
    _check_pair(output, target)
    kernel = gaussian_kernel1d(dtype=torch.float32).to(output.device)
    height, width = output.shape[-2:]
    if min(height, width) < kernel.numel():
        raise ValueError(f"ssim needs images of at least {kernel.numel()} px, got {width}x{height}")
    c1 = (_SSIM_K1 * DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * DATA_RANGE) ** 2
    results = []
    for start in range(0, output.shape[0], _SSIM_CHUNK):
        x = _to_255(output[start : start + _SSIM_CHUNK], torch.float32)
        y = _to_255(target[start : start + _SSIM_CHUNK], torch.float32)
        results.append(_ssim_chunk(x, y, kernel, c1, c2))
    if not results:
        return torch.zeros(0, dtype=torch.float64, device=output.device)
    return torch.cat(results)


def compute_metrics(output: Tensor, target: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """``{'l1', 'psnr', 'ssim'}`` per image ((N,) float64) of a composited ``output``.

    ``mask`` is 1 = valid; inputs as in the module docstring (uint8 0..255 or
    float [0, 1]).
    """
    return {
        "l1": l1_error(output, target, mask),
        "psnr": psnr(output, target),
        "ssim": ssim(output, target),
    }
