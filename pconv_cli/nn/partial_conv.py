"""Partial convolution (Liu et al., ECCV 2018) and partial-convolution padding.

Mask convention: float tensors, 1 = valid, 0 = hole. For a window with features
``X``, mask ``M``, weights ``W`` and bias ``b``::

    out = W^T (X * M) * sum(1) / sum(M) + b    if sum(M) > 0
    out = 0                                     otherwise
    m'  = 1 if sum(M) > 0 else 0

computed exactly as NVIDIA's reference layer does: ``ratio = winsize / (sum(M) +
eps)``, ``m' = clamp(sum(M), 0, 1)``, ``ratio *= m'``, then ``out = ((raw - b) *
ratio + b) * m'`` with a bias and ``out = raw * ratio`` without (``raw`` is the
bias-free convolution of ``X * M``). ``winsize`` (``sum(1)``) is ``kh * kw`` for a
single-channel mask and ``C_in * kh * kw`` for a multi-channel mask.

The mask arithmetic (window sums, ratio, updated mask) always runs in float32
(float64 for float64 inputs), also under autocast, so fully masked windows give
exactly 0 and never inf/NaN.

Cheap multi-channel masks: a dense multi-channel mask update convolves the
C_in-channel mask with a (C_out, C_in, k, k) ones kernel, which costs as much as
the feature convolution. But that window sum is just a 1-channel box sum of the
mask summed over channels, and inside the U-Net every channel group of a mask is
spatially identical. :class:`ChannelMask` stores such a mask as a few spatial
masks with channel counts, so the update is one (N, 1, H, W) box sum.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ChannelMask", "PartialConv2d", "mask_window_sums"]

# Padding-mode ratio maps kept per layer (distinct input sizes seen recently).
_PADDING_CACHE_SIZE = 8


class ChannelMask:
    """A C-channel mask stored as channel groups that share one spatial mask.

    ``parts`` is a sequence of ``(mask, channels)``: ``mask`` is either
    (N, 1, H, W), shared by ``channels`` consecutive channels, or
    (N, channels, H, W), one spatial mask per channel. Groups are in channel
    order, like the features of a ``torch.cat`` they describe. Values are
    1 = valid, 0 = hole.
    """

    __slots__ = ("parts",)

    def __init__(self, parts: Iterable[tuple[Tensor, int]]):
        parts = tuple((m, int(c)) for m, c in parts)
        if not parts:
            raise ValueError("ChannelMask needs at least one (mask, channels) group")
        n, _, h, w = parts[0][0].shape
        for m, c in parts:
            if m.dim() != 4 or m.shape[0] != n or m.shape[2:] != (h, w):
                raise ValueError(
                    f"ChannelMask groups must share (N, H, W) = {(n, h, w)}; got {tuple(m.shape)}"
                )
            if c < 1 or m.shape[1] not in (1, c):
                raise ValueError(
                    f"a group of {c} channels needs a mask with 1 or {c} channels, got {m.shape[1]}"
                )
        self.parts: tuple[tuple[Tensor, int], ...] = parts

    @classmethod
    def of(cls, mask: Tensor, channels: int | None = None) -> ChannelMask:
        """Wrap a dense mask, or a (N, 1, H, W) mask shared by ``channels`` channels."""
        return cls([(mask, mask.shape[1] if channels is None else channels)])

    @classmethod
    def cat(cls, masks: Sequence[ChannelMask]) -> ChannelMask:
        """The mask of ``torch.cat(features, dim=1)``, given each part's mask."""
        return cls(part for m in masks for part in m.parts)

    @property
    def channels(self) -> int:
        return sum(c for _, c in self.parts)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, _, h, w = self.parts[0][0].shape
        return (n, self.channels, h, w)

    def channel_sum(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Sum of the mask over its channels, shape (N, 1, H, W), in ``dtype``."""
        total = None
        for m, c in self.parts:
            m = m.to(dtype)
            s = m * c if m.shape[1] == 1 and c != 1 else m.sum(1, keepdim=True)
            total = s if total is None else total + s
        return total

    def apply(self, x: Tensor) -> Tensor:
        """``x * mask`` for features ``x`` of shape (N, C, H, W)."""
        if len(self.parts) == 1:
            return x * self.parts[0][0].to(x.dtype)
        chunks = torch.split(x, [c for _, c in self.parts], dim=1)
        masked = [xc * m.to(x.dtype) for xc, (m, _) in zip(chunks, self.parts, strict=True)]
        return torch.cat(masked, 1)

    def dense(self) -> Tensor:
        """The full (N, C, H, W) mask (for reference checks; the layer never needs it)."""
        return torch.cat([m.expand(-1, c, -1, -1) for m, c in self.parts], 1)


def _mask_dtype(feature_dtype: torch.dtype) -> torch.dtype:
    """Precision of the mask arithmetic: float32, or float64 for float64 features."""
    return torch.float64 if feature_dtype == torch.float64 else torch.float32


def _float32_scope(device: torch.device):
    """Disable autocast so mask arithmetic stays in float32."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def mask_window_sums(
    channel_sum: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """Window sums of a (N, 1, H, W) mask as a convolution would see them.

    Zero padding counts as hole. Equals a dense ``conv2d(mask, ones(C_out, C_in, k, k))``
    of the multi-channel mask whose channel sum is ``channel_sum``. Computed in
    float32 (float64 if ``channel_sum`` is float64), whatever autocast says.
    """
    channel_sum = channel_sum.to(_mask_dtype(channel_sum.dtype))
    with _float32_scope(channel_sum.device):
        ones = torch.ones(1, 1, *kernel_size, device=channel_sum.device, dtype=channel_sum.dtype)
        return F.conv2d(channel_sum, ones, None, stride, padding, dilation)


class PartialConv2d(nn.Conv2d):
    """``nn.Conv2d`` with partial-convolution masking; ``forward`` returns ``(out, new_mask)``.

    Args are those of ``nn.Conv2d`` (zero padding only), plus keyword-only
    ``multi_channel``: the mask has one channel per input channel (the U-Net's
    form, ``winsize = C_in*k*k``) instead of one channel shared by all
    (``winsize = k*k``). With ``groups > 1`` the mask window still spans all
    input channels, as in NVIDIA's layer, so the updated mask is the same for
    every output channel.

    ``forward(x, mask=None)``:

    - ``mask`` (N, 1, H, W) float, 1 = valid; with ``multi_channel=True`` it may
      also be (N, C_in, H, W), a :class:`ChannelMask`, or (N, 1, H, W) meaning
      the same mask on every input channel.
    - ``mask=None`` is partial-convolution *padding*: every pixel is valid and
      the zero padding is the hole, so border windows are rescaled. The ratio
      map is cached per (input size, device, dtype).
    - ``masked_input=True`` promises that ``x`` is already ``x * mask`` (the
      U-Net masks each activation once and reuses it for the skip).

    Returns ``out`` (N, C_out, H', W') and ``new_mask`` (N, 1, H', W') in float32
    (float64 for float64 inputs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        multi_channel: bool = False,
        eps: float = 1e-8,
        device=None,
        dtype=None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode="zeros",
            device=device,
            dtype=dtype,
        )
        if isinstance(self.padding, str):
            raise ValueError("PartialConv2d needs numeric padding, not 'same'/'valid'")
        self.multi_channel = multi_channel
        self.eps = eps
        self._padding_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    @property
    def window_size(self) -> int:
        """``sum(1)`` of the paper: number of mask elements in one window."""
        kh, kw = self.kernel_size
        return (self.in_channels if self.multi_channel else 1) * kh * kw

    def extra_repr(self) -> str:
        return super().extra_repr() + f", multi_channel={self.multi_channel}"

    # -- mask arithmetic (float32 or float64, (N, 1, H, W) tensors only) ---------------

    def _channel_sum(self, mask: Tensor | ChannelMask, x: Tensor) -> Tensor:
        dtype = _mask_dtype(x.dtype)
        if isinstance(mask, ChannelMask):
            if not self.multi_channel:
                raise ValueError("a ChannelMask needs a PartialConv2d with multi_channel=True")
            if mask.channels != self.in_channels:
                raise ValueError(
                    f"mask has {mask.channels} channels, layer expects {self.in_channels}"
                )
            return mask.channel_sum(dtype)
        if mask.dim() != 4 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match input {tuple(x.shape)}"
            )
        if not self.multi_channel:
            if mask.shape[1] != 1:
                raise ValueError(
                    f"single-channel PartialConv2d needs a (N, 1, H, W) mask, got "
                    f"{mask.shape[1]} channels (use multi_channel=True)"
                )
            return mask.to(dtype)
        if mask.shape[1] == 1:
            return mask.to(dtype) * self.in_channels
        if mask.shape[1] != self.in_channels:
            raise ValueError(f"mask has {mask.shape[1]} channels, layer expects {self.in_channels}")
        return mask.to(dtype).sum(1, keepdim=True)

    def _ratio_and_mask(self, channel_sum: Tensor) -> tuple[Tensor, Tensor]:
        """(scale, new_mask) with ``out = raw * scale (+ bias * new_mask)``."""
        with _float32_scope(channel_sum.device):
            sums = mask_window_sums(
                channel_sum, self.kernel_size, self.stride, self.padding, self.dilation
            )
            new_mask = sums.clamp(0.0, 1.0)
            ratio = self.window_size / (sums + self.eps) * new_mask
            if self.bias is not None:
                # NVIDIA: out = ((raw - b) * ratio + b) * m' = raw * (ratio * m') + b * m'.
                ratio = ratio * new_mask
            return ratio, new_mask

    def _padding_ratio(self, x: Tensor) -> tuple[Tensor, Tensor]:
        key = (x.shape[-2], x.shape[-1], x.device, x.dtype)
        cached = self._padding_cache.get(key)
        if cached is None:
            # plain tensors even when first called under inference_mode: training may follow
            with torch.inference_mode(False), torch.no_grad():
                ones = torch.ones(1, 1, *x.shape[-2:], device=x.device, dtype=_mask_dtype(x.dtype))
                channels = self.in_channels if self.multi_channel else 1
                scale, new_mask = self._ratio_and_mask(ones * channels)
                cached = (scale.to(x.dtype), new_mask)
            if len(self._padding_cache) >= _PADDING_CACHE_SIZE:
                self._padding_cache.pop(next(iter(self._padding_cache)))
            self._padding_cache[key] = cached
        return cached

    def _apply(self, fn, recurse=True):
        # Moving or casting the layer invalidates cached ratio maps.
        self._padding_cache = {}
        return super()._apply(fn, recurse)

    # -- forward -------------------------------------------------------------------------

    def forward(
        self, x: Tensor, mask: Tensor | ChannelMask | None = None, *, masked_input: bool = False
    ) -> tuple[Tensor, Tensor]:
        if mask is None:
            scale, new_mask = self._padding_ratio(x)
            new_mask = new_mask.expand(x.shape[0], -1, -1, -1)
        else:
            channel_sum = self._channel_sum(mask, x)
            if not masked_input:
                x = mask.apply(x) if isinstance(mask, ChannelMask) else x * mask.to(x.dtype)
            scale, new_mask = self._ratio_and_mask(channel_sum)
        raw = self._conv_forward(x, self.weight, None)
        # In place on the fresh conv output: saves a full-size temporary per layer.
        out = raw.mul_(scale.to(raw.dtype))
        if self.bias is not None:
            out = out.addcmul_(new_mask.to(raw.dtype), self.bias.to(raw.dtype).view(1, -1, 1, 1))
        return out, new_mask
