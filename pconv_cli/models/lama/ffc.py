"""Fast Fourier convolutions (Chi et al., NeurIPS 2020) as LaMa's generator uses them.

Module and attribute names are LaMa's (``saicinpainting/training/modules/ffc.py``), so
its state dicts load 1:1: ``FourierUnit`` (``conv_layer``, ``bn``), ``SpectralTransform``
(``conv1``, ``fu``, ``lfu``, ``conv2``), ``FFC`` (``convl2l``, ``convl2g``, ``convg2l``,
``convg2g``), ``FFCBNAct`` (LaMa's ``FFC_BN_ACT``: ``ffc``, ``bn_l``, ``bn_g``) and
``FFCResnetBlock`` (``conv1``, ``conv2``). A branch with no channels has no module
(LaMa's ``nn.Identity``: no keys either way).

Features travel as a pair ``(local, global)``; a missing branch is ``None`` (LaMa's
integer 0). The arithmetic is LaMa's, operation for operation (``rfftn``/``irfftn``
with ``norm="ortho"``, real and imaginary parts interleaved as channels ``2c, 2c+1``),
so the outputs are the same floats; without autograd, sums and residuals are added in
place (the same values, less memory) and the spectrum is rearranged with one copy each
way instead of LaMa's two.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BAND_BYTES",
    "FFC",
    "BatchNorm2d",
    "Conv2d",
    "FFCBNAct",
    "FFCResnetBlock",
    "FourierUnit",
    "SpectralTransform",
    "no_autograd",
    "reflect_conv2d",
]

Pair = tuple[Tensor | None, Tensor | None]


BAND_BYTES = 16 << 20
"""Largest padded band :func:`reflect_conv2d` copies at once (read at call time)."""


def no_autograd(*tensors: Tensor | None) -> bool:
    """True when autograd records nothing for ``tensors`` (so they may be overwritten) and
    no ``torch.compile`` trace is running (the compiler plans memory itself)."""
    if torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not any(t is not None and t.requires_grad for t in tensors)


def _reflect_rows(start: int, stop: int, size: int, device: torch.device) -> Tensor:
    """Rows ``start .. stop-1`` of an axis of ``size`` reflected at its ends (no edge repeat)."""
    index = torch.arange(start, stop, device=device).abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def reflect_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, *, stride: int, padding: int,
    band_bytes: int | None = None,
) -> Tensor:  # fmt: skip
    """``F.conv2d(F.pad(x, (padding,) * 4, mode="reflect"), weight, bias, stride)`` computed in
    bands of output rows when the padded input is larger than ``band_bytes`` (default
    :data:`BAND_BYTES`): the padded copy never exists whole; each output row is the same
    computation (the same floats, checked in the tests)."""
    band_bytes = band_bytes or BAND_BYTES
    n, channels, height, width = x.shape
    kernel = weight.shape[-2]
    padded_row = n * channels * (width + 2 * padding) * x.element_size()
    out_h = (height + 2 * padding - kernel) // stride + 1
    rows = max(1, (band_bytes // padded_row - kernel) // stride + 1)
    if rows >= out_h or padding >= height:
        return F.conv2d(F.pad(x, (padding,) * 4, mode="reflect"), weight, bias, stride=stride)
    bands = []
    for top in range(0, out_h, rows):
        bottom = min(out_h, top + rows)
        start = top * stride - padding
        index = _reflect_rows(start, (bottom - 1) * stride - padding + kernel, height, x.device)
        band = F.pad(x.index_select(2, index), (padding, padding, 0, 0), mode="reflect")
        bands.append(F.conv2d(band, weight, bias, stride=stride))
    return torch.cat(bands, 2)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters) whose reflection-padded form runs in bands of rows
    without autograd (:func:`reflect_conv2d`): a full-resolution padded copy of the input
    is what made LaMa's peak memory."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.padding_mode == "reflect"
            and self.dilation == (1, 1)
            and self.groups == 1
            and len(set(self.padding)) == 1
            and self.stride[0] == self.stride[1]
            and no_autograd(x, self.weight)
        ):
            return reflect_conv2d(x, self.weight, self.bias, stride=self.stride[0],
                                  padding=self.padding[0])  # fmt: skip
        return super().forward(x)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and arithmetic) that, in eval mode on the
    CPU without autograd, normalises its input in place: torch's own kernel writing into
    its input, so the values are bit for bit those of ``nn.BatchNorm2d``. Inside LaMa's
    generator every BatchNorm input is a fresh intermediate, so nothing else sees it."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.training
            or x.device.type != "cpu"
            or self.running_mean is None
            or not no_autograd(x, self.weight)
        ):
            return super().forward(x)
        empty = x.new_empty(0)
        torch.native_batch_norm(
            x, self.weight, self.bias, self.running_mean, self.running_var, False,
            0.0, self.eps, out=(x, empty, empty.clone()),
        )  # fmt: skip
        return x


def add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """``a + b`` (None counts as 0); in place into ``a`` when autograd does not need ``a``."""
    if a is None:
        return b
    if b is None:
        return a
    return a.add_(b) if no_autograd(a, b) else a + b


class FourierUnit(nn.Module):
    """A 1x1 convolution, BN and ReLU on the real 2-D spectrum (``rfftn``, orthonormal).

    The ``in_channels`` complex channels enter ``conv_layer`` as ``2*in_channels`` real
    ones, real and imaginary part of channel ``c`` at ``2c`` and ``2c+1``. The FFT runs in
    float32 for half-precision inputs (torch has no bf16 FFT), else in the input's dtype.
    """

    def __init__(self, in_channels: int, out_channels: int, *, fft_norm: str = "ortho"):
        super().__init__()
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, 1, bias=False)
        self.bn = BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)
        self.fft_norm = fft_norm

    def forward(self, x: Tensor) -> Tensor:
        n, _, height, width = x.shape
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        spectrum = torch.fft.rfftn(x.to(dtype), dim=(-2, -1), norm=self.fft_norm)
        # (n, c, h, w/2+1) complex -> (n, 2c, h, w/2+1) real: one copy (LaMa: stack + contiguous)
        real = torch.view_as_real(spectrum).permute(0, 1, 4, 2, 3).reshape(n, -1, height,
                                                                           spectrum.shape[-1])
        del spectrum
        real = self.relu(self.bn(self.conv_layer(real)))
        half = real.view(n, -1, 2, height, real.shape[-1]).permute(0, 1, 3, 4, 2)
        del real
        # one copy into (n, c, h, w/2+1, 2) (LaMa: contiguous, then torch.complex)
        out = torch.empty_like(half, dtype=dtype, memory_format=torch.contiguous_format)
        half = out.copy_(half)
        return torch.fft.irfftn(
            torch.view_as_complex(half), s=(height, width), dim=(-2, -1), norm=self.fft_norm
        )


class SpectralTransform(nn.Module):
    """The global-to-global path: 1x1 conv + BN + ReLU to half the channels, a Fourier
    unit (plus LaMa's local Fourier unit when ``enable_lfu``), their sum, a 1x1 conv.

    ``stride=2`` average-pools first. With ``enable_lfu`` the feature map's sides must be
    even (LaMa's LFU cuts it into 2 x 2 quarters; LaMa's own code also needs it square).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, *, enable_lfu: bool = True
    ):
        super().__init__()
        half = out_channels // 2
        self.downsample = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, half, 1, bias=False), BatchNorm2d(half), nn.ReLU(True)
        )
        self.fu = FourierUnit(half, half)
        self.enable_lfu = enable_lfu
        if enable_lfu:
            self.lfu = FourierUnit(half, half)
        self.conv2 = nn.Conv2d(half, out_channels, 1, bias=False)

    def _local(self, x: Tensor) -> Tensor:
        """LaMa's LFU: the first quarter of the channels, cut into 2 x 2 tiles stacked as
        channels, through a Fourier unit, tiled back 2 x 2."""
        _, channels, height, width = x.shape
        if height % 2 or width % 2:
            raise ValueError(f"enable_lfu needs even feature sides, got {height}x{width}")
        tiles = torch.cat(torch.split(x[:, : channels // 4], height // 2, dim=-2), dim=1)
        tiles = torch.cat(torch.split(tiles, width // 2, dim=-1), dim=1)
        return self.lfu(tiles).repeat(1, 1, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.downsample(x))
        total = add(self.fu(x), x)  # LaMa: x + fu(x) (+ lfu): the same sum
        if self.enable_lfu:
            total = add(total, self._local(x))
        del x
        return self.conv2(total)


class FFC(nn.Module):
    """A fast Fourier convolution: local and global channels, four paths between them.

    ``int(in_channels * ratio_gin)`` input and ``int(out_channels * ratio_gout)`` output
    channels are global. Local outputs are ``convl2l(local) + convg2l(global)``, global
    outputs ``convl2g(local) + convg2g(global)`` (``convg2g`` a :class:`SpectralTransform`,
    the others ``k x k`` convolutions without bias, ``padding_mode`` LaMa's reflect).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        enable_lfu: bool = True,
        padding_mode: str = "reflect",
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        in_g = int(in_channels * ratio_gin)
        out_g = int(out_channels * ratio_gout)
        in_l, out_l = in_channels - in_g, out_channels - out_g
        self.global_in_num = in_g
        self.ratio_gin, self.ratio_gout = ratio_gin, ratio_gout
        conv = partial(
            Conv2d, kernel_size=kernel_size, stride=stride, padding=padding,
            dilation=dilation, bias=False, padding_mode=padding_mode,
        )  # fmt: skip
        self.convl2l = conv(in_l, out_l) if in_l and out_l else None
        self.convl2g = conv(in_l, out_g) if in_l and out_g else None
        self.convg2l = conv(in_g, out_l) if in_g and out_l else None
        self.convg2g = None
        if in_g and out_g:
            self.convg2g = SpectralTransform(in_g, out_g, stride, enable_lfu=enable_lfu)

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = x
        out_l = out_g = None
        if self.ratio_gout != 1:
            out_l = self.convl2l(x_l) if self.convl2l is not None else None
            if self.convg2l is not None:
                out_l = add(out_l, self.convg2l(x_g))
        if self.ratio_gout != 0:
            out_g = self.convl2g(x_l) if self.convl2g is not None else None
            if self.convg2g is not None:
                out_g = add(out_g, self.convg2g(x_g))
        return out_l, out_g


class FFCBNAct(nn.Module):
    """LaMa's ``FFC_BN_ACT``: an :class:`FFC`, then BN and an activation per branch
    (``bn_l``/``bn_g``; ReLU in place, or ``activation`` a module class)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        enable_lfu: bool = True,
        padding_mode: str = "reflect",
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.ffc = FFC(
            in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride=stride,
            padding=padding, dilation=dilation, enable_lfu=enable_lfu, padding_mode=padding_mode,
        )  # fmt: skip
        global_channels = int(out_channels * ratio_gout)
        self.bn_l = BatchNorm2d(out_channels - global_channels) if ratio_gout != 1 else None
        self.bn_g = BatchNorm2d(global_channels) if ratio_gout != 0 else None
        self.act_l = activation(inplace=True) if ratio_gout != 1 else None
        self.act_g = activation(inplace=True) if ratio_gout != 0 else None

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = self.ffc(x)
        if x_l is not None and self.bn_l is not None:
            x_l = self.act_l(self.bn_l(x_l))
        if x_g is not None and self.bn_g is not None:
            x_g = self.act_g(self.bn_g(x_g))
        return x_l, x_g


class FFCResnetBlock(nn.Module):
    """Two 3x3 :class:`FFCBNAct` (``conv1``, ``conv2``) and a residual per branch."""

    def __init__(
        self,
        dim: int,
        ratio: float,
        *,
        dilation: int = 1,
        enable_lfu: bool = True,
        padding_mode: str = "reflect",
    ):
        super().__init__()
        conv = partial(
            FFCBNAct, dim, dim, 3, ratio, ratio, padding=dilation, dilation=dilation,
            enable_lfu=enable_lfu, padding_mode=padding_mode,
        )  # fmt: skip
        self.conv1 = conv()
        self.conv2 = conv()

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = x
        y_l, y_g = self.conv2(self.conv1((x_l, x_g)))
        return add(y_l, x_l), add(y_g, x_g)
