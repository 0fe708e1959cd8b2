"""Contextual attention (Yu et al. 2018, as DeepFillv2 and MMagic use it), in bounded memory.

Every location of the feature map (a *query*) borrows features from the known
part of the same map (the *context*): 3x3 context patches, L2-normalised, are
matched against the query's 3x3 neighbourhood at half resolution, the scores are
*fused* (a 3x3 identity kernel run along the flattened query/patch index pairs,
once in row-major and once in column-major order, which favours coherent
neighbouring matches), patches touching a hole get ``-inf``, a softmax (scale 10)
picks patches per query, and the chosen 4x4 raw patches are pasted back at full
resolution (stride 2) and averaged where they overlap.

The score map holds (h/2 * w/2)^2 values per image: 4e9 (16 GB in float32) for a
2048x2048 image. Since the softmax is per query, the computation here runs over
tiles of queries, each needing only its neighbours' scores (the fuse), so the
working set is bounded by ``max_bytes`` and the result equals the one-tile
computation up to float rounding. Conventions: features (N, C, h, w) with h, w
even; ``mask`` (N, 1, h, w) float, **1 = valid, 0 = hole**. The arithmetic runs
in float32 (float64 for float64 features), also under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEFAULT_MAX_BYTES", "ContextualAttention", "contextual_attention"]

DEFAULT_MAX_BYTES = 160 * 2**20
"""Working-set budget of one query tile (score rows of its queries and neighbours)."""

_EPS = 1e-4  # lower bound of a context patch's L2 norm


def contextual_attention(
    features: Tensor,
    mask: Tensor,
    *,
    softmax_scale: float = 10.0,
    fuse_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    return_attention: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Features re-synthesised from the known region: same shape as ``features``.

    ``features`` (N, C, h, w) are both queries and context; ``mask`` (N, 1, h, w)
    is 1 = valid. ``fuse_weights`` are the diagonal of the fuse kernel (MMagic's
    identity: ones). ``max_bytes`` bounds the working set of one tile of queries;
    ``None`` computes all queries at once. A map without any valid context patch
    gives zeros. ``return_attention`` also returns the softmax weights, (N, queries,
    patches) in row-major order at half resolution: for inspecting small maps only.
    """
    n, _, h, w = features.shape
    if h % 2 or w % 2:
        raise ValueError(f"contextual attention needs an even feature size, got {h}x{w}")
    if mask.shape != (n, 1, h, w):
        raise ValueError(f"mask must be {(n, 1, h, w)}, got {tuple(mask.shape)}")
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    with torch.autocast(features.device.type, enabled=False):
        x = features.to(dtype)
        hole = 1.0 - mask.to(dtype)
        results = [
            _attend(x[i], hole[i], softmax_scale, fuse_weights, max_bytes, return_attention)
            for i in range(n)
        ]
    out = results[0][0][None] if n == 1 else torch.stack([r[0] for r in results])
    out = out.to(features.dtype)
    if return_attention:
        return out, torch.stack([r[1] for r in results])
    return out


class ContextualAttention(nn.Module):
    """:func:`contextual_attention` as a module; ``fuse_kernel`` is MMagic's persistent buffer.

    The fuse uses the kernel's diagonal (MMagic's kernel is the 3x3 identity).
    ``max_bytes`` bounds the working set (see the module docstring).
    """

    def __init__(self, *, softmax_scale: float = 10.0, max_bytes: int | None = DEFAULT_MAX_BYTES):
        super().__init__()
        self.softmax_scale = softmax_scale
        self.max_bytes = max_bytes
        identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        # (not torch.eye: under the meta device it goes through torch's decompositions)
        self.register_buffer("fuse_kernel", torch.tensor(identity).view(1, 1, 3, 3))

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        diagonal = torch.diagonal(self.fuse_kernel[0, 0]).tolist()
        return contextual_attention(
            features, mask, softmax_scale=self.softmax_scale,
            fuse_weights=tuple(diagonal), max_bytes=self.max_bytes,
        )  # fmt: skip


