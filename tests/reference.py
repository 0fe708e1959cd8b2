"""Independent references for the partial convolution, written from the paper's formula.

``naive_partial_conv`` loops over every output window in float64 numpy, with no
convolution routine at all: it is slow and obviously right, which is the point.
"""

from __future__ import annotations

import numpy as np
import torch


def cpu_fp16_autocast_supported() -> bool:
    """Whether this CPU build runs convolutions under float16 autocast."""
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
        return True
    except RuntimeError:
        return False


def naive_partial_conv(
    x: np.ndarray,
    mask: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    eps: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray]:
    """Partial convolution per the paper: ``W^T(X*M) * sum(1)/sum(M) + b`` or 0.

    ``mask`` is (N, 1, H, W) (single-channel: sum(1) = k*k) or (N, C_in, H, W)
    (multi-channel: sum(1) = C_in*k*k, the window spanning all input channels).
    Returns out (N, C_out, H', W') and new_mask (N, 1, H', W'), float64.
    """
    n, c_in, h, w = x.shape
    c_out, c_in_g, kh, kw = weight.shape
    assert c_in_g * groups == c_in
    multi = mask.shape[1] != 1
    win = (c_in if multi else 1) * kh * kw
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    mp = np.pad(mask, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    w_out = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, c_out, h_out, w_out))
    new_mask = np.zeros((n, 1, h_out, w_out))
    per_group = c_out // groups
    for b in range(n):
        for i in range(h_out):
            for j in range(w_out):
                rows = [i * stride + dilation * a for a in range(kh)]
                cols = [j * stride + dilation * a for a in range(kw)]
                m_win = mp[b][:, rows][:, :, cols]  # (C_mask, kh, kw)
                x_win = xp[b][:, rows][:, :, cols]  # (C_in, kh, kw)
                total = m_win.sum()
                if total <= 0:
                    continue
                new_mask[b, 0, i, j] = min(total, 1.0)
                xm = x_win * m_win  # broadcasts a single-channel mask over channels
                for o in range(c_out):
                    g = o // per_group
                    patch = xm[g * c_in_g : (g + 1) * c_in_g]
                    value = (weight[o] * patch).sum() * win / (total + eps)
                    out[b, o, i, j] = value + (bias[o] if bias is not None else 0.0)
    return out, new_mask
