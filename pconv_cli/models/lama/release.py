"""LaMa's published weights as users download them: the release folder, its ``.ckpt``, its zip.

LaMa's ``bin/make_checkpoint.py`` leaves a folder ``big-lama/`` with ``config.yaml``
(the training configuration) and ``models/best.ckpt``: a PyTorch Lightning 1.2
checkpoint whose ``state_dict`` holds ``generator.*``, ``discriminator.*`` (when kept)
and evaluator/loss tensors, and whose ``hyper_parameters`` is a pickled OmegaConf
``DictConfig`` (no optimizer states). ``big-lama.zip`` holds that folder.

Reading never runs code from the pickle: it goes through
:func:`pconv_cli.weights.safe_pickle.load_restricted`, with OmegaConf and Lightning
objects as inert stand-ins; any other class is refused. The generator's options come
from ``config.yaml`` (beside the ``.ckpt`` or in the folder above it: where
``bin/predict.py`` reads them), else from the pickled hyper-parameters, else from the
tensors' shapes (the output activation is then assumed to be big-lama's sigmoid).

Accepted by ``--weights``: the folder (or a folder holding it), the ``.ckpt`` alone,
the zip as distributed, and a bare state dict with LaMa's keys (``generator.model.*``
or ``model.*``; converter ``lama``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pconv_cli.models.lama.config_yaml import parse_yaml, resolve
from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import register_converter, register_reader

if TYPE_CHECKING:
    from torch import Tensor

    from pconv_cli.weights.checkpoint import Weights

__all__ = [
    "INERT_NAMESPACES",
    "SOURCE_FORMAT",
    "convert_lama_state",
    "options_from_config",
    "options_from_shapes",
    "read_release",
]

SOURCE_FORMAT = "lama"
INERT_NAMESPACES = (
    "omegaconf", "pytorch_lightning", "lightning_fabric", "typing.Any",
    "collections.defaultdict",
)  # fmt: skip
"""What a LaMa/Lightning checkpoint pickles besides tensors: read as inert stand-ins."""

_FIRST_KEY = "model.1.ffc.convl2l.weight"
_GENERATOR_KEYS = frozenset({"kind", "input_nc", "output_nc", "ngf", "n_downsampling", "n_blocks",
                             "add_out_act", "max_features", "init_conv_kwargs",
                             "downsample_conv_kwargs", "resnet_conv_kwargs", "padding_type"})
_CONV_KEYS = frozenset({"ratio_gin", "ratio_gout", "enable_lfu"})
_ACTIVATIONS = {"sigmoid": "sigmoid", "tanh": "tanh", True: "tanh", False: "none", None: "none"}


# --------------------------------------------------------------------------- options


def options_from_config(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``lama`` config options from LaMa's training configuration (``generator`` and
    ``discriminator`` sections, interpolations resolved); LaMa's constructor defaults fill
    what a section leaves out. Generators pconv cannot build are a WeightsError."""
    generator = config.get("generator")
    if not isinstance(generator, Mapping):
        raise WeightsError(f"{source}: its configuration has no generator section")
    if generator.get("kind", "ffc_resnet") != "ffc_resnet":
        raise WeightsError(
            f"{source}: generator kind {generator.get('kind')!r} is not LaMa's FFC ResNet "
            "(ffc_resnet), the one pconv runs"
        )
    unknown = sorted(set(generator) - _GENERATOR_KEYS)
    if unknown or generator.get("padding_type", "reflect") != "reflect":
        raise WeightsError(f"{source}: unsupported generator options {unknown or 'padding_type'}")
    if (generator.get("input_nc", 4), generator.get("output_nc", 3)) != (4, 3):
        raise WeightsError(f"{source}: generator must take 4 channels and give 3")
    groups = {k: generator.get(k) or {} for k in
              ("init_conv_kwargs", "downsample_conv_kwargs", "resnet_conv_kwargs")}  # fmt: skip
    for name, group in groups.items():
        extra = sorted(set(group) - _CONV_KEYS)
        if extra:
            raise WeightsError(f"{source}: unsupported generator.{name} options {extra}")
    for name in ("init_conv_kwargs", "downsample_conv_kwargs"):
        if groups[name].get("ratio_gin", 0) or groups[name].get("ratio_gout", 0):
            raise WeightsError(f"{source}: generator.{name} with global channels is not supported")
    resnet = groups["resnet_conv_kwargs"]
    ratio = resnet.get("ratio_gin", 0)
    if resnet.get("ratio_gout", ratio) != ratio:
        raise WeightsError(f"{source}: resnet ratio_gin and ratio_gout differ")
    activation = generator.get("add_out_act", True)
    if activation not in _ACTIVATIONS:
        raise WeightsError(f"{source}: unsupported add_out_act {activation!r}")
    options = {
        "ngf": generator.get("ngf", 64),
        "n_downsampling": generator.get("n_downsampling", 3),
        "n_blocks": generator.get("n_blocks", 9),
        "max_features": generator.get("max_features", 1024),
        "ratio_g": ratio,
        "enable_lfu": bool(resnet.get("enable_lfu", True)) if ratio else False,
        "out_act": _ACTIVATIONS[activation],
    }
    discriminator = config.get("discriminator")
    if isinstance(discriminator, Mapping) and discriminator.get("kind") == "pix2pixhd_nlayer":
        options["ndf"] = discriminator.get("ndf", 64)
        options["disc_layers"] = discriminator.get("n_layers", 3)
    return options


