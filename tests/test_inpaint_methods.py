"""``--method`` and ``--blend`` in ``pconv inpaint`` and ``pconv serve``; the README's command."""

from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.inpainting import USER_METHODS, inpaint
from pconv_cli.models import build_model
from pconv_cli.weights.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HAVE_CV2 = __import__("importlib").util.find_spec("cv2") is not None


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    model = build_model("pconv", layers=3, width=0.125)
    return save_checkpoint(tmp_path_factory.mktemp("w") / "tiny.safetensors", model, size=32)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("photo")
    rgb = np.asarray(Image.open(EXAMPLES / "images" / "coffee.jpg").convert("RGB"))[:96, :128]
    hole = np.zeros(rgb.shape[:2], dtype=bool)
    hole[30:60, 40:80] = True
    Image.fromarray(rgb).save(folder / "photo.png")
    save_mask(folder / "mask.png", hole)
    return folder / "photo.png", folder / "mask.png", rgb, hole


def _run(*args):
    return CliRunner().invoke(app, ["inpaint", *map(str, args)])


def _methods():
    return [m for m in USER_METHODS if HAVE_CV2 or m not in ("telea", "ns")]


def test_the_method_choices_are_the_registry_s():
    from pconv_cli.commands.inpaint import _METHODS

    assert set(_METHODS) == set(USER_METHODS) == {"biharmonic", "telea", "ns", "patchmatch"}


