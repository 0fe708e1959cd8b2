"""Report files of ``pconv eval``: JSON, CSV and the best/worst grid PNG.

Every file is written with :func:`pconv_cli.files.atomic_write` after scoring
has finished, so a failed or interrupted run leaves no partial report.

- JSON (strict: no NaN/Infinity tokens): ``{"pconv_version", "config",
  "sources": {label: {"kind", "spec", ..., "summary": [rows], "images": [records]}}}``.
  PSNR ``inf`` (output identical to the truth) is the string ``"inf"``; an
  undefined value (l1 of an image without holes) is ``null``.
- CSV: the summary table in long form, one row per source and bucket row
  (``source, bucket, touches_border, count, l1, psnr, psnr_inf, ssim``), ``inf``
  written as ``inf``. Per-image values are in the JSON.
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
from pconv_cli.evaluation.scoring import EvalResult, GridPick, SummaryRow, json_number
from pconv_cli.files import atomic_write

__all__ = [
    "CSV_COLUMNS",
    "METRIC_DEFINITIONS",
    "POLICY",
    "build_config",
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


def build_config(**settings: Any) -> dict[str, Any]:
    """The JSON ``config``: the run's ``settings`` plus the metric definitions and policies."""
    return {**settings, "metrics": dict(METRIC_DEFINITIONS), **POLICY}


def write_json(path: str | os.PathLike[str], config: dict[str, Any], result: EvalResult) -> Path:
    """Config, per-source summary and per-image records as strict JSON (streamed, atomic)."""

    def dump(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, allow_nan=False, indent=indent)

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(f'{{\n"pconv_version": {dump(__version__)},\n')
            handle.write(f'"config": {dump(config, indent=2)},\n"sources": {{')
            for number, source in enumerate(result.sources):
                head = source.source.describe()
                head["summary"] = [row.to_json() for row in source.rows()]
                body = dump(head)[:-1]  # reopen the object to stream "images"
                handle.write(f'{"," if number else ""}\n{dump(source.label)}: {body}, "images": [')
                for count, record in enumerate(source.records()):
                    handle.write(f"{',' if count else ''}\n{dump(record)}")
                handle.write("\n]}")
            handle.write("\n}\n}\n")

    return atomic_write(path, write)


def _csv_value(value: float | str | None) -> str:
    converted = json_number(value) if isinstance(value, float) else value
    if converted is None:
        return ""
    return str(converted)


def _csv_row(label: str, row: SummaryRow) -> dict[str, str]:
    border = "" if row.border is None else ("true" if row.border else "false")
    stats = row.stats
    return {
        "source": label,
        "bucket": row.bucket,
        "touches_border": border,
        "count": str(stats.count),
        "l1": _csv_value(stats.l1),
        "psnr": _csv_value(stats.psnr),
        "psnr_inf": str(stats.psnr_inf),
        "ssim": _csv_value(stats.ssim),
    }


def write_csv(path: str | os.PathLike[str], result: EvalResult) -> Path:
    """The summary table in long form (see the module docstring), atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for source in result.sources:
                writer.writerows(_csv_row(source.label, row) for row in source.rows())

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
