"""Converter for naoto0804's PConv re-implementation (pytorch-inpainting-with-partial-conv).

Its partial conv computes ``W^T(X*M) / sum(M) + b`` (holes 0) with a mask that has
one channel per input channel, where pconv's computes ``W^T(X*M) * sum(1)/sum(M)
+ b`` with ``sum(1) = C_in*k*k``: every conv weight is divided by ``C_in*k*k``
(biases stay). It normalises RGB input with ImageNet mean/std.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import Converted, count_levels, register_converter

__all__ = ["convert_naoto0804"]

_KEY = re.compile(r"(enc|dec)_(\d+)\.(conv\.input_conv|conv\.mask_conv|bn)\.(\w+)")


def _is_naoto0804(state: Mapping[str, Tensor]) -> bool:
    return "enc_1.conv.input_conv.weight" in state


def convert_naoto0804(state: Mapping[str, Tensor]) -> Converted:
    """naoto0804's ``PConvUNet`` weights -> pconv's ``pconv_unet`` (state, family, config).

    Keys ``enc_k.conv.input_conv.*`` -> ``encoder.enck.conv.*``, ``enc_k.bn.*`` ->
    ``encoder.enck.bn.*`` (``dec_k`` likewise); the constant ``mask_conv`` weights
    are dropped. Its ``enc_1`` has no bias, so pconv's gets zeros.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _KEY.fullmatch(key)
        if match is None:
            raise WeightsError(f"naoto0804 checkpoint: unexpected key {key}")
        side, level, module, param = match.groups()
        if module == "conv.mask_conv":
            continue
        prefix = f"{'encoder' if side == 'enc' else 'decoder'}.{side}{level}"
        if module == "bn":
            out[f"{prefix}.bn.{param}"] = value
        elif param == "weight":
            _, c_in, kh, kw = value.shape
            out[f"{prefix}.conv.weight"] = value / (c_in * kh * kw)
        else:
            out[f"{prefix}.conv.bias"] = value
    if "encoder.enc1.conv.weight" in out and "encoder.enc1.conv.bias" not in out:
        enc1 = out["encoder.enc1.conv.weight"]
        out["encoder.enc1.conv.bias"] = torch.zeros(enc1.shape[0], dtype=enc1.dtype)
    config = {
        "layers": count_levels(out, r"encoder\.enc(\d+)\.conv\.weight"),
        "width": out["encoder.enc1.conv.weight"].shape[0] / 64,
        "upsampling": "nearest",
        "normalization": "imagenet",
    }
    return out, "pconv_unet", config


register_converter("naoto0804", detect=_is_naoto0804, convert=convert_naoto0804)
