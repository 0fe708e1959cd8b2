"""MI-GAN's generator (Sargsyan et al., ICCV 2023) in pconv's code, fully convolutional.

The layout and module names are those of MI-GAN's inference generator
(``lib/model_zoo/migan_inference.py``), so its published ``migan_<res>_*.pt`` state
dicts load key for key (less the ``filter_const`` buffers, see below):

- ``encoder``: one :class:`EncoderBlock` per resolution ``b<res>``, ``b<res/2>``, ...,
  ``b8`` (two depthwise-separable 3x3 convs, the second one downsampling by 2 with a
  [1, 3, 3, 1] blur), then ``b4`` (no downsampling). ``b<res>`` first maps the
  4-channel input to features (``fromrgb``). Every block hands its first conv's
  output to the synthesis network at the same resolution.
- ``synthesis``: ``b4`` then one :class:`SynthesisBlock` per resolution ``b8`` ...
  ``b<res>``: a separable conv that upsamples by 2 (zero insertion + [1, 3, 3, 1]
  blur), the encoder's features added, a second separable conv, each with StyleGAN2's
  constant noise, and a ``torgb`` skip that sums the upsampled RGB of every level.
- Activations: leaky ReLU (0.2) times sqrt(2), clamped to [-256, 256].
- Channels: ``min(channel_base // res, channel_max)`` at each resolution (32768 and 512
  for the published nets: 5,973,366 parameters at 512, 5,943,617 at 256, the fixed
  blur kernels included).

MI-GAN's reference keeps two things for a single input size: ``filter_const`` (the
zero-insertion pattern of each upsampler, a (1, 1, res, res) buffer) and
``noise_const`` (StyleGAN2's constant noise, a (res, res) buffer per synthesis conv).
Here the pattern is computed for each input size (zero insertion; the buffers are
dropped by the converter, which checks them), and the stored noise is used as is at
the training size and tiled periodically over any other size, so the net runs on any
(H, W) that is a multiple of ``res / 4`` (:attr:`MiganGenerator.size_multiple`).

Conventions of :meth:`MiganGenerator.generate`: MI-GAN's own 4-channel input
``[mask - 0.5, image * mask]`` with the image in [-1, 1] and mask 1 = known, 0 = hole;
output RGB on the [-1, 1] scale (unbounded). :meth:`MiganGenerator.forward` takes
``(image, mask)`` as every pconv net does (image in [-1, 1], mask 1 = valid), pads to
the size multiple (the padding is hole) and crops back.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.models.inpainting import check_inputs, pad_to_multiple

__all__ = [
    "Downsample2d",
    "EncoderBlock",
    "MiganEncoder",
    "MiganGenerator",
    "MiganSynthesis",
    "ScaledLeakyReLU",
    "SeparableConv2d",
    "SynthesisBlock",
    "SynthesisBlockFirst",
    "Upsample2d",
    "check_resolution",
    "level_channels",
]

_BLUR = (1.0, 3.0, 3.0, 1.0)
"""The separable [1, 3, 3, 1] blur of StyleGAN2's resamplers (outer product, sum 1)."""


def check_resolution(resolution: int) -> int:
    """``resolution`` if it is a power of two of at least 8, else a ValueError."""
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise ValueError(f"resolution must be an integer, got {resolution!r}")
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return resolution


