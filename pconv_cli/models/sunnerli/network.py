"""SunnerLi's P-Conv nets (github.com/SunnerLi/P-Conv, 2018) in pconv's code, his module names.

Two 8-level U-Nets with ``base`` = 64 channels at level 1 (``lib/model.py``):

:class:`SunnerLiPConvUNet` (his ``PartialUNet``), faithful to every quirk of his code:

- **Partial convolution** (:class:`SunnerLiPartialConv2d`, his ``lib/layers.py``): with
  ``S`` = the window sum of the (multi-channel) mask, his layer computes the bias by
  running the same convolution a third time, on zeros (which gives ``b``), and outputs
  ``(W^T(X*M) + b - b) / (S + 1e-20) + b`` where ``S > 0`` and ``b`` where ``S = 0``:
  no ``sum(1)`` scale (unlike the paper's ``sum(1)/sum(M)``), and holes get the bias,
  not 0. The new mask is ``clamp(S, 0, 1)``, which stays fractional where ``S < 1``
  (his pipeline feeds fractional masks: see :mod:`.pipeline`). Both convolutions pad
  explicitly (``ZeroPad2d``, then ``padding=0``); the mask convolution is a fixed
  kernel of ones (``mask_conv``, stored in his files; the converter checks and drops it).
- **Encoder** ``down1..down8``: kernels 7, 5, 5, 3, 3, 3, 3, 3, stride 2, channels
  base x 1, 2, 4, 8, 8, 8, 8, 8, then ReLU. Levels 2-8 own a BatchNorm whose result is
  discarded (``self.norm(x_)`` without assignment): it never changes the output, so
  the converter drops its parameters.
- **Decoder** ``up8..up1``: nearest x2 of features *and* masks, cropped to the skip's
  size when larger (his ``checkAndPadding``: odd sizes; its padding branch is never
  reached, since every level halves with rounding up), concatenated [upsampled, skip]
  with their masks, 3x3 partial conv, then BatchNorm and LeakyReLU(0.2) (``up1``: neither,
  3 output channels; its skip is the net's input image and mask).
- **Output** ``sigmoid(x) * 2 - 1``. Any input size works (the crop handles odd sizes).
- Features are never multiplied by their mask between layers; each partial conv
  multiplies its input by its mask, as his layer does.

:class:`SunnerLiUNet` (his ``UNet``, the plain baseline): 3x3 convs (stride 1) with
BatchNorm (not on ``down1``) and ReLU, 2x2 max pooling between levels, nearest x2 and
concatenation [skip, upsampled] in the decoder (every ``up`` level ends in ReLU: his
``use_lr`` flag is unused), ``up1`` a plain 3x3 conv to 3 channels, then tanh. It sees
only the masked image (no mask). His net needs sides that are multiples of 128; pconv
pads with hole (zeros) and crops back.

Conventions of ``generate(image, mask)`` (his ``forward`` after ``setInput``): BGR image
in [-1, 1] (his nets were trained on OpenCV's BGR arrays), (N, 3, H, W) mask in [0, 1]
with 1 = known; returns his ``recon_img`` (BGR, [-1, 1]). ``forward(image, mask)``
takes pconv's RGB in [-1, 1] and a 1 = valid mask, flips to BGR, masks the image (his
``setInput(target=..., mask=...)``), and flips the output back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.models.inpainting import check_inputs, pad_to_multiple

__all__ = [
    "PartialDown",
    "PartialUp",
    "SunnerLiPConvUNet",
    "SunnerLiPartialConv2d",
    "SunnerLiUNet",
    "UNetDown",
    "UNetUp",
]

_BGR = [2, 1, 0]
_DOWN = [(1, 7, 3), (2, 5, 2), (4, 5, 2), (8, 3, 1), (8, 3, 1), (8, 3, 1), (8, 3, 1), (8, 3, 1)]
"""(channels / base, kernel, padding) of his encoder levels 1..8 (stride 2)."""
_UP = [(8, 8, 8), (8, 8, 8), (8, 8, 8), (8, 8, 8), (8, 4, 4), (4, 2, 2), (2, 1, 1)]
"""(input, skip, output) channels / base of his decoder levels 8..2."""


def _conv_with_padding(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, bias: bool
) -> nn.Sequential:
    """His ``__Conv2d``: ``ZeroPad2d(padding)`` (index 0, when padding > 0) then the conv."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
    return nn.Sequential(nn.ZeroPad2d(padding), conv) if padding else nn.Sequential(conv)


