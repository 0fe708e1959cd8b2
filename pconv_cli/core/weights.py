"""Model weights: pconv's checkpoint format and loading.

A pconv checkpoint is a safetensors file holding the network's ``state_dict``
(MMagic's generator key names without ``generator.``) and string metadata:
``format`` = ``pconv``, ``arch``, ``layers``, ``width``, ``upsampling``,
``normalization``, plus whatever the writer adds (``step``, ``stage``, ``size``...).
safetensors cannot run code when loaded, unlike a pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pconv_cli.core.files import atomic_write
from pconv_cli.core.unet import InpaintingModel, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "WeightsError",
    "load_checkpoint",
    "load_state_dict_strict",
    "model_metadata",
    "read_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "pconv"
_ARCH_KEYS = ("arch", "layers", "width", "upsampling", "normalization")


class WeightsError(ValueError):
    """A weights file that cannot be used; the message is one line for the CLI."""


def model_metadata(model: InpaintingModel) -> dict[str, str]:
    """What it takes to rebuild ``model``: arch, layers, width, upsampling, normalization."""
    net = model.net
    arch = "pconv" if type(net).__name__ == "PConvUNet" else "unet"
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "layers": str(net.layers),
        "width": repr(float(net.width)),
        "upsampling": net.upsampling,
        "normalization": model.normalization,
    }


def save_checkpoint(path: str | os.PathLike[str], model: InpaintingModel, **metadata: Any) -> Path:
    """Write ``model``'s weights and metadata as safetensors, atomically.

    Extra ``metadata`` values are stored as strings (non-strings as JSON).
    """
    from safetensors.torch import save_file

    meta = model_metadata(model)
    for key, value in metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    state = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(state_dict, metadata) of a pconv safetensors checkpoint, on CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} has no pconv metadata (format={metadata.get('format')!r})")
    missing = [k for k in _ARCH_KEYS if k not in metadata]
    if missing:
        raise WeightsError(f"{path} metadata lacks {', '.join(missing)}")
    return state, metadata


def load_state_dict_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names the first mismatching key and shape."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise WeightsError(f"{source}: missing key {key} (expected shape {tuple(value.shape)})")
        if tuple(state[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(value.shape)}"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise WeightsError(f"{source}: unexpected key {extra[0]} (wrong architecture?)")
    model.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[InpaintingModel, dict[str, str]]:
    """Rebuild the model a pconv checkpoint describes and load its weights (eval mode)."""
    state, metadata = read_checkpoint(path)
    try:
        model = build_model(
            metadata["arch"],
            layers=int(metadata["layers"]),
            width=float(metadata["width"]),
            upsampling=metadata["upsampling"],
            normalization=metadata["normalization"],
        )
    except ValueError as exc:
        raise WeightsError(f"{path}: bad metadata ({exc})") from None
    load_state_dict_strict(model.net, state, str(path))
    return model.to(device).eval(), metadata
