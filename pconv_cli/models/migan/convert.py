"""MI-GAN's published generators: their converter (format ``migan``) and zoo entries.

The files are the inference generators' state dicts (``torch.save(model.state_dict())``
of ``lib/model_zoo/migan_inference.py``'s ``Generator``), published in a Google Drive
folder: ``migan_512_places2.pt``, ``migan_256_places2.pt``, ``migan_256_ffhq.pt``.
MI-GAN publishes no checksums, so downloads are not hash-checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from pconv_cli.models.migan.model import FAMILY
from pconv_cli.models.migan.network import level_channels
from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import Converted, register_converter

__all__ = ["convert_migan", "filter_pattern"]

_FROMRGB = re.compile(r"encoder\.b(\d+)\.fromrgb\.weight")
_TORGB = re.compile(r"synthesis\.b(\d+)\.torgb\.weight")


def _is_migan(state: Mapping[str, Tensor]) -> bool:
    return "synthesis.b4.conv1.conv1.weight" in state and "encoder.b4.conv1.conv1.weight" in state


def filter_pattern(size: int) -> Tensor:
    """MI-GAN's ``filter_const`` for ``size``: (1, 1, size, size), 1 at even (row, column)."""
    pattern = torch.zeros(1, 1, size, size)
    pattern[..., ::2, ::2] = 1.0
    return pattern


def _channels_config(state: Mapping[str, Tensor]) -> dict[str, int]:
    """``resolution``, ``channel_base``, ``channel_max`` from the tensors' shapes."""
    found = [int(m.group(1)) for k in state if (m := _FROMRGB.fullmatch(k))]
    if len(found) != 1:
        raise WeightsError(f"MI-GAN checkpoint: expected one encoder.b<res>.fromrgb, found {found}")
    resolution = found[0]
    channels = {
        int(m.group(1)): int(state[k].shape[1]) for k in state if (m := _TORGB.fullmatch(k))
    }
    try:
        expected_levels = set(level_channels(resolution, 1, 1))
    except ValueError as exc:
        raise WeightsError(f"MI-GAN checkpoint: {exc}") from None
    if set(channels) != expected_levels:
        raise WeightsError(
            f"MI-GAN checkpoint: synthesis levels {sorted(channels)} do not match resolution "
            f"{resolution}"
        )
    channel_max = max(channels.values())
    channel_base = max(c * res for res, c in channels.items())
    if level_channels(resolution, channel_base, channel_max) != channels:
        raise WeightsError(f"MI-GAN checkpoint: channels per level {channels} fit no base/max")
    return {"resolution": resolution, "channel_base": channel_base, "channel_max": channel_max}


def convert_migan(state: Mapping[str, Tensor]) -> Converted:
    """A MI-GAN generator state dict -> (state, ``migan``, config).

    Keys stay as they are, but the ``*.filter_const`` buffers: each must be the
    zero-insertion pattern of its size (checked) and is dropped, since pconv computes
    it for every input size. Resolution and channels come from the shapes.
    """
    config = _channels_config(state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith(".filter_const"):
            size = value.shape[-1]
            if value.shape != (1, 1, size, size) or not torch.equal(
                value.float(), filter_pattern(size)
            ):
                raise WeightsError(f"MI-GAN checkpoint: {key} is not the upsampling pattern")
            continue
        out[key] = value
    return out, FAMILY, {**config, "pipeline": "demo"}


register_converter("migan", detect=_is_migan, convert=convert_migan)
