"""The classifier families folder: every torchvision classifier with zero (``resnet50``) or
partial-convolution padding (``pd_resnet50``), made on demand.

- ``network.py``: the families' builder and resolver; ``task.py``: the training task
  ``classification``; ``zoo.py``: torchvision's weights enums as zoo entries;
- ``family.py``: registers all of it (see :mod:`pconv_cli.models.families`).
"""
