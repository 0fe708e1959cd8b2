"""The PConv U-Net of Liu et al. (ECCV 2018) and a plain-convolution baseline.

``PConvUNet(layers=7)`` is MMagic's 256x256 generator, ``layers=8`` the paper's
512x512 net. Submodule names follow MMagic's generator (``encoder.enc1.conv``,
``decoder.dec7.bn``, ...), so its checkpoint keys map by stripping ``generator.``.

Conventions: ``image`` is float RGB (N, 3, H, W) (any value range the weights
expect), ``mask`` is float (N, 1, H, W) or (N, 3, H, W), 1 = valid, 0 = hole.
``forward`` returns the raw output; blend it with :func:`composite`. Any H, W
work: inputs are padded internally to a multiple of ``2**layers`` (the padding
is hole) and the output is cropped back.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.nn.partial_conv import ChannelMask, PartialConv2d

__all__ = [
    "InpaintingModel",
    "PConvUNet",
    "UNet",
    "build_model",
    "composite",
    "encoder_channels",
]

Upsampling = Literal["nearest", "bilinear"]

# (out_channels, kernel) of encoder levels 1..8 in the paper; deeper levels repeat the last.
_ENCODER_SPEC = [(64, 7), (128, 5), (256, 5), (512, 3), (512, 3), (512, 3), (512, 3), (512, 3)]


def encoder_channels(layers: int, width: float) -> list[tuple[int, int]]:
    """(channels, kernel size) of encoder levels 1..layers, channels scaled by ``width``."""
    if not 1 <= layers <= len(_ENCODER_SPEC):
        raise ValueError(f"layers must be in 1..{len(_ENCODER_SPEC)}, got {layers}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return [(max(1, round(c * width)), k) for c, k in _ENCODER_SPEC[:layers]]


def composite(image: Tensor, output: Tensor, mask: Tensor) -> Tensor:
    """Known pixels from ``image``, hole pixels from ``output``: ``mask*image + (1-mask)*output``.

    ``mask`` is 1 = valid, (N, 1, H, W) or (N, 3, H, W).
    """
    mask = mask.to(output.dtype)
    return torch.lerp(output, image.to(output.dtype), mask)


def _check_inputs(image: Tensor, mask: Tensor) -> Tensor:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if (
        mask.dim() != 4
        or mask.shape[1] not in (1, 3)
        or mask.shape[0] != image.shape[0]
        or mask.shape[2:] != image.shape[2:]
    ):
        raise ValueError(
            f"mask must be (N, 1 or 3, H, W) matching image {tuple(image.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    return mask.to(image.dtype if image.is_floating_point() else torch.float32)


def _pad_to_multiple(image: Tensor, mask: Tensor, multiple: int) -> tuple[Tensor, Tensor]:
    """Pad bottom/right to a multiple of ``multiple``; the padding is hole (mask 0)."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, mask
    return F.pad(image, (0, pw, 0, ph)), F.pad(mask, (0, pw, 0, ph))


def _mask_features(x: Tensor, mask: Tensor) -> Tensor:
    """``x * mask`` for a (N, 1, H, W) mask, skipped on CPU when nothing is masked.

    Holes fill up after a few levels, so deep masks are usually all ones. The
    check needs the mask's values on the host, which is free on CPU but would
    stall a GPU queue, and it would break a compiled graph: there we multiply.
    """
    if x.device.type == "cpu" and not torch.compiler.is_compiling() and bool(mask.all()):
        return x
    return x * mask.to(x.dtype)


