"""Registers the LaMa family: network, release reader and converter, training task (torch)."""

from pconv_cli.models.lama import model, release, task  # noqa: F401  (registration on import)
