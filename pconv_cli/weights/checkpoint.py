"""Model weights: pconv's checkpoint format, the registry of published weights, converters.

A pconv checkpoint is a safetensors file holding the network's ``state_dict``
(MMagic's generator key names without ``generator.``) and string metadata:
``format`` = ``pconv``, ``arch``, ``layers``, ``width``, ``upsampling``,
``normalization``, plus whatever the writer adds (``step``, ``stage``, ``size``...).
safetensors cannot run code when loaded, unlike a pickle.

Published weights (:data:`REGISTRY`, in the spirit of torchvision's weights enums)
are downloaded into torch.hub's cache (``torch.hub.get_dir()/checkpoints``) with
their sha256 prefix checked, then converted to pconv's conventions:

- state dict keys of :class:`~pconv_cli.models.pconv_unet.PConvUNet`;
- RGB channel order (MMagic's nets were trained on BGR images);
- pconv's partial conv ``W^T(X*M) * sum(1)/sum(M) + b`` (naoto0804's layer has no
  ``sum(1)`` factor, so its weights are divided by ``C_in*k*k``);
- the input normalisation the weights expect, recorded as ``normalization``
  (MMagic: ``minus_one_one``, naoto0804: ``imagenet``).

A local file in any supported format is recognised by its contents, not its name:
pconv safetensors (metadata), MMagic ``.pth`` (``state_dict`` with ``generator.``
keys), naoto0804 ``.pth`` (``enc_1.conv.input_conv.weight``...) or a bare pconv
state dict. ``.pth`` files are read with ``torch.load(weights_only=True)``: a
pickle that would import or call anything but tensors, plain containers and
numpy scalars/arrays is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pconv_cli.files import atomic_write
from pconv_cli.models.pconv_unet import InpaintingModel, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "REGISTRY",
    "SOURCE_FORMATS",
    "WeightsEntry",
    "WeightsError",
    "cached_weights_path",
    "convert_mmagic",
    "convert_naoto0804",
    "detect_format",
    "fetch_weights",
    "get_weights",
    "list_weights",
    "load_checkpoint",
    "load_model",
    "load_state_dict_strict",
    "model_from_weights",
    "model_metadata",
    "read_checkpoint",
    "read_weights_file",
    "resolve_weights",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "pconv"
SOURCE_FORMATS = ("pconv", "mmagic", "naoto0804")
_ARCH_KEYS = ("arch", "layers", "width", "upsampling", "normalization")
_HASH_CHUNK = 1 << 22


class WeightsError(ValueError):
    """A weights file that cannot be used; the message is one line for the CLI."""


# --------------------------------------------------------------------------- registry

_PCONV_PAPER = (
    "Liu, Reda, Shih, Wang, Tao, Catanzaro: Image Inpainting for Irregular Holes "
    "Using Partial Convolutions, ECCV 2018"
)
_MMAGIC_CITATION = (
    f"{_PCONV_PAPER}; MMagic (OpenMMLab Multimodal Advanced, Generative, and "
    "Intelligent Creation Toolbox), https://github.com/open-mmlab/mmagic"
)
_MMAGIC_BASE = "https://download.openmmlab.com/mmediting/inpainting/pconv/"


@dataclass(frozen=True)
class WeightsEntry:
    """One set of published weights: where to get it and what it is.

    ``sha256_prefix`` is the start of the file's sha256 (torch.hub's convention:
    the 8 hex digits in MMagic's file names); ``None`` means no hash is published
    and the download is not checked. ``colour_order`` and ``normalization``
    describe the *original* weights; after conversion every entry runs on RGB
    images in [0, 1] through :class:`~pconv_cli.models.pconv_unet.InpaintingModel`.
    ``metrics`` maps an evaluation set to the publisher's scores.
    """

    name: str
    url: str
    sha256_prefix: str | None
    source_format: str
    dataset: str
    description: str
    arch: str = "pconv"
    layers: int = 7
    width: float = 1.0
    upsampling: str = "nearest"
    train_size: int = 256
    colour_order: str = "rgb"
    normalization: str = "minus_one_one"
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    license: str = ""
    citation: str = _PCONV_PAPER
    homepage: str = ""

    @property
    def filename(self) -> str:
        """The file name in the hub cache: the URL's last component."""
        return self.url.rsplit("/", 1)[-1]


REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        WeightsEntry(
            name="mmagic-places",
            url=_MMAGIC_BASE + "pconv_256x256_stage2_4x2_places_20200619-1ffed0e8.pth",
            sha256_prefix="1ffed0e8",
            source_format="mmagic",
            dataset="Places365",
            description="MMagic's PConv U-Net, stage 2 (BN-frozen fine-tuning), Places365, 256x256",
            colour_order="bgr",
            normalization="minus_one_one",
            metrics={"places365-val": {"l1": 8.776, "psnr": 22.762, "ssim": 0.801}},
            license="Apache-2.0 (MMagic)",
            citation=_MMAGIC_CITATION,
            homepage="https://github.com/open-mmlab/mmagic/tree/main/configs/partial_conv",
        ),
        WeightsEntry(
            name="mmagic-celeba",
            url=_MMAGIC_BASE + "pconv_256x256_stage2_4x2_celeba_20200619-860f8b95.pth",
            sha256_prefix="860f8b95",
            source_format="mmagic",
            dataset="CelebA",
            description="MMagic's PConv U-Net, stage 2 (BN-frozen fine-tuning), CelebA, 256x256",
            colour_order="bgr",
            normalization="minus_one_one",
            metrics={"celeba-val": {"l1": 5.990, "psnr": 25.404, "ssim": 0.853}},
            license="Apache-2.0 (MMagic)",
            citation=_MMAGIC_CITATION,
            homepage="https://github.com/open-mmlab/mmagic/tree/main/configs/partial_conv",
        ),
        WeightsEntry(
            name="naoto0804-places2",
            # The README links the release page (tag v0.0.0); the asset is the
            # 1,000,000-iteration snapshot 1000000.pth. No hash is published.
            url=(
                "https://github.com/naoto0804/pytorch-inpainting-with-partial-conv/"
                "releases/download/v0.0.0/1000000.pth"
            ),
            sha256_prefix=None,
            source_format="naoto0804",
            dataset="Places2",
            description=(
                "naoto0804's unofficial re-implementation, 500k iterations + 500k BN-frozen "
                "fine-tuning on Places2 at 256x256 (quality not guaranteed by its author)"
            ),
            colour_order="rgb",
            normalization="imagenet",
            license="MIT (naoto0804/pytorch-inpainting-with-partial-conv)",
            citation=f"{_PCONV_PAPER}; https://github.com/naoto0804/pytorch-inpainting-with-partial-conv",
            homepage="https://github.com/naoto0804/pytorch-inpainting-with-partial-conv",
        ),
    )
}
"""Published weights by name; see :func:`get_weights`."""


def list_weights() -> list[WeightsEntry]:
    """Every registry entry, in registry order."""
    return list(REGISTRY.values())