class PConvBlock(nn.Module):
    """Partial conv -> optional BatchNorm -> optional activation (multi-channel mask)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        norm: bool = True,
        activation: nn.Module | None = None,
    ):
        super().__init__()
        self.conv = PartialConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=not norm,
            multi_channel=True,
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activation = activation

    def forward(self, x: Tensor, mask: ChannelMask) -> tuple[Tensor, Tensor]:
        """``x`` must already be masked (``x * mask``); returns (features, mask (N,1,H,W))."""
        x, new_mask = self.conv(x, mask, masked_input=True)
        if self.bn is not None:
            x = self.bn(x)
        if self.activation is not None:
            x = self.activation(x)
        return x, new_mask


class PConvEncoder(nn.Module):
    """Levels ``enc1..encL``: stride-2 partial convs, BN + ReLU (level 1: ReLU only)."""

    def __init__(self, spec: list[tuple[int, int]], in_channels: int = 3):
        super().__init__()
        channels = in_channels
        for level, (out_channels, kernel) in enumerate(spec, start=1):
            block = PConvBlock(
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
            x, m = getattr(self, f"enc{level}")(x, mask)
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
            block = PConvBlock(
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
            x, m = getattr(self, f"dec{level}")(torch.cat([x_up, skip], 1), mask)
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

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        mask = _check_inputs(image, mask)
        h, w = image.shape[-2:]
        image, mask = _pad_to_multiple(image, mask, self.size_multiple)
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

    @property
    def encoder_bn_frozen(self) -> bool:
        return self._encoder_bn_frozen

    def train(self, mode: bool = True) -> PConvUNet:
        super().train(mode)
        if self._encoder_bn_frozen:
            for module in self.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


class ConvBlock(nn.Module):
    """Conv2d -> optional BatchNorm -> optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        norm: bool = True,
        activation: nn.Module | None = None,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=not norm
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class UNet(nn.Module):
    """Plain-convolution U-Net with the PConv U-Net's topology (the ``--arch unet`` baseline).

    Input is the masked image plus one mask channel (4 channels); ``forward(image,
    mask)`` has the same contract as :class:`PConvUNet`, including any H, W.
    """

    def __init__(self, *, layers: int = 7, width: float = 1.0, upsampling: Upsampling = "nearest"):
        super().__init__()
        if upsampling not in ("nearest", "bilinear"):
            raise ValueError(f"upsampling must be 'nearest' or 'bilinear', got {upsampling!r}")
        spec = encoder_channels(layers, width)
        self.layers = layers
        self.width = width
        self.upsampling = upsampling
        in_channels = 4
        self.encoder = nn.ModuleDict()
        channels = in_channels
        for level, (out_channels, kernel) in enumerate(spec, start=1):
            self.encoder[f"enc{level}"] = ConvBlock(
                channels,
                out_channels,
                kernel,
                stride=2,
                norm=level > 1,
                activation=nn.ReLU(inplace=True),
            )
            channels = out_channels
        self.decoder = nn.ModuleDict()
        skip_channels = [in_channels] + [c for c, _ in spec[:-1]]
        for level in range(layers, 0, -1):
            last = level == 1
            block_out = 3 if last else spec[level - 2][0]
            self.decoder[f"dec{level}"] = ConvBlock(
                channels + skip_channels[level - 1],
                block_out,
                3,
                norm=not last,
                activation=None if last else nn.LeakyReLU(0.2, inplace=True),
            )
            channels = block_out

    @property
    def size_multiple(self) -> int:
        return 2**self.layers

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        mask = _check_inputs(image, mask)
        h, w = image.shape[-2:]
        image, mask = _pad_to_multiple(image, mask, self.size_multiple)
        mask1 = mask.amin(1, keepdim=True)
        x = torch.cat([image * mask, mask1], 1)
        skips = [x]
        for level in range(1, self.layers + 1):
            x = self.encoder[f"enc{level}"](x)
            skips.append(x)
        for level in range(self.layers, 0, -1):
            if self.upsampling == "nearest":
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            else:
                x = F.interpolate(x, scale_factor=2.0, mode=self.upsampling, align_corners=False)
            x = self.decoder[f"dec{level}"](torch.cat([x, skips[level - 1]], 1))
        return x[..., :h, :w]


# -- the model as the rest of pconv sees it ----------------------------------------------

ARCHITECTURES = ("pconv", "unet")
NORMALIZATIONS = ("minus_one_one", "unit", "imagenet")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class InpaintingModel(nn.Module):
    """A network plus the input normalisation its weights expect.

    ``forward(image, mask)``: ``image`` float RGB in [0, 1], (N, 3, H, W); ``mask``
    (N, 1 or 3, H, W), 1 = valid. Returns the raw output mapped back to the
    [0, 1] scale (not clamped, not composited). ``normalization`` is one of
    ``"minus_one_one"`` (``2x - 1``, MMagic's and pconv's default), ``"unit"``
    (as is) or ``"imagenet"`` (ImageNet mean/std, naoto0804's). Holes are zero
    after normalisation, since the network masks its input.
    """

    def __init__(self, net: nn.Module, *, normalization: str = "minus_one_one"):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        self.net = net
        self.normalization = normalization
        if normalization == "imagenet":
            mean, std = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        elif normalization == "minus_one_one":
            mean, std = torch.full((3,), 0.5), torch.full((3,), 0.5)
        else:
            mean, std = torch.zeros(3), torch.ones(3)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        mean, std = self.mean.to(image.dtype), self.std.to(image.dtype)
        out = self.net((image - mean) / std, mask)
        return out * std.to(out.dtype) + mean.to(out.dtype)


def build_model(
    arch: str = "pconv",
    *,
    layers: int = 7,
    width: float = 1.0,
    upsampling: Upsampling = "nearest",
    normalization: str = "minus_one_one",
) -> InpaintingModel:
    """Builder for every model pconv trains or loads (``arch``: ``"pconv"`` or ``"unet"``)."""
    if arch == "pconv":
        net: nn.Module = PConvUNet(layers=layers, width=width, upsampling=upsampling)
    elif arch == "unet":
        net = UNet(layers=layers, width=width, upsampling=upsampling)
    else:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    return InpaintingModel(net, normalization=normalization)
