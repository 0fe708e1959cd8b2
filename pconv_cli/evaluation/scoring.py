"""The ``pconv eval`` harness: prediction sources, scoring and streaming aggregation.

Every source gives a raw output for a batch of pairs (:mod:`pconv_cli.evaluation.pairs`).
The harness then treats all sources alike:

1. **composite**: hole pixels from the output, known pixels from the truth;
2. **quantise**: the composite is rounded to uint8 (float outputs are clamped to
   [0, 1], times 255, rounded half to even), i.e. exactly what a saved PNG holds, so
   ``--predictions DIR`` on saved outputs scores the same as the method itself;
3. **score**: l1 / PSNR / SSIM of :mod:`pconv_cli.evaluation.metrics` against the truth,
   plus, when asked for (:class:`~pconv_cli.evaluation.feature_metrics.MetricSuite`),
   LPIPS per pair and Inception features for the set-level FID and P-IDS/U-IDS
   (features of the truths once per pair, of each source's composites).

Per-image values are folded into per-bucket running sums as they come and, when
asked for, spooled to a temporary file (for ``--json``); features are spooled too:
memory stays flat however many pairs are scored; only the best and worst few
composites are kept for ``--grid``.

Bucket means: l1 and SSIM are plain means over the bucket's images. PSNR is the
mean of the per-image values (as MMagic and the paper report it) over the images
whose PSNR is finite; images identical to the truth (PSNR ``inf``) are counted
in ``psnr_inf`` instead, and a bucket where all are identical reports ``inf``.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from pconv_cli.data.images import read_rgb, save_png, to_uint8
from pconv_cli.data.masks import NVIDIA_BUCKETS, format_ratio_range
from pconv_cli.evaluation.feature_metrics import MetricSuite
from pconv_cli.evaluation.metrics import METRIC_NAMES, compute_metrics
from pconv_cli.evaluation.pairs import (
    Batch,
    EvalError,
    Pair,
    PairLoader,
    index_images,
    iter_batches,
)
from pconv_cli.evaluation.set_metrics import FeatureSpool
from pconv_cli.inpainting.classic import (
    OPENCV_METHODS,
    OPENCV_RADIUS,
    check_method,
    inpaint_classic,
)
from pconv_cli.inpainting.tensors import model_input, run_model

__all__ = [
    "BucketStats",
    "EvalResult",
    "MethodSource",
    "ModelSource",
    "PredictionsSource",
    "Record",
    "Source",
    "SourceResult",
    "SummaryRow",
    "composite_uint8",
    "evaluate",
    "unique_labels",
]

# --------------------------------------------------------------------------- sources


class Source:
    """A prediction source: ``predict(batch)`` gives the batch's raw outputs.

    Raw outputs are (B, 3, H, W), float on the [0, 1] scale or uint8 0..255, on any
    device, not yet composited (the harness composites and quantises them).
    """

    kind = "source"
    blend = "none"

    def __init__(self, spec: str, label: str | None = None):
        self.spec = spec
        self.label = label or spec

    def prepare(self, pairs: Sequence[Pair]) -> None:
        """Check, before any scoring, that every pair can be predicted (raise EvalError)."""

    def predict(self, batch: Batch) -> Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the JSON config records about this source."""
        info: dict[str, Any] = {"kind": self.kind, "spec": self.spec}
        if self.blend != "none":
            info["blend"] = self.blend
        return info


def _through_inpaint(source: Any, batch: Batch, blend: str, seed: int = 0) -> Tensor:
    """Each pair as ``pconv inpaint`` fills it (default strategy, ``blend``): uint8 outputs."""
    from pconv_cli.inpainting.api import inpaint

    outputs = [
        inpaint(truth, hole, source, blend=blend, seed=seed).image
        for truth, hole in zip(batch.truth, batch.hole, strict=True)
    ]
    return torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)


class MethodSource(Source):
    """A classic method of :mod:`pconv_cli.inpainting.classic`, image by image on the CPU
    (seeded methods get ``seed``)."""

    kind = "method"

    def __init__(
        self, method: str, label: str | None = None, *, seed: int = 0, blend: str = "none"
    ):
        check_method(method)
        super().__init__(method, label)
        self.seed = seed
        self.blend = blend

    def predict(self, batch: Batch) -> Tensor:
        if self.blend != "none":
            return _through_inpaint(self.spec, batch, self.blend, self.seed)
        outputs = [
            inpaint_classic(self.spec, truth, hole, seed=self.seed)
            for truth, hole in zip(batch.truth, batch.hole, strict=True)
        ]
        return torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.spec in OPENCV_METHODS:
            info["inpaint_radius"] = OPENCV_RADIUS
        if self.spec == "patchmatch":
            info["seed"] = self.seed
        return info


