"""LaMa (Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier
Convolutions", WACV 2022) as the pconv family ``lama``: everything the family owns.

- :mod:`.ffc`, :mod:`.network`: the FFC ResNet generator and the PatchGAN
  discriminator in pconv's code with LaMa's module names;
- :mod:`.family`: the config dataclass and the registry entry;
- :mod:`.release`, :mod:`.config_yaml`: LaMa's release (folder, ``.ckpt``, zip) read
  without running its pickle, its ``config.yaml`` read without PyYAML;
- :mod:`.zoo`: the published ``big-lama`` weights.
"""

# isort: off
from pconv_cli.models.lama.network import LamaConfig, LamaGenerator, NLayerDiscriminator
from pconv_cli.models.lama.family import FAMILY, lama, lama_discriminator
from pconv_cli.models.lama import release as _release  # noqa: F401  (reader, converter)
from pconv_cli.models.lama import zoo as _zoo  # noqa: F401
# isort: on

__all__ = [
    "FAMILY",
    "LamaConfig",
    "LamaGenerator",
    "NLayerDiscriminator",
    "lama",
    "lama_discriminator",
]