def get_weights(name: str) -> WeightsEntry:
    """The registry entry called ``name``; an unknown name is a :class:`WeightsError`."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(
            f"unknown weights {name!r}; known: {', '.join(REGISTRY)} (or pass a file path)"
        ) from None


def cached_weights_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` lives in torch.hub's cache: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / entry.filename


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: Path, entry: WeightsEntry) -> None:
    if entry.sha256_prefix is None:
        return
    digest = _sha256(path)
    if not digest.startswith(entry.sha256_prefix):
        raise WeightsError(
            f"{path} does not match {entry.name}: sha256 {digest[:16]}..., expected "
            f"{entry.sha256_prefix}...; delete it and download {entry.url} again"
        )


def fetch_weights(entry: WeightsEntry, *, progress: bool = True) -> Path:
    """The local path of ``entry``'s file, downloading it into the hub cache if needed.

    The sha256 prefix is checked on download (torch.hub writes to a temp file and
    moves it into place only when the hash matches) and again for a file already
    in the cache, which may have been put there by hand. Offline, the error says
    where to download the file from and where to put it.
    """
    path = cached_weights_path(entry)
    if path.is_file():
        _check_hash(path, entry)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            entry.url, str(path), hash_prefix=entry.sha256_prefix, progress=progress
        )
    except RuntimeError as exc:
        if "hash" in str(exc):
            raise WeightsError(
                f"download of {entry.name} from {entry.url} failed its sha256 check "
                f"(expected {entry.sha256_prefix}...): {exc}"
            ) from None
        raise WeightsError(_offline_message(entry, path, exc)) from None
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
        raise WeightsError(_offline_message(entry, path, exc)) from None
    return path


def _offline_message(entry: WeightsEntry, path: Path, exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return (
        f"cannot download {entry.name} ({reason}); download {entry.url} yourself and "
        f"either put it at {path} or pass --weights PATH_TO_THE_FILE"
    )


# --------------------------------------------------------------------------- pconv checkpoints


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


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from None
    return state, metadata


def _check_pconv_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} has no pconv metadata (format={metadata.get('format')!r})")
    missing = [k for k in _ARCH_KEYS if k not in metadata]
    if missing:
        raise WeightsError(f"{path} metadata lacks {', '.join(missing)}")


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(state_dict, metadata) of a pconv safetensors checkpoint, on CPU."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    state, metadata = _read_safetensors(path)
    _check_pconv_metadata(path, metadata)
    return state, metadata


def _check_state_dict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
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


def load_state_dict_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names the first mismatching key and shape."""
    _check_state_dict(model, state, source)
    model.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[InpaintingModel, dict[str, str]]:
    """Rebuild the model a pconv checkpoint describes and load its weights (eval mode)."""
    state, metadata = read_checkpoint(path)
    return model_from_weights(state, metadata, source=str(path), device=device), metadata


# --------------------------------------------------------------------------- reading any format


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


def detect_format(state: Mapping[str, Tensor]) -> str | None:
    """``"mmagic"``, ``"naoto0804"`` or ``"pconv"`` from a state dict's key names, or None."""
    if any(k.startswith("generator.encoder.enc1.") for k in state):
        return "mmagic"
    if "enc_1.conv.input_conv.weight" in state:
        return "naoto0804"
    if "encoder.enc1.conv.weight" in state:
        return "pconv"
    return None


def read_weights_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(state_dict, metadata) of a weights file in any supported format, in pconv's conventions.

    The format is recognised by the contents (see the module docstring); MMagic and
    naoto0804 weights are converted (:func:`convert_mmagic`, :func:`convert_naoto0804`).
    ``metadata`` always has ``format``, ``arch``, ``layers``, ``width``,
    ``upsampling``, ``normalization`` and ``source_format``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if _sniff(path) == "safetensors":
        state, metadata = _read_safetensors(path)
        if metadata.get("format") == CHECKPOINT_FORMAT:
            _check_pconv_metadata(path, metadata)
            return state, {**metadata, "source_format": "pconv"}
    else:
        state = _unwrap_state_dict(_torch_load(path), path)
    kind = detect_format(state)
    if kind == "mmagic":
        return convert_mmagic(state)
    if kind == "naoto0804":
        return convert_naoto0804(state)
    if kind == "pconv":
        return state, _infer_pconv_metadata(state)
    first = ", ".join(list(state)[:3])
    raise WeightsError(
        f"{path}: not a recognised checkpoint (no pconv metadata, MMagic 'generator.' keys "
        f"or naoto0804 'enc_1.conv.input_conv' keys; first keys: {first})"
    )


