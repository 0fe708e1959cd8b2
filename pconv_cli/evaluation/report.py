"""Report files of ``pconv eval``: JSON, CSV and the best/worst grid PNG.

Every file is written with :func:`pconv_cli.files.atomic_write` after scoring
has finished, so a failed or interrupted run leaves no partial report.

- JSON (strict: no NaN/Infinity tokens): ``{"pconv_version", "config",
  "sources": {label: {"kind", "spec", ..., "summary": [rows], "set_metrics": {...},
  "images": [records]}}}``. Rows and records hold the requested per-pair metrics
  (l1, psnr with psnr_inf, ssim, lpips); ``set_metrics`` the requested set-level ones
  (``fid``, ``p_ids``, ``u_ids``), present when one was asked for.
  PSNR ``inf`` (output identical to the truth) is the string ``"inf"``; an
  undefined value (l1 of an image without holes) is ``null``.
- CSV: the summary table in long form, one row per source and bucket row
  (``source, bucket, touches_border, count``, then the requested metrics: ``l1``,
  ``psnr, psnr_inf``, ``ssim``, ``lpips``, ``fid``, ``p_ids``, ``u_ids``; set-level
  values on the ``overall`` row only), ``inf`` written as ``inf``. Per-image values
  are in the JSON.
- Grid PNG: per source, the best then the worst pairs by PSNR, one row each:
  input (holes white) | mask (white = hole) | output (composite) | truth; pages of
  at most :data:`GRID_ROWS` pairs (``grid.png``, ``grid-2.png``...).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pconv_cli import __version__
from pconv_cli.data.images import save_png
from pconv_cli.data.panels import PanelRow, hole_panel, panel_grid
from pconv_cli.evaluation.feature_metrics import SET_METRIC_KEYS
from pconv_cli.evaluation.scoring import (
    EvalResult,
    GridPick,
    SourceResult,
    SummaryRow,
    json_number,
)
from pconv_cli.files import atomic_write

__all__ = [
    "CSV_COLUMNS",
    "METRIC_DEFINITIONS",
    "POLICY",
    "build_config",
    "csv_columns",
    "set_metric_values",
    "write_csv",
    "write_grid",
    "write_json",
]

METRIC_DEFINITIONS: dict[str, str] = {
    "l1": "mean |output - truth| over hole pixels and RGB channels, [0, 1] scale, x100",
    "psnr": "whole image, RGB, [0, 255]: 10 log10(255^2 / MSE) dB; inf if identical",
    "ssim": (
        "whole image, per RGB channel then averaged, [0, 255]: Gaussian 11x11 window, "
        "sigma 1.5, C1 = (0.01*255)^2, C2 = (0.03*255)^2, map mean without a 5 px border "
        "(= scikit-image structural_similarity(gaussian_weights=True, sigma=1.5, "
        "use_sample_covariance=False, data_range=255))"
    ),
    "lpips": (
        "LPIPS v0.1, net='alex' with its linear heads (= the lpips package), composite and "
        "truth both x / 127.5 - 1, spatial mean; per pair, bucket rows are means"
    ),
    "fid": (
        "per source: Frechet distance between the Inception pool3 (2048-d) features of all "
        "truths and of the source's composites (= pytorch-fid: pt_inception-2015-12-05, "
        "x / 255, bilinear resize to 299, mean and np.cov(rowvar=False) in float64); "
        "tr(sqrtm(S1 S2)) computed exactly from eigenvalues"
    ),
    "pids": (
        "per source, as MAT: LinearSVC(dual=False) fitted on the same features, truths "
        "labelled 1, composites 0; u_ids = 1 - its accuracy on that set, p_ids = share of "
        "pairs whose composite's decision value exceeds its truth's"
    ),
}

POLICY: dict[str, str] = {
    "scored_image": (
        "composite (hole pixels from the output, known pixels from the truth) rounded to "
        "uint8, as a saved PNG holds it; float outputs are clamped to [0, 1]"
    ),
    "bucket_means": (
        "l1 and SSIM: mean over the bucket's images; PSNR: mean of per-image values over "
        "the images with finite PSNR, images identical to the truth counted in psnr_inf "
        "(inf when all are)"
    ),
    "json_values": 'PSNR inf is written as the string "inf", undefined values as null',
}

CSV_COLUMNS: tuple[str, ...] = (
    "source",
    "bucket",
    "touches_border",
    "count",
    "l1",
    "psnr",
    "psnr_inf",
    "ssim",
)


def build_config(metrics: tuple[str, ...] | None = None, **settings: Any) -> dict[str, Any]:
    """The JSON ``config``: the run's ``settings`` plus the definitions of ``metrics``
    (default: l1/psnr/ssim) and the policies."""
    names = ("l1", "psnr", "ssim") if metrics is None else metrics
    return {**settings, "metrics": {name: METRIC_DEFINITIONS[name] for name in names}, **POLICY}


_PAIR_KEYS: dict[str, tuple[str, ...]] = {
    "l1": ("l1",),
    "psnr": ("psnr", "psnr_inf"),
    "ssim": ("ssim",),
    "lpips": ("lpips",),
}


def _dropped_keys(metrics: tuple[str, ...]) -> set[str]:
    """Per-pair keys of metrics that were not asked for (left out of JSON and CSV)."""
    return {key for name, keys in _PAIR_KEYS.items() if name not in metrics for key in keys}


def _without(record: dict[str, Any], dropped: set[str]) -> dict[str, Any]:
    if not dropped:
        return record
    return {key: value for key, value in record.items() if key not in dropped}


def set_metric_values(source: SourceResult, metrics: tuple[str, ...]) -> dict[str, Any]:
    """``{"fid", "p_ids", "u_ids"}`` (those asked for) of a source, JSON-ready."""
    return _set_values(source.set_metrics, metrics)


def _set_values(values: dict[str, float], metrics: tuple[str, ...]) -> dict[str, Any]:
    return {
        key: json_number(values.get(key, math.nan))
        for name in metrics
        for key in SET_METRIC_KEYS.get(name, ())
    }


def write_json(path: str | os.PathLike[str], config: dict[str, Any], result: EvalResult) -> Path:
    """Config, per-source summary and per-image records as strict JSON (streamed, atomic)."""

    def dump(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, allow_nan=False, indent=indent)

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(f'{{\n"pconv_version": {dump(__version__)},\n')
            handle.write(f'"config": {dump(config, indent=2)},\n"sources": {{')
            dropped = _dropped_keys(result.metrics)
            for number, source in enumerate(result.sources):
                head = source.source.describe()
                head["summary"] = [_without(row.to_json(), dropped) for row in source.rows()]
                if any(name in SET_METRIC_KEYS for name in result.metrics):
                    head["set_metrics"] = set_metric_values(source, result.metrics)
                    if source.set_metrics_by_bucket:
                        head["set_metrics_by_bucket"] = {
                            label: _set_values(values, result.metrics)
                            for label, values in source.set_metrics_by_bucket.items()
                        }
                body = dump(head)[:-1]  # reopen the object to stream "images"
                handle.write(f'{"," if number else ""}\n{dump(source.label)}: {body}, "images": [')
                for count, record in enumerate(source.records()):
                    handle.write(f"{',' if count else ''}\n{dump(_without(record, dropped))}")
                handle.write("\n]}")
            handle.write("\n}\n}\n")

    return atomic_write(path, write)


def _csv_value(value: float | str | None) -> str:
    converted = json_number(value) if isinstance(value, float) else value
    if converted is None:
        return ""
    return str(converted)


def _csv_row(source: SourceResult, row: SummaryRow, metrics: tuple[str, ...]) -> dict[str, str]:
    border = "" if row.border is None else ("true" if row.border else "false")
    stats = row.stats
    values = {
        "source": source.label,
        "bucket": row.bucket,
        "touches_border": border,
        "count": str(stats.count),
        "l1": _csv_value(stats.l1),
        "psnr": _csv_value(stats.psnr),
        "psnr_inf": str(stats.psnr_inf),
        "ssim": _csv_value(stats.ssim),
        "lpips": _csv_value(stats.lpips),
    }
    if row.bucket == "overall":
        values.update({k: _csv_value(v) for k, v in set_metric_values(source, metrics).items()})
    return values


def csv_columns(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The CSV header for ``metrics`` (the default three give :data:`CSV_COLUMNS`)."""
    keys = [key for name in metrics for key in _PAIR_KEYS.get(name, ())]
    keys += [key for name in metrics for key in SET_METRIC_KEYS.get(name, ())]
    return (*CSV_COLUMNS[:4], *keys)


