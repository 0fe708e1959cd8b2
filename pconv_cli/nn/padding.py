"""Partial-convolution based padding (Liu et al., 2018): a drop-in for ``nn.Conv2d``.

The zero padding is treated as a hole: a window that overlaps the border is
rescaled by ``sum(1) / sum(M)``, the number of its kernel taps over the number of
taps that fall on the image. NVIDIA's layer with no mask, exactly::

    ratio = k_h * k_w / (sum(M) + 1e-8) * clamp(sum(M), 0, 1)
    out   = ((raw - b) * ratio + b) * clamp(sum(M), 0, 1)     (raw * ratio without bias)

Inside the image the ratio is 1; for a 3x3 kernel with padding 1 it is 1.5 on
the edges and 2.25 at the corners. The ratio map depends only on the input size:
it is computed once per (height, width, device, dtype) and cached (a plain dict,
never in the state dict), in float32 also under autocast. The layer runs the
ordinary convolution (bias included) and rescales only the border strips where
the ratio is not 1, in float32, so it costs about what ``nn.Conv2d`` costs.

:func:`convert_to_partial_padding` swaps every zero-padded ``nn.Conv2d`` of a model
(any torchvision classifier) for a :class:`PartialPaddingConv2d` holding the same
parameters, so the model keeps its state-dict keys and loads zero-padding weights.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from pconv_cli.nn.partial_conv import mask_window_sums

__all__ = ["PartialPaddingConv2d", "convert_to_partial_padding"]

_CACHE_SIZE = 8  # ratio maps kept per layer (distinct input sizes seen recently)


class PartialPaddingConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose zero padding counts as a hole: ``forward(x) -> Tensor``.

    Same constructor, parameters and state-dict keys as ``nn.Conv2d``; numeric
    padding with ``padding_mode="zeros"`` (other modes have no zero border).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(self.padding, str):
            raise ValueError("PartialPaddingConv2d needs numeric padding, not 'same'/'valid'")
        if self.padding_mode != "zeros":
            raise ValueError(f"partial padding replaces zero padding, not {self.padding_mode!r}")
        self._ratio_cache: dict[tuple, tuple[Tensor, Tensor | None]] = {}

    def _apply(self, fn, recurse=True):
        self._ratio_cache = {}  # moving or casting the layer invalidates the cached maps
        return super()._apply(fn, recurse)

    def ratio(self, height: int, width: int, device, dtype) -> tuple[Tensor, Tensor | None]:
        """(ratio, update_mask) maps (1, 1, H', W') in float32 (float64 for float64 inputs).

        ``ratio`` is NVIDIA's ``sum(1) / sum(M)`` times the update mask;
        ``update_mask`` is None when every output window sees the image (the usual case).
        """
        ratio, update, _ = self._maps(height, width, device, dtype)
        return ratio, update

    def _maps(self, height: int, width: int, device, dtype):
        """(ratio, update or None, border regions), cached per input size, device and dtype."""
        key = (height, width, device, dtype)
        cached = self._ratio_cache.get(key)
        if cached is None:
            mask_dtype = torch.float64 if dtype == torch.float64 else torch.float32
            device_type = torch.device(device).type
            scope = (
                torch.autocast(device_type, enabled=False)
                if torch.is_autocast_enabled(device_type)
                else contextlib.nullcontext()
            )
            # plain tensors even when first called under inference_mode: training may follow
            with scope, torch.inference_mode(False), torch.no_grad():
                ones = torch.ones(1, 1, height, width, device=device, dtype=mask_dtype)
                sums = mask_window_sums(
                    ones, self.kernel_size, self.stride, self.padding, self.dilation
                )
                update = sums.clamp(0.0, 1.0)
                window = self.kernel_size[0] * self.kernel_size[1]
                ratio = window / (sums + 1e-8) * update
            regions = _border_regions((ratio != 1) | (update != 1))
            cached = (ratio, None if bool(update.all()) else update, [
                (rows, cols, ratio[..., rows, cols], update[..., rows, cols])
                for rows, cols in regions
            ])  # fmt: skip
            if len(self._ratio_cache) >= _CACHE_SIZE:
                self._ratio_cache.pop(next(iter(self._ratio_cache)))
            self._ratio_cache[key] = cached
        return cached

    def forward(self, x: Tensor) -> Tensor:
        out = self._conv_forward(x, self.weight, self.bias)
        _, _, regions = self._maps(x.shape[-2], x.shape[-1], x.device, x.dtype)
        # The ratio differs from 1 only near the border: rescale those strips alone,
        # in float32: ((out - b) * ratio + b) * update, or out * ratio without a bias.
        for rows, cols, ratio, update in regions:
            strip = out[..., rows, cols]
            if self.bias is None:
                fixed = strip * ratio
            else:
                bias = self.bias.view(1, -1, 1, 1).to(ratio.dtype)
                fixed = ((strip - bias) * ratio + bias) * update
            out[..., rows, cols] = fixed.to(out.dtype)
        return out


def _border_regions(changed: Tensor) -> list[tuple[slice, slice]]:
    """(rows, cols) slices that cover every True of ``changed`` (1, 1, H, W): top and bottom
    strips, then left and right strips of the rows between (the whole map if that is simpler)."""
    rows_changed = changed[0, 0].any(1).tolist()
    height, width = changed.shape[-2:]
    top = next((i for i, c in enumerate(rows_changed) if not c), height)
    bottom = next((i for i, c in enumerate(reversed(rows_changed)) if not c), height)
    if top + bottom >= height:
        return [(slice(0, height), slice(0, width))]
    regions = []
    if top:
        regions.append((slice(0, top), slice(0, width)))
    if bottom:
        regions.append((slice(height - bottom, height), slice(0, width)))
    middle = changed[0, 0, top : height - bottom]
    if bool(middle.any()):
        cols_changed = middle.any(0).tolist()
        left = next((i for i, c in enumerate(cols_changed) if not c), width)
        right = next((i for i, c in enumerate(reversed(cols_changed)) if not c), width)
        if left + right >= width or bool(middle[:, left : width - right].any()):
            regions.append((slice(top, height - bottom), slice(0, width)))
        else:
            if left:
                regions.append((slice(top, height - bottom), slice(0, left)))
            if right:
                regions.append((slice(top, height - bottom), slice(width - right, width)))
    return regions


def _numeric_padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """The conv's padding as numbers, or None when it has none to replace."""
    if conv.padding_mode != "zeros":
        return None
    padding = conv.padding
    if isinstance(padding, str):
        if padding == "valid":
            return None
        # 'same' with an odd dilated kernel pads symmetrically: the numeric equivalent
        reach = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]
        if any(r % 2 for r in reach):
            return None  # asymmetric 'same' padding is left as it is
        padding = tuple(r // 2 for r in reach)
    return padding if any(padding) else None


def convert_to_partial_padding(module: nn.Module) -> nn.Module:
    """Every zero-padded ``nn.Conv2d`` in ``module`` becomes a :class:`PartialPaddingConv2d`.

    Works like ``nn.SyncBatchNorm.convert_sync_batchnorm``: children are replaced in
    place (the converted module is returned, a new one if ``module`` itself is a
    conv); the new layers share the old parameters, so ``state_dict`` keys and values,
    ``requires_grad``, device and dtype stay. Convs without padding (e.g. 1x1) are
    left alone: their ratio would be 1 everywhere.
    """
    if isinstance(module, nn.Conv2d) and not isinstance(module, PartialPaddingConv2d):
        padding = _numeric_padding(module)
        if padding is None:
            return module
        converted = PartialPaddingConv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            device="meta",
        )
        converted.weight = module.weight
        if module.bias is not None:
            converted.bias = module.bias
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        replaced = convert_to_partial_padding(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
