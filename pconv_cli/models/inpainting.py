"""What every inpainting family shares: input normalisation, size multiple, compositing.

Conventions at this boundary (and for every model :func:`~pconv_cli.models.build_model`
returns for an inpainting family):

- ``image``: float RGB (N, 3, H, W) on the [0, 1] scale;
- ``mask``: float (N, 1, H, W) (or (N, 3, H, W)), **1 = valid, 0 = hole**;
- ``forward`` returns the raw output on the [0, 1] scale, neither clamped nor
  composited; :func:`composite` keeps the known pixels bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.nn.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize

__all__ = [
    "NORMALIZATIONS",
    "InpaintingModel",
    "check_inputs",
    "composite",
    "pad_to_multiple",
]

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "minus_one_one": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # 2x - 1: MMagic's and pconv's
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # as is
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),  # naoto0804's
}
"""Input normalisations by name: (mean, std) applied to [0, 1] RGB."""


def composite(image: Tensor, output: Tensor, mask: Tensor) -> Tensor:
    """Known pixels from ``image``, hole pixels from ``output``: ``mask*image + (1-mask)*output``.

    ``mask`` is 1 = valid, (N, 1, H, W) or (N, 3, H, W).
    """
    mask = mask.to(output.dtype)
    return torch.lerp(output, image.to(output.dtype), mask)


def check_inputs(image: Tensor, mask: Tensor) -> Tensor:
    """Validate an (image, mask) pair; returns the mask as (N, 1|3, H, W) float."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if (
        mask.dim() != 4
        or mask.shape[1] not in (1, 3)
        or mask.shape[0] != image.shape[0]
        or mask.shape[2:] != image.shape[2:]
    ):
        raise ValueError(
            f"mask must be (N, 1 or 3, H, W) matching image {tuple(image.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    return mask.to(image.dtype if image.is_floating_point() else torch.float32)


def pad_to_multiple(image: Tensor, mask: Tensor, multiple: int) -> tuple[Tensor, Tensor]:
    """Pad bottom/right to a multiple of ``multiple``; the padding is hole (mask 0)."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, mask
    return F.pad(image, (0, pw, 0, ph)), F.pad(mask, (0, pw, 0, ph))


class InpaintingModel(nn.Module):
    """A network plus the input normalisation its weights expect.

    ``forward(image, mask)``: see the module docstring; the net sees
    ``normalize(image)`` and the mask, and its output is mapped back to [0, 1].
    Holes are zero after normalisation when the net masks its input.

    ``family`` and ``config`` say how the model was built (the registry name and
    the family's config dataclass); checkpoints store them. ``net`` is the
    network whose ``state_dict`` checkpoints hold.
    """

    def __init__(self, net: nn.Module, *, family: str, config: Any, normalization: str):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {tuple(NORMALIZATIONS)}, got {normalization!r}"
            )
        self.net = net
        self.family = family
        self.config = config
        self.normalization = normalization
        self.normalize = Normalize(*NORMALIZATIONS[normalization])

    @property
    def size_multiple(self) -> int:
        """Inputs are padded internally to a multiple of this (1 if the net does not say)."""
        return int(getattr(self.net, "size_multiple", 1))

    def forward(
        self, image: Tensor, mask: Tensor, **net_options: Any
    ) -> Tensor | tuple[Tensor, ...]:
        """The net's output on the [0, 1] scale; ``net_options`` go to the net (e.g. DeepFillv2's
        ``stages=True``, whose tuple of outputs comes back mapped the same way)."""
        out = self.net(self.normalize(image), mask, **net_options)
        if isinstance(out, tuple):
            return tuple(self.normalize.inverse(o) for o in out)
        return self.normalize.inverse(out)
