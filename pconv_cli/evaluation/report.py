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
  input (holes white) | mask (white = hole) | output (composite) | truth.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pconv_cli import __version__
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
_TEXT_H = 14
_BACKGROUND = (32, 32, 32)
_TEXT = (235, 235, 235)
_COLUMNS = ("input", "mask", "output", "truth")


def _cells(pick: GridPick) -> list[np.ndarray]:
    hole = pick.hole[..., None]
    masked = np.where(hole, np.uint8(255), pick.truth)
    mask = np.repeat(hole.astype(np.uint8) * np.uint8(255), 3, axis=2)
    return [masked, mask, pick.output, pick.truth]


def _caption(kind: str, rank: int, pick: GridPick) -> str:
    r = pick.record
    psnr = "inf" if math.isinf(r.psnr) else f"{r.psnr:.2f}"
    return (
        f"{kind} {rank}: {r.name}  l1 {r.l1:.3f}  PSNR {psnr}  SSIM {r.ssim:.4f}  "
        f"(hole {r.hole_ratio:.1%})"
    )


def render_grid(result: EvalResult) -> Image.Image:
    """The grid image (see the module docstring); raises ValueError when nothing was kept."""
    sections = []
    for source in result.sources:
        if source.extremes is None:
            continue
        picks = [("best", i + 1, p) for i, p in enumerate(source.extremes.best)]
        picks += [("worst", i + 1, p) for i, p in enumerate(source.extremes.worst)]
        if picks:
            sections.append((source.label, picks))
    if not sections:
        raise ValueError("no images were kept for the grid")
    cell_h = max(p.truth.shape[0] for _, picks in sections for _, _, p in picks)
    cell_w = max(p.truth.shape[1] for _, picks in sections for _, _, p in picks)
    width = len(_COLUMNS) * cell_w + (len(_COLUMNS) + 1) * _GAP
    row_h = _TEXT_H + cell_h + _GAP
    height = _TEXT_H + _GAP + sum(_TEXT_H + len(p) * row_h for _, p in sections)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(_COLUMNS):
        draw.text((_GAP + column * (cell_w + _GAP), 1), title, fill=_TEXT)
    y = _TEXT_H + _GAP
    for label, picks in sections:
        draw.text((_GAP, y), f"[{label}]", fill=_TEXT)
        y += _TEXT_H
        for kind, rank, pick in picks:
            draw.text((_GAP, y), _caption(kind, rank, pick), fill=_TEXT)
            for column, cell in enumerate(_cells(pick)):
                canvas.paste(Image.fromarray(cell), (_GAP + column * (cell_w + _GAP), y + _TEXT_H))
            y += row_h
    return canvas


def write_grid(path: str | os.PathLike[str], result: EvalResult) -> Path:
    """Write :func:`render_grid` as a PNG, atomically."""
    image = render_grid(result)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
