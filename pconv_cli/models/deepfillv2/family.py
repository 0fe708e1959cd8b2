"""Registers the DeepFillv2 family: networks, training task, converter (imports torch)."""

from pconv_cli.models.deepfillv2 import (  # noqa: F401  (each registers itself on import)
    convert,
    network,
    task,
)
