"""Reading a bare U-Net state dict (``torch.save(net.state_dict())``, no metadata).

The family comes from the shapes (4 input channels at ``enc1``: the plain
``unet``, else ``pconv_unet``), levels and width from the keys; upsampling and
normalisation cannot be known and are assumed to be the defaults (reported as
``metadata["assumed"]``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from pconv_cli.weights.formats import Converted, count_levels, register_converter

__all__ = ["convert_bare_unet"]


def _is_bare_unet(state: Mapping[str, Tensor]) -> bool:
    return "encoder.enc1.conv.weight" in state


def convert_bare_unet(state: Mapping[str, Tensor]) -> Converted:
    """A bare ``pconv_unet``/``unet`` state dict -> (state, family, config)."""
    enc1 = state["encoder.enc1.conv.weight"]
    config = {
        "layers": count_levels(state, r"encoder\.enc(\d+)\.conv\.weight"),
        "width": enc1.shape[0] / 64,
        "upsampling": "nearest",
        "normalization": "minus_one_one",
    }
    return dict(state), "unet" if enc1.shape[1] == 4 else "pconv_unet", config


register_converter(
    "pconv",
    detect=_is_bare_unet,
    convert=convert_bare_unet,
    note="upsampling=nearest, normalization=minus_one_one (no metadata in the file)",
)
