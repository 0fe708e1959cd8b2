"""A convolution with spectral normalisation (Miyato et al., ICLR 2018), float32-safe.

The weight is divided by its largest singular value, estimated by one power
iteration per training forward (the vectors persist as buffers; eval mode uses
them as they are). The parameter and buffer names are those
``torch.nn.utils.spectral_norm`` gives a module (``weight_orig``, ``weight_u``,
``weight_v``), so checkpoints of such nets (MMagic's discriminators) load as
they are; unlike it, the power iteration and sigma always run in float32 (float64
for a float64 weight), also under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpectralNormConv2d"]


class SpectralNormConv2d(nn.Module):
    """``nn.Conv2d`` (zero padding) with a spectrally normalised weight."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        eps: float = 1e-12,
    ):
        super().__init__()
        self.stride, self.padding, self.eps = stride, padding, eps
        weight = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight_orig = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        u = F.normalize(torch.randn(out_channels), dim=0, eps=eps)
        v = F.normalize(torch.randn(in_channels * kernel_size * kernel_size), dim=0, eps=eps)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)

    def normalized_weight(self) -> Tensor:
        """``weight_orig / sigma``; in training mode one power iteration updates u and v first."""
        with torch.autocast(self.weight_orig.device.type, enabled=False):
            weight = self.weight_orig
            if weight.dtype not in (torch.float32, torch.float64):
                weight = weight.float()
            matrix = weight.reshape(weight.shape[0], -1)
            u, v = self.weight_u.to(weight.dtype), self.weight_v.to(weight.dtype)
            if self.training:
                with torch.no_grad():
                    v = F.normalize(torch.mv(matrix.t(), u), dim=0, eps=self.eps)
                    u = F.normalize(torch.mv(matrix, v), dim=0, eps=self.eps)
                    self.weight_u.copy_(u)
                    self.weight_v.copy_(v)
            sigma = torch.dot(u, torch.mv(matrix, v))
            return weight / sigma

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.weight_orig.shape
        return (
            f"{in_channels}, {out_channels}, kernel_size={k}, stride={self.stride}, "
            f"padding={self.padding}"
        )