class SunnerLiPartialConv2d(nn.Module):
    """His partial convolution (see the module docstring); ``forward(x, mask)`` with a
    dense mask of ``in_channels`` channels returns ``(out, new_mask)``, ``new_mask``
    (N, 1, H', W') (his has ``out_channels`` identical channels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int):  # fmt: skip
        super().__init__()
        self.in_channels, self.kernel_size, self.stride = in_channels, kernel_size, stride
        self.padding = padding
        self.img_conv = _conv_with_padding(
            in_channels, out_channels, kernel_size, stride, padding, bias=True
        )

    def mask_sums(self, mask: Tensor) -> Tensor:
        """``S``: his ``mask_conv`` (a kernel of ones over every input channel), one channel."""
        ones = mask.new_ones(1, self.in_channels, self.kernel_size, self.kernel_size)
        return F.conv2d(F.pad(mask, [self.padding] * 4), ones, stride=self.stride)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if mask.shape != x.shape or x.shape[1] != self.in_channels:
            raise ValueError(
                f"image {tuple(x.shape)} and mask {tuple(mask.shape)} must both have "
                f"{self.in_channels} channels and the same shape"
            )
        sums = self.mask_sums(mask)
        out = self.img_conv(x * mask)
        bias = self.img_conv[-1].bias.view(1, -1, 1, 1)
        out = (1 - (sums == 0).float()) * (out - bias) / (sums + 1e-20) + bias
        return out, torch.clamp(sums, 0, 1)


class PartialDown(nn.Module):
    """Encoder level: partial conv (stride 2) then ReLU (his BatchNorm is discarded)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int):
        super().__init__()
        self.pconv = SunnerLiPartialConv2d(in_channels, out_channels, kernel_size, 2, padding)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x, mask = self.pconv(x, mask)
        return F.relu(x), mask.expand_as(x)


def _crop_to(x: Tensor, reference: Tensor) -> Tensor:
    """His ``checkAndPadding``: crop ``x`` to ``reference``'s size when larger."""
    height, width = reference.shape[-2:]
    if x.shape[-2] < height or x.shape[-1] < width:
        raise ValueError(f"upsampled {tuple(x.shape)} smaller than skip {tuple(reference.shape)}")
    return x[..., :height, :width]


