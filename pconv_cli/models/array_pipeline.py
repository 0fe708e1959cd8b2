"""Inpainting models whose ``forward`` runs their publisher's own inference steps on arrays.

Some published models are meant to be run through a script that resizes, quantises and
composites with its own tools (PIL, OpenCV) on uint8 pictures: their pixels come from
those steps, not from the network alone. :class:`ArrayPipelineModel` gives such a
family the ordinary model interface: ``forward(image, mask)`` (RGB (N, 3, H, W) in
[0, 1], mask 1 = valid, any size) quantises each image to uint8 as a file would hold it,
calls :meth:`ArrayPipelineModel.run_arrays` per image, and returns the result on the
[0, 1] scale (multiples of 1/255), so ``pconv inpaint``, ``eval`` and ``serve`` run the
publisher's steps unchanged. When :attr:`ArrayPipelineModel.uses_arrays` is False the
model behaves as a plain :class:`~pconv_cli.models.inpainting.InpaintingModel`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pconv_cli.data.images import to_uint8
from pconv_cli.models.inpainting import InpaintingModel, check_inputs

__all__ = ["ArrayPipelineModel"]


class ArrayPipelineModel(InpaintingModel):
    """An :class:`InpaintingModel` whose forward runs :meth:`run_arrays` image by image.

    Subclasses implement :meth:`run_arrays` (uint8 RGB (H, W, 3) and bool ``known``
    (H, W), True = known -> uint8 RGB (H, W, 3)) and may override :attr:`uses_arrays`.
    A mask value above 0.5 counts as known.
    """

    default_blend = "none"
    """``--blend auto`` keeps the publisher's pixels (its pipeline composites already)."""
    sees_hole_pixels = True
    """The publisher's pipeline resamples the photo as it is, then masks it: so does pconv."""

    @property
    def uses_arrays(self) -> bool:
        """Whether ``forward`` runs :meth:`run_arrays` (else the plain net)."""
        return True

    @property
    def size_multiple(self) -> int:
        """The array pipeline takes any size (the plain net pads inside)."""
        return 1

    @property
    def device(self) -> torch.device:
        """Where the net's parameters are."""
        param = next(self.net.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def run_arrays(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        """The publisher's steps on one uint8 RGB picture (see the class docstring)."""
        raise NotImplementedError

    def forward(self, image: Tensor, mask: Tensor, **net_options) -> Tensor:
        if not self.uses_arrays:
            return super().forward(image, mask, **net_options)
        mask = check_inputs(image, mask)
        known = (mask.amin(1) > 0.5).cpu().numpy()
        pixels = to_uint8(image.detach()).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        results = [self.run_arrays(rgb, ok) for rgb, ok in zip(pixels, known, strict=True)]
        out = torch.from_numpy(np.stack(results)).to(image.device).permute(0, 3, 1, 2)
        dtype = image.dtype if image.is_floating_point() else torch.float32
        return out.to(dtype) / 255.0