def write_csv(path: str | os.PathLike[str], result: EvalResult) -> Path:
    """The summary table in long form (see the module docstring), atomically."""
    columns = csv_columns(result.metrics)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=columns, lineterminator="\n", extrasaction="ignore", restval=""
            )
            writer.writeheader()
            for source in result.sources:
                writer.writerows(_csv_row(source, row, result.metrics) for row in source.rows())

    return atomic_write(path, write)


# --------------------------------------------------------------------------- grid

_GAP = 4
_COLUMNS = ("input", "mask", "output", "truth")


def _cells(pick: GridPick) -> list[np.ndarray]:
    masked = np.where(pick.hole[..., None], np.uint8(255), pick.truth)
    return [masked, hole_panel(pick.hole), pick.output, pick.truth]


def _caption(kind: str, rank: int, pick: GridPick) -> str:
    r = pick.record
    psnr = "inf" if math.isinf(r.psnr) else f"{r.psnr:.2f}"
    return (
        f"{kind} {rank}: {r.name}  l1 {r.l1:.3f}  PSNR {psnr}  SSIM {r.ssim:.4f}  "
        f"(hole {r.hole_ratio:.1%})"
    )


GRID_ROWS = 16
"""Pairs per grid page: pages stay a few thousand pixels tall whatever the source count."""


