"""The networks of LPIPS and FID: AlexNet with LPIPS heads, and the FID Inception.

- :class:`LPIPSAlex` computes LPIPS v0.1 with ``net='alex'`` as the ``lpips``
  package does: inputs on [-1, 1], its scaling layer (shift ``(-.030, -.088, -.188)``,
  scale ``(.458, .448, .450)``), torchvision's AlexNet ``features`` read after the
  ReLUs 1-5, each feature unit-normalised over channels (``x / (||x|| + 1e-10)``),
  squared differences through the 1x1 linear heads (no bias), spatial means, summed.
- :class:`FIDInception` is pytorch-fid's ``InceptionV3([3])`` with its FID
  weights: torchvision's ``Inception3`` (1008 classes, no aux head) whose Mixed
  blocks 5b-5d, 6b-6e, 7b and 7c are replaced by the TensorFlow variants (average
  pools that do not count padding; a max pool in the last block), inputs in
  [0, 1] resized bilinearly to 299x299 (``align_corners=False``), scaled to
  [-1, 1], the 2048-d output of the final average pool.

Both load the reference layouts: a torchvision AlexNet state dict plus the
``lpips`` heads file, and pytorch-fid's ``pt_inception-2015-12-05`` state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import inception as tv_inception

from pconv_cli.weights.errors import WeightsError

__all__ = ["FIDInception", "LPIPSAlex"]

_LPIPS_CHANNELS = (64, 192, 384, 256, 256)
_LPIPS_TAPS = (1, 4, 7, 9, 11)
"""Indices in AlexNet.features after which LPIPS reads a feature map (ReLU 1..5)."""


def _load(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()
        raise WeightsError(f"{what}: {' '.join(line.strip() for line in first[:2])}") from None


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 (AlexNet): ``forward(x, y)`` of (N, 3, H, W) in [-1, 1] -> (N,) distances."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import alexnet

        self.features = alexnet(weights=None).features[: _LPIPS_TAPS[-1] + 1]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def load_reference(self, trunk: dict[str, Tensor], heads: dict[str, Tensor]) -> LPIPSAlex:
        """Load a torchvision AlexNet state dict and the ``lpips`` package's heads file."""
        features = {
            key.removeprefix("features."): value
            for key, value in trunk.items()
            if key.startswith("features.") and int(key.split(".")[1]) <= _LPIPS_TAPS[-1]
        }
        _load(self.features, features, "lpips-alex (a torchvision AlexNet state dict)")
        lins = {
            f"{k}.weight": heads.get(f"lin{k}.model.1.weight") for k in range(len(_LPIPS_CHANNELS))
        }
        if any(value is None for value in lins.values()):
            raise WeightsError("lpips-alex-lin: expected keys lin0.model.1.weight ... lin4")
        _load(self.lins, lins, "lpips-alex-lin")
        return self

    def _taps(self, x: Tensor) -> list[Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _LPIPS_TAPS:
                taps.append(x)
        return taps

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        n = x.shape[0]
        both = (torch.cat([x, y]) - self.shift) / self.scale
        total = torch.zeros(n, dtype=x.dtype, device=x.device)
        for lin, feature in zip(self.lins, self._taps(both), strict=True):
            unit = feature / (feature.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            diff = (unit[:n] - unit[n:]).square()
            total = total + lin(diff).mean(dim=(2, 3)).squeeze(1)
        return total


class _FIDInceptionA(tv_inception.InceptionA):
    """InceptionA with TensorFlow's average pool (padding not counted)."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return [b1, b5, b3, pool]


class _FIDInceptionC(tv_inception.InceptionC):
    """InceptionC with TensorFlow's average pool (padding not counted)."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d = layer(d)
        d = self.branch7x7dbl_5(d)
        pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return [b1, b7, d, pool]


class _FIDInceptionE(tv_inception.InceptionE):
    """InceptionE of the FID graph: ``max_pool`` picks the last block's pooling branch."""

    def __init__(self, in_channels: int, *, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x: Tensor) -> list[Tensor]:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return [b1, b3, d, self.branch_pool(pooled)]


class FIDInception(nn.Module):
    """pytorch-fid's pool3 Inception: (N, 3, H, W) in [0, 1] -> (N, 2048) float32 features."""

    size = 299
    dims = 2048

    def __init__(self) -> None:
        super().__init__()
        net = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = _FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = _FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = _FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = _FIDInceptionE(1280, max_pool=False)
        net.Mixed_7c = _FIDInceptionE(2048, max_pool=True)
        self.net = net
        self.requires_grad_(False)
        self.eval()

    def load_reference(self, state: dict[str, Tensor]) -> FIDInception:
        """Load pytorch-fid's ``pt_inception-2015-12-05`` state dict (torchvision key layout)."""
        _load(self.net, state, "fid-inception (pytorch-fid's pt_inception-2015-12-05 layout)")
        return self

    def forward(self, images: Tensor) -> Tensor:
        n = self.net
        x = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(n, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
