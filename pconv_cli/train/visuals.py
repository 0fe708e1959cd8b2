"""Pictures of a training run: sample grids and the loss curve (PIL only, no plotting library)."""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw

from pconv_cli.data.images import to_uint8
from pconv_cli.data.panels import PanelRow, panel_grid
from pconv_cli.models.inpainting import composite

__all__ = ["loss_curve", "sample_grid"]


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
    return panel_grid(rows)


def loss_curve(steps: list[int], losses: list[float], *, size=(640, 360)) -> Image.Image:
    """A plain line chart of the total loss against the step (log-scale y), drawn with PIL."""
    width, height = size
    left, right, top, bottom = 60, 16, 16, 36
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    points = [(s, v) for s, v in zip(steps, losses, strict=True) if math.isfinite(v) and v > 0]
    if len(points) >= 2:
        xs = [s for s, _ in points]
        ys = [math.log10(v) for _, v in points]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
        plot_w, plot_h = width - left - right, height - top - bottom

        def at(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * plot_w, top + (1 - (y - y0) / (y1 - y0)) * plot_h)

        draw.line([at(x, y) for x, y in zip(xs, ys, strict=True)], fill=(31, 119, 180), width=2)
        draw.text((4, top), f"{10**y1:.3g}", fill="black")
        draw.text((4, height - bottom - 10), f"{10**y0:.3g}", fill="black")
        draw.text((left, height - bottom + 6), f"step {x0}", fill="black")
        draw.text((width - right - 90, height - bottom + 6), f"step {x1}", fill="black")
    draw.text((left + 8, top + 4), "total loss (log scale)", fill="black")
    return image


