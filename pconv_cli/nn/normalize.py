"""Per-channel input normalisation, and the ImageNet statistics (the one copy in pconv)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Normalize"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""RGB mean of ImageNet on the [0, 1] scale (torchvision's weights expect it)."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""RGB standard deviation of ImageNet on the [0, 1] scale."""


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel of (N, C, H, W) input; :meth:`inverse` undoes it.

    ``mean`` and ``std`` are non-persistent buffers (they never enter a state
    dict) and are cast to the input's dtype. They are created on the CPU even
    under a default-device context such as ``torch.device("meta")``, so a model
    built on the meta device and then given its weights keeps real statistics.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
        for name, values in (("mean", mean), ("std", std)):
            tensor = torch.tensor(values, dtype=torch.float32, device="cpu").view(1, -1, 1, 1)
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        """``y * std + mean``: back to the input's scale."""
        return y * self.std.to(y.dtype) + self.mean.to(y.dtype)
