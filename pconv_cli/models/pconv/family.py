"""Registers the PConv U-Net family: networks, training task, converters (imports torch)."""

# isort: off
from pconv_cli.models.pconv import pconv_unet, unet, task  # noqa: F401  (registration)
from pconv_cli.models.pconv import convert_mmagic, convert_naoto0804  # noqa: F401
from pconv_cli.models.pconv import convert_bare  # noqa: F401  (last: the loosest detection)
# isort: on
