"""Layers: building blocks that know nothing about model families.

Conventions: masks are float tensors, 1 = valid, 0 = hole, (N, 1, H, W) unless a
layer says otherwise; activations are (N, C, H, W).
"""

from pconv_cli.nn.blocks import ConvBlock
from pconv_cli.nn.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from pconv_cli.nn.padding import PartialPaddingConv2d, convert_to_partial_padding
from pconv_cli.nn.partial_conv import ChannelMask, PartialConv2d, mask_window_sums
from pconv_cli.nn.sync_batchnorm import SyncBatchNorm2d, convert_sync_batchnorm

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ChannelMask",
    "ConvBlock",
    "Normalize",
    "PartialConv2d",
    "PartialPaddingConv2d",
    "SyncBatchNorm2d",
    "convert_sync_batchnorm",
    "convert_to_partial_padding",
    "mask_window_sums",
]