class ModelSource(Source):
    """Model weights (a published name or a file), run in batches under ``inference_mode``.

    Loaded through :func:`pconv_cli.weights.open_weights`, as ``pconv inpaint``
    does, so every format and zoo entry works here too (raises ``WeightsError``).
    ``blend="none"``: one native pass per batch (MMagic's protocol); ``"poisson"``:
    each pair through :func:`pconv_cli.inpainting.api.inpaint` with its default
    strategy, exactly what ``pconv inpaint`` writes.
    """

    kind = "weights"

    def __init__(
        self, spec: str, device: torch.device, label: str | None = None, *, blend: str = "none"
    ):
        from pconv_cli.weights import expect_kind, model_from_weights, open_weights

        super().__init__(spec, label)
        self.device = device
        self.blend = blend
        self.weights = expect_kind(open_weights(spec), "inpainting")
        self.model = model_from_weights(self.weights, device=device)

    def predict(self, batch: Batch) -> Tensor:
        if self.blend != "none":
            return _through_inpaint(self.model, batch, self.blend)
        # the conversion pconv inpaint uses: no truth inside the holes reaches the net
        image, valid = model_input(batch.truth, batch.hole, self.device)
        return run_model(self.model, image, valid)

    def describe(self) -> dict[str, Any]:
        from dataclasses import asdict

        meta = self.weights.metadata
        info = super().describe()
        info["device"] = str(self.device)
        info["checkpoint"] = {
            **{k: meta[k] for k in ("name",) if k in meta},
            "source_format": self.weights.source_format,
            "family": self.weights.family,
            "config": asdict(self.weights.config),
            **{k: meta[k] for k in ("step", "stage") if k in meta},
        }
        return info


class PredictionsSource(Source):
    """Another tool's outputs: ``DIR/<pair name>.<png|jpg|...>``, raw or composited."""

    kind = "predictions"

    def __init__(self, folder: str | os.PathLike[str], label: str | None = None):
        super().__init__(str(folder), label or Path(folder).name)
        self.folder = Path(folder)
        self.index = index_images(self.folder, "--predictions")

    def _path(self, name: str) -> Path | None:
        paths = self.index.get(name)
        if not paths:
            return None
        if len(paths) > 1:
            raise EvalError(
                f"--predictions {self.folder}: {' and '.join(p.name for p in paths[:2])} "
                f"both match pair {name!r}; keep one"
            )
        return paths[0]

    def prepare(self, pairs: Sequence[Pair]) -> None:
        missing = [pair for pair in pairs if self._path(pair.name) is None]
        if missing:
            first = missing[0]
            raise EvalError(
                f"--predictions {self.folder}: no prediction for {first.name!r} "
                f"(image {first.image.path.name}, mask {first.mask.key}; expected "
                f"{self.folder / first.name}.png or another image suffix); "
                f"{len(missing)} of {len(pairs)} missing"
            )

    def predict(self, batch: Batch) -> Tensor:
        height, width = batch.size
        outputs = []
        for pair in batch.pairs:
            path = self._path(pair.name)
            if path is None:  # prepare() was skipped
                raise EvalError(f"--predictions {self.folder}: no prediction for {pair.name!r}")
            output = read_rgb(path, "prediction")
            if output.shape[:2] != (height, width):
                raise EvalError(
                    f"prediction {path} is {output.shape[1]}x{output.shape[0]}, expected "
                    f"{width}x{height} (the size of mask {pair.mask.key})"
                )
            outputs.append(output)
        return torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)


