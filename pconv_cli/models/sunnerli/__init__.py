"""SunnerLi's P-Conv (github.com/SunnerLi/P-Conv, 2018), an early re-implementation of
Liu et al.'s partial convolutions, as pconv families ``sunnerli_pconv`` (his partial-conv
U-Net) and ``sunnerli_unet`` (his plain U-Net baseline): everything they own.

- :mod:`.network`: both nets, his module names and every quirk of his code;
- :mod:`.pipeline`: his ``test.py`` step for step;
- :mod:`.family`: the config, the builders (``register_model``), the help text;
- :mod:`.weights`: the converter of his ``.pth`` files and the zoo entries.

Inference only. Importing the package registers the families, the converter and the
weights.
"""

from pconv_cli.models.sunnerli import family, weights  # noqa: F401  (registers)
from pconv_cli.models.sunnerli.family import HELP, SunnerLiConfig, SunnerLiInpainter
from pconv_cli.models.sunnerli.network import SunnerLiPConvUNet, SunnerLiUNet

__all__ = ["HELP", "SunnerLiConfig", "SunnerLiInpainter", "SunnerLiPConvUNet", "SunnerLiUNet"]
