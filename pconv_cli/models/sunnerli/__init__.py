"""SunnerLi's P-Conv (github.com/SunnerLi/P-Conv, 2018), an early re-implementation of
Liu et al.'s partial convolutions, as pconv families ``sunnerli_pconv`` (his partial-conv
U-Net) and ``sunnerli_unet`` (his plain U-Net baseline): everything they own.

- :mod:`.network`: both nets, his module names and every quirk of his code;
- :mod:`.pipeline`: his ``test.py`` step for step;
- :mod:`.model`: the config, the builders (``register_model``), the help text;
- :mod:`.convert`: the converter of his ``.pth`` files; :mod:`.zoo`: the zoo entries;
  :mod:`.cli`: help text; :mod:`.family`: registers it all.

Inference only.
"""
