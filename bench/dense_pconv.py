"""The anchors' partial convolution: a dense multi-channel mask update.

Written from the published formula the way public implementations do it
(NVIDIA's layer, MMagic's generator): the mask has as many channels as the
features, and its window sums come from a convolution with a
(C_out, C_in, k, k) ones kernel, which costs as much as the feature
convolution. Used as the speed reference in ``bench_unet.py`` and as an
independent numerical reference in the tests. Module names match
``PConvUNet`` so its ``state_dict`` loads here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DensePartialConv2d(nn.Conv2d):
    """Multi-channel partial conv with a dense ones-kernel mask update; mask (N, C_in, H, W)."""

    def __init__(self, *args, eps: float = 1e-8, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps
        self.register_buffer(
            "weight_mask_updater",
            torch.ones(self.out_channels, self.in_channels, *self.kernel_size),
            persistent=False,
        )
        self.window_size = self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            sums = F.conv2d(
                mask, self.weight_mask_updater, None, self.stride, self.padding, self.dilation
            )
            ratio = self.window_size / (sums + self.eps)
            update = torch.clamp(sums, 0, 1)
            ratio = ratio * update
        raw = F.conv2d(
            x * mask, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if self.bias is not None:
            b = self.bias.view(1, -1, 1, 1)
            out = ((raw - b) * ratio + b) * update
        else:
            out = raw * ratio
        return out, update


class _Block(nn.Module):
    def __init__(self, cin, cout, k, stride, norm, activation):
        super().__init__()
        self.conv = DensePartialConv2d(cin, cout, k, stride, k // 2, bias=not norm)
        self.bn = nn.BatchNorm2d(cout) if norm else None
        self.activation = activation

    def forward(self, x, mask):
        x, mask = self.conv(x, mask)
        if self.bn is not None:
            x = self.bn(x)
        if self.activation is not None:
            x = self.activation(x)
        return x, mask


class DensePConvUNet(nn.Module):
    """The PConv U-Net with dense C-channel masks everywhere (MMagic's structure).

    ``forward(image, mask)``: image (N, 3, H, W), mask (N, 3, H, W) or (N, 1, H, W),
    1 = valid; H and W must be multiples of ``2**layers``.
    """

    def __init__(self, spec: list[tuple[int, int]]):
        super().__init__()
        self.layers = len(spec)
        self.encoder = nn.Module()
        cin = 3
        for level, (cout, k) in enumerate(spec, start=1):
            self.encoder.add_module(f"enc{level}", _Block(cin, cout, k, 2, level > 1, nn.ReLU()))
            cin = cout
        self.decoder = nn.Module()
        skips = [3] + [c for c, _ in spec[:-1]]
        for level in range(self.layers, 0, -1):
            last = level == 1
            cout = 3 if last else spec[level - 2][0]
            self.decoder.add_module(
                f"dec{level}",
                _Block(
                    cin + skips[level - 1],
                    cout,
                    3,
                    1,
                    not last,
                    None if last else nn.LeakyReLU(0.2),
                ),
            )
            cin = cout

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        mask = mask.expand(-1, 3, -1, -1)
        feats, masks = [image], [mask]
        x, m = image, mask
        for level in range(1, self.layers + 1):
            x, m = getattr(self.encoder, f"enc{level}")(x, m)
            feats.append(x)
            masks.append(m)
        for level in range(self.layers, 0, -1):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            m = F.interpolate(m, scale_factor=2.0, mode="nearest")
            x = torch.cat([x, feats[level - 1]], 1)
            m = torch.cat([m, masks[level - 1]], 1)
            x, m = getattr(self.decoder, f"dec{level}")(x, m)
        return x
