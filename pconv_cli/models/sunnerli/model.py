"""Families ``sunnerli_pconv`` and ``sunnerli_unet``: SunnerLi's nets with his test.py
(inference only).

``build_model("sunnerli_pconv")`` gives a :class:`SunnerLiInpainter` whose ``net`` is
:class:`~pconv_cli.models.sunnerli.network.SunnerLiPConvUNet` (or ``SunnerLiUNet``) and
whose ``forward(image, mask)`` (RGB in [0, 1], mask 1 = valid, any size) runs his
``test.py`` (:mod:`pconv_cli.models.sunnerli.pipeline`: every image squashed to
``size`` x ``size`` and back) and returns his raw reconstruction on the [0, 1] scale
(multiples of 1/255). ``size=0`` runs the net at the image's own size instead.

There is no training task: ``pconv train``/``finetune`` refuse both families.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pconv_cli.models.array_pipeline import ArrayPipelineModel
from pconv_cli.models.registry import register_model
from pconv_cli.models.sunnerli.cli import HELP
from pconv_cli.models.sunnerli.network import SunnerLiPConvUNet, SunnerLiUNet
from pconv_cli.models.sunnerli.pipeline import test_py_steps

__all__ = [
    "HELP",
    "PCONV_FAMILY",
    "UNET_FAMILY",
    "SunnerLiConfig",
    "SunnerLiInpainter",
    "sunnerli_pconv",
    "sunnerli_unet",
]

PCONV_FAMILY = "sunnerli_pconv"
UNET_FAMILY = "sunnerli_unet"


@dataclass(frozen=True)
class SunnerLiConfig:
    """Options of the ``sunnerli_*`` families.

    - ``base``: channels of level 1 (64 published; deeper levels x2 up to x8);
    - ``size``: the side ``test.py`` resizes every image to (its ``--size``; the published
      nets were trained at 256, one at 224); 0 runs the net at the image's own size.
    """

    base: int = 64
    size: int = 256

    def __post_init__(self) -> None:
        for name, low in (("base", 1), ("size", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


class SunnerLiInpainter(ArrayPipelineModel):
    """His net with his ``test.py``: ``forward(image, mask)`` as every inpainting model.

    ``image`` float RGB (N, 3, H, W) in [0, 1] (quantised to uint8 first, as test.py
    reads files), ``mask`` (N, 1, H, W), 1 = valid (> 0.5 counts as known). Returns his
    raw output in [0, 1] (``size=0``: the net's raw output at the image's size).
    """

    @property
    def uses_arrays(self) -> bool:
        return self.config.size > 0

    def run_arrays(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        """:func:`~pconv_cli.models.sunnerli.pipeline.test_py_steps` on one picture."""
        return test_py_steps(self.net.generate, image, known, self.config.size, device=self.device)


@register_model(PCONV_FAMILY, config=SunnerLiConfig, task=None,
                description="SunnerLi's P-Conv: partial-conv U-Net (inference only)")  # fmt: skip
def sunnerli_pconv(config: SunnerLiConfig) -> SunnerLiInpainter:
    """His partial-convolution U-Net with his test.py."""
    net = SunnerLiPConvUNet(base=config.base)
    return SunnerLiInpainter(net, family=PCONV_FAMILY, config=config, normalization="minus_one_one")


@register_model(UNET_FAMILY, config=SunnerLiConfig, task=None,
                description="SunnerLi's P-Conv: plain U-Net baseline (inference only)")  # fmt: skip
def sunnerli_unet(config: SunnerLiConfig) -> SunnerLiInpainter:
    """His plain U-Net with his test.py."""
    net = SunnerLiUNet(base=config.base)
    return SunnerLiInpainter(net, family=UNET_FAMILY, config=config, normalization="minus_one_one")
