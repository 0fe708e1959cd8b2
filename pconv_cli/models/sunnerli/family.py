"""Registers the SunnerLi's P-Conv families: networks and builders, converter (imports torch)."""

from pconv_cli.models.sunnerli import convert, model  # noqa: F401  (registration on import)
