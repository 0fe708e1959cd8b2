"""DeepFillv2 (Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019).

Family ``deepfillv2``, laid out as MMagic's ``DeepFillEncoderDecoder`` so its
checkpoint keys map 1:1 after stripping ``generator.``:

- ``stage1`` (coarse): gated-conv encoder (channels 24, 48, 48, 96, 96, 96 at
  width 1: MMagic's 0.75 channel factor), a dilation neck (dilations 2, 4, 8, 16)
  and a decoder (96, 96, 48, 48, 24, 12, 3; nearest x2 upsampling before dec3
  and dec5), tanh;
- ``stage2`` (refiner) on the stage-1 composite: a conv branch (encoder 24, 24,
  48, 48, 96, 96 + dilation neck) and an attention branch (encoder 24, 24, 48,
  96, 96, 96 + contextual attention + 2 gated convs), concatenated (192 channels)
  into a decoder 128, 128, 64, 64, 32, 16, 3 (no 0.75 factor), tanh.

Every generator convolution is gated with reflection padding. The
discriminator (:class:`DeepFillDiscriminator`, an SN-PatchGAN) sees RGB + hole
mask. ``width`` scales every channel count (1.0 = the published nets).

Conventions of :class:`DeepFillv2Net`: ``image`` normalised as the weights expect
(``minus_one_one``: holes become 0 after masking), ``mask`` 1 = valid; any H, W
(padded internally to a multiple of 8 and at least 72, by replicating the border,
then cropped back). It returns the stage-2 raw
output (tanh, not composited), or both stages with ``stages=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.models.inpainting import NORMALIZATIONS, InpaintingModel, check_inputs
from pconv_cli.models.registry import register_model
from pconv_cli.nn.attention import ContextualAttention
from pconv_cli.nn.gated_conv import GatedConv2d, run_banded
from pconv_cli.nn.spectral_norm import SpectralNormConv2d

__all__ = [
    "DeepFillDiscriminator",
    "DeepFillv2Config",
    "DeepFillv2Net",
    "deepfillv2",
    "deepfillv2_discriminator",
]

SIZE_MULTIPLE = 8
MIN_SIZE = 72
"""Smallest side the net runs at: the dilation-16 layers reflect-pad 16 pixels at 1/4 scale."""
_ENCODERS = {
    "stage1": [32, 64, 64, 128, 128, 128],
    "stage2_conv": [32, 32, 64, 64, 128, 128],
    "stage2_attention": [32, 32, 64, 128, 128, 128],
}
_DECODER = [128, 128, 64, 64, 32, 16]
_FACTOR = 0.75  # MMagic's channel factor of the encoders, necks and stage-1 decoder
BASE_WIDTH = _ENCODERS["stage1"][0] * _FACTOR
"""Output channels of the stage-1 ``enc1`` feature branch at width 1 (its gated conv has twice)."""


@dataclass(frozen=True)
class DeepFillv2Config:
    """Options of the ``deepfillv2`` family.

    - ``width``: multiplier of every channel count of generator and
      discriminator (1.0 = MMagic's published nets; e.g. 0.25 for a CPU demo);
    - ``normalization``: the input normalisation the weights expect.
    """

    width: float = 1.0
    normalization: str = "minus_one_one"

    def __post_init__(self) -> None:
        if not isinstance(self.width, (int, float)) or isinstance(self.width, bool):
            raise ValueError(f"width must be a number, got {self.width!r}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        object.__setattr__(self, "width", float(self.width))
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {tuple(NORMALIZATIONS)}, got {self.normalization!r}"
            )

    def channels(self, base: int, factor: float = _FACTOR) -> int:
        return max(1, int(base * factor * self.width))


class DeepFillEncoder(nn.Module):
    """``enc1..enc6``: gated convs, kernels 5, 3, 3, 3, 3, 3, strides 1, 2, 1, 2, 1, 1."""

    def __init__(self, channels: list[int], in_channels: int = 5):
        super().__init__()
        for level, (out_channels, kernel, stride) in enumerate(
            zip(channels, (5, 3, 3, 3, 3, 3), (1, 2, 1, 2, 1, 1), strict=True), start=1
        ):
            block = GatedConv2d(in_channels, out_channels, kernel, stride=stride)
            self.add_module(f"enc{level}", block)
            in_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        first = 1
        if not torch.is_grad_enabled() and self.enc1.output_bytes(x) > self.enc1.band_bytes:
            # large inference: outputs at full and half resolution never exist whole
            chain = [(getattr(self, f"enc{level}"), False) for level in range(1, 5)]
            x, first = run_banded(chain, x), 5
        for level in range(first, 7):
            x = getattr(self, f"enc{level}")(x)
        return x


class DilationNeck(nn.Module):
    """Four 3x3 gated convs with dilations 2, 4, 8, 16 (``dilation_convs.0..3``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.dilation_convs = nn.Sequential(
            *(GatedConv2d(channels, channels, 3, dilation=2**i) for i in range(1, 5))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.dilation_convs(x)


class DeepFillDecoder(nn.Module):
    """``dec1..dec7``: 3x3 gated convs, nearest x2 before dec3 and dec5; the last keeps
    only the gate (no ELU) and is followed by tanh."""

    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        for level, out_channels in enumerate([*channels, 3], start=1):
            self.add_module(
                f"dec{level}",
                GatedConv2d(in_channels, out_channels, 3, feature_activation=level < 7),
            )
            in_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.dec2(self.dec1(x))
        if not torch.is_grad_enabled() and self.dec3.output_bytes(x, True) > self.dec3.band_bytes:
            # large inference: outputs at half and full resolution never exist whole
            chain = [(getattr(self, f"dec{level}"), level in (3, 5)) for level in range(3, 8)]
            x = run_banded(chain, x)
        else:
            for level in range(3, 8):
                x = getattr(self, f"dec{level}")(x, upsample=level in (3, 5))
        return torch.tanh(x)


class CoarseNet(nn.Module):
    """Stage 1 (MMagic's ``GLEncoderDecoder``): encoder, dilation neck, decoder."""

    def __init__(self, config: DeepFillv2Config):
        super().__init__()
        ch = config.channels
        self.encoder = DeepFillEncoder([ch(c) for c in _ENCODERS["stage1"]])
        self.dilation_neck = DilationNeck(ch(128))
        self.decoder = DeepFillDecoder(ch(128), [ch(c) for c in _DECODER])

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.dilation_neck(self.encoder(x)))


class ContextualAttentionNeck(nn.Module):
    """Contextual attention, then two 3x3 gated convs (``conv1``, ``conv2``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.contextual_attention = ContextualAttention(softmax_scale=10.0)
        self.conv1 = GatedConv2d(channels, channels, 3)
        self.conv2 = GatedConv2d(channels, channels, 3)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.conv2(self.conv1(self.contextual_attention(x, mask)))


class Refiner(nn.Module):
    """Stage 2 (MMagic's ``DeepFillRefiner``): conv branch + attention branch -> decoder."""

    def __init__(self, config: DeepFillv2Config):
        super().__init__()
        ch = config.channels
        self.encoder_attention = DeepFillEncoder([ch(c) for c in _ENCODERS["stage2_attention"]])
        self.encoder_conv = DeepFillEncoder([ch(c) for c in _ENCODERS["stage2_conv"]])
        self.contextual_attention_neck = ContextualAttentionNeck(ch(128))
        self.dilation_neck = DilationNeck(ch(128))
        decoder_channels = [config.channels(c, 1.0) for c in _DECODER]
        self.decoder = DeepFillDecoder(2 * ch(128), decoder_channels)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """``x``: [stage-1 composite, ones, hole]; ``valid``: (N, 1, H, W), 1 = valid."""
        conv_branch = self.dilation_neck(self.encoder_conv(x))
        attention = self.encoder_attention(x)
        del x
        small_valid = F.interpolate(valid, size=attention.shape[-2:], mode="nearest")
        attention = self.contextual_attention_neck(attention, small_valid)
        return self.decoder(torch.cat([conv_branch, attention], 1))


class DeepFillv2Net(nn.Module):
    """The two-stage generator (see the module docstring for its conventions)."""

    size_multiple = SIZE_MULTIPLE

    def __init__(self, config: DeepFillv2Config):
        super().__init__()
        self.stage1 = CoarseNet(config)
        self.stage2 = Refiner(config)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.is_meta:  # MMagic's init
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, image: Tensor, mask: Tensor, *, stages: bool = False):
        mask = check_inputs(image, mask)
        height, width = image.shape[-2:]
        valid = mask.amin(1, keepdim=True)
        del mask
        ph = max(MIN_SIZE, height + (-height) % SIZE_MULTIPLE) - height
        pw = max(MIN_SIZE, width + (-width) % SIZE_MULTIPLE) - width
        if ph or pw:  # replicate the borders (image and mask alike), crop back at the end
            image = F.pad(image, (0, pw, 0, ph), mode="replicate")
            valid = F.pad(valid, (0, pw, 0, ph), mode="replicate")
        hole = 1.0 - valid
        masked = image * valid
        del image
        ones = torch.ones_like(valid)
        coarse = self.stage1(torch.cat([masked, ones, hole], 1))
        coarse_image = coarse * hole + masked  # holes of ``masked`` are 0
        del masked
        if not stages:
            del coarse
        refiner_input = [torch.cat([coarse_image, ones, hole], 1)]
        del coarse_image, ones, hole
        # handed over, not kept here: the refiner frees its input once its encoders ran
        fine = self.stage2(refiner_input.pop(), valid)[..., :height, :width]
        if stages:
            return coarse[..., :height, :width], fine
        return fine


class _SNConvBlock(nn.Module):
    """Spectral-norm conv (kernel 5, stride 2, zero padding 2) then LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = SpectralNormConv2d(in_channels, out_channels, 5, stride=2, padding=2)
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.conv(x))


class DeepFillDiscriminator(nn.Module):
    """SN-PatchGAN (MMagic's ``MultiLayerDiscriminator`` for DeepFillv2).

    Input (N, 4, H, W): the image as the generator sees it (normalised) and the
    hole mask (**1 = hole**, MMagic's convention); 6 convs with 64, 128, 256,
    256, 256, 256 channels (x width), LeakyReLU 0.2 after each, no dense layer:
    the output is a map of scores (N, 256, H/64, W/64).
    """

    def __init__(self, config: DeepFillv2Config):
        super().__init__()
        in_channels = 4
        for level in range(1, 7):
            out_channels = max(1, int(min(64 * 2 ** (level - 1), 256) * config.width))
            self.add_module(f"conv{level}", _SNConvBlock(in_channels, out_channels))
            in_channels = out_channels
        for module in self.modules():
            if isinstance(module, SpectralNormConv2d) and not module.weight_orig.is_meta:
                nn.init.kaiming_normal_(module.weight_orig, a=0.2, mode="fan_out",
                                        nonlinearity="leaky_relu")  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        for level in range(1, 7):
            x = getattr(self, f"conv{level}")(x)
        return x


def deepfillv2_discriminator(config: DeepFillv2Config) -> DeepFillDiscriminator:
    """The discriminator that trains beside a ``deepfillv2`` generator."""
    return DeepFillDiscriminator(config)


@register_model(
    "deepfillv2",
    config=DeepFillv2Config,
    task="deepfillv2",
    training_modules={"discriminator": deepfillv2_discriminator},
    description="DeepFillv2 (Yu et al., ICCV 2019): gated convolutions, contextual attention",
)
def deepfillv2(config: DeepFillv2Config) -> InpaintingModel:
    """The two-stage DeepFillv2 generator with its input normalisation."""
    return InpaintingModel(
        DeepFillv2Net(config), family="deepfillv2", config=config,
        normalization=config.normalization,
    )  # fmt: skip
