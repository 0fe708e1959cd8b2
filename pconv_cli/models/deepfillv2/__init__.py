"""The DeepFillv2 family folder (Yu et al., ICCV 2019), MMagic's layout and weights.

- ``network.py``: generator, SN-PatchGAN discriminator, config; ``task.py``: the GAN
  training task ``deepfillv2`` and presets; ``convert.py``: MMagic's checkpoints;
- ``zoo.py``: MMagic's published weights; ``cli.py``: help text;
- ``family.py``: registers all of it (see :mod:`pconv_cli.models.families`).
"""
