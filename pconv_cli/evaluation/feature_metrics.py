"""Which metrics ``pconv eval`` computes, and the network-based ones: LPIPS, FID, P-IDS/U-IDS.

Names (``--metric``): ``l1``, ``psnr``, ``ssim`` (the default three, MMagic's
definitions, :mod:`pconv_cli.evaluation.metrics`), ``lpips`` (per pair), ``fid`` and
``pids`` (per source over the whole set; ``pids`` reports P-IDS and U-IDS).

Every scored image is the uint8 RGB composite at the mask size (as for l1/PSNR/SSIM):

- LPIPS: composite vs truth, both ``x / 127.5 - 1``, :class:`~.networks.LPIPSAlex`
  (the ``lpips`` package v0.1, ``net='alex'``), spatial mean;
- features for FID and P-IDS: ``x / 255`` through :class:`~.networks.FIDInception`
  (pytorch-fid's pool3, 2048-d, float32); the real set is the truths of all pairs, the
  fake set a source's composites; see :mod:`pconv_cli.evaluation.set_metrics`.

The networks run in batches on the evaluation device in float32 under ``inference_mode``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_CHOICES",
    "PAIR_METRICS",
    "SET_METRICS",
    "SET_METRIC_KEYS",
    "MetricSuite",
    "check_metric_names",
]

METRIC_CHOICES: tuple[str, ...] = ("l1", "psnr", "ssim", "lpips", "fid", "pids")
"""Every ``--metric`` name, in report order."""
DEFAULT_METRICS: tuple[str, ...] = ("l1", "psnr", "ssim")
PAIR_METRICS: tuple[str, ...] = ("l1", "psnr", "ssim", "lpips")
"""Metrics with a value per pair (and bucket means)."""
SET_METRICS: tuple[str, ...] = ("fid", "pids")
"""Metrics with one value per source over the whole set."""
SET_METRIC_KEYS: dict[str, tuple[str, ...]] = {"fid": ("fid",), "pids": ("p_ids", "u_ids")}
"""Report keys of each set metric (``sources.<label>.set_metrics``)."""

_NETWORKS: dict[str, tuple[str, ...]] = {
    "lpips": ("lpips-alex", "lpips-alex-lin"),
    "fid": ("fid-inception",),
    "pids": ("fid-inception",),
}


def check_metric_names(names: Iterable[str]) -> tuple[str, ...]:
    """Requested names in report order without repeats (default: l1/psnr/ssim); ValueError."""
    wanted = list(names)
    unknown = [name for name in wanted if name not in METRIC_CHOICES]
    if unknown:
        choices = ", ".join(METRIC_CHOICES)
        raise ValueError(f"unknown --metric {unknown[0]!r}; choose from {choices}")
    if not wanted:
        return DEFAULT_METRICS
    return tuple(name for name in METRIC_CHOICES if name in wanted)


def networks_for(metrics: Sequence[str]) -> tuple[str, ...]:
    """The ``--metric-weights`` keys the metrics need, in a fixed order."""
    keys: list[str] = []
    for name in metrics:
        for key in _NETWORKS.get(name, ()):
            if key not in keys:
                keys.append(key)
    return tuple(keys)


@dataclass
class MetricSuite:
    """The requested metrics and, lazily, their networks on ``device``.

    ``weights`` maps ``--metric-weights`` keys to local files (others come from the hub
    cache, see :mod:`pconv_cli.evaluation.metric_weights`). :meth:`load` fetches and
    builds the networks (call it before scoring so that a missing file fails early).
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    device: str = "cpu"
    weights: Mapping[str, str | os.PathLike[str]] = field(default_factory=dict)
    _lpips: object | None = field(default=None, init=False, repr=False)
    _inception: object | None = field(default=None, init=False, repr=False)

    @property
    def pair_metrics(self) -> tuple[str, ...]:
        return tuple(name for name in self.metrics if name in PAIR_METRICS)

    @property
    def set_metrics(self) -> tuple[str, ...]:
        return tuple(name for name in self.metrics if name in SET_METRICS)

    @property
    def wants_lpips(self) -> bool:
        return "lpips" in self.metrics

    @property
    def wants_features(self) -> bool:
        return bool(self.set_metrics)

    def weight_files(self) -> dict[str, str]:
        """``{key: path}`` of the network files in use (for the JSON config)."""
        from pconv_cli.evaluation.metric_weights import metric_weights_path

        return {
            key: str(metric_weights_path(key, self.weights)) for key in networks_for(self.metrics)
        }

    def load(self, *, progress: bool = True) -> MetricSuite:
        """Fetch and build the networks the metrics need (raises WeightsError, ImportError)."""
        import torch

        from pconv_cli.evaluation.metric_weights import load_state_dict, metric_weights_path
        from pconv_cli.evaluation.networks import FIDInception, LPIPSAlex

        if "pids" in self.metrics:
            from pconv_cli.evaluation.set_metrics import require_sklearn

            require_sklearn()
        device = torch.device(self.device)

        def state(key: str) -> dict:
            return load_state_dict(key, metric_weights_path(key, self.weights, progress=progress))

        if self.wants_lpips and self._lpips is None:
            net = LPIPSAlex().load_reference(state("lpips-alex"), state("lpips-alex-lin"))
            self._lpips = net.to(device)
        if self.wants_features and self._inception is None:
            inception = FIDInception().load_reference(state("fid-inception"))
            # channels-last convolutions: ~25 % faster on CPU (oneDNN) and on GPUs
            self._inception = inception.to(device, memory_format=torch.channels_last)
        return self

    def lpips(self, output, truth) -> np.ndarray:
        """LPIPS per pair of uint8 (B, 3, H, W) tensors (any device): (B,) float64."""
        import torch

        if self._lpips is None:
            self.load()
        net = self._lpips
        device = next(net.parameters()).device  # type: ignore[attr-defined]
        with torch.inference_mode():
            x = output.to(device).float() / 127.5 - 1
            y = truth.to(device).float() / 127.5 - 1
            return net(x, y).double().cpu().numpy()  # type: ignore[operator]

    def features(self, images) -> np.ndarray:
        """pool3 features of uint8 (B, 3, H, W) images (any device): (B, 2048) float32."""
        import torch

        if self._inception is None:
            self.load()
        net = self._inception
        device = next(net.parameters()).device  # type: ignore[attr-defined]
        with torch.inference_mode():
            x = images.to(device).float() / 255
            x = x.contiguous(memory_format=torch.channels_last)
            return net(x).float().cpu().numpy()  # type: ignore[operator]