def level_channels(resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Channels at every level 4, 8, ..., ``resolution``: ``min(base // res, max)``."""
    levels = [2**i for i in range(2, int(math.log2(check_resolution(resolution))) + 1)]
    return {res: max(1, min(channel_base // res, channel_max)) for res in levels}


def _blur_kernel(channels: int, gain: float) -> Tensor:
    """(channels, 1, 4, 4): the normalised [1, 3, 3, 1] outer product times ``gain``."""
    f = torch.tensor(_BLUR, dtype=torch.float32)
    f = torch.outer(f, f)
    f = f / f.sum() * gain
    return f.repeat(channels, 1, 1, 1)


class ScaledLeakyReLU(nn.Module):
    """``clamp(leaky_relu(x, slope) * gain, -clamp, clamp)``: StyleGAN2's ``lrelu`` with
    gain sqrt(2) and clamp 256, in that order of operations."""

    def __init__(self, slope: float = 0.2, gain: float = math.sqrt(2.0), clamp: float = 256.0):
        super().__init__()
        self.slope, self.gain, self.clamp = slope, gain, clamp

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return (F.leaky_relu(x, self.slope) * self.gain).clamp(-self.clamp, self.clamp)
        # inference: in place on the (fresh) conv output, as MI-GAN does; same values
        x = F.leaky_relu(x, self.slope, inplace=True)
        return x.mul_(self.gain).clamp_(-self.clamp, self.clamp)

    def extra_repr(self) -> str:
        return f"slope={self.slope}, gain={self.gain:.6f}, clamp={self.clamp}"


class Downsample2d(nn.Module):
    """Blur with [1, 3, 3, 1] and keep every second pixel: a depthwise 4x4 conv, stride 2,
    padding 1 (``filter``: fixed weights, stored in the state dict as MI-GAN stores them)."""

    def __init__(self, channels: int):
        super().__init__()
        self.filter = nn.Conv2d(
            channels, channels, 4, stride=2, padding=1, groups=channels, bias=False
        )
        with torch.no_grad():
            self.filter.weight.copy_(_blur_kernel(channels, 1.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.filter(x)


class Upsample2d(nn.Module):
    """x2 upsampling: insert zeros (each pixel at the top-left of its 2x2 cell), pad
    (2, 1, 2, 1), blur with [1, 3, 3, 1] times 4 (``filter``, a depthwise 4x4 conv).

    MI-GAN multiplies a nearest-neighbour upsampling by a stored (1, 1, res, res)
    pattern of ones and zeros; inserting the zeros gives the same values at any size.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.filter = nn.Conv2d(channels, channels, 4, groups=channels, bias=False)
        with torch.no_grad():
            self.filter.weight.copy_(_blur_kernel(channels, 4.0))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        up = x.new_zeros(n, c, 2 * h, 2 * w)
        up[..., ::2, ::2] = x
        return self.filter(F.pad(up, (2, 1, 2, 1)))


class SeparableConv2d(nn.Module):
    """Depthwise ``kernel`` x ``kernel`` conv (``conv1``, with bias), activation, optional
    x1/2 blur (``downsample``), pointwise conv (``conv2``, no bias), optional x2 upsampling
    (``upsample``), optional constant noise (``noise_const`` * ``noise_strength``),
    activation.

    ``resolution`` is the output resolution the noise was drawn for (``noise_const`` is
    (resolution, resolution)); at other sizes it is tiled periodically.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        activation: nn.Module | None = None,
        resolution: int | None = None,
        use_noise: bool = False,
        down: int = 1,
        up: int = 1,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels
        )
        self.conv2 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.downsample = Downsample2d(in_channels) if down > 1 else None
        self.upsample = Upsample2d(out_channels) if up > 1 else None
        self.use_noise = use_noise
        if use_noise:
            if resolution is None:
                raise ValueError("constant noise needs the resolution it is drawn for")
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.activation = activation

    def _noise(self, height: int, width: int) -> Tensor:
        noise = self.noise_const
        r_h, r_w = noise.shape
        if (height, width) != (r_h, r_w):
            noise = noise.repeat(-(-height // r_h), -(-width // r_w))[:height, :width]
        return noise * self.noise_strength

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if self.activation is not None:
            x = self.activation(x)
        if self.downsample is not None:
            x = self.downsample(x)
        x = self.conv2(x)
        if self.upsample is not None:
            x = self.upsample(x)
        if self.use_noise:
            noise = self._noise(*x.shape[-2:])
            x = x + noise if torch.is_grad_enabled() else x.add_(noise)
        if self.activation is not None:
            x = self.activation(x)
        return x


class EncoderBlock(nn.Module):
    """``fromrgb`` (first block only: 1x1 conv of the 4-channel input + activation, added
    to the incoming features), ``conv1`` (separable), ``conv2`` (separable, downsampling by
    ``down``). Returns (``conv2`` output, ``conv1`` output: the skip to the synthesis)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        rgb_channels: int | None = None,
        down: int = 2,
    ):
        super().__init__()
        self.activation = ScaledLeakyReLU()
        self.fromrgb = nn.Conv2d(rgb_channels, in_channels, 1) if rgb_channels else None
        self.conv1 = SeparableConv2d(in_channels, in_channels, 3, activation=self.activation)
        self.conv2 = SeparableConv2d(
            in_channels, out_channels, 3, activation=self.activation, down=down
        )

    def forward(self, x: Tensor | None, image: Tensor) -> tuple[Tensor, Tensor]:
        if self.fromrgb is not None:
            y = self.activation(self.fromrgb(image))
            x = y if x is None else x + y
        feature = self.conv1(x)
        return self.conv2(feature), feature


class MiganEncoder(nn.Module):
    """Blocks ``b<res>`` ... ``b8`` (downsampling) and ``b4``; returns the 4x4-level
    features and the skip features of every level (by resolution)."""

    def __init__(self, channels: dict[int, int], in_channels: int = 4):
        super().__init__()
        levels = sorted(channels, reverse=True)  # res, res/2, ..., 4
        for index, (res, next_res) in enumerate(pairwise(levels)):
            block = EncoderBlock(
                channels[res], channels[next_res], rgb_channels=in_channels if index == 0 else None
            )
            self.add_module(f"b{res}", block)
        self.b4 = EncoderBlock(channels[4], channels[4], down=1)
        self.levels = levels

    def forward(self, image: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        x = None
        features: dict[int, Tensor] = {}
        for res in self.levels[:-1]:
            x, features[res] = getattr(self, f"b{res}")(x, image)
        x, features[4] = self.b4(x, image)
        return x, features


class SynthesisBlockFirst(nn.Module):
    """The 4x4 level: ``conv1``, + encoder features, ``conv2``, ``torgb``."""

    def __init__(self, channels: int, rgb_channels: int = 3):
        super().__init__()
        activation = ScaledLeakyReLU()
        self.conv1 = SeparableConv2d(channels, channels, 3, activation=activation)
        self.conv2 = SeparableConv2d(channels, channels, 3, activation=activation)
        self.torgb = nn.Conv2d(channels, rgb_channels, 1)

    def forward(self, x: Tensor, skip: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv2(self.conv1(x) + skip)
        return x, self.torgb(x)


class SynthesisBlock(nn.Module):
    """One level up: ``conv1`` (x2 upsampling, noise), + encoder features, ``conv2``
    (noise); the RGB of the levels below is upsampled (``upsample``) and ``torgb`` added."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, rgb_channels: int = 3):
        super().__init__()
        activation = ScaledLeakyReLU()
        self.conv1 = SeparableConv2d(
            in_channels, out_channels, 3, activation=activation, resolution=resolution,
            use_noise=True, up=2,
        )  # fmt: skip
        self.conv2 = SeparableConv2d(
            out_channels, out_channels, 3, activation=activation, resolution=resolution,
            use_noise=True,
        )  # fmt: skip
        self.torgb = nn.Conv2d(out_channels, rgb_channels, 1)
        self.upsample = Upsample2d(rgb_channels)

    def forward(self, x: Tensor, skip: Tensor, rgb: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv2(self.conv1(x) + skip)
        return x, self.upsample(rgb) + self.torgb(x)


class MiganSynthesis(nn.Module):
    """``b4`` then ``b8`` ... ``b<res>``; returns the summed RGB of every level."""

    def __init__(self, channels: dict[int, int], rgb_channels: int = 3):
        super().__init__()
        levels = sorted(channels)  # 4, 8, ..., res
        self.b4 = SynthesisBlockFirst(channels[4], rgb_channels)
        for res, next_res in pairwise(levels):
            block = SynthesisBlock(channels[res], channels[next_res], next_res, rgb_channels)
            self.add_module(f"b{next_res}", block)
        self.levels = levels

    def forward(self, x: Tensor, features: dict[int, Tensor]) -> Tensor:
        x, rgb = self.b4(x, features[4])
        for res in self.levels[1:]:
            x, rgb = getattr(self, f"b{res}")(x, features[res], rgb)
        return rgb


class MiganGenerator(nn.Module):
    """MI-GAN's generator for ``resolution`` (any power of two >= 8; 256 and 512 are
    published) with ``min(channel_base // res, channel_max)`` channels per level.

    See the module docstring for :meth:`generate` and :meth:`forward`.
    """

    def __init__(self, *, resolution: int = 512, channel_base: int = 32768, channel_max: int = 512):
        super().__init__()
        channels = level_channels(resolution, channel_base, channel_max)
        self.resolution = resolution
        # MI-GAN's order: synthesis, then encoder (the state dict follows it).
        self.synthesis = MiganSynthesis(channels)
        self.encoder = MiganEncoder(channels)

    @property
    def size_multiple(self) -> int:
        """Sides must be multiples of this (the encoder halves them down to 1/(res/4))."""
        return self.resolution // 4

    def generate(self, x: Tensor) -> Tensor:
        """MI-GAN's forward: (N, 4, H, W) ``[mask - 0.5, image * mask]`` -> RGB in [-1, 1]."""
        if x.dim() != 4 or x.shape[1] != 4:
            raise ValueError(f"MI-GAN takes (N, 4, H, W) input, got {tuple(x.shape)}")
        multiple = self.size_multiple
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"MI-GAN {self.resolution} needs sides that are multiples of {multiple}, "
                f"got {tuple(x.shape[-2:])} (forward pads them)"
            )
        x, features = self.encoder(x)
        return self.synthesis(x, features)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """``image`` in [-1, 1] (N, 3, H, W), ``mask`` 1 = valid; any H, W (padded with
        hole to the size multiple, cropped back). Returns the raw output in [-1, 1]."""
        mask = check_inputs(image, mask).amin(1, keepdim=True)
        height, width = image.shape[-2:]
        image, mask = pad_to_multiple(image, mask, self.size_multiple)
        out = self.generate(torch.cat([mask - 0.5, image * mask], 1))
        return out[..., :height, :width]
