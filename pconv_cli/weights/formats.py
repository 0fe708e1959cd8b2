"""Reading weights files of any supported format; the registry of foreign-format converters.

A converter knows one foreign layout: ``detect(state) -> bool`` looks at a state
dict's keys, ``convert(state) -> (state, family, config options)`` returns it in
pconv's conventions (the family's key names, RGB order, pconv's layer
arithmetic; training modules under ``<name>.`` prefixes). Converters register
with :func:`register_converter`; the first whose ``detect`` accepts a state dict
converts it.

A local file is recognised by its contents, not its name: a pconv safetensors
checkpoint (metadata), or a ``torch.save`` file / safetensors file without pconv
metadata whose keys a converter detects. ``.pth`` files are read with
``torch.load(weights_only=True)``: a pickle that would import or call anything
but tensors, plain containers and numpy scalars/arrays is refused.

Layouts that are more than one tensor file (a folder, an archive of a release, a
pickle that also holds configuration objects) are *readers*:
:func:`register_reader` ``(name, detect=path -> bool, read=path -> Weights)``; the
first reader whose ``detect`` accepts a path (file or folder) reads it, before the
rules above. This module imports the checkpoint module lazily, so a model family's
package may register converters and readers while ``pconv_cli.weights`` is still
being imported.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pconv_cli.models.registry import ModelError, load_plugins, make_config
from pconv_cli.weights.errors import WeightsError

if TYPE_CHECKING:
    from pconv_cli.weights.checkpoint import Weights

# pconv_cli.weights.checkpoint is imported inside the functions: family modules import
# this one to register their converters and readers, and must not need the rest.

__all__ = [
    "Converter",
    "FileReader",
    "converter_modules",
    "count_levels",
    "detect_format",
    "find_reader",
    "get_converter",
    "list_converters",
    "read_state_file",
    "read_weights_file",
    "register_converter",
    "register_reader",
]

Converted = tuple[dict[str, Tensor], str, Mapping[str, Any]]
"""(state dict in pconv's conventions, family name, config options)."""


@dataclass(frozen=True)
class Converter:
    """A foreign checkpoint layout: ``detect`` it, ``convert`` it; ``note`` warns about guesses."""

    name: str
    detect: Callable[[Mapping[str, Tensor]], bool]
    convert: Callable[[dict[str, Tensor]], Converted]
    note: str | None = None


_CONVERTERS: dict[str, Converter] = {}


def register_converter(
    name: str,
    *,
    detect: Callable[[Mapping[str, Tensor]], bool],
    convert: Callable[[dict[str, Tensor]], Converted],
    note: str | None = None,
) -> Converter:
    """Register (or replace) converter ``name``; detection tries converters in order."""
    converter = Converter(name, detect, convert, note)
    _CONVERTERS[name] = converter
    return converter


def _converters() -> dict[str, Converter]:
    """The registered converters (the families' and plugins' register on first use), in
    detection order."""
    load_plugins()  # pconv's families, then installed plugins
    return _CONVERTERS


def list_converters() -> list[str]:
    """Names of the registered converters, in detection order."""
    return list(_converters())


def get_converter(name: str) -> Converter:
    """The converter called ``name`` (a WeightsError if there is none)."""
    try:
        return _converters()[name]
    except KeyError:
        known = ", ".join(_converters())
        raise WeightsError(f"unknown weights format {name!r}; known: {known}") from None


def converter_modules() -> list[str]:
    """Modules outside pconv that registered converters (worker processes import them)."""
    modules = {c.convert.__module__ for c in _CONVERTERS.values()}
    return sorted(m for m in modules if not m.startswith("pconv_cli."))


@dataclass(frozen=True)
class FileReader:
    """A weights layout read from a path (file or folder) as a whole: ``detect(path)`` says
    whether it is one (cheaply, without loading tensors), ``read(path)`` returns its
    :class:`~pconv_cli.weights.checkpoint.Weights` (``metadata["source_format"]`` set)."""

    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], Weights]


_READERS: dict[str, FileReader] = {}


def register_reader(
    name: str, *, detect: Callable[[Path], bool], read: Callable[[Path], Weights]
) -> FileReader:
    """Register (or replace) reader ``name``; readers are tried in order, before converters."""
    reader = FileReader(name, detect, read)
    _READERS[name] = reader
    return reader


def find_reader(path: str | os.PathLike[str]) -> FileReader | None:
    """The first registered reader that recognises ``path`` (a file or a folder), or None."""
    path = Path(path)
    load_plugins()  # families and plugins register their readers
    for reader in _READERS.values():
        if reader.detect(path):
            return reader
    return None