def _count(state: Mapping[str, Any], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state if (m := regex.fullmatch(key))})


def options_from_shapes(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """``lama`` options read off a generator state dict (``model.*`` keys, and
    ``discriminator.*``); ``out_act`` cannot be seen there and is big-lama's sigmoid."""
    ngf = state[_FIRST_KEY].shape[0]
    down = [int(m.group(1)) for key in state
            if (m := re.fullmatch(r"model\.(\d+)\.ffc\.convl2l\.weight", key))]  # fmt: skip
    n_down = len(down) - 1
    last = f"model.{1 + n_down}.ffc"
    local = state[f"{last}.convl2l.weight"].shape[0]
    spectral = state[f"{last}.convl2g.weight"].shape[0] if f"{last}.convl2g.weight" in state else 0
    bottleneck = local + spectral
    options: dict[str, Any] = {
        "ngf": ngf,
        "n_downsampling": n_down,
        "n_blocks": _count(state, r"model\.(\d+)\.conv1\.ffc\..*"),
        "max_features": 1024 if bottleneck == min(1024, ngf * 2**n_down) else bottleneck,
        "ratio_g": spectral / bottleneck,
        "enable_lfu": any(".lfu." in key for key in state),
        "out_act": "sigmoid",
    }
    if "discriminator.model0.0.weight" in state:
        options["ndf"] = state["discriminator.model0.0.weight"].shape[0]
        options["disc_layers"] = _count(state, r"discriminator\.model(\d+)\..*") - 2
    return options


# --------------------------------------------------------------------------- tensors


def convert_lama_state(
    state: Mapping[str, Tensor], *, discriminator: bool = True
) -> dict[str, Tensor]:
    """``generator.*`` without the prefix and ``discriminator.*`` as they are; evaluator,
    loss and other tensors dropped. A state dict already without ``generator.`` is kept."""
    if not any(key.startswith("generator.") for key in state):
        return {k: v for k, v in state.items() if discriminator or not k.startswith("discr")}
    out = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
    if discriminator:
        out.update({k: v for k, v in state.items() if k.startswith("discriminator.")})
    return out


def _is_lama_state(state: Mapping[str, Tensor]) -> bool:
    return f"generator.{_FIRST_KEY}" in state or _FIRST_KEY in state


def _convert(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str, dict[str, Any]]:
    converted = convert_lama_state(state)
    return converted, "lama", options_from_shapes(converted)


# --------------------------------------------------------------------------- the release


def _is_torch_zip(names: list[str]) -> bool:
    return any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names)


def _release_members(names: list[str]) -> tuple[str, str | None] | None:
    """(``.ckpt`` member, ``config.yaml`` member or None) of a release zip, or None."""
    checkpoints = sorted(n for n in names if re.fullmatch(r"(.*/)?models/[^/]+\.ckpt", n))
    if not checkpoints:
        return None
    best = [n for n in checkpoints if n.endswith("/best.ckpt") or n == "models/best.ckpt"]
    member = (best or checkpoints)[0]
    config = member.rsplit("models/", 1)[0] + "config.yaml"
    return member, config if config in names else None


def _folder_checkpoint(folder: Path) -> Path | None:
    """``models/best.ckpt`` (or the only ``models/*.ckpt``) of a release folder, also when the
    folder is the one the zip was unpacked into (it holds the release folder)."""
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        models = candidate / "models"
        if (models / "best.ckpt").is_file():
            return models / "best.ckpt"
        found = sorted(models.glob("*.ckpt")) if models.is_dir() else []
        if len(found) == 1:
            return found[0]
    return None


