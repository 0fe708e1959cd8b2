"""``pconv serve`` as a local service a web page cannot abuse (issue 18, item 7): Host and
Origin checks, the upload cap while a chunked body is read, queued work of clients that went
away, the memory bound of a model pass, clean 4xx errors, the offline API page."""

from __future__ import annotations

import io
import json
import select
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")  # what starlette's TestClient uses (the dev extra)
from fastapi.testclient import TestClient

from pconv_cli.models import build_model
from pconv_cli.web.app import create_app
from pconv_cli.weights import save_checkpoint

LOCAL = "http://127.0.0.1:7860"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    return save_checkpoint(path, build_model("pconv", layers=3, width=0.125), size=32)


@pytest.fixture(scope="module")
def app(tiny):
    return create_app(weights=str(tiny), device="cpu", max_upload_mb=1, max_pixels=500_000,
                      max_pass_pixels=40_000)  # fmt: skip


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _pair(side: int = 64, all_hole: bool = False) -> dict:
    rgb = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    hole = np.zeros((side, side), np.uint8)
    hole[side // 4 : side // 2, side // 4 : side // 2] = 255
    if all_hole:
        hole[:] = 255
    return {"image": ("p.png", _png(rgb), "image/png"), "mask": ("m.png", _png(hole), "image/png")}


def _error(response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"]
    for word in words:
        assert word in body["error"], body["error"]
    return body["error"]


class _Calls:
    """Counts the model loads of the app's store (one per job that really runs)."""

    def __init__(self, store, gate: threading.Event | None = None):
        self.count, self.store, self.gate = 0, store, gate
        self.real = type(store).model

    def __call__(self, choice):
        self.count += 1
        if self.gate is not None:
            assert self.gate.wait(60)
        return self.real(self.store, choice)


def test_a_foreign_host_is_refused(app, tiny):
    client = TestClient(app, base_url=LOCAL)
    assert client.get("/api/health").status_code == 200
    for host in ("evil.example", "evil.example:7860", "127.0.0.1.evil.example"):
        _error(client.get("/api/health", headers={"Host": host}), 421, "--allowed-host")
        _error(client.post("/api/inpaint", files=_pair(), headers={"Host": host}), 421)
    for host in ("localhost:7860", "[::1]:7860", "127.0.0.1"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200
    proxied = TestClient(create_app(weights=str(tiny), device="cpu",
                                    allowed_hosts=["pconv.example.org"]),
                         base_url="https://pconv.example.org")  # fmt: skip
    assert proxied.get("/api/models").status_code == 200
    everywhere = TestClient(create_app(weights=str(tiny), device="cpu", host="0.0.0.0"),
                            base_url="http://192.168.1.20:7860")  # fmt: skip
    assert everywhere.get("/api/health").status_code == 200  # any address of the machine
    _error(everywhere.get("/api/health", headers={"Host": "rebind.example"}), 421)


def test_a_page_of_another_site_cannot_start_jobs(app, tiny, monkeypatch):
    client = TestClient(app, base_url=LOCAL)
    calls = _Calls(app.state.store)
    monkeypatch.setattr(app.state.store, "model", calls)
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:9999"},  # another local server's page
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        _error(client.post("/api/inpaint", files=_pair(), headers=headers), 403, "refused")
        _error(client.post("/api/convert", files={"image": _pair()["image"]},
                           data={"format": "png"}, headers=headers), 403)  # fmt: skip
    assert calls.count == 0
    for headers in ({"Origin": LOCAL}, {"Sec-Fetch-Site": "same-origin"}, {}):  # page, curl
        response = client.post("/api/inpaint", files=_pair(), headers=headers)
        assert response.status_code == 200, response.text
    assert calls.count == 3
    proxied = TestClient(create_app(weights=str(tiny), device="cpu",
                                    allowed_origins=["https://pconv.example.org"]),
                         base_url=LOCAL)  # fmt: skip
    response = proxied.post("/api/inpaint", files=_pair(),
                            headers={"Origin": "https://pconv.example.org"})  # fmt: skip
    assert response.status_code == 200, response.text


def _multipart(boundary: str, size: int) -> bytes:
    noise = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    return (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n".encode() + noise + f"\r\n--{boundary}--\r\n".encode()
    )


def test_a_chunked_upload_over_the_limit_is_refused(app):
    client = TestClient(app, base_url=LOCAL)
    body = _multipart("xyz", 4 * 2**20)  # 4 MiB against 1 MiB per file (3 MiB a request)
    chunk = 64 * 1024

    def chunks():  # (the test client gathers them; the real server test below streams)
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    response = client.post(
        "/api/inpaint",
        content=chunks(),  # no Content-Length: Transfer-Encoding chunked
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    _error(response, 413, "upload limit")


def test_convert_of_a_truncated_image_and_the_megapixel_limit(app):
    client = TestClient(app, base_url=LOCAL)
    whole = _png(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    response = client.post("/api/convert", files={"image": ("t.png", whole[: len(whole) // 2])},
                           data={"format": "jpeg"})  # fmt: skip
    error = _error(response, 400)
    assert "/" not in error and "pconv-serve" not in error  # no path of the server
    big = _png(np.zeros((800, 800), np.uint8))  # 0.64 MP against 0.5
    _error(client.post("/api/convert", files={"image": ("b.png", big)}, data={"format": "png"}),
           413, "the limit is 0.5 MP")  # fmt: skip


def test_no_model_pass_exceeds_the_bound(app, monkeypatch):
    """An all-hole image of 4x the pass budget: the server shrinks the pass, as documented."""
    import torch

    client = TestClient(app, base_url=LOCAL)
    store = app.state.store
    passes: list[int] = []
    real = type(store).model

    def recording(choice):
        model = real(store, choice)

        class Spy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model
                self.size_multiple = getattr(model, "size_multiple", 1)

            def forward(self, image, mask):
                passes.append(image.shape[-2] * image.shape[-1])
                return self.inner(image, mask)

        return Spy()

    monkeypatch.setattr(store, "model", recording)
    for strategy in ("full", "auto", "crop", "resize"):
        passes.clear()
        response = client.post("/api/inpaint", files=_pair(400, all_hole=True),
                               data={"strategy": strategy})  # fmt: skip
        assert response.status_code == 200, response.text
        assert passes and max(passes) <= 40_000, (strategy, passes)
        out = np.asarray(Image.open(io.BytesIO(response.content)))
        assert out.shape == (400, 400, 3)


def test_the_api_page_works_offline(app):
    client = TestClient(app, base_url=LOCAL)
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in client.get("/static/api.js").text
    for text in (page.text, client.get("/static/api.js").text):
        assert "https://" not in text and "cdn" not in text.lower()  # nothing from the internet
    for asset in ("/static/api.js", "/static/api.css", "/static/style.css"):
        assert asset in page.text and client.get(asset).status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/inpaint", "/api/convert", "/api/health", "/api/models"} <= set(spec["paths"])


# --------------------------------------------------------------------- a real server, real sockets


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(condition, what: str, limit: float = 60.0) -> None:
    """Poll until ``condition()`` (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def served(tiny):
    import uvicorn

    app = create_app(weights=str(tiny), device="cpu", max_upload_mb=1)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait(lambda: server.started, "the server to start")
    yield app, port
    server.should_exit = True
    thread.join(30)


def _queued(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=30) as response:
        return json.loads(response.read())["queued"]


def _raw_request(port: int, body: bytes, boundary: str, *, chunked: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /api/inpaint HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n")  # fmt: skip
    if chunked:
        sock.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
    else:
        sock.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return sock


def _form(boundary: str) -> bytes:
    parts = b""
    for name, (filename, data, kind) in _pair().items():
        parts += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: {kind}\r\n\r\n").encode()  # fmt: skip
        parts += data + b"\r\n"
    return parts + f"--{boundary}--\r\n".encode()


def test_queued_work_of_a_client_that_left_is_dropped(served, monkeypatch):
    app, port = served
    release = threading.Event()
    calls = _Calls(app.state.store, release)
    monkeypatch.setattr(app.state.store, "model", calls)
    first = _raw_request(port, _form("b1"), "b1", chunked=False)  # runs, held by the gate
    _wait(lambda: calls.count == 1, "the first job to start")
    second = _raw_request(port, _form("b2"), "b2", chunked=False)  # waits in the queue
    _wait(lambda: _queued(port) == 2, "the second job to queue")
    second.close()  # the client goes away
    release.set()
    reply = first.recv(65536)
    first.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    _wait(lambda: _queued(port) == 0, "the queue to drain")
    assert calls.count == 1  # the abandoned request never ran


def test_a_real_chunked_upload_is_refused_before_it_ends(served):
    """The body never ends by itself (no last chunk): only a server that counts while it
    reads can answer, and it must answer before 64 MiB (1 MiB per file here)."""
    _, port = served
    sock = _raw_request(port, b"", "c1", chunked=True)
    piece = b"\0" * 65536
    head = b"--c1\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
    sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
    sent, cap = 0, 64 * 2**20
    sock.settimeout(10)
    try:
        while sent < cap:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered (or closed)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass  # it stopped reading: the answer waits below
    sock.settimeout(30)
    reply = sock.recv(65536)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent < cap
