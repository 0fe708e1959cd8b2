"""pconv's checkpoint format: safetensors tensors plus JSON-able string metadata.

A checkpoint holds the model's ``net`` state dict (for the PConv U-Net MMagic's
generator key names without ``generator.``) and, under ``<name>.`` prefixes, the
state of the family's training modules (e.g. ``discriminator.*``), which
inference ignores and ``--init`` restores. Metadata (all strings):

- ``format`` = ``pconv``, ``format_version`` = ``2``;
- ``family``: the registry name (:mod:`pconv_cli.models`), ``config``: the
  family's config as JSON: everything the builder needs;
- whatever the writer adds (``step``, ``stage``, ``size``, ``source_format``...).

Version 1 files (pconv 0.1: ``arch`` = ``pconv``/``unet``, ``layers``, ``width``,
``upsampling``, ``normalization``) still load. safetensors cannot run code when
loaded, unlike a pickle.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pconv_cli.files import atomic_write
from pconv_cli.models.registry import (
    ModelError,
    config_from_json,
    config_to_json,
    get_family,
    make_config,
)
from pconv_cli.weights.errors import WeightsError

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "Weights",
    "check_state_dict",
    "load_state_dict_strict",
    "read_checkpoint",
    "read_safetensors",
    "save_checkpoint",
    "write_checkpoint",
    "write_safetensors",
]

CHECKPOINT_FORMAT = "pconv"
FORMAT_VERSION = "2"
_V1_KEYS = ("arch", "layers", "width", "upsampling", "normalization")


@dataclass
class Weights:
    """Weights in pconv's conventions, ready to build a model from.

    ``state``: the net's tensors plus ``<module>.``-prefixed tensors of training
    modules; ``family`` and ``config``: what to build; ``metadata``: strings about
    the file (``source_format``, ``source``, ``name``, ``step``...).
    """

    state: dict[str, Tensor]
    family: str
    config: Any
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def source_format(self) -> str:
        """The format the weights were read from (``pconv``, ``mmagic``, ...)."""
        return self.metadata.get("source_format", CHECKPOINT_FORMAT)

    def _prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in get_family(self.family).training_modules)

    def net_state(self) -> dict[str, Tensor]:
        """The tensors of the model's ``net`` (training modules left out)."""
        prefixes = self._prefixes()
        return {k: v for k, v in self.state.items() if not k.startswith(prefixes)}

    def module_state(self, name: str) -> dict[str, Tensor] | None:
        """The state dict of training module ``name``, or None if the file has none."""
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in self.state.items() if k.startswith(prefix)}
        return state or None


def write_checkpoint(
    path: str | os.PathLike[str],
    state: Mapping[str, Tensor],
    *,
    family: str,
    config: Any,
    **metadata: Any,
) -> Path:
    """Write ``state`` with pconv metadata as safetensors, atomically.

    Extra ``metadata`` values are stored as strings (non-strings as JSON). The same
    tensors and metadata always give the same bytes (see :func:`write_safetensors`).
    """
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "family": get_family(family).name,
        "config": config_to_json(config),
    }
    for key, value in metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return atomic_write(path, lambda tmp: write_safetensors(tmp, tensors, meta))


_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def write_safetensors(
    path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]
) -> None:
    """Write a safetensors file whose bytes depend only on its contents.

    The ``safetensors`` library writes the metadata in a per-process random order
    (a Rust hash map), so two identical runs gave files with different sha256. Here
    the metadata is sorted, tensors are laid out by element size (largest first, so
    every tensor is aligned) then name, and the header is padded to 8 bytes, as the
    format describes; the library reads the result as usual.
    """
    order = sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in order:
        tensor = tensors[name]
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with Path(path).open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for name in order:
            tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
            handle.write(tensor.view(torch.uint8).numpy().tobytes())


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    extra_modules: Mapping[str, nn.Module] | None = None,
    **metadata: Any,
) -> Path:
    """Write a registry-built ``model`` (its ``net``, ``family`` and ``config``) atomically.

    ``extra_modules`` (e.g. ``{"discriminator": d}``) are stored under their
    names' prefixes; extra ``metadata`` as in :func:`write_checkpoint`.
    """
    state = dict(model.net.state_dict())
    for name, module in (extra_modules or {}).items():
        state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    return write_checkpoint(path, state, family=model.family, config=model.config, **metadata)


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of any safetensors file, on the CPU; errors are WeightsErrors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from None
    return state, metadata


def _family_and_config(path: Path, metadata: Mapping[str, str]) -> tuple[str, Any]:
    """(family, config) from version 2 metadata, or from version 1's ``arch`` + options."""
    try:
        if "family" in metadata:
            family = get_family(metadata["family"]).name
            return family, config_from_json(family, metadata.get("config", "{}"))
        missing = [k for k in _V1_KEYS if k not in metadata]
        if missing:
            raise WeightsError(f"{path} metadata lacks family (or {', '.join(missing)})")
        try:  # version 1's arch names are the registry's names or aliases (pconv, unet)
            family = get_family(metadata["arch"]).name
        except ModelError:
            raise WeightsError(
                f"{path}: unknown arch {metadata['arch']!r} in its metadata"
            ) from None
        options = {
            "layers": int(metadata["layers"]),
            "width": float(metadata["width"]),
            "upsampling": metadata["upsampling"],
            "normalization": metadata["normalization"],
        }
        return family, make_config(family, options)
    except (ModelError, ValueError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"{path}: bad metadata ({exc})") from None


def read_checkpoint(path: str | os.PathLike[str]) -> Weights:
    """The :class:`Weights` of a pconv safetensors checkpoint (version 1 or 2), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    state, metadata = read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} has no pconv metadata (format={metadata.get('format')!r})")
    family, config = _family_and_config(path, metadata)
    skip = {"format", "format_version", "family", "config", *_V1_KEYS}
    extra = {k: v for k, v in metadata.items() if k not in skip}
    return Weights(state, family, config, {**extra, "source_format": CHECKPOINT_FORMAT})


def check_state_dict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Raise a :class:`WeightsError` naming the first missing, misshapen or extra key."""
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


def load_state_dict_strict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names the first mismatching key and shape."""
    check_state_dict(model, state, source)
    model.load_state_dict(state)


def as_float32(value: Tensor) -> Tensor:
    """A checkpoint tensor as model data: floating tensors in float32, contiguous."""
    if value.is_floating_point() and value.dtype != torch.float32:
        value = value.float()
    return value.contiguous()
