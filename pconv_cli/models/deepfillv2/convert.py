"""Converter for MMagic's DeepFillv2 checkpoints (converter ``mmagic-deepfillv2``).

MMagic saves ``state_dict`` with ``generator.*`` and ``disc.*`` keys. Its nets
were trained on BGR images normalised as ``(x - 127.5) / 127.5`` with zeroed
holes, i.e. pconv's ``minus_one_one``: the converter reverses the colour channels
where images enter and leave the nets, so the converted nets run on RGB.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from pconv_cli.models.deepfillv2.network import BASE_WIDTH
from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import Converted, register_converter

__all__ = ["convert_mmagic_deepfillv2"]

_FLIP = [2, 1, 0]

_DEEPFILL_INPUTS = (  # gated convs whose input channels 0..2 are an image
    "stage1.encoder.enc1.conv.conv.weight",
    "stage2.encoder_conv.enc1.conv.conv.weight",
    "stage2.encoder_attention.enc1.conv.conv.weight",
)
_DEEPFILL_OUTPUTS = ("stage1.decoder.dec7.conv.conv", "stage2.decoder.dec7.conv.conv")


def _is_mmagic_deepfillv2(state: Mapping[str, Tensor]) -> bool:
    return "generator.stage1.encoder.enc1.conv.conv.weight" in state


def convert_mmagic_deepfillv2(state: Mapping[str, Tensor]) -> Converted:
    """MMagic DeepFillv2 weights -> pconv's ``deepfillv2`` (state, family, config).

    ``generator.*`` keys lose the prefix; ``disc.*`` become ``discriminator.*``
    (kept for ``--init``, ignored for inference). BGR -> RGB: the image input
    channels 0..2 of the three ``enc1`` convs and of the discriminator's first
    conv, and the image outputs of both ``dec7`` gated convs (feature channels
    0..2 and their gates 3..5) are reversed. The generator's mask input is 1 = hole
    as in MMagic: pconv's net computes it from its 1 = valid mask.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("generator."):
            out[key.removeprefix("generator.")] = value
        elif key.startswith("disc."):
            out["discriminator." + key.removeprefix("disc.")] = value
    needed = (*_DEEPFILL_INPUTS, "stage2.decoder.dec7.conv.conv.weight")
    missing = [k for k in needed if k not in out]
    if missing:
        raise WeightsError(f"MMagic checkpoint has no generator.{missing[0]} (not DeepFillv2?)")
    for key in _DEEPFILL_INPUTS:
        out[key] = torch.cat([out[key][:, _FLIP], out[key][:, 3:]], 1)
    gates = [2, 1, 0, 5, 4, 3]
    for prefix in _DEEPFILL_OUTPUTS:
        out[f"{prefix}.weight"] = out[f"{prefix}.weight"][gates]
        out[f"{prefix}.bias"] = out[f"{prefix}.bias"][gates]
    first_disc = "discriminator.conv1.conv.weight_orig"
    if first_disc in out:
        out[first_disc] = torch.cat([out[first_disc][:, _FLIP], out[first_disc][:, 3:]], 1)
        # weight_v is the power iteration's right singular vector over (in, kh, kw): reorder it
        v_key = "discriminator.conv1.conv.weight_v"
        if v_key in out:
            v = out[v_key].view(out[first_disc].shape[1], -1)
            out[v_key] = torch.cat([v[_FLIP], v[3:]]).reshape(-1)
    width = out["stage1.encoder.enc1.conv.conv.weight"].shape[0] / 2 / BASE_WIDTH
    return out, "deepfillv2", {"width": width, "normalization": "minus_one_one"}


register_converter(
    "mmagic-deepfillv2", detect=_is_mmagic_deepfillv2, convert=convert_mmagic_deepfillv2
)