class _Grid:
    """Flat row-major indices of an (h, w) grid and their neighbours in both flat orders."""

    def __init__(self, h: int, w: int, device: torch.device):
        self.h, self.w, self.size = h, w, h * w
        index = torch.arange(self.size, device=device)
        transposed = (index % w) * h + index // w  # T(q) = j * h + i
        self.down = self._from_transposed(transposed + 1)  # next in column-major order
        self.up = self._from_transposed(transposed - 1)

    def _from_transposed(self, t: Tensor) -> Tensor:
        """Row-major index of column-major index ``t``; ``size`` (a zero slot) where invalid."""
        valid = (t >= 0) & (t < self.size)
        t = t.clamp(0, self.size - 1)
        return torch.where(valid, (t % self.h) * self.w + t // self.h, self.size)


def _attend(x, hole, softmax_scale, fuse_weights, max_bytes, keep_attention=False):
    """(output, attention or None) of one feature map (C, h, w) and its hole (1, h, w)."""
    c, h, w = x.shape
    hs, ws = h // 2, w // 2
    grid = _Grid(hs, ws, x.device)
    patches = grid.size

    # Matching happens at half resolution (nearest: every second pixel).
    small = x[:, ::2, ::2]
    # 3x3 windows with zero padding, as flat slices of a padded map (1 spare row at the end).
    padded = F.pad(small, (1, 1, 1, 2)).reshape(c, -1)
    row = ws + 2
    ones = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    squares = F.conv2d((small * small).sum(0)[None, None], ones, padding=1)
    inv_norm = 1.0 / squares.reshape(-1).sqrt().clamp_min(_EPS)
    # A patch is a hole if any cell of its zero-padded 3x3 neighbourhood is.
    small_hole = hole[:, ::2, ::2]
    blocked = F.max_pool2d(small_hole[None], 3, 1, 1).reshape(-1) > 0
    kept = x.new_zeros(patches, patches) if keep_attention else None
    if bool(blocked.all()):
        return torch.zeros_like(x), kept

    # Raw 4x4 patches (stride 2, zero padding 1) as 4 polyphase maps, flat, 1 spare row.
    raw = F.pad(x, (1, 1, 1, 1))
    phases = [
        [F.pad(raw[:, a::2, b::2], (0, 0, 0, 1)).reshape(c, -1) for b in (0, 1)] for a in (0, 1)
    ]
    del raw
    out = torch.zeros(c, h + 2, w + 2, dtype=x.dtype, device=x.device)

    rows, cols = _tile_shape(hs, ws, patches, max_bytes)
    for i0 in range(0, hs, rows):
        for j0 in range(0, ws, cols):
            i1, j1 = min(i0 + rows, hs), min(j0 + cols, ws)
            qi = torch.arange(i0, i1, device=x.device)
            qj = torch.arange(j0, j1, device=x.device)
            queries = (qi[:, None] * ws + qj[None, :]).reshape(-1)
            scores = _fused_scores(queries, grid, padded, row, inv_norm, fuse_weights)
            scores.masked_fill_(blocked, float("-inf"))
            attention = torch.softmax(scores.mul_(softmax_scale), dim=1)
            if kept is not None:
                kept[queries] = attention
            _paste(out, attention, phases, (i0, i1, j0, j1), hs, ws)
    result = out[:, 1 : h + 1, 1 : w + 1]
    return result.div_(_overlap(hs, ws, x.device, x.dtype)), kept


def _tile_shape(hs: int, ws: int, patches: int, max_bytes: int | None) -> tuple[int, int]:
    """Rows x columns of the query tiles.

    A tile of r x c queries reads the scores of about (r + 2) x (c + 2) queries
    (its neighbours for the fuse), and at most three such score buffers of
    ``patches`` float32 values each are alive at once.
    """
    if max_bytes is None:
        return hs, ws
    rows_of_scores = max(9, max_bytes // (3 * 4 * patches))  # (r + 2) * (c + 2) at most
    side = max(1, int(math.sqrt(rows_of_scores)) - 2)
    if side >= ws:  # whole rows
        return max(1, min(hs, rows_of_scores // (ws + 2) - 2)), ws
    return min(hs, side), side


def _scores(indices: Tensor, grid: _Grid, padded: Tensor, row: int, inv_norm: Tensor) -> Tensor:
    """Correlations of queries with the normalised context patches, one zero row appended.

    Returns (len(indices) + 1, patches); the last row is all zeros (a missing neighbour).
    """
    length = grid.h * row
    scores = padded.new_empty(len(indices) + 1, grid.size)
    step = 64  # queries per matmul: the padded-layout buffer stays small
    for first in range(0, len(indices), step):
        part = indices[first : first + step]
        qi, qj = part // grid.w, part % grid.w
        total = padded.new_zeros(len(part), length)  # patches + 2 dummy columns per row
        for u in range(3):
            for v in range(3):
                start = u * row + v
                query = padded[:, (qi + u) * row + qj + v].t()
                total.addmm_(query, padded[:, start : start + length])
        grid_view = total.view(-1, grid.h, row)[:, :, : grid.w]
        scores[first : first + len(part)].view(-1, grid.h, grid.w).copy_(grid_view)
    scores[:-1].mul_(inv_norm)
    scores[-1].zero_()
    return scores


def _fused_scores(queries, grid: _Grid, padded, row, inv_norm, fuse_weights) -> Tensor:
    """Scores of ``queries`` after the fuse (see the module docstring)."""
    size = grid.size
    # The fuse reads each query's neighbours in column-major order (A), and theirs in
    # row-major order (B); scores are computed once for the union.
    neighbours = torch.cat([queries, grid.down[queries], grid.up[queries]])
    needed_a = torch.unique(neighbours[neighbours < size])
    around = torch.cat([needed_a - 1, needed_a, needed_a + 1])
    needed_b = torch.unique(around[(around >= 0) & (around < size)])
    position = torch.full((size + 2,), -1, dtype=torch.long, device=queries.device)
    position[needed_b] = torch.arange(len(needed_b), device=queries.device)
    base = _scores(needed_b, grid, padded, row, inv_norm)  # its last row is zeros
    zero_row = len(base) - 1

    def rows_of(index: Tensor) -> Tensor:
        valid = (index >= 0) & (index < size)
        found = position[index.clamp(0, size + 1)]
        return torch.where(valid & (found >= 0), found, zero_row)

    w_prev, w_mid, w_next = fuse_weights
    # Row-major pass: F1[a, l] = sum_d w_d * C[a + d, l + d].
    first = base.new_empty(len(needed_a) + 1, size)  # its last row: zeros
    if base.requires_grad:  # training: out= cannot record autograd
        first[:-1] = base[rows_of(needed_a)]
    else:  # no temporary copy
        torch.index_select(base, 0, rows_of(needed_a), out=first[:-1])
    first[:-1].mul_(w_mid)
    first[:-1, 1:].add_(base[rows_of(needed_a - 1)][:, :-1], alpha=w_prev)
    first[:-1, :-1].add_(base[rows_of(needed_a + 1)][:, 1:], alpha=w_next)
    first[-1].zero_()
    del base
    position_a = torch.full((size + 1,), len(first) - 1, dtype=torch.long, device=queries.device)
    position_a[needed_a] = torch.arange(len(needed_a), device=queries.device)
    # Column-major pass: F2[q, l] = sum_d w_d * F1[q (+) d, l (+) d] in column-major order.
    fused = first[position_a[queries]].mul_(w_mid)
    for neighbour, weight in ((grid.down, w_next), (grid.up, w_prev)):
        valid_columns = neighbour < size
        columns = torch.where(valid_columns, neighbour, 0)
        shifted = first[position_a[neighbour[queries]]][:, columns]
        fused.add_(shifted.mul_(valid_columns), alpha=weight)
    return fused


def _paste(out: Tensor, attention: Tensor, phases, tile, hs: int, ws: int) -> None:
    """Add the tile's attention-weighted 4x4 raw patches into ``out`` (padded by 1)."""
    i0, i1, j0, j1 = tile
    c = out.shape[0]
    count = attention.shape[0]
    spread = attention.new_zeros(count, hs, ws + 1)
    spread[:, :, :ws] = attention.view(count, hs, ws)
    spread = spread.view(count, -1)
    length = hs * (ws + 1)
    for u in range(4):
        for v in range(4):
            phase = phases[u % 2][v % 2]
            start = (u // 2) * (ws + 1) + v // 2
            mixed = spread @ phase[:, start : start + length].t()  # (queries, c)
            block = mixed.t().reshape(c, i1 - i0, j1 - j0)
            out[:, 2 * i0 + u : 2 * i1 + u : 2, 2 * j0 + v : 2 * j1 + v : 2] += block


def _overlap(hs: int, ws: int, device, dtype) -> Tensor:
    """How many pasted patches cover each output pixel (never 0)."""
    ones = torch.ones(1, 1, hs, ws, device=device, dtype=dtype)
    kernel = torch.ones(1, 1, 4, 4, device=device, dtype=dtype)
    overlap = F.conv_transpose2d(ones, kernel, stride=2, padding=1)[0]
    return overlap.clamp_min_(1.0)
