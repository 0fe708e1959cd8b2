"""Family ``migan``: MI-GAN's generator behind pconv's inpainting interface (inference only).

``build_model("migan", resolution=512)`` gives a :class:`MiganInpainter`: an
:class:`~pconv_cli.models.inpainting.InpaintingModel` whose ``net`` is the
fully convolutional :class:`~pconv_cli.models.migan.network.MiganGenerator` and whose
``forward(image, mask)`` (RGB in [0, 1], mask 1 = valid, any size) runs MI-GAN's own
pipeline (:mod:`pconv_cli.models.migan.pipeline`: the generator always works at its
resolution) and returns the result on the [0, 1] scale (multiples of 1/255, known
pixels equal to the input's). ``pipeline="native"`` runs the net at the image's own
size instead, like pconv's other families.

There is no training task: ``pconv train``/``finetune`` refuse the family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pconv_cli.models.array_pipeline import ArrayPipelineModel
from pconv_cli.models.migan.cli import HELP
from pconv_cli.models.migan.network import MiganGenerator, check_resolution
from pconv_cli.models.migan.pipeline import inpaint_migan
from pconv_cli.models.registry import register_model

__all__ = ["FAMILY", "HELP", "PIPELINES", "MiganConfig", "MiganInpainter", "migan"]

FAMILY = "migan"
PIPELINES = ("demo", "native")


@dataclass(frozen=True)
class MiganConfig:
    """Options of the ``migan`` family.

    - ``resolution``: the size the generator was trained at (512 or 256 published; any
      power of two >= 8): its levels, its noise and the pipeline's working size;
    - ``channel_base``, ``channel_max``: channels per level, ``min(base // res, max)``
      (32768 and 512 published; small values for tests);
    - ``pipeline``: ``demo`` (MI-GAN's steps, see the module docstring) or ``native``.
    """

    resolution: int = 512
    channel_base: int = 32768
    channel_max: int = 512
    pipeline: str = "demo"

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        for name in ("channel_base", "channel_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be one of {PIPELINES}, got {self.pipeline!r}")


class MiganInpainter(ArrayPipelineModel):
    """MI-GAN with its pipeline: ``forward(image, mask)`` as every inpainting model.

    ``image`` float RGB (N, 3, H, W) in [0, 1] (quantised to uint8 first, as MI-GAN
    reads files), ``mask`` (N, 1, H, W), 1 = valid (> 0.5 counts as known). Returns the
    composited result in [0, 1] (``demo``), or the raw output (``native``).
    """

    net: MiganGenerator

    @property
    def auto_strategy(self) -> str | None:
        """``--strategy auto`` is ``full``: the pipeline places its own windows around holes."""
        return "full" if self.uses_arrays else None

    @property
    def uses_arrays(self) -> bool:
        return self.config.pipeline == "demo"

    def run_arrays(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        """:func:`~pconv_cli.models.migan.pipeline.inpaint_migan` on one picture."""
        net = self.net
        return inpaint_migan(net.generate, image, known, net.resolution, device=self.device)[0]


@register_model(FAMILY, config=MiganConfig, task=None, description=HELP.split(":")[0])
def migan(config: MiganConfig) -> MiganInpainter:
    """MI-GAN's generator with its pipeline (inference only)."""
    net = MiganGenerator(
        resolution=config.resolution,
        channel_base=config.channel_base,
        channel_max=config.channel_max,
    )
    return MiganInpainter(net, family=FAMILY, config=config, normalization="minus_one_one")
