"""CUDA paths (``@pytest.mark.cuda``: skipped without a GPU; ``bench/gpu_check.py`` runs them):
the same numbers as the CPU for the PConv U-Net and DeepFillv2, finite reduced precision,
channels_last, ``pconv inpaint`` and ``pconv train`` on ``--device cuda``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.models import build_model

pytestmark = pytest.mark.cuda
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _exact_float32():
    """No TF32: CUDA and CPU must agree to float32 rounding, not to TF32's 10 bits."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def _inputs(size: int = 128, batch: int = 2):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=generator)
    mask = (torch.rand(batch, 1, size // 8, size // 8, generator=generator) > 0.4).float()
    return image, torch.nn.functional.interpolate(mask, size=(size, size), mode="nearest")


@pytest.mark.parametrize("family,options", [("pconv", {"layers": 5, "width": 0.25}),
                                            ("deepfillv2", {"width": 0.25})])  # fmt: skip
def test_cuda_matches_cpu_in_float32(family, options):
    torch.manual_seed(0)
    model = build_model(family, **options).eval()
    image, mask = _inputs()
    with torch.inference_mode():
        cpu = model(image, mask)
        gpu = model.cuda()(image.cuda(), mask.cuda()).cpu()
    assert (gpu - cpu).abs().max().item() < 1e-3


@pytest.mark.parametrize("family,options", [("pconv", {"layers": 5, "width": 0.25}),
                                            ("deepfillv2", {"width": 0.25})])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_and_channels_last_stay_close(family, options, dtype):
    torch.manual_seed(0)
    model = build_model(family, **options).cuda().eval()
    image, mask = (t.cuda() for t in _inputs())
    with torch.inference_mode():
        reference = model(image, mask).float()
        with torch.autocast("cuda", dtype=dtype):
            reduced = model(image, mask).float()
        last = model.to(memory_format=torch.channels_last)(
            image.contiguous(memory_format=torch.channels_last), mask
        )
    assert reduced.isfinite().all()
    assert (reduced - reference).abs().mean().item() < 0.05  # fully masked windows give no NaN
    assert (last.float() - reference).abs().max().item() < 1e-3


def test_inpaint_on_cuda_keeps_known_pixels(tmp_path):
    photo, mask = EXAMPLES / "images" / "rocket.jpg", EXAMPLES / "masks" / "rocket.png"
    for device in ("cuda", "cpu"):
        result = CliRunner().invoke(app, ["inpaint", str(photo), "--mask", str(mask), "-o",
                                          str(tmp_path / f"{device}.png"), "--device", device])
        assert result.exit_code == 0, result.output
    gpu, cpu = (np.asarray(Image.open(tmp_path / f"{d}.png")).astype(int) for d in ("cuda", "cpu"))
    assert np.abs(gpu - cpu).max() <= 2


def test_train_on_cuda_with_bf16_and_channels_last(tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--data", str(EXAMPLES / "images"), "--out", str(tmp_path / "run"),
        "--preset", "demo", "--steps", "4", "--save-every", "4", "--device", "cuda",
        "--precision", "bf16", "--channels-last", "--workers", "0",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "last.safetensors").is_file()