@pytest.mark.parametrize("method", ["biharmonic", "telea", "ns", "patchmatch"])
def test_method_in_inpaint_keeps_known_pixels(tmp_path, photo, method):
    if method in ("telea", "ns") and not HAVE_CV2:
        pytest.skip("needs the baselines extra (OpenCV)")
    src, mask, rgb, hole = photo
    out = tmp_path / f"{method}.png"
    result = _run(src, "--mask", mask, "--method", method, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"--method {method}" in result.output
    written = np.asarray(Image.open(out).convert("RGB"))
    np.testing.assert_array_equal(written[~hole], rgb[~hole])
    expected = inpaint(rgb, hole, method, blend="poisson").image  # the API, same defaults
    np.testing.assert_array_equal(written, expected)


def test_blend_in_inpaint(tmp_path, photo, tiny_weights):
    src, mask, rgb, hole = photo
    written = {}
    for blend in ("none", "poisson"):
        out = tmp_path / f"{blend}.png"
        result = _run(src, "--mask", mask, "-w", tiny_weights, "--blend", blend, "-o", out)
        assert result.exit_code == 0, result.output
        assert f"blend {blend}" in result.output
        written[blend] = np.asarray(Image.open(out).convert("RGB"))
        np.testing.assert_array_equal(written[blend][~hole], rgb[~hole])
    assert (written["none"][hole] != written["poisson"][hole]).any()


def test_one_source_at_a_time_and_clear_errors(tmp_path, photo, tiny_weights):
    src, mask, _, _ = photo
    both = _run(src, "--mask", mask, "-w", tiny_weights, "--method", "telea", "-o",
                tmp_path / "x.png")  # fmt: skip
    assert both.exit_code == 2 and "--weights or --method, not both" in both.output
    unknown = _run(src, "--mask", mask, "--method", "lama", "-o", tmp_path / "x.png")
    assert unknown.exit_code == 2 and "unknown method 'lama'" in unknown.output
    blend = _run(src, "--mask", mask, "--blend", "alpha", "-o", tmp_path / "x.png")
    assert blend.exit_code == 2 and "poisson, none" in blend.output
    assert not (tmp_path / "x.png").exists()
    everything = np.asarray(Image.open(src))
    save_mask(tmp_path / "all.png", np.ones(everything.shape[:2], dtype=bool))
    full = _run(src, "--mask", tmp_path / "all.png", "--method", "patchmatch", "-o",
                tmp_path / "y.png")  # fmt: skip
    assert full.exit_code == 1
    assert "Error: patchmatch needs known pixels" in full.output
    assert "Traceback" not in full.output and not (tmp_path / "y.png").exists()


def test_deep_holes_say_which_scales(tmp_path, photo, tiny_weights):
    src, mask, _, _ = photo  # 15 px deep; the tiny net fills 3.75 px: 15 / 2**2 fits
    result = _run(src, "--mask", mask, "-w", tiny_weights, "-o", tmp_path / "o.png")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "filled at scales 1/4, 1/2, 1 (" in notes[0]


def test_the_readme_command_as_typed(tmp_path):
    """``pconv inpaint photo.jpg --mask mask.png`` exactly as the README shows it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Inpainting your photos", 1)[1]
    line = next(x for x in section.splitlines() if x.startswith("pconv inpaint "))
    args = shlex.split(line.split("#", 1)[0])
    assert args == ["pconv", "inpaint", "photo.jpg", "--mask", "mask.png"]
    shutil.copy(EXAMPLES / "images" / "coffee.jpg", tmp_path / "photo.jpg")
    shutil.copy(EXAMPLES / "masks" / "coffee.png", tmp_path / "mask.png")
    done = subprocess.run(
        [sys.executable, "-m", "pconv_cli", *args[1:]],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pconv-bsds300" in done.stderr and "blend poisson" in done.stderr
    assert "warning" not in done.stderr
    out = np.asarray(Image.open(tmp_path / "photo_inpainted.jpg").convert("RGB")).astype(int)
    before = np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB")).astype(int)
    hole = np.asarray(Image.open(tmp_path / "mask.png")) > 127
    assert out.shape == before.shape
    assert np.abs(out - before)[~hole].mean() < 1.5  # JPEG re-encoding of known pixels only
    assert np.abs(out - before)[hole].mean() > 10  # the spoon is gone


# --------------------------------------------------------------------------- serve


@pytest.fixture(scope="module")
def client(tiny_weights):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2")
    from fastapi.testclient import TestClient

    from pconv_cli.web.app import create_app

    app = create_app(weights=str(tiny_weights), device="cpu")
    return TestClient(app, base_url="http://127.0.0.1:7860")  # Host must name this server


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(client, rgb, hole, **fields):
    files = {
        "image": ("p.png", _png(rgb), "image/png"),
        "mask": ("m.png", _png(np.where(hole, 255, 0).astype(np.uint8)), "image/png"),
    }
    return client.post("/api/inpaint", files=files, data=fields)


def test_serve_offers_methods_and_blends(client):
    info = client.get("/api/models").json()
    assert [m["name"] for m in info["methods"]] == list(USER_METHODS)
    assert info["blends"] == ["auto", "poisson", "none"] and info["default_blend"] == "auto"


@pytest.mark.parametrize("method", ["biharmonic", "patchmatch", "telea"])
def test_serve_method_matches_pconv_inpaint(client, photo, tmp_path, method):
    if method == "telea" and not HAVE_CV2:
        pytest.skip("needs OpenCV")
    src, mask, rgb, hole = photo
    response = _post(client, rgb, hole, method=method)
    assert response.status_code == 200, response.text
    assert response.headers["X-Pconv-Model"] == f"method:{method}"
    served = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    out = tmp_path / "cli.png"
    assert _run(src, "--mask", mask, "--method", method, "-o", out).exit_code == 0
    np.testing.assert_array_equal(served, np.asarray(Image.open(out).convert("RGB")))


@pytest.mark.parametrize("blend", ["none", "poisson"])
def test_serve_blend_matches_pconv_inpaint(client, photo, tiny_weights, tmp_path, blend):
    src, mask, rgb, hole = photo
    response = _post(client, rgb, hole, blend=blend)
    assert response.status_code == 200, response.text
    assert response.headers["X-Pconv-Blend"] == blend
    notes = response.headers.get("X-Pconv-Notes", "")
    assert re.search(r"filled at scales 1/4, 1/2, 1 ", notes)  # deep for the tiny net
    served = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    out = tmp_path / "cli.png"
    done = _run(src, "--mask", mask, "-w", tiny_weights, "--blend", blend, "-o", out)
    assert done.exit_code == 0
    np.testing.assert_array_equal(served, np.asarray(Image.open(out).convert("RGB")))


def test_serve_refuses_two_sources_and_unknown_choices(client, photo):
    _, _, rgb, hole = photo
    for fields, needle in (
        ({"method": "telea", "model": "tiny.safetensors"}, "not both"),
        ({"method": "lama"}, "method 'lama'"),
        ({"blend": "alpha"}, "blend 'alpha'"),
    ):
        response = _post(client, rgb, hole, **fields)
        assert response.status_code == 400 and needle in response.json()["error"]
