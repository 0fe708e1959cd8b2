"""The PConv U-Net family folder: ``pconv_unet`` (Liu et al., ECCV 2018; MMagic's layout) and
``unet`` (the same topology with plain convolutions, a baseline).

- ``pconv_unet.py``, ``unet.py``: the networks and their config (``UNetConfig``);
- ``task.py``: their training task ``pconv`` (the paper's loss) and presets;
- ``convert_mmagic.py``, ``convert_naoto0804.py``, ``convert_bare.py``: readers of
  MMagic's, naoto0804's and bare state-dict files;
- ``zoo.py``: the bundled default model and the published weights; ``cli.py``: help text;
- ``family.py``: registers all of it (see :mod:`pconv_cli.models.families`).
"""
