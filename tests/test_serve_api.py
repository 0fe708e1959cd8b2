"""The API of ``pconv serve`` with FastAPI's test client: same results as ``pconv inpaint``,
clean JSON errors for every bad request."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")  # what starlette's TestClient uses (the dev extra)
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pconv_cli.cli import app as cli_app
from pconv_cli.data.masks import save_mask
from pconv_cli.models import build_model
from pconv_cli.web.app import create_app
from pconv_cli.weights import save_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    return save_checkpoint(path, build_model("pconv", layers=3, width=0.125), size=32)


@pytest.fixture(scope="module")
def client(tiny) -> TestClient:
    app = create_app(weights=str(tiny), device="cpu", max_upload_mb=1, max_pixels=2_000_000)
    return TestClient(app, base_url="http://127.0.0.1:7860")  # Host must name this server


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(Image.open(EXAMPLES / "chelsea.jpg").convert("RGB"))
    hole = np.zeros(rgb.shape[:2], dtype=bool)
    hole[60:110, 100:170] = True
    return rgb, hole


def _post(client, image: bytes, mask: bytes, **fields):
    files = {"image": ("photo.png", image, "image/png"), "mask": ("m.png", mask, "image/png")}
    return client.post("/api/inpaint", files=files, data=fields)


def test_health_models_and_page(client, tiny):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu" and health["queued"] == 0
    models = client.get("/api/models").json()
    assert models["default"] == tiny.name
    assert {"name": tiny.name, "source": "file", "default": True}.items() <= models["models"][
        [m["name"] for m in models["models"]].index(tiny.name)
    ].items()
    assert models["strategies"] == ["auto", "full", "crop", "resize"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="mask"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200


def test_inpaint_round_trip_matches_pconv_inpaint(client, tiny, photo, tmp_path):
    rgb, hole = photo
    mask = np.where(hole, 255, 0).astype(np.uint8)
    response = _post(client, _png(rgb), _png(mask), strategy="full")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-pconv-model"] == tiny.name
    assert response.headers["x-pconv-strategy"] == "full"
    assert 'filename="photo_inpainted.png"' in response.headers["content-disposition"]
    out = np.asarray(Image.open(io.BytesIO(response.content)))
    assert out.shape == rgb.shape
    assert np.array_equal(out[~hole], rgb[~hole])  # known pixels byte-identical
    assert (out[hole] != rgb[hole]).any()
    # the same bytes as the command line
    Image.fromarray(rgb).save(tmp_path / "p.png")
    save_mask(tmp_path / "m.png", hole)
    result = CliRunner().invoke(cli_app, [
        "inpaint", str(tmp_path / "p.png"), "--mask", str(tmp_path / "m.png"), "-w", str(tiny),
        "-o", str(tmp_path / "cli.png"), "--device", "cpu", "--strategy", "full",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli.png")), out)


def test_output_format_and_convert(client, photo):
    rgb, hole = photo
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG", quality=90)
    mask = _png(np.where(hole, 255, 0).astype(np.uint8))
    files = {"image": ("cat.jpg", jpeg.getvalue(), "image/jpeg"), "mask": ("m.png", mask)}
    same = client.post("/api/inpaint", files=files)
    assert same.status_code == 200 and same.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(same.content)).size == (rgb.shape[1], rgb.shape[0])
    png = client.post("/api/inpaint", files=files, data={"format": "png"})
    assert png.headers["content-type"] == "image/png"
    converted = client.post(
        "/api/convert", files={"image": ("r.png", png.content)}, data={"format": "webp"}
    )
    assert converted.status_code == 200 and converted.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(converted.content)).format == "WEBP"


def _error(response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"]
    for word in words:
        assert word in body["error"], body["error"]
    return body["error"]


def test_bad_requests_are_clean_json_errors(client, photo):
    rgb, hole = photo
    good_image, good_mask = _png(rgb), _png(np.where(hole, 255, 0).astype(np.uint8))
    _error(_post(client, b"not an image at all", good_mask), 400, "image", "not an image")
    _error(_post(client, good_image, b"\x89PNG broken"), 400, "mask")
    gif = io.BytesIO()
    Image.fromarray(rgb).save(gif, format="GIF")
    _error(_post(client, gif.getvalue(), good_mask), 415, "GIF")
    _error(_post(client, good_image, good_mask, model="nope"), 404, "unknown model", "nope")
    _error(_post(client, good_image, good_mask, strategy="magic"), 400, "strategy")
    _error(_post(client, good_image, good_mask, format="gif"), 400, "format")
    _error(client.post("/api/inpaint", files={"image": ("a.png", good_image)}), 400, "mask")
    _error(_post(client, good_image, b""), 400, "mask is empty")
    # a mask that is not an image of the photo's shape: the library's one-line message
    odd = _png(np.full((3, 500), 255, dtype=np.uint8))
    response = _post(client, good_image, odd)
    assert response.status_code in (200, 422)
    _error(client.get("/api/nothing-here"), 404)


def test_upload_limits(client):
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    big = _png(noise)  # > 1 MiB of incompressible pixels
    assert len(big) > 2**20
    _error(_post(client, big, _png(np.zeros((8, 8), np.uint8))), 413, "upload limit")
    # a small file that claims a huge picture: refused from its header, never decoded
    bomb = io.BytesIO()
    Image.new("L", (2000, 1500)).save(bomb, format="PNG")  # 3 MP > the 2 MP limit
    assert len(bomb.getvalue()) < 2**20
    _error(_post(client, bomb.getvalue(), _png(np.zeros((8, 8), np.uint8))), 413, "MP")


def test_serve_command_errors(tmp_path, monkeypatch, tiny):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli_app, ["serve", "--port", str(port), "--weights", str(tiny), "--device", "cpu"]
        )
    assert result.exit_code == 1 and "already in use" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(cli_app, ["serve", "--weights", str(tmp_path / "none.safetensors")])
    assert result.exit_code == 1 and "not found" in result.output
    assert "Traceback" not in result.output
    import pconv_cli.web as web

    monkeypatch.setattr(web, "missing_web_modules", lambda: ["fastapi"])
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 1 and "pconv-cli[web]" in result.output
