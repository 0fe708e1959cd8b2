"""Weights of the networks behind LPIPS, FID and P-IDS/U-IDS: where they come from.

Each file is looked up in torch.hub's cache (``torch.hub.get_dir()/checkpoints``, where
torchvision and pytorch-fid keep the same files), downloaded there once with its
sha256 checked, or given as a local file with ``--metric-weights KEY=PATH``:

- ``lpips-alex``: torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``), the
  trunk the ``lpips`` package (v0.1, ``net='alex'``) uses;
- ``lpips-alex-lin``: the ``lpips`` package's v0.1 linear heads for AlexNet
  (``weights/v0.1/alex.pth`` in its repository, keys ``lin{k}.model.1.weight``);
- ``fid-inception``: pytorch-fid's port of TensorFlow's 2015-12-05 Inception
  (``pt_inception-2015-12-05-6726825d.pth``), used for FID and P-IDS/U-IDS.

torch is imported lazily (``pconv eval --help`` stays light).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pconv_cli.weights.errors import WeightsError

__all__ = [
    "METRIC_WEIGHTS",
    "MetricWeightsFile",
    "load_state_dict",
    "metric_weights_path",
    "parse_metric_weights",
]


@dataclass(frozen=True)
class MetricWeightsFile:
    """A network file: ``key`` (for ``--metric-weights``), its URL, sha256 (or its start)."""

    key: str
    url: str
    sha256_prefix: str
    filename: str
    description: str


METRIC_WEIGHTS: dict[str, MetricWeightsFile] = {
    entry.key: entry
    for entry in (
        MetricWeightsFile(
            key="lpips-alex",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            sha256_prefix="7be5be79",
            filename="alexnet-owt-7be5be79.pth",
            description="torchvision's ImageNet AlexNet (LPIPS trunk)",
        ),
        MetricWeightsFile(
            key="lpips-alex-lin",
            url=(
                "https://github.com/richzhang/PerceptualSimilarity/raw/master/"
                "lpips/weights/v0.1/alex.pth"
            ),
            sha256_prefix="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
            filename="lpips-v0.1-alex-lin.pth",
            description="LPIPS v0.1 linear heads for AlexNet",
        ),
        MetricWeightsFile(
            key="fid-inception",
            url=(
                "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                "pt_inception-2015-12-05-6726825d.pth"
            ),
            sha256_prefix="6726825d",
            filename="pt_inception-2015-12-05-6726825d.pth",
            description="pytorch-fid's FID Inception (TensorFlow inception-2015-12-05)",
        ),
    )
}


def parse_metric_weights(items: Iterable[str]) -> dict[str, Path]:
    """``KEY=PATH`` strings as ``{key: path}``; ValueError (one line) on a bad item."""
    parsed: dict[str, Path] = {}
    for item in items:
        key, sep, path = item.partition("=")
        key = key.strip()
        if not sep or not path:
            raise ValueError(f"--metric-weights takes KEY=PATH, got {item!r}")
        if key not in METRIC_WEIGHTS:
            raise ValueError(
                f"--metric-weights: unknown key {key!r}; choose from {', '.join(METRIC_WEIGHTS)}"
            )
        parsed[key] = Path(path).expanduser()
    return parsed


def _cache_path(entry: MetricWeightsFile) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / entry.filename


def metric_weights_path(
    key: str,
    overrides: Mapping[str, str | os.PathLike[str]] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """The local file of network ``key``: the override, else the checked hub-cache copy.

    A missing cache file is downloaded (sha256 checked); offline, the
    :class:`WeightsError` names the URL, the cache path and ``--metric-weights``.
    Files given as overrides are used as they are (no hash check).
    """
    from pconv_cli.weights.hub import download_to_cache, sha256_of

    entry = METRIC_WEIGHTS[key]
    if overrides and key in overrides:
        path = Path(overrides[key])
        if not path.is_file():
            raise WeightsError(f"--metric-weights {key}={path}: no such file")
        return path
    path = _cache_path(entry)
    if path.is_file():
        digest = sha256_of(path)
        if not digest.startswith(entry.sha256_prefix):
            raise WeightsError(
                f"{path} is not the {key} file (sha256 {digest[:16]}..., expected "
                f"{entry.sha256_prefix[:16]}...); delete it and download {entry.url} again"
            )
        return path
    return download_to_cache(
        key,
        entry.url,
        entry.sha256_prefix,
        path,
        hint=f"pass --metric-weights {key}=PATH",
        progress=progress,
    )


def load_state_dict(key: str, path: Path) -> dict:
    """The tensors of ``path`` (a torch pickle, loaded weights-only onto the CPU)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: one line for the CLI
        raise WeightsError(f"cannot read {key} weights {path}: {error}".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise WeightsError(f"{key} weights {path} hold no state dict")
    return state