def count_levels(state: Mapping[str, Tensor], pattern: str) -> int:
    """How many distinct values the first group of ``pattern`` takes over ``state``'s keys
    (e.g. the U-Net levels from ``encoder\\.enc(\\d+)\\.conv\\.weight``)."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.fullmatch(k))})


def detect_format(state: Mapping[str, Tensor]) -> str | None:
    """The name of the first converter that recognises ``state``'s keys, or None."""
    for converter in _converters().values():
        if converter.detect(state):
            return converter.name
    return None


def _sniff(path: Path) -> str:
    """``"zip"`` / ``"pickle"`` (torch.save) or ``"safetensors"``, from the first bytes."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if not head:
        raise WeightsError(f"{path} is empty")
    raise WeightsError(f"{path} is not a checkpoint (neither a torch.save file nor safetensors)")


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _numpy_data_globals() -> list:
    """numpy scalars, dtypes and arrays: plain data that training metadata often holds.

    Allowlisted for ``weights_only`` loading under numpy 2 and numpy 1 names; none of
    them can call anything else.
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.dtype, np.ndarray, core.scalar, core._reconstruct]
    allowed += [(core.scalar, "numpy.core.multiarray.scalar")]
    allowed += [(core._reconstruct, "numpy.core.multiarray._reconstruct")]
    kinds = (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64)
    kinds += (np.float16, np.float32, np.float64)
    allowed += [type(np.dtype(kind)) for kind in kinds]
    return allowed


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors for unsafe or broken files."""
    try:
        with torch.serialization.safe_globals(_numpy_data_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL_RE.search(str(exc))
        if found or "global" in str(exc).lower():
            what = found.group(1) if found else "a non-tensor object"
            raise WeightsError(
                f"refused to load {path}: its pickle would import {what}, which could run "
                "code; pconv only loads tensors and plain containers (torch.load "
                "weights_only=True). Convert it in a trusted environment if you trust its source"
            ) from None
        raise WeightsError(f"{path} is truncated or corrupt ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"{path} is truncated or corrupt ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].split(". ")[0] if text else type(exc).__name__


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """The tensor dict inside a torch.save file: MMagic's ``state_dict``, naoto0804's
    ``model``, or the top level; a DataParallel ``module.`` prefix is removed."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            obj = inner
            break
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not state:
        raise WeightsError(f"{path} holds no tensors")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def read_state_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The tensors of a weights file (torch.save, read safely, or safetensors), unconverted.

    A ``state_dict``/``model`` wrapper and a DataParallel ``module.`` prefix are removed.
    """
    from pconv_cli.weights.checkpoint import read_safetensors

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if _sniff(path) == "safetensors":
        return read_safetensors(path)[0]
    return _unwrap_state_dict(_torch_load(path), path)


def convert_state(state: dict[str, Tensor], format_name: str, *, source: str) -> Weights:
    """Convert ``state`` with converter ``format_name`` into :class:`Weights`."""
    from pconv_cli.weights.checkpoint import Weights

    converter = get_converter(format_name)
    converted, family, options = converter.convert(state)
    try:
        config = make_config(family, options)
    except ModelError as exc:
        raise WeightsError(f"{source}: {exc}") from None
    metadata = {"source_format": converter.name}
    if converter.note:
        metadata["assumed"] = converter.note
    return Weights(converted, family, config, metadata)


def read_weights_file(path: str | os.PathLike[str]) -> Weights:
    """The :class:`Weights` of a file in any supported format, in pconv's conventions.

    The format is recognised by the contents (see the module docstring);
    ``metadata["source_format"]`` names it. A folder is read when a registered reader
    recognises it.
    """
    from pconv_cli.weights.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, read_safetensors

    path = Path(path)
    reader = find_reader(path) if path.exists() else None
    if reader is not None:
        return reader.read(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if _sniff(path) == "safetensors":
        state, metadata = read_safetensors(path)
        if metadata.get("format") == CHECKPOINT_FORMAT:
            return read_checkpoint(path)
    else:
        state = _unwrap_state_dict(_torch_load(path), path)
    kind = detect_format(state)
    if kind is None:
        first = ", ".join(list(state)[:3])
        raise WeightsError(
            f"{path}: not a recognised checkpoint (no pconv metadata and no known key layout "
            f"of {', '.join(list_converters())}; first keys: {first})"
        )
    return convert_state(state, kind, source=str(path))