def unique_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` with repeats made unique by ``-2``, ``-3``... suffixes."""
    seen: set[str] = set()
    out = []
    for label in labels:
        candidate, number = label, 1
        while candidate in seen:
            number += 1
            candidate = f"{label}-{number}"
        seen.add(candidate)
        out.append(candidate)
    return out


# --------------------------------------------------------------------------- scoring


def composite_uint8(truth: Tensor, output: Tensor, hole: Tensor) -> Tensor:
    """Quantised composite: ``output`` in holes, ``truth`` elsewhere, uint8 (B, 3, H, W).

    ``truth`` uint8 (B, 3, H, W); ``output`` uint8 or float [0, 1] (clamped, x255,
    rounded half to even); ``hole`` bool (B, 1, H, W), True = hole.
    """
    if output.shape != truth.shape:
        raise EvalError(
            f"a prediction has shape {tuple(output.shape)}, expected {tuple(truth.shape)}"
        )
    if output.dtype != torch.uint8:
        if torch.isnan(output).any():
            raise EvalError("a prediction contains NaN values")
        output = to_uint8(output)
    return torch.where(hole, output, truth)


@dataclass(frozen=True)
class Record:
    """One pair's scores for one source (PSNR may be inf)."""

    index: int
    name: str
    image: str
    mask: str
    bucket: str
    touches_border: bool
    hole_ratio: float
    l1: float
    psnr: float
    ssim: float
    lpips: float | None = None

    def to_json(self) -> dict[str, Any]:
        extra = {} if self.lpips is None else {"lpips": json_number(self.lpips)}
        return {
            "index": self.index,
            "name": self.name,
            "image": self.image,
            "mask": self.mask,
            "bucket": self.bucket,
            "touches_border": self.touches_border,
            "hole_ratio": self.hole_ratio,
            "l1": json_number(self.l1),
            "psnr": json_number(self.psnr),
            "ssim": json_number(self.ssim),
            **extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """The record of :meth:`to_json`'s dict (``"inf"`` and null back to floats)."""
        values = {name: _from_json_number(data[name]) for name in ("l1", "psnr", "ssim")}
        lpips = data.get("lpips", ...)
        return cls(
            index=data["index"],
            name=data["name"],
            image=data["image"],
            mask=data["mask"],
            bucket=data["bucket"],
            touches_border=data["touches_border"],
            hole_ratio=data["hole_ratio"],
            lpips=None if lpips is ... else _from_json_number(lpips),
            **values,
        )


def _from_json_number(value: float | str | None) -> float:
    """Inverse of :func:`json_number`: null is NaN, ``"inf"``/``"-inf"`` are infinities."""
    return math.nan if value is None else float(value)


def json_number(value: float) -> float | str | None:
    """A metric for strict JSON: finite as is, infinities as ``"inf"``/``"-inf"``, NaN as null."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


@dataclass
class BucketStats:
    """Running sums of one bucket (see the module docstring for the PSNR rule)."""

    count: int = 0
    l1_sum: float = 0.0
    l1_count: int = 0
    psnr_sum: float = 0.0
    psnr_finite: int = 0
    psnr_inf: int = 0
    ssim_sum: float = 0.0
    lpips_sum: float = 0.0
    lpips_count: int = 0

    def add(self, l1: float, psnr: float, ssim: float, lpips: float | None = None) -> None:
        self.count += 1
        if lpips is not None:
            self.lpips_sum += lpips
            self.lpips_count += 1
        if not math.isnan(l1):
            self.l1_sum += l1
            self.l1_count += 1
        if math.isinf(psnr):
            self.psnr_inf += 1
        else:
            self.psnr_sum += psnr
            self.psnr_finite += 1
        self.ssim_sum += ssim

    @property
    def l1(self) -> float:
        return self.l1_sum / self.l1_count if self.l1_count else math.nan

    @property
    def psnr(self) -> float:
        if self.psnr_finite:
            return self.psnr_sum / self.psnr_finite
        return math.inf if self.psnr_inf else math.nan

    @property
    def ssim(self) -> float:
        return self.ssim_sum / self.count if self.count else math.nan

    @property
    def lpips(self) -> float:
        return self.lpips_sum / self.lpips_count if self.lpips_count else math.nan


@dataclass(frozen=True)
class SummaryRow:
    """A report row: ``bucket`` (``'overall'`` for all pairs), ``border`` None = both."""

    bucket: str
    border: bool | None
    stats: BucketStats

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "touches_border": self.border,
            "count": self.stats.count,
            "l1": json_number(self.stats.l1),
            "psnr": json_number(self.stats.psnr),
            "psnr_inf": self.stats.psnr_inf,
            "ssim": json_number(self.stats.ssim),
            **({"lpips": json_number(self.stats.lpips)} if self.stats.lpips_count else {}),
        }


_NVIDIA_ORDER = {format_ratio_range(lo, hi): i for i, (lo, hi) in enumerate(NVIDIA_BUCKETS)}


def _bucket_order(key: tuple[str, bool]) -> tuple[float, float, str, bool]:
    label, border = key
    if label in _NVIDIA_ORDER:
        return (0, _NVIDIA_ORDER[label], label, border)
    lo = label.partition("-")[0]
    try:
        return (1, float(lo), label, border)
    except ValueError:
        return (2, 0.0, label, border)


class _RecordSpool:
    """Per-image records as JSON lines in an anonymous temporary file (flat memory)."""

    def __init__(self) -> None:
        self._file: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def write(self, record: Record) -> None:
        self._file.write(json.dumps(record.to_json(), allow_nan=False) + "\n")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield json.loads(line)
        self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class GridPick:
    """A composite kept for ``--grid`` with its scores."""

    record: Record
    truth: np.ndarray
    hole: np.ndarray
    output: np.ndarray


class _Extremes:
    """The ``count`` best and worst pairs by PSNR (ties: the lower pair index wins)."""

    def __init__(self, count: int):
        self.count = count
        self._best: list[tuple[float, int, GridPick]] = []
        self._worst: list[tuple[float, int, GridPick]] = []

    def offer(self, record: Record, make: Callable[[], GridPick]) -> None:
        if self.count <= 0:
            return
        best_key, worst_key = (record.psnr, -record.index), (-record.psnr, -record.index)
        pick = None
        for heap, key in ((self._best, best_key), (self._worst, worst_key)):
            if len(heap) < self.count or key > heap[0][:2]:
                pick = pick or make()
                entry = (*key, pick)
                if len(heap) < self.count:
                    heapq.heappush(heap, entry)
                else:
                    heapq.heapreplace(heap, entry)

    @property
    def best(self) -> list[GridPick]:
        return [entry[2] for entry in sorted(self._best, key=lambda e: e[:2], reverse=True)]

    @property
    def worst(self) -> list[GridPick]:
        return [entry[2] for entry in sorted(self._worst, key=lambda e: e[:2], reverse=True)]


@dataclass
class SourceResult:
    """Everything the reports need about one source, filled while scoring."""

    source: Source
    buckets: dict[tuple[str, bool], BucketStats] = field(default_factory=dict)
    overall: BucketStats = field(default_factory=BucketStats)
    spool: _RecordSpool | None = None
    extremes: _Extremes | None = None
    features: FeatureSpool | None = None
    set_metrics: dict[str, float] = field(default_factory=dict)
    """Set-level values (``fid``, ``p_ids``, ``u_ids``) once scoring has finished."""
    set_metrics_by_bucket: dict[str, dict[str, float]] = field(default_factory=dict)
    """The same per bucket label (mask set), when asked for (``--protocol`` LaMa, MAT)."""

    @property
    def label(self) -> str:
        return self.source.label

    def add(self, record: Record) -> None:
        key = (record.bucket, record.touches_border)
        values = (record.l1, record.psnr, record.ssim, record.lpips)
        self.buckets.setdefault(key, BucketStats()).add(*values)
        self.overall.add(*values)
        if self.spool is not None:
            self.spool.write(record)

    def rows(self) -> list[SummaryRow]:
        """Bucket rows (NVIDIA order, no-border before border), then ``overall``."""
        rows = [
            SummaryRow(label, border, self.buckets[(label, border)])
            for label, border in sorted(self.buckets, key=_bucket_order)
        ]
        return [*rows, SummaryRow("overall", None, self.overall)]

    def records(self) -> Iterator[dict[str, Any]]:
        """The spooled per-image records (JSON form), in pair order."""
        if self.spool is None:
            raise RuntimeError("per-image records were not kept (evaluate(keep_records=False))")
        return iter(self.spool)


@dataclass
class EvalResult:
    """Per-source results in source order, and how many pairs were scored."""

    sources: list[SourceResult]
    pairs: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    metrics: tuple[str, ...] = METRIC_NAMES
    """The metrics asked for (report columns); l1/PSNR/SSIM are always computed."""
    real_features: FeatureSpool | None = None
    """Features of every pair's truth (the real set of FID and P-IDS), in pair order."""
    pair_buckets: list[str] = field(default_factory=list)
    """Each pair's bucket label, in pair order (for set metrics per bucket)."""

    def close(self) -> None:
        for result in self.sources:
            if result.spool is not None:
                result.spool.close()
            if result.features is not None:
                result.features.close()
        if self.real_features is not None:
            self.real_features.close()

    def __enter__(self) -> EvalResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_dir(label: str) -> str:
    return _SAFE.sub("_", label).strip("._") or "source"


def save_outputs_folder(folder: str | os.PathLike[str], label: str) -> Path:
    """Where ``save_outputs=folder`` puts the composites of the source called ``label``."""
    return Path(folder) / _safe_dir(label)


def _save_outputs(folder: Path, label: str, pairs: list[Pair], composite: np.ndarray) -> None:
    """Write each composite as ``folder/<label>/<pair name>.png`` (atomically, never outside)."""
    from pconv_cli.files import is_inside

    target_dir = save_outputs_folder(folder, label)
    for pair, image in zip(pairs, composite, strict=True):
        path = target_dir / f"{pair.name}.png"
        if not is_inside(path, target_dir):
            raise EvalError(f"pair name {pair.name!r} would write outside {target_dir}")
        try:
            save_png(path, image, compress_level=1)
        except OSError as error:
            raise EvalError(f"cannot write {path}: {error.strerror or error}") from None


def _score_batch(
    result: SourceResult,
    batch: Batch,
    save_outputs: Path | None,
    suite: MetricSuite | None = None,
) -> tuple[Tensor, dict[str, np.ndarray]]:
    raw = result.source.predict(batch)
    device = raw.device
    truth = torch.from_numpy(batch.truth).to(device).permute(0, 3, 1, 2)
    hole = torch.from_numpy(batch.hole).to(device).unsqueeze(1)
    composite = composite_uint8(truth, raw, hole)
    values = compute_metrics(composite, truth, ~hole)
    scores = {name: values[name].cpu().numpy() for name in METRIC_NAMES}
    if suite is not None and suite.wants_lpips:
        scores["lpips"] = suite.lpips(composite, truth)
    if suite is not None and result.features is not None:
        result.features.append(suite.features(composite))
    if save_outputs is not None:
        _save_outputs(save_outputs, result.label, batch.pairs, _hwc(composite))
    return composite, scores


def _hwc(images: Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).cpu().numpy()


def evaluate(
    plan: Sequence[Pair],
    sources: Sequence[Source],
    loader: PairLoader,
    *,
    batch_size: int = 8,
    keep_records: bool = True,
    grid_count: int = 0,
    save_outputs: str | os.PathLike[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    prefetch: bool = True,
    suite: MetricSuite | None = None,
    finish: bool = True,
    by_bucket: bool = False,
) -> EvalResult:
    """Score every pair of ``plan`` with every source; return the aggregated result.

    ``keep_records`` spools per-image values (for JSON); ``grid_count`` keeps that
    many best and worst composites per source; ``save_outputs`` writes composites
    as ``DIR/<source label>/<pair name>.png``. ``on_progress(n)`` after each batch.
    ``suite`` adds LPIPS and the Inception features of FID/P-IDS, whose set-level
    values are computed at the end unless ``finish=False`` (a shard of a sharded run:
    see :mod:`pconv_cli.evaluation.sharding`), also per bucket label with ``by_bucket``.
    Close the result (or use it as a context manager) to drop the spools.
    """
    if not sources:
        raise EvalError("no prediction source: give --weights, --method or --predictions")
    for source in sources:
        source.prepare(plan)
    features = suite is not None and suite.wants_features
    result = EvalResult(
        [
            SourceResult(
                source,
                spool=_RecordSpool() if keep_records else None,
                extremes=_Extremes(grid_count) if grid_count else None,
                features=FeatureSpool() if features else None,
            )
            for source in sources
        ],
        metrics=METRIC_NAMES if suite is None else suite.metrics,
        real_features=FeatureSpool() if features else None,
    )
    folder = None if save_outputs is None else Path(save_outputs)
    try:
        for batch in iter_batches(plan, loader, batch_size, prefetch=prefetch):
            if suite is not None and result.real_features is not None:
                truth = torch.from_numpy(batch.truth).permute(0, 3, 1, 2)
                result.real_features.append(suite.features(truth))
            for source_result in result.sources:
                composite, scores = _score_batch(source_result, batch, folder, suite)
                _collect(source_result, batch, scores, composite)
            result.pairs += len(batch)
            result.sizes.add(batch.size)
            result.pair_buckets.extend(mask.bucket for mask in batch.masks)
            if on_progress is not None:
                on_progress(len(batch))
        if finish and suite is not None:
            finish_set_metrics(result, suite, by_bucket=by_bucket)
    except BaseException:
        result.close()
        raise
    return result


def finish_set_metrics(result: EvalResult, suite: MetricSuite, *, by_bucket: bool = False) -> None:
    """Fill each source's ``set_metrics`` (FID, P-IDS/U-IDS) from the spooled features;
    with ``by_bucket`` also ``set_metrics_by_bucket`` (pairs grouped by bucket label)."""
    if result.real_features is None or not suite.set_metrics:
        return
    if result.real_features.rows < 2:
        raise EvalError(f"FID and P-IDS need at least 2 pairs, got {result.real_features.rows}")
    fakes = []
    for source in result.sources:
        assert source.features is not None
        fakes.append(source.features)
    overall = _set_scores(result.real_features, fakes, suite)
    for source, values in zip(result.sources, overall, strict=True):
        source.set_metrics.update(values)
    if not by_bucket:
        return
    labels = list(dict.fromkeys(result.pair_buckets))
    for label in labels:
        rows = np.flatnonzero(np.array(result.pair_buckets) == label)
        if len(rows) < 2:
            continue
        real = _subset(result.real_features, rows)
        subsets = [_subset(fake, rows) for fake in fakes]
        try:
            scores = _set_scores(real, subsets, suite)
            for source, values in zip(result.sources, scores, strict=True):
                source.set_metrics_by_bucket[label] = values
        finally:
            for spool in (real, *subsets):
                spool.close()


def _subset(spool: FeatureSpool, rows: np.ndarray) -> FeatureSpool:
    """A new spool of ``spool``'s ``rows`` (sorted indices), read a chunk at a time."""
    subset = FeatureSpool(spool.dims)
    start = 0
    for block in spool.chunks():
        stop = start + block.shape[0]
        picked = rows[(rows >= start) & (rows < stop)] - start
        if len(picked):
            subset.append(block[picked])
        start = stop
    return subset


def _set_scores(
    real: FeatureSpool, fakes: Sequence[FeatureSpool], suite: MetricSuite
) -> list[dict[str, float]]:
    from pconv_cli.evaluation.set_metrics import (
        RealFactor,
        frechet_distance,
        gaussian_stats,
        inception_discriminative_scores,
    )

    factor = RealFactor(gaussian_stats(real)) if "fid" in suite.metrics else None
    real_rows = real.read() if "pids" in suite.metrics else None
    scores = []
    for fake in fakes:
        values: dict[str, float] = {}
        if factor is not None:
            values["fid"] = frechet_distance(factor, gaussian_stats(fake))
        if real_rows is not None:
            values["p_ids"], values["u_ids"] = inception_discriminative_scores(
                real_rows, fake.read()
            )
        scores.append(values)
    return scores


def _collect(
    result: SourceResult, batch: Batch, scores: dict[str, np.ndarray], composite: Tensor
) -> None:
    host: np.ndarray | None = None
    for i, (pair, mask) in enumerate(zip(batch.pairs, batch.masks, strict=True)):
        record = Record(
            index=pair.index,
            name=pair.name,
            image=pair.image.key,
            mask=pair.mask.key,
            bucket=mask.bucket,
            touches_border=mask.touches_border,
            hole_ratio=mask.hole_ratio,
            l1=float(scores["l1"][i]),
            psnr=float(scores["psnr"][i]),
            ssim=float(scores["ssim"][i]),
            lpips=float(scores["lpips"][i]) if "lpips" in scores else None,
        )
        result.add(record)
        if result.extremes is not None:

            def make(i: int = i, record: Record = record) -> GridPick:
                nonlocal host
                if host is None:
                    host = _hwc(composite)
                return GridPick(record, batch.truth[i].copy(), batch.hole[i].copy(), host[i].copy())

            result.extremes.offer(record, make)
