"""Converter for MMagic's (formerly MMEditing) PConv checkpoints (converter ``mmagic``).

MMagic saves ``state_dict`` with ``generator.*`` keys. Its nets were trained on
BGR images normalised as ``(x - 127.5) / 127.5`` with zeroed holes, i.e. pconv's
``minus_one_one``: the converter reverses the colour channels where images enter
and leave the net, so the converted net runs on RGB.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import Converted, count_levels, register_converter

__all__ = ["convert_mmagic_pconv"]

_FLIP = [2, 1, 0]


def _is_mmagic_pconv(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith("generator.encoder.enc1.") for k in state)


def convert_mmagic_pconv(state: Mapping[str, Tensor]) -> Converted:
    """MMagic PConv generator weights -> pconv's ``pconv_unet`` (state, family, config).

    Keeps ``generator.*`` keys without the prefix, drops the ``weight_mask_updater``
    buffers (constant ones) and any ``loss_*`` entries, and turns the BGR net into
    an RGB one: input channels of ``enc1``, output channels (and bias) of ``dec1``
    and ``dec1``'s image-skip input channels (its last 3) are reversed.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith("generator."):
            continue
        key = key.removeprefix("generator.")
        if key.endswith("weight_mask_updater") or any(
            p.startswith("loss_") for p in key.split(".")
        ):
            continue
        out[key] = value
    for key in ("encoder.enc1.conv.weight", "decoder.dec1.conv.weight", "decoder.dec1.conv.bias"):
        if key not in out:
            raise WeightsError(f"MMagic checkpoint has no generator.{key} (not a PConv generator?)")
    out["encoder.enc1.conv.weight"] = out["encoder.enc1.conv.weight"][:, _FLIP]
    dec1 = out["decoder.dec1.conv.weight"][_FLIP]
    image_skip = dec1.shape[1] - 3
    out["decoder.dec1.conv.weight"] = torch.cat(
        [dec1[:, :image_skip], dec1[:, image_skip:].flip(1)], 1
    )
    out["decoder.dec1.conv.bias"] = out["decoder.dec1.conv.bias"][_FLIP]
    config = {
        "layers": count_levels(out, r"encoder\.enc(\d+)\.conv\.weight"),
        "width": out["encoder.enc1.conv.weight"].shape[0] / 64,
        "upsampling": "nearest",
        "normalization": "minus_one_one",
    }
    return out, "pconv_unet", config


register_converter("mmagic", detect=_is_mmagic_pconv, convert=convert_mmagic_pconv)
