"""Registers the MI-GAN families: networks and builders, converter (imports torch)."""

from pconv_cli.models.migan import convert, model  # noqa: F401  (registration on import)
