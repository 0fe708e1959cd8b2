"""Pictures of a training run: sample grids and the loss curve (PIL only, no plotting library)."""

from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image, ImageDraw

from pconv_cli.data.images import to_uint8
from pconv_cli.data.panels import PanelRow, panel_grid
from pconv_cli.models.inpainting import composite

__all__ = ["SAMPLE_COLUMNS", "loss_curve", "loss_terms", "sample_grid"]

SAMPLE_COLUMNS = ("input", "mask", "output", "composite", "truth")


def _hwc(t: torch.Tensor):
    """(3, H, W) or (1, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    t = t.detach().float().cpu()
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return to_uint8(t.permute(1, 2, 0).numpy())


def sample_grid(image: torch.Tensor, mask: torch.Tensor, output: torch.Tensor) -> Image.Image:
    """Rows of input (holes white) | mask (white = hole) | output | composite | truth.

    ``image`` float RGB [0, 1] (N, 3, H, W), ``mask`` 1 = valid (N, 1, H, W),
    ``output`` the model's raw output on the [0, 1] scale.
    """
    comp = composite(image, output, mask)
    shown_input = image * mask + (1 - mask)
    rows = [
        PanelRow([_hwc(t) for t in (shown_input[i], 1 - mask[i], output[i], comp[i], image[i])])
        for i in range(image.shape[0])
    ]
    return panel_grid(rows, titles=SAMPLE_COLUMNS, gap=2, background=(255, 255, 255),
                      text=(0, 0, 0))  # fmt: skip


NOT_LOSSES = frozenset({"step", "lr", "images_per_s", "global_batch", "skipped_images", "epoch"})
"""Log-record keys that are not loss terms."""
_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def loss_terms(history: list[dict[str, Any]]) -> list[str]:
    """The loss terms logged in ``history``: ``loss`` first, then the others in log order."""
    names: list[str] = []
    for record in history:
        for key, value in record.items():
            if key in NOT_LOSSES or key.startswith("val_") or key == "top1":
                continue
            if isinstance(value, (int, float)) and key not in names:
                names.append(key)
    return sorted(names, key=lambda name: name != "loss")


def loss_curve(history: list[dict[str, Any]], *, size=(760, 420)) -> Image.Image:
    """Every logged loss term against the step, log-scale y, with a legend (PIL only).

    Terms that are not positive (e.g. an adversarial term below 0) are drawn where
    they are positive; ``loss`` (the total) is the thick line.
    """
    width, height = size
    left, right, top, bottom = 64, 170, 16, 36
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    series = []
    for name in loss_terms(history):
        points = [
            (r["step"], math.log10(r[name]))
            for r in history
            if isinstance(r.get(name), (int, float)) and math.isfinite(r[name]) and r[name] > 0
        ]
        if len(points) >= 2:
            series.append((name, points))
    if series:
        xs = [x for _, points in series for x, _ in points]
        ys = [y for _, points in series for _, y in points]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
        plot_w, plot_h = width - left - right, height - top - bottom

        def at(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * plot_w, top + (1 - (y - y0) / (y1 - y0)) * plot_h)

        for index, (name, points) in enumerate(series):
            colour = _PALETTE[index % len(_PALETTE)]
            draw.line([at(x, y) for x, y in points], fill=colour, width=3 if name == "loss" else 1)
            legend_y = top + 4 + 14 * index
            draw.line([(width - right + 8, legend_y + 6), (width - right + 28, legend_y + 6)],
                      fill=colour, width=3)  # fmt: skip
            draw.text((width - right + 34, legend_y), name, fill="black")
        draw.text((4, top), f"{10**y1:.3g}", fill="black")
        draw.text((4, height - bottom - 10), f"{10**y0:.3g}", fill="black")
        draw.text((left, height - bottom + 6), f"step {x0}", fill="black")
        draw.text((width - right - 90, height - bottom + 6), f"step {x1}", fill="black")
    draw.text((left + 8, top + 4), "loss terms (log scale)", fill="black")
    return image
