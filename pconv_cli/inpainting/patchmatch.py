"""Exemplar-based inpainting: multi-scale PatchMatch (Barnes et al. 2009) with the
EM reconstruction of Wexler, Shechtman and Irani (2007), in torch (CPU or CUDA).

Conventions: ``image`` uint8 RGB (H, W, 3); ``hole`` bool (H, W), **True = hole**;
the result is uint8 RGB with every known pixel the input's.

The method: a pyramid of 2x block averages (a block with any hole pixel is a hole)
down to a level where the hole is at most a few patches deep. At the coarsest
level the hole starts as a smooth pull-push fill and the nearest-neighbour field
(NNF: for every *target* patch, one whose centre lies within the patch radius of
the hole, the centre of a *source* patch made of known pixels only) starts at
random. Each level then alternates:

- **search** (PatchMatch): every target tries the sources its neighbours at
  distance 8, 4, 2, 1 point to (jump-flooding propagation, all targets at once),
  then random sources around its own in windows halving from the image size
  (random search); a candidate replaces the current match when its sum of squared
  differences over the patch is smaller;
- **vote** (EM): every hole pixel becomes the weighted mean of the pixels the
  matched source patches of all targets covering it put there (weight
  ``exp(-d / 2 s)``, ``d`` the match's distance, ``s`` the 75th percentile of the
  distances).

The field is carried to the next finer level (coordinates doubled) and a vote
there gives its first estimate. Random draws come from one ``torch.Generator``
seeded with ``seed``: the same seed on the same device gives the same bytes.
Every scatter of the vote is over distinct pixels, so CUDA runs are deterministic
too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pconv_cli.errors import PconvError

__all__ = ["PatchMatchError", "PatchMatchOptions", "patchmatch_inpaint"]

_CACHE_FLOATS = 1 << 26
"""Target patches are cached per EM step up to this many floats (256 MiB)."""


class PatchMatchError(PconvError, ValueError):
    """An input PatchMatch cannot fill (no known pixel); the message is one line."""


@dataclass(frozen=True)
class PatchMatchOptions:
    """``patch``: patch side (odd); ``search``: PatchMatch iterations per EM step;
    ``em_coarse``/``em_fine``: EM steps at the coarsest/finest level (linear between);
    ``depth``: the coarsest level is the first where the hole is at most this many
    patch radii deep; ``chunk``: targets per distance computation (memory)."""

    patch: int = 7
    search: int = 1
    em_coarse: int = 6
    em_fine: int = 2
    depth: float = 2.0
    chunk: int = 1 << 14


# --------------------------------------------------------------------------- pyramid


def _downsample(image: Tensor, hole: Tensor) -> tuple[Tensor, Tensor]:
    """2x block mean (edges replicated); a block with any hole pixel is a hole."""
    h, w = hole.shape
    ph, pw = h % 2, w % 2
    img = F.pad(image[None], (0, pw, 0, ph), mode="replicate")[0] if ph or pw else image
    hl = F.pad(hole[None, None].float(), (0, pw, 0, ph), mode="replicate")[0, 0] if ph or pw \
        else hole.float()  # fmt: skip
    return F.avg_pool2d(img[None], 2)[0], F.max_pool2d(hl[None, None], 2)[0, 0] > 0


def _pull_push(image: Tensor, hole: Tensor) -> Tensor:
    """Holes filled smoothly from the known pixels (normalised pyramid averages)."""
    weight = (~hole).float()[None]
    levels = [(image * weight, weight)]
    while min(levels[-1][1].shape[-2:]) > 1 and bool((levels[-1][1] == 0).any()):
        values, weights = levels[-1]
        h, w = weights.shape[-2:]
        pad = (0, w % 2, 0, h % 2)
        values = F.avg_pool2d(F.pad(values[None], pad)[0][None], 2)[0]
        weights = F.avg_pool2d(F.pad(weights[None], pad)[0][None], 2)[0]
        levels.append((values, weights))
    values, weights = levels[-1]
    filled = values / weights.clamp(min=1e-8)
    for values, weights in reversed(levels[:-1]):
        h, w = weights.shape[-2:]
        up = F.interpolate(filled[None], scale_factor=2.0, mode="bilinear", align_corners=False)
        up = up[0, :, :h, :w]
        mean = values / weights.clamp(min=1e-8)
        filled = torch.where(weights > 0.999, mean, up * (1 - weights) + values)
    return torch.where(hole[None], filled, image)


def _levels(hole: np.ndarray, patch_radius: int, options: PatchMatchOptions) -> int:
    from pconv_cli.inpainting.strategy import hole_depth_map

    depth = float(hole_depth_map(hole).max())
    target = max(1.0, options.depth * max(patch_radius, 1))
    by_depth = math.ceil(math.log2(depth / target)) if depth > target else 0
    by_size = max(0, math.floor(math.log2(min(hole.shape) / (4 * options.patch + 1))) + 1)
    return max(0, min(by_depth, by_size))


# --------------------------------------------------------------------------- one level


class _Level:
    """Targets, sources and the NNF of one pyramid level."""

    def __init__(self, image: Tensor, hole: Tensor, radius: int, options: PatchMatchOptions):
        self.image, self.hole = image, hole
        self.h, self.w = hole.shape
        self.options = options
        known = (~hole).float()[None, None]
        self.radius = radius
        while True:  # sources: patches of known pixels only (shrink the patch if none)
            side = 2 * self.radius + 1
            full = F.avg_pool2d(known, side, stride=1, padding=self.radius,
                                count_include_pad=True)[0, 0]  # fmt: skip
            self.source = full > 1 - 1e-6
            if bool(self.source.any()) or self.radius == 0:
                break
            self.radius -= 1
        side = 2 * self.radius + 1
        near = F.max_pool2d(hole.float()[None, None], side, stride=1, padding=self.radius)[0, 0]
        ty, tx = torch.nonzero(near > 0, as_tuple=True)
        self.ty, self.tx = ty, tx
        self.top, self.left = int(ty.min()), int(tx.min())
        self.bh, self.bw = int(ty.max()) - self.top + 1, int(tx.max()) - self.left + 1
        index = torch.full((self.bh, self.bw), -1, dtype=torch.long, device=hole.device)
        index[ty - self.top, tx - self.left] = torch.arange(ty.numel(), device=hole.device)
        self.index = index
        r = self.radius
        dy, dx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
        self.offsets = list(zip(dy.flatten().tolist(), dx.flatten().tolist(), strict=True))
        self.dy = dy.flatten().to(hole.device)
        self.dx = dx.flatten().to(hole.device)
        self._targets: tuple[Tensor, Tensor] | None = None
        sy, sx = torch.nonzero(self.source, as_tuple=True)
        self.source_y, self.source_x = sy, sx

    # -- distances ------------------------------------------------------------------

    def _patch_index(self, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Flat pixel indices (K, n) of the patches centred at (y, x) and whether each
        pixel lies inside the image."""
        py = y[None, :] + self.dy[:, None]
        px = x[None, :] + self.dx[:, None]
        inside = (py >= 0) & (py < self.h) & (px >= 0) & (px < self.w)
        return py.clamp(0, self.h - 1) * self.w + px.clamp(0, self.w - 1), inside

    def refresh(self) -> None:
        """Cache the target patches of the current estimate (when they fit in memory)."""
        self._targets = None
        if self.ty.numel() * len(self.offsets) * 3 <= _CACHE_FLOATS:
            index, inside = self._patch_index(self.ty, self.tx)
            flat = self.image.reshape(3, -1)
            self._targets = (flat[:, index], inside)

    def distance(self, sy: Tensor, sx: Tensor) -> Tensor:
        """Sum of squared differences of every target patch to source patch (sy, sx);
        ``inf`` for a candidate that is not a source. Target pixels outside the image
        do not count."""
        flat = self.image.reshape(3, -1)
        out = torch.empty(self.ty.numel(), device=self.image.device)
        chunk = self.options.chunk
        ok = self.source[sy.clamp(0, self.h - 1), sx.clamp(0, self.w - 1)]
        ok &= (sy >= 0) & (sy < self.h) & (sx >= 0) & (sx < self.w)
        cy, cx = sy.clamp(0, self.h - 1), sx.clamp(0, self.w - 1)
        for start in range(0, self.ty.numel(), chunk):
            part = slice(start, start + chunk)
            if self._targets is not None:
                t, inside = self._targets[0][:, :, part], self._targets[1][:, part]
            else:
                index, inside = self._patch_index(self.ty[part], self.tx[part])
                t = flat[:, index]
            source_index, _ = self._patch_index(cy[part], cx[part])
            diff = t - flat[:, source_index]
            out[part] = (diff.square_().sum(0) * inside).sum(0)
        return torch.where(ok, out, torch.inf)

    # -- search ----------------------------------------------------------------------

    def random_sources(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pick = torch.randint(self.source_y.numel(), (count,), generator=generator,
                             device=self.source_y.device)  # fmt: skip
        return self.source_y[pick], self.source_x[pick]

    def _try(self, sy: Tensor, sx: Tensor, cy: Tensor, cx: Tensor, d: Tensor):
        candidate = self.distance(cy, cx)
        better = candidate < d
        return (
            torch.where(better, cy, sy),
            torch.where(better, cx, sx),
            torch.where(better, candidate, d),
        )

    def search(self, sy: Tensor, sx: Tensor, d: Tensor, generator: torch.Generator, jumps):
        """One PatchMatch iteration: jump-flooding propagation, then random search."""
        ly, lx = self.ty - self.top, self.tx - self.left
        for step in jumps:
            for dy, dx in ((step, 0), (-step, 0), (0, step), (0, -step)):
                ny, nx = ly + dy, lx + dx
                inside = (ny >= 0) & (ny < self.bh) & (nx >= 0) & (nx < self.bw)
                neighbour = self.index[ny.clamp(0, self.bh - 1), nx.clamp(0, self.bw - 1)]
                has = inside & (neighbour >= 0)
                n = neighbour.clamp(min=0)
                cy = torch.where(has, sy[n] - dy, -1)
                cx = torch.where(has, sx[n] - dx, -1)
                sy, sx, d = self._try(sy, sx, cy, cx, d)
        span = float(max(self.h, self.w))
        while span >= 1.0:
            shape = (self.ty.numel(),)
            uy = torch.rand(shape, generator=generator, device=sy.device) * 2 - 1
            ux = torch.rand(shape, generator=generator, device=sy.device) * 2 - 1
            cy = (sy + (uy * span).round().long()).clamp(0, self.h - 1)
            cx = (sx + (ux * span).round().long()).clamp(0, self.w - 1)
            sy, sx, d = self._try(sy, sx, cy, cx, d)
            span /= 2
        return sy, sx, d

    # -- vote ------------------------------------------------------------------------

    def vote(self, sy: Tensor, sx: Tensor, d: Tensor) -> None:
        """Every hole pixel from the patches that cover it (weighted by match quality)."""
        finite = torch.isfinite(d)
        spread = (
            torch.quantile(d[finite][: 1 << 24], 0.75) if bool(finite.any()) else d.new_ones(())
        )
        weight = torch.exp(-d / (2 * spread.clamp(min=1e-6))) * finite + 1e-12 * finite
        flat = self.image.reshape(3, -1)
        hole_flat = self.hole.flatten()
        total = torch.zeros_like(flat)
        weights = torch.zeros(flat.shape[1], device=flat.device)
        for dy, dx in self.offsets:
            py, px = self.ty + dy, self.tx + dx
            inside = (py >= 0) & (py < self.h) & (px >= 0) & (px < self.w)
            p = py.clamp(0, self.h - 1) * self.w + px.clamp(0, self.w - 1)
            use = inside & hole_flat[p] & finite
            p, wt = p[use], weight[use]
            s = (sy[use] + dy) * self.w + (sx[use] + dx)
            # one offset maps targets to distinct pixels: plain indexed writes, no atomics
            total[:, p] = total[:, p] + flat[:, s] * wt
            weights[p] = weights[p] + wt
        have = hole_flat & (weights > 0)
        flat[:, have] = total[:, have] / weights[have]


def _upsample_field(coarse: _Level, sy: Tensor, sx: Tensor, fine: _Level, generator):
    """The coarse NNF at the finer level (coordinates doubled); invalid -> random."""
    cy = (fine.ty // 2).clamp(0, coarse.h - 1) - coarse.top
    cx = (fine.tx // 2).clamp(0, coarse.w - 1) - coarse.left
    inside = (cy >= 0) & (cy < coarse.bh) & (cx >= 0) & (cx < coarse.bw)
    n = coarse.index[cy.clamp(0, coarse.bh - 1), cx.clamp(0, coarse.bw - 1)]
    has = inside & (n >= 0)
    n = n.clamp(min=0)
    ny = torch.where(has, sy[n] * 2 + fine.ty % 2, -1).clamp(-1, fine.h - 1)
    nx = torch.where(has, sx[n] * 2 + fine.tx % 2, -1).clamp(-1, fine.w - 1)
    valid = (ny >= 0) & (nx >= 0) & fine.source[ny.clamp(min=0), nx.clamp(min=0)]
    ry, rx = fine.random_sources(fine.ty.numel(), generator)
    return torch.where(valid, ny, ry), torch.where(valid, nx, rx)


# --------------------------------------------------------------------------- the method


def patchmatch_inpaint(
    image: np.ndarray,
    hole: np.ndarray,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    options: PatchMatchOptions | None = None,
) -> np.ndarray:
    """Fill ``hole`` (True = hole) of uint8 RGB ``image`` by multi-scale PatchMatch.

    Returns uint8 RGB (H, W, 3); known pixels are the input's. No hole: the image
    as is. No known pixel (an all-hole mask, a 1x1 hole): :class:`PatchMatchError`.
    """
    options = options or PatchMatchOptions()
    if options.patch < 1 or options.patch % 2 == 0:
        raise ValueError(f"patch must be odd and positive, got {options.patch}")
    hole = np.asarray(hole, dtype=bool)
    result = np.array(image, dtype=np.uint8, copy=True)
    if not hole.any():
        return result
    if hole.all():
        raise PatchMatchError(
            "patchmatch needs known pixels to copy from: the mask covers the whole image"
        )
    device = torch.device(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    radius = options.patch // 2
    count = _levels(hole, radius, options)
    images = [torch.from_numpy(result).to(device).permute(2, 0, 1).float().div(255.0)]
    images[0] = images[0].contiguous()
    holes = [torch.from_numpy(hole).to(device)]
    for _ in range(count):
        small, small_hole = _downsample(images[-1], holes[-1])
        images.append(small.contiguous())
        holes.append(small_hole)
    field: tuple[Tensor, Tensor, _Level] | None = None
    for number, index in enumerate(range(count, -1, -1)):
        img, hl = images[index].clone(), holes[index]
        if field is None:
            img = _pull_push(img, hl).contiguous()
        else:  # no pixel of what is under the hole takes part: start from the coarser fill
            coarse = field[2].image
            up = F.interpolate(coarse[None], scale_factor=2.0, mode="bicubic",
                               align_corners=False)[0, :, : hl.shape[0], : hl.shape[1]]  # fmt: skip
            img = torch.where(hl[None], up.clamp(0.0, 1.0), img).contiguous()
        level = _Level(img, hl, radius, options)
        level.refresh()
        if field is None:
            sy, sx = level.random_sources(level.ty.numel(), generator)
        else:
            sy, sx = _upsample_field(field[2], field[0], field[1], level, generator)
        d = level.distance(sy, sx)
        if field is not None:
            level.vote(sy, sx, d)  # the finer level's estimate from the carried field
            level.refresh()
            d = level.distance(sy, sx)
        fraction = number / max(count, 1)
        steps = round(options.em_coarse + (options.em_fine - options.em_coarse) * fraction)
        far = max(level.bh, level.bw)
        jumps = [2**k for k in range(max(0, math.ceil(math.log2(far))), -1, -1)]
        for em in range(max(1, steps)):
            for it in range(options.search):
                use = jumps if field is None and em == 0 and it == 0 else [8, 4, 2, 1]
                sy, sx, d = level.search(sy, sx, d, generator, use)
            level.vote(sy, sx, d)
            level.refresh()
            d = level.distance(sy, sx)
        field = (sy, sx, level)
    assert field is not None
    out = field[2].image.permute(1, 2, 0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    filled = out.cpu().numpy()
    result[hole] = filled[hole]
    return result
