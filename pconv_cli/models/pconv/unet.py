"""A plain-convolution U-Net with the PConv U-Net's topology: family ``unet`` (a baseline).

Input is the masked image plus one mask channel (4 channels); ``forward(image,
mask)`` has the same contract as :class:`~pconv_cli.models.pconv_unet.PConvUNet`,
including any H, W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.models.inpainting import InpaintingModel, check_inputs, pad_to_multiple
from pconv_cli.models.pconv.pconv_unet import UNetConfig, Upsampling, encoder_channels
from pconv_cli.models.registry import register_model
from pconv_cli.nn.blocks import ConvBlock

__all__ = ["UNet", "unet"]


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
        mask = check_inputs(image, mask)
        h, w = image.shape[-2:]
        image, mask = pad_to_multiple(image, mask, self.size_multiple)
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



@register_model(
    "unet",
    config=UNetConfig,
    task="pconv",
    description="plain-convolution U-Net with the PConv U-Net's topology (baseline)",
)
def unet(config: UNetConfig) -> InpaintingModel:
    """The plain U-Net baseline with its input normalisation."""
    net = UNet(layers=config.layers, width=config.width, upsampling=config.upsampling)
    return InpaintingModel(net, family="unet", config=config, normalization=config.normalization)
