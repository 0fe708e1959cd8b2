"""Weights: pconv's checkpoint format, the zoo of published weights, foreign-format converters.

- ``load_model(name_or_path, device=...)``: a ready model for a zoo name, a pconv
  checkpoint or any supported foreign file (MMagic, naoto0804, a bare state dict);
- ``save_checkpoint(path, model, ...)``: safetensors with ``family`` + ``config``;
- ``list_weights()``: the zoo; ``open_weights(spec)``: the :class:`Weights` behind
  a name or file, before a model is built;
- ``register_converter(name, detect=..., convert=...)``: teach pconv a new format
  (pconv's own converters live in their family's folder and register with it).
"""

from pconv_cli.weights.checkpoint import (
    Weights,
    load_state_dict_strict,
    read_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import (
    detect_format,
    list_converters,
    read_weights_file,
    register_converter,
)
from pconv_cli.weights.hub import cached_weights_path, fetch_weights
from pconv_cli.weights.loading import expect_kind, load_model, model_from_weights, open_weights
from pconv_cli.weights.zoo import DEFAULT_WEIGHTS, ZOO, WeightsEntry, get_weights, list_weights

__all__ = [
    "DEFAULT_WEIGHTS",
    "ZOO",
    "Weights",
    "WeightsEntry",
    "WeightsError",
    "cached_weights_path",
    "detect_format",
    "expect_kind",
    "fetch_weights",
    "get_weights",
    "list_converters",
    "list_weights",
    "load_model",
    "load_state_dict_strict",
    "model_from_weights",
    "open_weights",
    "read_checkpoint",
    "read_weights_file",
    "register_converter",
    "save_checkpoint",
    "write_checkpoint",
]
