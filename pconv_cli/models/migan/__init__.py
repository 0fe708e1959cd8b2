"""MI-GAN (Sargsyan et al., "MI-GAN: A Simple Baseline for Image Inpainting on Mobile
Devices", ICCV 2023) as pconv family ``migan``: everything the family owns.

- :mod:`.network`: the generator, MI-GAN's module names, fully convolutional;
- :mod:`.pipeline`: MI-GAN's own inference steps (``scripts/demo.py``, windows as its
  ONNX pipeline places them);
- :mod:`.family`: the config, the builder (``register_model``), the help text;
- :mod:`.weights`: the converter of the published ``.pt`` files and the zoo entries.

Inference only. Importing the package registers the family, the converter and the
weights.
"""

from pconv_cli.models.migan import family, weights  # noqa: F401  (registers)
from pconv_cli.models.migan.family import HELP, MiganConfig, MiganInpainter
from pconv_cli.models.migan.network import MiganGenerator

__all__ = ["HELP", "MiganConfig", "MiganGenerator", "MiganInpainter"]