class PartialUp(nn.Module):
    """Decoder level: nearest x2 (features and mask), crop, concat with the skip, 3x3
    partial conv, then BatchNorm (``norm``) and LeakyReLU(0.2) unless ``last``."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *,
                 last: bool = False):  # fmt: skip
        super().__init__()
        self.pconv = SunnerLiPartialConv2d(in_channels + skip_channels, out_channels, 3, 1, 1)
        self.norm = None if last else nn.BatchNorm2d(out_channels)
        self.last = last

    def forward(self, x: Tensor, skip: Tensor, mask: Tensor, skip_mask: Tensor):
        x = _crop_to(F.interpolate(x, scale_factor=2.0, mode="nearest"), skip)
        mask = _crop_to(F.interpolate(mask, scale_factor=2.0, mode="nearest"), skip_mask)
        x, mask = self.pconv(torch.cat([x, skip], 1), torch.cat([mask, skip_mask], 1))
        if self.norm is not None:
            x = self.norm(x)
        if not self.last:
            x = F.leaky_relu(x, 0.2)
        return x, mask.expand_as(x)


def _swap_colours(image: Tensor) -> Tensor:
    return image[:, _BGR]


class SunnerLiPConvUNet(nn.Module):
    """His ``PartialUNet`` (see the module docstring); ``base`` channels at level 1."""

    def __init__(self, *, base: int = 64):
        super().__init__()
        channels = 3
        for level, (factor, kernel, padding) in enumerate(_DOWN, start=1):
            self.add_module(f"down{level}", PartialDown(channels, base * factor, kernel, padding))
            channels = base * factor
        for level, (c_in, c_skip, c_out) in zip(range(8, 1, -1), _UP, strict=True):
            self.add_module(f"up{level}", PartialUp(base * c_in, base * c_skip, base * c_out))
        self.up1 = PartialUp(base, 3, 3, last=True)

    def generate(self, image: Tensor, mask: Tensor) -> Tensor:
        """His forward: BGR ``image`` (already ``target * mask`` in his test.py), dense mask."""
        features, masks = [image], [mask]
        for level in range(1, 9):
            x, m = getattr(self, f"down{level}")(features[-1], masks[-1])
            features.append(x)
            masks.append(m)
        x, m = features[8], masks[8]
        for level in range(8, 0, -1):
            x, m = getattr(self, f"up{level}")(x, features[level - 1], m, masks[level - 1])
        return torch.sigmoid(x) * 2 - 1

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """RGB ``image`` in [-1, 1], ``mask`` 1 = valid -> raw RGB output in [-1, 1]."""
        mask = check_inputs(image, mask).expand_as(image)
        bgr = _swap_colours(image) * mask
        return _swap_colours(self.generate(bgr, mask.contiguous()))


class UNetDown(nn.Module):
    """His ``unetDown``: ``layer`` = 3x3 conv, BatchNorm (unless ``norm=False``), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, 1, 1)]
        layers += [nn.BatchNorm2d(out_channels)] if norm else []
        self.layer = nn.Sequential(*layers, nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class UNetUp(nn.Module):
    """His ``unetUp``: nearest x2 of the deeper features, concat [skip, upsampled],
    ``layer`` = 3x3 conv, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(in_channels + skip_channels, out_channels, 3, 1, 1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, skip: Tensor, x: Tensor) -> Tensor:
        return self.layer(torch.cat([skip, F.interpolate(x, scale_factor=2.0, mode="nearest")], 1))


class SunnerLiUNet(nn.Module):
    """His plain ``UNet`` (see the module docstring); ``base`` channels at level 1."""

    size_multiple = 128

    def __init__(self, *, base: int = 64):
        super().__init__()
        channels = 3
        for level, (factor, _, _) in enumerate(_DOWN, start=1):
            self.add_module(f"down{level}", UNetDown(channels, base * factor, norm=level > 1))
            channels = base * factor
        for level, (c_in, c_skip, c_out) in zip(range(8, 1, -1), _UP, strict=True):
            self.add_module(f"up{level}", UNetUp(base * c_in, base * c_skip, base * c_out))
        self.up1 = nn.Conv2d(base, 3, 3, 1, 1)

    def generate(self, image: Tensor, mask: Tensor | None = None) -> Tensor:
        """His forward: the BGR (masked) image only; sides must be multiples of 128."""
        if image.shape[-2] % 128 or image.shape[-1] % 128:
            raise ValueError(f"his U-Net needs sides that are multiples of 128, got {image.shape}")
        skips = [self.down1(image)]
        for level in range(2, 9):
            skips.append(getattr(self, f"down{level}")(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for level in range(8, 1, -1):
            x = getattr(self, f"up{level}")(skips.pop(), x)
        return torch.tanh(self.up1(x))

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """RGB ``image`` in [-1, 1], ``mask`` 1 = valid -> raw RGB output in [-1, 1]."""
        mask = check_inputs(image, mask).expand_as(image)
        height, width = image.shape[-2:]
        bgr, mask = pad_to_multiple(_swap_colours(image) * mask, mask, self.size_multiple)
        return _swap_colours(self.generate(bgr))[..., :height, :width]
