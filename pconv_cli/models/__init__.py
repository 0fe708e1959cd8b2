"""Model families behind one registry.

``build_model(name, **options)`` builds any registered family, ``list_models()``
names them, ``register_model`` adds one. Built-in families: ``pconv_unet`` (alias
``pconv``), ``unet``, ``deepfillv2``, and every torchvision classifier with zero
padding (``resnet50``) or partial padding (``pd_resnet50``), made on demand.
Inpainting models take float RGB in [0, 1] and masks with 1 = valid, 0 = hole
(see :mod:`pconv_cli.models.inpainting`); classifiers take RGB in [0, 1].
"""

from pconv_cli.models.inpainting import InpaintingModel, composite
from pconv_cli.models.registry import (
    ModelError,
    ModelFamily,
    build_model,
    config_from_json,
    config_to_json,
    describe_config,
    get_family,
    list_models,
    make_config,
    register_model,
)

# Built-in families register themselves on import, in this order.
# isort: off
from pconv_cli.models import pconv_unet as _pconv_unet  # noqa: F401
from pconv_cli.models import unet as _unet  # noqa: F401
from pconv_cli.models import deepfillv2 as _deepfillv2  # noqa: F401
from pconv_cli.models import classifiers as _classifiers  # noqa: F401
from pconv_cli.models import lama as _lama  # noqa: F401
# isort: on

__all__ = [
    "InpaintingModel",
    "ModelError",
    "ModelFamily",
    "build_model",
    "composite",
    "config_from_json",
    "config_to_json",
    "describe_config",
    "get_family",
    "list_models",
    "make_config",
    "register_model",
]
