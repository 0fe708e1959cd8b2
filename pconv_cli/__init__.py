"""pconv: image inpainting with partial convolutions.

Importing this package is cheap: it never imports torch. The library lives in
its subpackages, imported on demand: ``nn`` (layers), ``models`` (families and
their registry), ``weights`` (checkpoints, zoo, converters), ``data`` (images,
masks, datasets), ``train`` (tasks and the training loop), ``evaluation`` and
``inpainting``.
"""

__version__ = "0.1.0"
