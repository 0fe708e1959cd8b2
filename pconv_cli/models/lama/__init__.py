"""LaMa (Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier
Convolutions", WACV 2022) as the pconv family ``lama``: everything the family owns.

- :mod:`.ffc`, :mod:`.network`: the FFC ResNet generator and the PatchGAN
  discriminator in pconv's code with LaMa's module names;
- :mod:`.model`: the registry entry; :mod:`.task`, :mod:`.losses`: LaMa's training;
- :mod:`.release`, :mod:`.config_yaml`: LaMa's release (folder, ``.ckpt``, zip) read
  without running its pickle, its ``config.yaml`` read without PyYAML;
- :mod:`.zoo`: the published ``big-lama`` weights; :mod:`.cli`: help text;
- :mod:`.family`: registers it all (see :mod:`pconv_cli.models.families`).
"""