def _levels(state: Mapping[str, Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.fullmatch(k))})


def _arch_metadata(
    *, arch: str, layers: int, width: float, normalization: str, source_format: str
) -> dict[str, str]:
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "layers": str(layers),
        "width": repr(float(width)),
        "upsampling": "nearest",
        "normalization": normalization,
        "source_format": source_format,
    }


def _infer_pconv_metadata(state: Mapping[str, Tensor]) -> dict[str, str]:
    """A bare pconv state dict (no metadata): architecture from shapes, defaults assumed."""
    enc1 = state["encoder.enc1.conv.weight"]
    meta = _arch_metadata(
        arch="unet" if enc1.shape[1] == 4 else "pconv",
        layers=_levels(state, r"encoder\.enc(\d+)\.conv\.weight"),
        width=enc1.shape[0] / 64,
        normalization="minus_one_one",
        source_format="pconv",
    )
    meta["assumed"] = "upsampling=nearest, normalization=minus_one_one (no metadata in the file)"
    return meta


# --------------------------------------------------------------------------- converters

_FLIP = [2, 1, 0]


def convert_mmagic(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """MMagic PConv generator weights -> pconv's (state_dict, metadata).

    Keeps ``generator.*`` keys without the prefix, drops the ``weight_mask_updater``
    buffers (constant ones) and any ``loss_*`` entries, and turns the BGR net into
    an RGB one: input channels of ``enc1``, output channels (and bias) of ``dec1``
    and ``dec1``'s image-skip input channels (its last 3) are reversed. MMagic feeds
    ``(x - 127.5) / 127.5`` with zeroed holes, i.e. ``normalization="minus_one_one"``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith("generator."):
            continue
        key = key.removeprefix("generator.")
        if key.endswith("weight_mask_updater") or any(
            p.startswith("loss_") for p in key.split(".")
        ):
            continue
        out[key] = value
    for key in ("encoder.enc1.conv.weight", "decoder.dec1.conv.weight", "decoder.dec1.conv.bias"):
        if key not in out:
            raise WeightsError(f"MMagic checkpoint has no generator.{key} (not a PConv generator?)")
    out["encoder.enc1.conv.weight"] = out["encoder.enc1.conv.weight"][:, _FLIP]
    dec1 = out["decoder.dec1.conv.weight"][_FLIP]
    image_skip = dec1.shape[1] - 3
    out["decoder.dec1.conv.weight"] = torch.cat(
        [dec1[:, :image_skip], dec1[:, image_skip:].flip(1)], 1
    )
    out["decoder.dec1.conv.bias"] = out["decoder.dec1.conv.bias"][_FLIP]
    meta = _arch_metadata(
        arch="pconv",
        layers=_levels(out, r"encoder\.enc(\d+)\.conv\.weight"),
        width=out["encoder.enc1.conv.weight"].shape[0] / 64,
        normalization="minus_one_one",
        source_format="mmagic",
    )
    return out, meta


_NAOTO_KEY = re.compile(r"(enc|dec)_(\d+)\.(conv\.input_conv|conv\.mask_conv|bn)\.(\w+)")


def convert_naoto0804(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """naoto0804's ``PConvUNet`` weights -> pconv's (state_dict, metadata).

    Its partial conv computes ``W^T(X*M) / sum(M) + b`` (holes 0) with a mask that
    has one channel per input channel, where pconv's computes
    ``W^T(X*M) * sum(1)/sum(M) + b`` with ``sum(1) = C_in*k*k``: every conv weight is
    divided by ``C_in*k*k`` (biases stay). Keys ``enc_k.conv.input_conv.*`` ->
    ``encoder.enck.conv.*``, ``enc_k.bn.*`` -> ``encoder.enck.bn.*`` (``dec_k``
    likewise); the constant ``mask_conv`` weights are dropped. Its ``enc_1`` has no
    bias, so pconv's gets zeros. It normalises RGB input with ImageNet mean/std.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _NAOTO_KEY.fullmatch(key)
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
    meta = _arch_metadata(
        arch="pconv",
        layers=_levels(out, r"encoder\.enc(\d+)\.conv\.weight"),
        width=out["encoder.enc1.conv.weight"].shape[0] / 64,
        normalization="imagenet",
        source_format="naoto0804",
    )
    return out, meta


# --------------------------------------------------------------------------- resolving --weights


def resolve_weights(
    spec: str, *, progress: bool = True
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(state_dict, metadata) for ``--weights SPEC``: a registry name or a file path.

    The state dict uses pconv's keys, RGB order and partial-conv scaling; the
    metadata has ``arch``, ``layers``, ``width``, ``upsampling``, ``normalization``
    (strings, as in a pconv checkpoint), ``source_format`` and, for a named entry,
    ``name``. Named weights are fetched into torch.hub's cache on first use.
    """
    path = Path(spec).expanduser()
    if spec in REGISTRY and not path.is_file():
        entry = REGISTRY[spec]
        file = fetch_weights(entry, progress=progress)
        state, metadata = read_weights_file(file)
        if metadata["source_format"] != entry.source_format:
            raise WeightsError(
                f"{file} is a {metadata['source_format']} checkpoint, {entry.name} should be "
                f"{entry.source_format}; delete it and download {entry.url} again"
            )
        return state, {**metadata, "name": entry.name, "source": str(file)}
    if path.is_file():
        state, metadata = read_weights_file(path)
        return state, {**metadata, "source": str(path)}
    if path.suffix or len(path.parts) > 1:
        raise WeightsError(f"weights file not found: {path}")
    raise WeightsError(
        f"--weights {spec}: no such file and no such published weights "
        f"(known: {', '.join(REGISTRY)}; see 'pconv weights list')"
    )


def model_from_weights(
    state: dict[str, Tensor],
    metadata: Mapping[str, str],
    *,
    source: str = "weights",
    device: str | torch.device = "cpu",
) -> InpaintingModel:
    """The :class:`InpaintingModel` ``metadata`` describes, with ``state`` loaded, in eval mode.

    The net is built on the meta device and takes the checkpoint's tensors as its
    parameters (float32, contiguous), so no random initialisation runs and nothing
    is copied twice.
    """
    try:
        options = dict(
            layers=int(metadata["layers"]),
            width=float(metadata["width"]),
            upsampling=metadata["upsampling"],
            normalization=metadata["normalization"],
        )
        with torch.device("meta"):
            net = build_model(metadata["arch"], **options).net
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"{source}: bad metadata ({exc})") from None
    _check_state_dict(net, state, source)
    if {name for name, _ in net.named_buffers()} <= set(state):
        net.load_state_dict({k: _as_parameter_data(v) for k, v in state.items()}, assign=True)
    else:  # a non-persistent buffer the state dict cannot fill: initialise for real
        net = build_model(metadata["arch"], **options).net
        net.load_state_dict(state)
    model = InpaintingModel(net, normalization=options["normalization"])
    return model.to(device).eval()


def _as_parameter_data(value: Tensor) -> Tensor:
    if value.is_floating_point() and value.dtype != torch.float32:
        value = value.float()
    return value.contiguous()


def load_model(spec: str, device: str | torch.device = "cpu") -> InpaintingModel:
    """``--weights SPEC`` (registry name or path, any supported format) -> model in eval mode.

    The model takes RGB images in [0, 1] and masks with 1 = valid (see
    :class:`~pconv_cli.models.pconv_unet.InpaintingModel`); its metadata is in
    ``model.weights_metadata``.
    """
    state, metadata = resolve_weights(spec)
    model = model_from_weights(state, metadata, source=metadata.get("source", spec), device=device)
    model.weights_metadata = dict(metadata)
    return model
