"""From ``--weights NAME|PATH`` to a ready model.

:func:`open_weights` resolves a zoo name (downloaded once into torch.hub's cache)
or a file in any supported format into :class:`~pconv_cli.weights.checkpoint.Weights`;
:func:`model_from_weights` builds the family's model and loads them;
:func:`load_model` does both. Models come back in eval mode and take RGB images
in [0, 1] and masks with 1 = valid (see :mod:`pconv_cli.models.inpainting`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pconv_cli.models.registry import ModelError, get_family, make_config
from pconv_cli.weights.checkpoint import Weights, as_float32, check_state_dict
from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import find_reader, read_state_file, read_weights_file
from pconv_cli.weights.hub import fetch_weights
from pconv_cli.weights.zoo import ZOO, WeightsEntry, resolve_weights

__all__ = ["expect_kind", "load_model", "model_from_weights", "open_weights"]


def open_weights(spec: str, *, progress: bool = True) -> Weights:
    """The weights ``--weights SPEC`` names: a zoo name, a file path, or a folder that a
    registered reader recognises (e.g. a release unpacked as its publisher ships it).

    A file path wins over a zoo name of the same spelling. ``metadata`` gains
    ``source`` (the file read) and, for a zoo entry, ``name``.
    """
    path = Path(spec).expanduser()
    entry = None if path.is_file() else resolve_weights(spec)
    if entry is not None:
        file = fetch_weights(entry, progress=progress)
        weights = _read_entry_file(entry, file)
        if weights.source_format != entry.source_format:
            raise WeightsError(
                f"{file} is a {weights.source_format} checkpoint, {entry.name} should be "
                f"{entry.source_format}; delete it and download {entry.url} again"
            )
        weights.metadata.update(name=entry.name, source=str(file))
        return weights
    if path.is_file() or (path.is_dir() and find_reader(path) is not None):
        weights = read_weights_file(path)
        weights.metadata["source"] = str(path)
        return weights
    if path.is_dir():
        found = sorted(
            p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".pt", ".ckpt")
        )
        inside = f"; it holds {', '.join(found[:6])}: pass one of them" if found else ""
        raise WeightsError(f"--weights {spec} is a folder, not a weights file{inside}")
    if path.suffix or len(path.parts) > 1:
        raise WeightsError(f"weights file not found: {path}")
    raise WeightsError(
        f"--weights {spec}: no such file and no such published weights "
        f"(known: {', '.join(ZOO)}; see 'pconv weights list')"
    )


def _read_entry_file(entry: WeightsEntry, file: Path) -> Weights:
    """A zoo entry's file: a format a converter reads, or (``state-dict``) a bare state dict
    of the entry's family and config (e.g. torchvision's classifier weights)."""
    if entry.source_format != "state-dict":
        return read_weights_file(file)
    try:
        config = make_config(entry.family, entry.config)
    except ModelError as exc:
        raise exc.prefixed(entry.name) from None
    return Weights(read_state_file(file), entry.family, config, {"source_format": "state-dict"})


def expect_kind(weights: Weights, kind: str, what: str = "--weights") -> Weights:
    """``weights`` if their family is of ``kind`` (``inpainting``, ``classification``);
    else a :class:`WeightsError` saying which family the file holds (before any model
    is built, so a classifier given to ``inpaint`` is one line, not a TypeError)."""
    family = get_family(weights.family)
    if family.kind != kind:
        source = weights.metadata.get("name") or weights.metadata.get("source", "")
        wanted = _KIND_NAMES.get(kind, f"a {kind} model")
        raise WeightsError(
            f"{what} {source} holds a {family.name} model ({family.kind}), not {wanted}"
        )
    return weights


_KIND_NAMES = {"inpainting": "an inpainting model", "classification": "a classifier"}


def model_from_weights(weights: Weights, *, device: str | torch.device = "cpu") -> nn.Module:
    """The model ``weights`` describe, with their tensors loaded, in eval mode on ``device``.

    The model is built on the meta device and takes the checkpoint's tensors as
    its parameters (float32, contiguous), so no random initialisation runs and
    nothing is copied twice. Training modules in the file are ignored.
    """
    family = get_family(weights.family)
    source = weights.metadata.get("source", weights.family)
    state = weights.net_state()
    try:
        with torch.device("meta"):
            model = family.build(weights.config)
    except (AttributeError, NotImplementedError, RuntimeError):
        # some builders initialise with ops the meta device cannot run (in a fresh
        # process, torch's meta decompositions of normal_ import torch._dynamo half-way)
        model = family.build(weights.config)
    check_state_dict(model.net, state, source)
    model.net.load_state_dict({k: as_float32(v) for k, v in state.items()}, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # a buffer the state dict cannot fill: initialise for real, then load
        model = family.build(weights.config)
        model.net.load_state_dict(state)
    return model.to(device).eval()


def load_model(spec: str, device: str | torch.device = "cpu") -> nn.Module:
    """``--weights SPEC`` (zoo name or path, any supported format) -> model in eval mode."""
    return model_from_weights(open_weights(spec), device=device)