def _is_lama_pickle(path: Path) -> bool:
    """A torch.save zip whose pickle names LaMa's generator keys (a LaMa ``.ckpt``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            return bool(pickles) and f"generator.{_FIRST_KEY}".encode() in archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def detect_release(path: Path) -> bool:
    """A LaMa release folder, its zip, or a LaMa Lightning ``.ckpt``."""
    if path.is_dir():
        return _folder_checkpoint(path) is not None
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    if _is_torch_zip(names):
        return _is_lama_pickle(path)
    return _release_members(names) is not None


def _load_checkpoint(file: Path, source: str) -> Mapping[str, Any]:
    import pickle

    from pconv_cli.weights.safe_pickle import RefusedGlobal, load_restricted

    try:
        checkpoint = load_restricted(file, inert=INERT_NAMESPACES)
    except RefusedGlobal as exc:
        raise WeightsError(
            f"refused to load {source}: its pickle would import {exc.name}, which could run "
            "code; a LaMa checkpoint holds tensors and OmegaConf/Lightning objects only"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{source} is truncated or corrupt ({exc})") from None
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"{source} holds a {type(checkpoint).__name__}, not a checkpoint")
    if not isinstance(checkpoint.get("state_dict"), Mapping):  # a bare state dict
        checkpoint = {"state_dict": checkpoint}
    return checkpoint


def _plain(obj: Any) -> Any:
    """OmegaConf stand-ins (containers ``_content``, nodes ``_val``) as plain dicts and lists."""
    from pconv_cli.weights.safe_pickle import Inert, inert_state

    if isinstance(obj, Inert):
        for key in ("_content", "_val"):
            if isinstance(obj.state, dict) and key in obj.state:
                return _plain(inert_state(obj, key))
        return None
    if isinstance(obj, Mapping):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_plain(value) for value in obj]
    return obj


def _config_text(config: Path | None) -> str | None:
    return config.read_text(encoding="utf-8") if config is not None else None


def _weights(
    checkpoint: Mapping[str, Any], config_text: str | None, source: str, config_name: str
) -> Weights:
    from torch import Tensor

    from pconv_cli.models.registry import ModelError, make_config
    from pconv_cli.weights.checkpoint import Weights

    state = {k: v for k, v in checkpoint["state_dict"].items() if isinstance(v, Tensor)}
    if not _is_lama_state(state):
        raise WeightsError(f"{source}: no LaMa generator in its state_dict (generator.model.*)")
    if config_text is not None:
        try:
            tree = resolve(parse_yaml(config_text))
        except ValueError as exc:
            raise WeightsError(f"{config_name}: {exc}") from None
        options, origin = options_from_config(tree, config_name), "config.yaml"
    elif isinstance(_plain(checkpoint.get("hyper_parameters")), Mapping):
        tree = resolve(_plain(checkpoint["hyper_parameters"]))
        origin = "hyper_parameters"
        options = options_from_config(tree, f"{source} (hyper_parameters)")
    else:
        options, origin = options_from_shapes(convert_lama_state(state)), "tensor shapes"
    tensors = convert_lama_state(state, discriminator="ndf" in options)
    try:
        config = make_config("lama", options)
    except ModelError as exc:
        raise WeightsError(f"{source}: {exc}") from None
    metadata = {"source_format": SOURCE_FORMAT, "config_from": origin}
    if origin == "tensor shapes":
        metadata["assumed"] = "out_act=sigmoid (no config.yaml or hyper-parameters)"
    return Weights(tensors, "lama", config, metadata)


def read_release(path: Path) -> Weights:
    """The :class:`~pconv_cli.weights.checkpoint.Weights` of a LaMa release (see the module
    docstring): a folder, a zip, or a ``.ckpt`` (config.yaml beside or above it)."""
    path = Path(path)
    if path.is_dir():
        ckpt = _folder_checkpoint(path)
        if ckpt is None:
            raise WeightsError(f"{path}: no models/*.ckpt (not a LaMa release folder)")
        config = ckpt.parent.parent / "config.yaml"
        config = config if config.is_file() else None
        return _weights(_load_checkpoint(ckpt, str(ckpt)), _config_text(config), str(path),
                        str(config))  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if _is_torch_zip(names):
            beside = [p / "config.yaml" for p in (path.parent, path.parent.parent)]
            config = next((p for p in beside if p.is_file()), None)
            return _weights(_load_checkpoint(path, str(path)), _config_text(config), str(path),
                            str(config))  # fmt: skip
        members = _release_members(names)
        if members is None:
            raise WeightsError(f"{path}: no models/*.ckpt inside (not a LaMa release zip)")
        member, config_member = members
        text = archive.read(config_member).decode("utf-8") if config_member else None
        with tempfile.TemporaryDirectory(prefix="pconv-lama-") as tmp:
            file = Path(tmp) / "best.ckpt"
            with archive.open(member) as src, file.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            checkpoint = _load_checkpoint(file, f"{path}:{member}")
    return _weights(checkpoint, text, str(path), f"{path}:{config_member}")


register_reader(SOURCE_FORMAT, detect=detect_release, read=read_release)
register_converter(SOURCE_FORMAT, detect=_is_lama_state, convert=_convert,
                   note="out_act=sigmoid (no LaMa config in the file)")  # fmt: skip
