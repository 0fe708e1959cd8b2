"""LaMa (Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier
Convolutions", WACV 2022) as the pconv family ``lama``: everything the family owns.

- :mod:`.ffc`, :mod:`.network`: the FFC ResNet generator and the PatchGAN
  discriminator in pconv's code with LaMa's module names;
- :mod:`.family`: the config dataclass and the registry entry.
"""

from pconv_cli.models.lama.family import FAMILY, lama, lama_discriminator
from pconv_cli.models.lama.network import LamaConfig, LamaGenerator, NLayerDiscriminator

__all__ = ["FAMILY", "LamaConfig", "LamaGenerator", "NLayerDiscriminator", "lama",
           "lama_discriminator"]
