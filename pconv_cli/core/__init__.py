"""The core library shared by every ``pconv`` command.

One concept per module: ``partial_conv`` (the layer), ``unet`` (the PConv U-Net
and its plain-convolution baseline), and later ``masks``, ``data``, ``losses``,
``metrics``, ``training``, ``inference``, ``weights``. Import the module you
need; this package imports nothing heavy by itself.

Conventions: images are float RGB in [0, 1], shape (N, 3, H, W); masks are
float with 1 = valid (known) pixel and 0 = hole, shape (N, 1, H, W) unless a
function says otherwise. Mask *files* use the opposite, white = hole.
"""
