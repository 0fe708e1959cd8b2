"""The PConv U-Net of Liu et al. (ECCV 2018): family ``pconv_unet`` (alias ``pconv``).

``PConvUNet(layers=7)`` is MMagic's 256x256 generator, ``layers=8`` the paper's
512x512 net. Submodule names follow MMagic's generator (``encoder.enc1.conv``,
``decoder.dec7.bn``, ...), so its checkpoint keys map by stripping ``generator.``.

Conventions: ``image`` is float RGB (N, 3, H, W) (any value range the weights
expect), ``mask`` is float (N, 1, H, W) or (N, 3, H, W), 1 = valid, 0 = hole.
``forward`` returns the raw output; blend it with
:func:`~pconv_cli.models.inpainting.composite`. Any H, W work: inputs are padded
internally to a multiple of ``2**layers`` (the padding is hole) and the output is
cropped back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.models.inpainting import (
    NORMALIZATIONS,
    InpaintingModel,
    check_inputs,
    pad_to_multiple,
)
from pconv_cli.models.registry import register_model
from pconv_cli.nn.blocks import ConvBlock
from pconv_cli.nn.partial_conv import ChannelMask, PartialConv2d, mask_window_sums

__all__ = ["PConvUNet", "UNetConfig", "encoder_channels", "pconv_unet"]

Upsampling = Literal["nearest", "bilinear"]
UPSAMPLINGS: tuple[str, ...] = ("nearest", "bilinear")

# (out_channels, kernel) of encoder levels 1..8 in the paper; deeper levels repeat the last.
_ENCODER_SPEC = [(64, 7), (128, 5), (256, 5), (512, 3), (512, 3), (512, 3), (512, 3), (512, 3)]
MAX_LAYERS = len(_ENCODER_SPEC)


def encoder_channels(layers: int, width: float) -> list[tuple[int, int]]:
    """(channels, kernel size) of encoder levels 1..layers, channels scaled by ``width``."""
    if not 1 <= layers <= MAX_LAYERS:
        raise ValueError(f"layers must be in 1..{MAX_LAYERS}, got {layers}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return [(max(1, round(c * width)), k) for c, k in _ENCODER_SPEC[:layers]]


@dataclass(frozen=True)
class UNetConfig:
    """Options of the U-Net families (``pconv_unet`` and ``unet``).

    - ``layers``: encoder levels, 1..8 (7 = MMagic's 256x256 net, 8 = the paper's 512x512);
    - ``width``: channel multiplier (> 0);
    - ``upsampling``: decoder feature upsampling, ``nearest`` (paper) or ``bilinear``;
    - ``normalization``: the input normalisation the weights expect
      (see :data:`~pconv_cli.models.inpainting.NORMALIZATIONS`).
    """

    layers: int = 7
    width: float = 1.0
    upsampling: str = "nearest"
    normalization: str = "minus_one_one"

    def __post_init__(self) -> None:
        if isinstance(self.layers, bool) or not isinstance(self.layers, int):
            raise ValueError(f"layers must be an integer, got {self.layers!r}")
        if not isinstance(self.width, (int, float)) or isinstance(self.width, bool):
            raise ValueError(f"width must be a number, got {self.width!r}")
        object.__setattr__(self, "width", float(self.width))
        encoder_channels(self.layers, self.width)  # range checks
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {tuple(NORMALIZATIONS)}, got {self.normalization!r}"
            )


def _mask_features(x: Tensor, mask: Tensor) -> Tensor:
    """``x * mask`` for a (N, 1, H, W) mask, skipped on CPU when nothing is masked.

    Holes fill up after a few levels, so deep masks are usually all ones. The
    check needs the mask's values on the host, which is free on CPU but would
    stall a GPU queue, and it would break a compiled graph: there we multiply.
    """
    if x.device.type == "cpu" and not torch.compiler.is_compiling() and bool(mask.all()):
        return x
    return x * mask.to(x.dtype)


def _pconv_block(in_channels: int, out_channels: int, kernel_size: int, **options) -> ConvBlock:
    """A level: multi-channel partial conv -> BN -> activation; call it on masked input."""
    return ConvBlock(
        in_channels,
        out_channels,
        kernel_size,
        conv_type=PartialConv2d,
        multi_channel=True,
        **options,
    )


class PConvEncoder(nn.Module):
    """Levels ``enc1..encL``: stride-2 partial convs, BN + ReLU (level 1: ReLU only)."""

    def __init__(self, spec: list[tuple[int, int]], in_channels: int = 3):
        super().__init__()
        channels = in_channels
        for level, (out_channels, kernel) in enumerate(spec, start=1):
            block = _pconv_block(
                channels,
                out_channels,
                kernel,
                stride=2,
                norm=level > 1,
                activation=nn.ReLU(inplace=True),
            )
            self.add_module(f"enc{level}", block)
            channels = out_channels
        self.levels = len(spec)

    def forward(self, x: Tensor, mask: ChannelMask) -> tuple[list[Tensor], list[Tensor]]:
        """Masked features and (N, 1, H, W) masks of every level (level 0 = ``x`` itself)."""
        features: list[Tensor] = []
        masks: list[Tensor] = []
        for level in range(1, self.levels + 1):
            x, m = getattr(self, f"enc{level}")(x, mask, masked_input=True)
            # Mask once here: the result feeds both the next level and the skip.
            x = _mask_features(x, m)
            mask = ChannelMask.of(m, x.shape[1])
            features.append(x)
            masks.append(m)
        return features, masks


class PConvDecoder(nn.Module):
    """Levels ``decL..dec1``: upsample x2, concat the skip, 3x3 partial conv.

    BN + LeakyReLU(0.2) on every level but ``dec1``, which outputs 3 channels
    with a bias and no activation. Concatenation order: upsampled features first.
    """

    def __init__(self, spec: list[tuple[int, int]], out_channels: int = 3, *, upsampling: str):
        super().__init__()
        skip_channels = [out_channels] + [c for c, _ in spec[:-1]]
        channels = spec[-1][0]
        for level in range(len(spec), 0, -1):
            last = level == 1
            block_out = out_channels if last else spec[level - 2][0]
            block = _pconv_block(
                channels + skip_channels[level - 1],
                block_out,
                3,
                norm=not last,
                activation=None if last else nn.LeakyReLU(0.2, inplace=True),
            )
            self.add_module(f"dec{level}", block)
            channels = block_out
        self.levels = len(spec)
        self.upsampling = upsampling

    def _upsample(self, x: Tensor) -> Tensor:
        if self.upsampling == "nearest":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.interpolate(x, scale_factor=2.0, mode=self.upsampling, align_corners=False)

    def forward(
        self, features: list[Tensor], masks: list[Tensor], image: Tensor, image_mask: ChannelMask
    ) -> Tensor:
        x, m = features[-1], masks[-1]
        for level in range(self.levels, 0, -1):
            if level > 1:
                skip = features[level - 2]
                skip_mask = ChannelMask.of(masks[level - 2], skip.shape[1])
            else:
                skip, skip_mask = image, image_mask
            m_up = F.interpolate(m, scale_factor=2.0, mode="nearest")
            x_up = self._upsample(x)
            if self.upsampling != "nearest":
                # nearest upsampling of masked features is already masked; others are not.
                x_up = _mask_features(x_up, m_up)
            mask = ChannelMask.cat([ChannelMask.of(m_up, x.shape[1]), skip_mask])
            x, m = getattr(self, f"dec{level}")(torch.cat([x_up, skip], 1), mask, masked_input=True)
            if level > 1:
                x = _mask_features(x, m)
        return x


class PConvUNet(nn.Module):
    """The PConv U-Net. Keyword-only options:

    - ``layers``: 7 (MMagic's 256x256 net, 25,779,860 parameters) or 8 (the
      paper's 512x512 net, 32,859,796 parameters); any 1..8 works.
    - ``width``: channel multiplier (e.g. 0.25 for tiny test models).
    - ``upsampling``: decoder feature upsampling, ``"nearest"`` (paper) or
      ``"bilinear"``; masks always use nearest.

    ``forward(image, mask)`` -> raw output (N, 3, H, W), see the module docstring.
    """

    def __init__(self, *, layers: int = 7, width: float = 1.0, upsampling: Upsampling = "nearest"):
        super().__init__()
        if upsampling not in ("nearest", "bilinear"):
            raise ValueError(f"upsampling must be 'nearest' or 'bilinear', got {upsampling!r}")
        spec = encoder_channels(layers, width)
        self.layers = layers
        self.width = width
        self.upsampling = upsampling
        self.encoder = PConvEncoder(spec)
        self.decoder = PConvDecoder(spec, upsampling=upsampling)
        self._encoder_bn_frozen = False

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to a multiple of this internally."""
        return 2**self.layers

    def update_mask(self, mask: Tensor) -> Tensor:
        """The update mask of ``dec1`` for ``mask`` (N, 1|3, H, W), 1 = valid: (N, 1, H, W).

        1 where the output pixel's chain of windows reached a valid input pixel, 0
        where it did not (``forward`` then outputs ``dec1``'s bias there: a flat
        colour). Computed from the mask arithmetic alone (window sums), as
        ``forward`` does it, at a small fraction of its cost.
        """
        h, w = mask.shape[-2:]
        m = (mask.float().amax(1, keepdim=True) > 0).float()
        m = pad_to_multiple(m, m, self.size_multiple)[1]
        image_mask, masks = m, []
        for level in range(1, self.layers + 1):
            m = _window_any(m, getattr(self.encoder, f"enc{level}").conv)
            masks.append(m)
        for level in range(self.layers, 0, -1):
            skip = masks[level - 2] if level > 1 else image_mask
            up = F.interpolate(m, scale_factor=2.0, mode="nearest")
            m = _window_any(up + skip, getattr(self.decoder, f"dec{level}").conv)
        return m[..., :h, :w]

    @property
    def reach(self) -> int:
        """The largest hole depth (px) whose pixels all see a known pixel: a hole pixel
        at most this far (Euclidean) from a known pixel never outputs the raw bias."""
        return _reach(self.layers)

    @property
    def fill_radius(self) -> float:
        """The hole depth (px) this net fills well: a quarter of :attr:`reach`, the
        distance at which a hole pixel still sees known pixels through every level
        but the two deepest (see ``pconv_cli.inpainting.strategy``)."""
        return _reach(self.layers) / 4

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        mask = check_inputs(image, mask)
        h, w = image.shape[-2:]
        image, mask = pad_to_multiple(image, mask, self.size_multiple)
        masked = image * mask
        image_mask = ChannelMask.of(mask, 3)
        features, masks = self.encoder(masked, image_mask)
        out = self.decoder(features, masks, masked, image_mask)
        return out[..., :h, :w]

    def freeze_encoder_bn(self, freeze: bool = True) -> PConvUNet:
        """Stage 2: encoder BatchNorms in eval mode with frozen affine parameters.

        Stays in force across ``.train()`` until ``freeze_encoder_bn(False)``.
        """
        self._encoder_bn_frozen = freeze
        for module in self.encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for p in module.parameters():
                    p.requires_grad_(not freeze)
        return self.train(self.training)

    def train(self, mode: bool = True) -> PConvUNet:
        super().train(mode)
        if self._encoder_bn_frozen:
            for module in self.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def _window_any(mask: Tensor, conv: PartialConv2d) -> Tensor:
    """1 where ``conv``'s window over ``mask`` (N, 1, H, W) holds a non-zero value."""
    sums = mask_window_sums(mask, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    return (sums > 0).float()


@functools.lru_cache(maxsize=8)
def _reach(layers: int) -> int:
    """:attr:`PConvUNet.reach`, measured: the smallest half-width, over every alignment of
    one known pixel to the stride grid, of the box of output pixels that see it.

    Window sums and nearest upsampling act on rows and columns separately, so that
    set is a box and a (1, W) strip per alignment measures it.
    """
    net = PConvUNet(layers=layers, width=1 / 64)
    step = 2**layers
    size = 8 * step
    offsets = torch.arange(step)
    seen = []
    for chunk in offsets.split(8):  # 8 alignments at a time: ~1/16 of the memory at once
        mask = torch.zeros(len(chunk), 1, step, size)
        mask[torch.arange(len(chunk)), 0, 0, size // 2 + chunk] = 1.0
        with torch.no_grad():
            seen.append(net.update_mask(mask)[:, 0, 0] > 0)
    seen = torch.cat(seen)  # (alignments, size)
    columns = torch.arange(size)
    centre = (size // 2 + offsets)[:, None]
    left = torch.where(seen, centre - columns, 0).amax(1)
    right = torch.where(seen, columns - centre, 0).amax(1)
    return int(torch.minimum(left, right).min())


@register_model(
    "pconv_unet",
    config=UNetConfig,
    task="pconv",
    aliases=("pconv",),
    description="PConv U-Net (Liu et al., ECCV 2018): partial convolutions, MMagic's layout",
)
def pconv_unet(config: UNetConfig) -> InpaintingModel:
    """The PConv U-Net with its input normalisation."""
    net = PConvUNet(layers=config.layers, width=config.width, upsampling=config.upsampling)
    return InpaintingModel(
        net, family="pconv_unet", config=config, normalization=config.normalization
    )
