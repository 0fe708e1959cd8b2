"""Family ``lama``: the registry entry of LaMa's generator and its training discriminator."""

from __future__ import annotations

from pconv_cli.models.inpainting import InpaintingModel
from pconv_cli.models.lama.network import LamaConfig, LamaGenerator, NLayerDiscriminator
from pconv_cli.models.registry import register_model

__all__ = ["FAMILY", "lama", "lama_discriminator"]

FAMILY = "lama"


def lama_discriminator(config: LamaConfig) -> NLayerDiscriminator:
    """LaMa's PatchGAN discriminator (``pix2pixhd_nlayer``), trained beside the generator."""
    return NLayerDiscriminator(config)


@register_model(
    FAMILY,
    config=LamaConfig,
    task=FAMILY,
    training_modules={"discriminator": lama_discriminator},
    description="LaMa (Suvorov et al., WACV 2022): fast Fourier convolutions, large holes",
)
def lama(config: LamaConfig) -> InpaintingModel:
    """LaMa's FFC ResNet generator; images RGB in [0, 1] as they are (no normalisation)."""
    net = LamaGenerator(config)
    return InpaintingModel(net, family=FAMILY, config=config, normalization="unit")