def render_grid(result: EvalResult, rows_per_page: int = GRID_ROWS) -> list[Image.Image]:
    """The grid pages (see the module docstring); raises ValueError when nothing was kept.

    Each page holds at most ``rows_per_page`` pairs; a source's heading repeats on
    every page its pairs continue on.
    """
    pages: list[list[PanelRow]] = []
    count = rows_per_page
    for source in result.sources:
        if source.extremes is None:
            continue
        picks = [("best", i + 1, p) for i, p in enumerate(source.extremes.best)]
        picks += [("worst", i + 1, p) for i, p in enumerate(source.extremes.worst)]
        for number, (kind, rank, pick) in enumerate(picks):
            if count == rows_per_page:
                pages.append([])
                count = 0
            if number == 0 or not pages[-1]:
                pages[-1].append(PanelRow(caption=f"[{source.label}]"))
            pages[-1].append(PanelRow(_cells(pick), _caption(kind, rank, pick)))
            count += 1
    if not pages:
        raise ValueError("no images were kept for the grid")
    return [panel_grid(rows, titles=_COLUMNS, gap=_GAP) for rows in pages]


def grid_paths(path: str | os.PathLike[str], pages: int) -> list[Path]:
    """``path`` for the first page, then ``<stem>-2<suffix>``, ``<stem>-3<suffix>``..."""
    path = Path(path)
    return [path] + [path.with_name(f"{path.stem}-{n}{path.suffix}") for n in range(2, pages + 1)]


def write_grid(path: str | os.PathLike[str], result: EvalResult) -> list[Path]:
    """Write the :func:`render_grid` pages as PNGs, atomically; returns their paths."""
    pages = render_grid(result)
    return [
        save_png(target, page)
        for target, page in zip(grid_paths(path, len(pages)), pages, strict=True)
    ]
