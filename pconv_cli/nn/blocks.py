"""The convolution block every U-Net level is made of: conv -> optional BatchNorm -> activation."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["ConvBlock"]


class ConvBlock(nn.Module):
    """``conv_type`` (``nn.Conv2d`` or :class:`~pconv_cli.nn.PartialConv2d`), BatchNorm, activation.

    The convolution uses ``padding = kernel_size // 2`` and a bias only without
    BatchNorm. Extra keyword arguments go to the convolution's constructor
    (e.g. ``multi_channel=True``), and ``forward`` passes its arguments on to the
    convolution: a partial convolution's ``(out, new_mask)`` comes back as
    ``(features, new_mask)``, a plain convolution's output as ``features``.
    Submodules are ``conv`` and ``bn`` (MMagic's names).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        conv_type: type[nn.Conv2d] = nn.Conv2d,
        stride: int = 1,
        norm: bool = True,
        activation: nn.Module | None = None,
        **conv_options: Any,
    ):
        super().__init__()
        self.conv = conv_type(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=not norm,
            **conv_options,
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activation = activation

    def _post(self, x: Tensor) -> Tensor:
        if self.bn is not None:
            x = self.bn(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor | tuple[Tensor, Tensor]:
        out = self.conv(x, *args, **kwargs)
        if isinstance(out, tuple):
            features, new_mask = out
            return self._post(features), new_mask
        return self._post(out)
