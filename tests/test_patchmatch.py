"""PatchMatch inpainting: textures, seeds, known pixels, degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pconv_cli.inpainting import inpaint
from pconv_cli.inpainting.classic import BaselineError, inpaint_classic
from pconv_cli.inpainting.patchmatch import PatchMatchError, patchmatch_inpaint


def _texture(height, width):
    """A periodic texture (period 8 in both directions): exact copies of every patch exist."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack(
        [
            128 + 90 * np.sin(2 * np.pi * xx / 8),
            128 + 90 * np.cos(2 * np.pi * yy / 8),
            ((xx // 4 + yy // 4) % 2) * 180 + 40,
        ],
        axis=-1,
    ).astype(np.uint8)


def _hole_psnr(out, truth, hole):
    mse = ((out[hole].astype(float) - truth[hole]) ** 2).mean()
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def test_a_periodic_texture_comes_back_far_better_than_telea():
    pytest.importorskip("cv2")
    truth = _texture(96, 128)
    hole = np.zeros((96, 128), dtype=bool)
    hole[30:66, 40:84] = True
    patchmatch = patchmatch_inpaint(truth, hole, seed=0)
    telea = np.rint(inpaint_classic("telea", truth, hole) * 255).astype(np.uint8)
    pm, tl = _hole_psnr(patchmatch, truth, hole), _hole_psnr(telea, truth, hole)
    assert pm > 35 and pm > tl + 20, (pm, tl)


def test_same_seed_same_bytes_and_known_pixels_untouched():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    image[:, :30] = _texture(45, 30)
    hole = np.zeros((45, 61), dtype=bool)
    hole[10:30, 20:41] = True
    hole[40:, 55:] = True  # in a corner
    first = patchmatch_inpaint(image, hole, seed=7)
    np.testing.assert_array_equal(first, patchmatch_inpaint(image, hole, seed=7))
    np.testing.assert_array_equal(first[~hole], image[~hole])
    via_api = inpaint(image, hole, "patchmatch", seed=7, blend="none").image
    np.testing.assert_array_equal(via_api, first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_is_seeded_too():
    image = _texture(64, 80)
    hole = np.zeros((64, 80), dtype=bool)
    hole[20:40, 25:50] = True
    a = patchmatch_inpaint(image, hole, seed=3, device="cuda")
    np.testing.assert_array_equal(a, patchmatch_inpaint(image, hole, seed=3, device="cuda"))
    np.testing.assert_array_equal(a[~hole], image[~hole])
    assert _hole_psnr(a, image, hole) > 35


def test_degenerate_inputs():
    one = np.array([[[10, 20, 30]]], dtype=np.uint8)
    np.testing.assert_array_equal(patchmatch_inpaint(one, np.zeros((1, 1), bool)), one)
    for image in (one, _texture(12, 9)):
        with pytest.raises(PatchMatchError, match="covers the whole image"):
            patchmatch_inpaint(image, np.ones(image.shape[:2], bool))
    with pytest.raises(BaselineError, match=r"^patchmatch needs known pixels"):
        inpaint_classic("patchmatch", one, np.ones((1, 1), bool))
    tiny = np.array([[[0, 0, 0], [200, 100, 50]]], dtype=np.uint8)  # 1x2, smaller than a patch
    out = patchmatch_inpaint(tiny, np.array([[True, False]]))
    np.testing.assert_array_equal(out[0, 0], tiny[0, 1])  # the only known pixel, copied
    image = _texture(30, 40)
    np.testing.assert_array_equal(patchmatch_inpaint(image, np.zeros((30, 40), bool)), image)
    line = np.zeros((30, 40), dtype=bool)
    line[:, 17] = True  # a hole across the whole image
    out = patchmatch_inpaint(image, line)
    np.testing.assert_array_equal(out[~line], image[~line])
