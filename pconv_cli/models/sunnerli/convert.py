"""SunnerLi's published checkpoints: their converter (format ``sunnerli``) and zoo entries.

His files are ``torch.save(model.state_dict())`` of his ``PartialUNet`` / ``UNet``
(PyTorch 0.4, 2018), on Google Drive, without checksums. Each holds, besides the
U-Net, the VGG19 of his perceptual loss (``vgg.*``, a submodule of his model class).
The converter keeps his key names and drops what never affects the output:

- ``vgg.*`` (the loss network);
- ``*.pconv.mask_conv.1.weight``: the fixed kernels of ones that sum the mask (checked
  to be ones; pconv sums the mask with the same kernel, computed);
- ``down<k>.norm.*``: the encoder's BatchNorms, whose result his code discards.

``num_batches_tracked`` (absent from files written by PyTorch 0.4) is added as 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from pconv_cli.models.sunnerli.model import PCONV_FAMILY, UNET_FAMILY
from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import Converted, register_converter

__all__ = ["convert_sunnerli"]

_PCONV_KEY = "down1.pconv.img_conv.1.weight"
_UNET_KEYS = ("down1.layer.0.weight", "down8.layer.0.weight", "up8.layer.0.weight", "up1.weight")
_ENCODER_NORM = re.compile(r"down\d+\.norm\..+")
_BATCHNORM_MEAN = re.compile(r"(.+)\.running_mean")


def _is_sunnerli(state: Mapping[str, Tensor]) -> bool:
    return _PCONV_KEY in state or all(k in state for k in _UNET_KEYS)


def convert_sunnerli(state: Mapping[str, Tensor]) -> Converted:
    """His ``PartialUNet`` or ``UNet`` state dict -> (state, family, config); see the
    module docstring for what is dropped."""
    pconv = _PCONV_KEY in state
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("vgg.") or (pconv and _ENCODER_NORM.fullmatch(key)):
            continue
        if key.endswith(".mask_conv.1.weight"):
            if not bool((value == 1).all()):
                raise WeightsError(f"SunnerLi checkpoint: {key} is not a kernel of ones")
            continue
        out[key] = value
    for key in list(out):
        norm = _BATCHNORM_MEAN.fullmatch(key)
        if norm and f"{norm.group(1)}.num_batches_tracked" not in out:
            out[f"{norm.group(1)}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    first = out[_PCONV_KEY if pconv else _UNET_KEYS[0]]
    return out, PCONV_FAMILY if pconv else UNET_FAMILY, {"base": int(first.shape[0]), "size": 256}


register_converter("sunnerli", detect=_is_sunnerli, convert=convert_sunnerli)
