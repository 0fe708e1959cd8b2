"""pconv: image inpainting with partial convolutions.

Importing this package is cheap: it never imports torch. The model code lives in
``pconv_cli.core`` (``partial_conv``, ``unet``, ...), imported on demand.
"""

__version__ = "0.1.0"
