"""Gated convolution (Yu et al., ICCV 2019), with reflection padding as DeepFillv2 uses it.

One convolution produces ``2 * out_channels`` maps, split into a feature half and
a gate half: ``ELU(feature) * sigmoid(gate)`` (the feature activation can be
dropped, as in each stage's last layer). Padding is an explicit reflection of
the input (``padding = dilation * (kernel_size - 1) // 2``), then the
convolution runs with padding 0, so a constant input channel carries no border.

Large inputs at inference (no autograd) run in bands of output rows: the band's
input rows are gathered with the reflection (and an optional nearest x2
upsampling) folded into the row and column indices, so neither the padded nor
the upsampled input, nor the ``2 * out_channels`` convolution output, ever
exists at full size. :func:`run_banded` does the same for a chain of layers, so
that not even their intermediate outputs exist at full size. The result equals
the one-pass computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEFAULT_BAND_BYTES", "GatedConv2d", "PaddedConv2d", "run_banded"]

DEFAULT_BAND_BYTES = 48 * 2**20
"""Inference outputs larger than this are computed in bands of rows of about this size."""


class PaddedConv2d(nn.Module):
    """Reflection padding then ``nn.Conv2d(padding=0)``; the convolution is ``self.conv``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
    ):
        super().__init__()
        self.padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.padding:
            p = self.padding
            x = F.pad(x, (p, p, p, p), mode="reflect")
        return self.conv(x)


def _reflect(index: Tensor, size: int) -> Tensor:
    """Indices of ``ReflectionPad``: -i for i < 0, 2 (size - 1) - i for i >= size."""
    index = torch.where(index < 0, -index, index)
    return torch.where(index >= size, 2 * (size - 1) - index, index)


class GatedConv2d(nn.Module):
    """``ELU(feature) * sigmoid(gate)`` from one reflect-padded convolution.

    ``forward(x, upsample=False)``: with ``upsample`` the input is first enlarged
    x2 (nearest), as DeepFill's decoders do between levels. Submodules follow
    MMagic's ``SimpleGatedConvModule``: the convolution is ``conv.conv``.
    ``band_bytes`` bounds the inference working set (see the module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        feature_activation: bool = True,
        band_bytes: int = DEFAULT_BAND_BYTES,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.feature_activation = feature_activation
        self.band_bytes = band_bytes
        self.conv = PaddedConv2d(
            in_channels, 2 * out_channels, kernel_size, stride=stride, dilation=dilation
        )

    def _gate(self, y: Tensor) -> Tensor:
        feature, gate = torch.split(y, self.out_channels, dim=1)
        if self.feature_activation:
            feature = F.elu(feature)
        return feature * torch.sigmoid(gate)

    def _output_size(self, height: int, width: int) -> tuple[int, int]:
        conv = self.conv.conv
        reach = conv.dilation[0] * (conv.kernel_size[0] - 1)
        p, s = self.conv.padding, conv.stride[0]
        return (height + 2 * p - reach - 1) // s + 1, (width + 2 * p - reach - 1) // s + 1

    def output_bytes(self, x: Tensor, upsample: bool = False) -> int:
        """Bytes of the ``2 * out_channels`` convolution output for input ``x``."""
        height, width = x.shape[-2:]
        if upsample:
            height, width = 2 * height, 2 * width
        out_h, out_w = self._output_size(height, width)
        return x.shape[0] * 2 * self.out_channels * out_h * out_w * x.element_size()

    def _geometry(self) -> tuple[int, int, int]:
        conv = self.conv.conv
        return self.conv.padding, conv.stride[0], conv.dilation[0] * (conv.kernel_size[0] - 1)

    def forward(self, x: Tensor, upsample: bool = False) -> Tensor:
        if not torch.is_grad_enabled() and self.output_bytes(x, upsample) > self.band_bytes:
            return run_banded([(self, upsample)], x)
        if upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self._gate(self.conv(x))

    def source_rows(self, top: int, bottom: int, source_height: int, upsample: bool):
        """Rows [lo, hi) of the source (before upsampling) read by output rows [top, bottom)."""
        p, s, reach = self._geometry()
        height = 2 * source_height if upsample else source_height
        first, last = top * s - p, (bottom - 1) * s + reach - p
        rows = _reflect(torch.arange(first, last + 1), height) // (2 if upsample else 1)
        return int(rows.min()), int(rows.max()) + 1

    def rows(
        self,
        source: Tensor,
        source_top: int,
        source_size: tuple[int, int],
        top: int,
        bottom: int,
        upsample: bool,
    ) -> Tensor:
        """Output rows [top, bottom) from ``source``, which holds source rows from ``source_top``.

        ``source_size`` is the whole source's (height, width) before upsampling.
        """
        p, s, reach = self._geometry()
        shrink = 2 if upsample else 1
        height, width = source_size[0] * shrink, source_size[1] * shrink
        padded_rows = torch.arange(top * s, (bottom - 1) * s + reach + 1, device=source.device)
        rows = _reflect(padded_rows - p, height) // shrink - source_top
        columns = _reflect(torch.arange(-p, width + p, device=source.device), width) // shrink
        band = source.index_select(2, rows).index_select(3, columns)
        return self._gate(self.conv.conv(band))


def run_banded(layers: list[tuple[GatedConv2d, bool]], x: Tensor) -> Tensor:
    """Gated convs applied in sequence (each ``(layer, upsample)``), in bands of output rows.

    No intermediate result exists at full size: each band computes the rows every
    layer needs (halos included, reflection at the borders) from the rows of the
    layer before. Equals applying the layers one after the other; no autograd.
    """
    sizes = [tuple(x.shape[-2:])]
    for layer, upsample in layers:
        height, width = sizes[-1]
        if upsample:
            height, width = 2 * height, 2 * width
        sizes.append(layer._output_size(height, width))
    out_h, out_w = sizes[-1]
    last = layers[-1][0]
    widest = max(
        layer.out_channels * size[1] for (layer, _), size in zip(layers, sizes[1:], strict=True)
    )
    row_bytes = x.shape[0] * 6 * widest * x.element_size()
    rows_per_band = max(1, min(layer.band_bytes for layer, _ in layers) // row_bytes)
    out = x.new_empty(x.shape[0], last.out_channels, out_h, out_w)
    with torch.no_grad():
        for top in range(0, out_h, rows_per_band):
            bottom = min(top + rows_per_band, out_h)
            ranges = [(top, bottom)]
            for index in range(len(layers) - 1, 0, -1):
                layer, upsample = layers[index]
                ranges.append(layer.source_rows(*ranges[-1], sizes[index][0], upsample))
            ranges.reverse()  # output rows of every layer for this band
            source, source_top = x, 0
            for index, (layer, upsample) in enumerate(layers):
                lo, hi = ranges[index]
                source = layer.rows(source, source_top, sizes[index], lo, hi, upsample)
                source_top = lo
            out[:, :, top:bottom] = source
    return out
