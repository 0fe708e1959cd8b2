"""Poisson blending against known solutions and a direct sparse solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pconv_cli.inpainting import blending, inpaint
from pconv_cli.inpainting.blending import poisson_blend, solve_membrane


def _disc(height, width, cy, cx, radius):
    yy, xx = np.mgrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2


def test_a_constant_offset_fill_comes_back_equal_to_flat_surroundings():
    photo = torch.full((3, 80, 100), 0.4)
    photo[1] = 0.7
    hole = torch.from_numpy(_disc(80, 100, 40, 55, 25) | _disc(80, 100, 5, 5, 9))  # one on the edge
    out = poisson_blend(photo, photo + 0.25, hole)
    assert (out - photo).abs().max().item() < 1e-3
    assert torch.equal(out[:, ~hole], photo[:, ~hole])


def test_a_fill_with_the_photo_s_gradients_comes_back_equal_to_the_photo():
    yy, xx = torch.meshgrid(torch.arange(90.0), torch.arange(120.0), indexing="ij")
    photo = torch.stack([0.1 + 0.004 * xx, 0.2 + 0.005 * yy, 0.5 + 0.2 * torch.sin(xx / 9)])
    hole = torch.from_numpy(_disc(90, 120, 45, 60, 30))
    fill = photo + torch.tensor([0.2, -0.1, 0.05]).view(3, 1, 1)  # offset, same gradients
    out = poisson_blend(photo, fill, hole, guided=torch.ones(90, 120, dtype=torch.bool), ramp=0)
    assert (out - photo).abs().max().item() < 1e-3


def _dense_solution(omega: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The same equations assembled as a sparse matrix and solved directly (scipy)."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    cells = np.argwhere(omega)
    number = {tuple(c): i for i, c in enumerate(cells)}
    a = lil_matrix((len(cells), len(cells)))
    h, w = omega.shape
    for i, (y, x) in enumerate(cells):
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w:
                a[i, i] += 1
                if omega[ny, nx]:
                    a[i, number[(ny, nx)]] -= 1
    out = np.zeros((rhs.shape[0], h, w))
    for c in range(rhs.shape[0]):
        out[c][omega] = spsolve(a.tocsr(), rhs[c][omega])
    return out


@pytest.mark.parametrize("shape", [(23, 31), (64, 80)])
def test_multigrid_matches_a_direct_sparse_solve(shape):
    rng = np.random.default_rng(shape[0])
    omega = _disc(*shape, shape[0] // 2, shape[1] // 2, min(shape) // 3)
    omega |= rng.random(shape) > 0.85  # specks and ragged edges
    omega[3:9, 0] = True  # touching the array's edge (no neighbour beyond it)
    padded = np.pad(~omega, 1, constant_values=False)
    known = padded[:-2, 1:-1].astype(int) + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    rhs = np.zeros((2, *shape))
    rhs[:, omega] = rng.normal(size=(2, int(omega.sum())))
    got = solve_membrane(
        torch.from_numpy(omega), torch.from_numpy(known * omega).float(),
        torch.from_numpy(rhs).float(), tolerance=1e-6,
    ).numpy()  # fmt: skip
    expected = _dense_solution(omega, rhs)
    assert np.abs(got - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize(("ramp", "worst", "mean"), [(0.0, 2e-2, 2e-3), (8.0, 3e-2, 3e-3)])
def test_large_holes_take_the_coarse_then_boundary_path_close_to_exact(
    monkeypatch, ramp, worst, mean
):
    """White noise as the fill is the worst case: 5 grey levels at worst without the ramp,
    8 with it (its rhs is fine-grained within the boundary band); realistic fills less."""
    photo = torch.rand(3, 160, 200) * 0.2 + 0.4
    hole = torch.from_numpy(_disc(160, 200, 80, 100, 62))
    fill = torch.rand(3, 160, 200) * 0.2 + 0.3
    exact = poisson_blend(photo, fill, hole, ramp=ramp)
    monkeypatch.setattr(blending, "_EXACT_CELLS", 64 * 64)  # force two coarse levels
    cascade = poisson_blend(photo, fill, hole, ramp=ramp)
    assert (cascade - exact).abs().max().item() < worst
    assert (cascade - exact).abs().mean().item() < mean


@pytest.mark.parametrize("kind", ["uint8", "float"])
def test_known_pixels_stay_byte_identical_through_the_api(kind):
    class Bright(torch.nn.Module):
        def forward(self, image, mask):
            return torch.full_like(image, 0.9)

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    if kind == "float":
        image = image.astype(np.float32) / 255
    hole = _disc(70, 90, 30, 40, 12)
    out = inpaint(image, hole, Bright(), blend="poisson").image
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out[~hole], image[~hole])
    pasted = inpaint(image, hole, Bright(), blend="none").image
    assert (out[hole] != pasted[hole]).any()  # the bright fill was pulled to the photo


@pytest.mark.parametrize("ramp", [4.0, 8.0])
def test_the_guidance_ramp_solves_its_weighted_equations(ramp):
    """``sum_q (f_p - f_q) = sum_q a_pq (g_p - g_q)`` with ``a_p = min(1, depth_p / ramp)``
    (scipy's distance transform), ``a_pq`` the mean over hole pairs and 0 across the
    boundary (nothing guided), assembled and solved directly."""
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(int(ramp))
    shape = (40, 56)
    omega = _disc(*shape, 20, 30, 13) | _disc(*shape, 4, 4, 5)  # one touches the edge
    omega[30:32, 5:25] = True  # a thin scratch: depth 1
    photo = rng.random((3, *shape))
    fill = rng.random((3, *shape))
    trust = np.minimum(1.0, distance_transform_edt(omega) / ramp)
    rhs = np.zeros((3, *shape))
    h, w = shape
    for y, x in np.argwhere(omega):
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if not (0 <= ny < h and 0 <= nx < w):
                continue
            if omega[ny, nx]:
                weight = (trust[y, x] + trust[ny, nx]) / 2
                rhs[:, y, x] += weight * (fill[:, y, x] - fill[:, ny, nx])
            else:
                rhs[:, y, x] += photo[:, ny, nx]
    expected = _dense_solution(omega, rhs)
    got = poisson_blend(torch.from_numpy(photo).float(), torch.from_numpy(fill).float(),
                        torch.from_numpy(omega), ramp=ramp).double().numpy()  # fmt: skip
    inside = np.broadcast_to(omega, got.shape)
    assert np.abs(got[inside] - np.clip(expected[inside], 0, 1)).max() < 2e-3
    plain = poisson_blend(torch.from_numpy(photo).float(), torch.from_numpy(fill).float(),
                          torch.from_numpy(omega), ramp=0).double().numpy()  # fmt: skip
    assert np.abs(plain[inside] - got[inside]).max() > 0.05  # the ramp does something


def test_a_thin_scratch_comes_back_smoother_than_the_fill():
    """A 2 px scratch over a smooth ramp photo, filled with noise: the ramp keeps little of
    the noise (the plain equation keeps all of its gradients)."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    photo = torch.stack([0.2 + 0.005 * xx, 0.3 + 0.004 * yy, 0.5 + 0 * xx])
    hole = torch.zeros(64, 64, dtype=torch.bool)
    hole[31:33, 8:56] = True
    fill = photo + 0.2 * torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    ramped = poisson_blend(photo, fill, hole)
    plain = poisson_blend(photo, fill, hole, ramp=0)
    error = lambda out: (out - photo)[:, hole].abs().mean().item()  # noqa: E731
    assert error(ramped) < 0.3 * error(plain)
