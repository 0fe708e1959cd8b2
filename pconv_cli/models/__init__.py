"""Model families behind one registry.

``build_model(name, **options)`` builds any registered family, ``list_models()``
names them, ``register_model`` adds one. The built-in families live in folders
listed by :mod:`pconv_cli.models.families` and register on first use of the registry.
Inpainting models take float RGB in [0, 1] and masks with 1 = valid, 0 = hole
(see :mod:`pconv_cli.models.inpainting`); classifiers take RGB in [0, 1].

Importing this package is cheap (no torch): the names below load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "InpaintingModel": "pconv_cli.models.inpainting",
    "composite": "pconv_cli.models.inpainting",
    "ModelError": "pconv_cli.models.registry",
    "ModelFamily": "pconv_cli.models.registry",
    "build_model": "pconv_cli.models.registry",
    "config_from_json": "pconv_cli.models.registry",
    "config_to_json": "pconv_cli.models.registry",
    "describe_config": "pconv_cli.models.registry",
    "get_family": "pconv_cli.models.registry",
    "list_models": "pconv_cli.models.registry",
    "make_config": "pconv_cli.models.registry",
    "register_model": "pconv_cli.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
