"""The FastAPI app of ``pconv serve``: the painting page and a small JSON/multipart API.

Endpoints (all documented at ``/docs``):

- ``GET /api/health``: ``{"status": "ok", "version", "device", "queued"}``.
- ``GET /api/models``: the models the page offers (zoo entries available here:
  bundled or in the hub cache, plus the ``--weights`` given at start), the default,
  and the large-image strategies.
- ``POST /api/inpaint`` (multipart): ``image`` and ``mask`` files (mask: white =
  hole, the size of the image; ``invert_mask`` flips), optional ``model`` or
  ``method`` (a classic method; one source at a time), ``strategy``, ``blend`` and
  ``format`` (``same`` = the image's). Returns the image, with the source, strategy
  and blend in ``X-Pconv-*`` headers and anything worth telling (a resized mask,
  the working scales) in ``X-Pconv-Notes``. It runs the array API in memory through
  :func:`pconv_cli.inpainting.files.inpaint_loaded`, as ``pconv inpaint`` does a
  file: every known pixel of a lossless output is byte-identical to the input.
- ``POST /api/convert`` (multipart): ``image`` and ``format``: the image re-encoded
  (the page's download in the original format).

Inference runs in one worker thread, one request at a time (the rest queue, and a
queued request whose client has gone is dropped), so the event loop never blocks.
Uploads are size-limited while they are read (chunked ones included), decoded only
after their header says they are an image of a sane pixel count, and never name a
path on the server. No model pass exceeds ``max_pass_pixels`` (larger ones run
shrunk, as the ``resize`` strategy does): memory grows about 0.7 GB per megapixel
of a pass with the default model, so that bounds a request's memory.

A web page the user visits cannot use the API: requests must name this server in
their ``Host`` header (a DNS-rebinding page names its own), and a POST whose
``Origin`` (or ``Sec-Fetch-Site``) says it comes from another site is refused
(403); ``allowed_hosts``/``allowed_origins`` admit a reverse proxy's names. Every
error is JSON ``{"error": "one line"}`` with a 4xx/5xx status; ``/docs`` is a
self-contained API page (nothing is fetched from the internet).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import re
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pconv_cli import __version__

__all__ = [
    "DEFAULT_MAX_PASS_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_MB",
    "LOCAL_HOSTS",
    "ApiError",
    "ModelStore",
    "create_app",
]

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_MB = 32
"""Largest accepted file, per uploaded file, in MiB."""
DEFAULT_MAX_PIXELS = 40_000_000
"""Largest accepted image (width x height), checked on the header before decoding."""
DEFAULT_MAX_PASS_PIXELS = 4_000_000
"""Largest model pass: about 2.7 GB with the default model (measured: ~0.68 GB per
megapixel of an all-hole pass on the CPU, plus ~0.6 GB for torch and the model)."""
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Names of this machine every server accepts in the ``Host`` header."""
_WILDCARDS = ("0.0.0.0", "::", "")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_RECEIVE: contextvars.ContextVar[Receive | None] = contextvars.ContextVar(
    "pconv_serve_receive", default=None
)  # the current request's ASGI receive: run() watches it for the client going away
_log = logging.getLogger("pconv.serve")

_MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
_READ_FORMATS = {"MPO": "JPEG"}  # a phone's multi-picture JPEG is read as its first picture


class ApiError(Exception):
    """A request the API refuses: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ModelChoice:
    """A model the page may pick: ``name`` shown, ``spec`` given to ``open_weights``."""

    name: str
    spec: str
    description: str
    source: str  # bundled | cached | file


class ModelStore:
    """The models on offer, each loaded on first use and kept (loading is not free)."""

    def __init__(self, weights: str | None, device: Any):
        from pconv_cli.weights import cached_weights_path, list_weights, zoo

        self.device = device
        self.choices: dict[str, ModelChoice] = {}
        for entry in list_weights():
            if cached_weights_path(entry).is_file():
                source = "bundled" if entry.bundled else "cached"
                self.choices[entry.name] = ModelChoice(
                    entry.name, entry.name, entry.description, source
                )
        self.default = zoo.DEFAULT_WEIGHTS
        if weights:
            name = weights if weights in zoo.ZOO else Path(weights).name
            if name not in self.choices:
                self.choices[name] = ModelChoice(name, weights, f"--weights {weights}", "file")
            self.default = name
        if self.default not in self.choices and self.choices:
            self.default = next(iter(self.choices))
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": c.name,
                "description": c.description,
                "source": c.source,
                "default": c.name == self.default,
            }
            for c in self.choices.values()
        ]

    def resolve(self, name: str | None) -> ModelChoice:
        """The choice called ``name`` (None or empty: the default)."""
        name = name or self.default
        if name not in self.choices:
            known = ", ".join(self.choices) or "none"
            raise ApiError(404, f"unknown model {name!r}; available: {known}")
        return self.choices[name]

    def model(self, choice: ModelChoice):
        """The loaded model of ``choice`` (loads it once; call from the worker thread)."""
        from pconv_cli.weights import WeightsError, load_model

        with self._lock:
            if choice.name not in self._models:
                try:
                    self._models[choice.name] = load_model(choice.spec, device=self.device)
                except WeightsError as exc:
                    raise ApiError(503, f"model {choice.name} cannot be loaded: {exc}") from None
            return self._models[choice.name]


def _one_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "error"


def _safe_stem(filename: str | None) -> str:
    stem = Path(filename or "image").stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "image"


async def _read_upload(upload: UploadFile, what: str, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"{what} is larger than the {limit // 2**20} MiB upload limit")
    if not data:
        raise ApiError(400, f"{what} is empty")
    return data


def _image_format(data: bytes, what: str, max_pixels: int) -> str:
    """The Pillow format of an uploaded image, from its header (nothing decoded yet)."""
    try:
        with Image.open(BytesIO(data)) as image:
            file_format = _READ_FORMATS.get(image.format or "", image.format or "")
            width, height = image.size
    except Image.DecompressionBombError:
        raise ApiError(413, f"{what} has too many pixels (decompression bomb guard)") from None
    except (OSError, ValueError, SyntaxError):
        raise ApiError(
            400, f"{what} is not an image pconv reads (PNG, JPEG, WebP, BMP, TIFF)"
        ) from None
    if file_format not in _MEDIA_TYPES:
        kind = file_format or "an unknown format"
        raise ApiError(415, f"{what} is {kind}; send PNG, JPEG, WebP, BMP or TIFF")
    if width * height > max_pixels:
        raise ApiError(
            413,
            f"{what} is {width}x{height} = {width * height / 1e6:.3g} MP; "
            f"the limit is {max_pixels / 1e6:.3g} MP",
        )
    return file_format


def _output_format(requested: str, input_format: str) -> str:
    from pconv_cli.data.images import FORMATS

    if requested.lower() in ("", "same"):
        return input_format
    if requested.lower() not in FORMATS:
        raise ApiError(400, f"format {requested!r}: use same, {', '.join(sorted(FORMATS))}")
    return FORMATS[requested.lower()]


def _inpaint(
    source, image: bytes, image_format: str, mask: bytes, out_format: str, options: dict
) -> tuple[bytes, tuple[str, str], list[str]]:
    """Inpaint the uploads in memory, as ``pconv inpaint`` does a file (no temporary files):
    the picture's bytes, (strategy, blend) that ran, the notes."""
    from pconv_cli.data.images import ImageError, encode_image, load_image
    from pconv_cli.data.masks import MaskError, load_mask
    from pconv_cli.inpainting.classic import BaselineError
    from pconv_cli.inpainting.files import InpaintOptions, inpaint_loaded

    told = ("MaskResizedWarning", "MaskContentWarning", "ImageDepthWarning")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            loaded = load_image(BytesIO(image), name=f"image{_SUFFIXES[image_format]}")
            hole = load_mask(
                BytesIO(mask), size=loaded.size, invert=options.pop("invert_mask"), name="mask"
            )
            picture, result = inpaint_loaded(
                source, loaded, hole, InpaintOptions(file_format=out_format, **options),
                file_format=out_format, mask_name="the mask",
            )  # fmt: skip
            data = encode_image(picture, loaded, file_format=out_format)
    except (ImageError, MaskError, BaselineError, RuntimeError) as error:
        raise ApiError(422, _one_line(str(error))) from None
    notes = [text for kind, text in result.notes if kind == "AllHole"]
    notes += [str(w.message) for w in caught if w.category.__name__ in told]
    notes += [text for kind, text in result.notes if kind not in ("AllHole",)]
    return data, (result.strategy or "", result.blend or ""), notes


def _convert(image: bytes, image_format: str, out_format: str) -> bytes:
    """``image`` re-encoded in ``out_format`` (pconv's writer: EXIF/ICC kept where possible)."""
    import numpy as np

    from pconv_cli.data.images import ImageError, encode_image, load_image, output_image

    try:  # e.g. a truncated file: its header was fine
        loaded = load_image(BytesIO(image), name=f"image{_SUFFIXES[image_format]}")
        no_hole = np.zeros(loaded.rgb.shape[:2], dtype=bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            picture = output_image(loaded, loaded.rgb, no_hole, out_format)
        return encode_image(picture, loaded, file_format=out_format)
    except ImageError as exc:
        raise ApiError(400, str(exc)) from None


def _host_name(netloc: str) -> str:
    """The host of ``host[:port]`` / ``[v6][:port]``, lower case, without the port."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _origin_netloc(origin: str) -> str | None:
    """``host[:port]`` of an ``Origin`` value with the scheme's default port left out."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return host if port in (None, default) else f"{host}:{port}"


class _Guard:
    """ASGI middleware in front of everything: the ``Host`` and ``Origin`` checks, and
    the request-body cap enforced while the body is read (chunked uploads included)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        served_host: str,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str],
        max_body: int,
        max_upload_mb: int,
    ):
        self.app = app
        self.any_ip = served_host in _WILDCARDS
        self.any_host = "*" in allowed_hosts
        hosts = {*LOCAL_HOSTS, *(h.lower().strip("[]") for h in allowed_hosts)}
        if not self.any_ip:
            hosts.add(served_host.lower().strip("[]"))
        self.hosts = hosts
        self.origins = {o.strip().lower().rstrip("/") for o in allowed_origins}
        self.max_body = max_body
        self.too_large = f"request larger than the {max_upload_mb} MiB per file upload limit"

    def _host_allowed(self, host: str) -> bool:
        if self.any_host or host in self.hosts:
            return True
        if self.any_ip:  # listening on every address: any address of this machine
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return False
            return True
        return False

    def refusal(self, method: str, headers: Headers) -> tuple[int, str] | None:
        """(status, message) when the request must be refused, else None."""
        netloc = headers.get("host", "")
        host = _host_name(netloc)
        if not host or not self._host_allowed(host):
            return 421, (
                f"Host {netloc or '(none)'!r} is not this server; behind a reverse proxy start "
                "pconv serve with --allowed-host NAME"
            )
        if method.upper() in _SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            if origin.strip().lower().rstrip("/") in self.origins:
                return None
            if _origin_netloc(origin) != netloc.strip().lower():
                return 403, (
                    f"cross-origin request refused (Origin {origin}); a page of another site "
                    "cannot use this server (--allowed-origin admits one)"
                )
            return None
        if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            return 403, "cross-site request refused (Sec-Fetch-Site); use the page of this server"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refused = self.refusal(scope["method"], headers)
        length = headers.get("content-length", "")
        if refused is None and length.isdigit() and int(length) > self.max_body:
            refused = 413, self.too_large
        if refused is not None:
            status, message = refused
            await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:  # stop reading: nothing more is spooled
                    raise StarletteHTTPException(413, self.too_large)
            return message

        token = _RECEIVE.set(limited)
        try:
            await self.app(scope, limited, send)
        finally:
            _RECEIVE.reset(token)


async def _disconnected(receive: Receive) -> None:
    """Return when the client of a request whose body has been read goes away."""
    while (await receive())["type"] != "http.disconnect":
        pass


class _Jobs:
    """The inference worker: one thread, one job at a time; the waiting ones are counted
    (``/api/health``) and checked when their turn comes."""

    def __init__(self) -> None:
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pconv-inpaint")
        self.gate = asyncio.Lock()
        self.queued = 0

    async def run(self, function, *args):
        """``function(*args)`` in the worker thread, after the jobs queued before it; a
        request whose client disconnected while it waited is dropped unrun."""
        receive = _RECEIVE.get()
        gone = None if receive is None else asyncio.ensure_future(_disconnected(receive))
        self.queued += 1
        try:
            async with self.gate:
                if gone is not None and gone.done() and not gone.cancelled():
                    raise ApiError(499, "the client closed the request; not run")
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.worker, function, *args)
        finally:
            self.queued -= 1
            if gone is not None:
                gone.cancel()


@dataclass(frozen=True)
class _Serving:
    """What the route handlers share (``app.state.serving``): the models, the worker, the
    limits and the page's defaults."""

    store: ModelStore
    jobs: _Jobs
    limit: int  # bytes per uploaded file
    max_pixels: int
    max_pass_pixels: int | None
    default_method: str | None
    default_blend: str


def _serving(request: Request) -> _Serving:
    return request.app.state.serving


def create_app(
    *,
    weights: str | None = None,
    device: str = "auto",
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_pass_pixels: int | None = DEFAULT_MAX_PASS_PIXELS,
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    method: str | None = None,
    blend: str = "auto",
) -> FastAPI:
    """The app. ``weights``: an extra zoo name or file offered (and the default);
    ``method``: a classic method as the default source instead of a model; ``blend``:
    the default blend; ``device``: where models run (``auto``: CUDA, then MPS, then CPU);
    ``host``: the address served (``Host`` headers must name it, a loopback name, or one
    of ``allowed_hosts``; ``*`` admits any); ``allowed_origins``: other web origins
    (``https://name``) whose pages may POST; ``max_pass_pixels``: the largest model pass
    (None: no limit)."""
    from pconv_cli.devices import resolve_device
    from pconv_cli.inpainting.blending import BLENDS
    from pconv_cli.inpainting.classic import USER_METHODS

    if method is not None and method not in USER_METHODS:
        raise ValueError(f"method {method!r}: use {', '.join(USER_METHODS)}")
    if blend not in BLENDS:
        raise ValueError(f"blend {blend!r}: use {', '.join(BLENDS)}")
    store = ModelStore(weights, resolve_device(device))
    limit = max_upload_mb * 2**20
    app = FastAPI(
        title="pconv",
        version=__version__,
        description="Paint a mask, inpaint with pconv's models. Mask files: white = hole.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.serving = _Serving(
        store=store, jobs=_Jobs(), limit=limit, max_pixels=max_pixels,
        max_pass_pixels=max_pass_pixels, default_method=method, default_blend=blend,
    )  # fmt: skip
    app.add_middleware(
        _Guard,
        served_host=host,
        allowed_hosts=tuple(allowed_hosts),
        allowed_origins=tuple(allowed_origins),
        max_body=2 * limit + 2**20,  # two files and the form fields
        max_upload_mb=max_upload_mb,
    )
    for kind, handler in _ERROR_HANDLERS:
        app.add_exception_handler(kind, handler)
    app.include_router(_pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(_api)
    return app


# ---------------------------------------------------------------- errors: JSON, one line


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    message = f"{where}: {str(first.get('msg', 'invalid')).lower()}"
    return JSONResponse({"error": message}, status_code=400)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": _one_line(exc.detail)}, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.error("pconv serve: %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(  # the details (paths of this machine) go to the server's log only
        {"error": f"internal error ({type(exc).__name__}); the server's log has the details"},
        status_code=500,
    )


_ERROR_HANDLERS = (
    (ApiError, _api_error),
    (RequestValidationError, _invalid),
    (StarletteHTTPException, _http),
    (Exception, _unexpected),
)

# ---------------------------------------------------------------- the page and the API page

_pages = APIRouter()


@_pages.get("/", include_in_schema=False)
async def _page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@_pages.get("/docs", include_in_schema=False)
async def _docs() -> FileResponse:
    """The API page: rendered from /openapi.json by a local script (works offline)."""
    return FileResponse(STATIC / "api.html")


# ---------------------------------------------------------------- the API

_api = APIRouter()


@_api.get("/api/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness, version, the inference device and how many requests wait or run."""
    serving = _serving(request)
    return {
        "status": "ok",
        "version": __version__,
        "device": str(serving.store.device),
        "queued": serving.jobs.queued,
    }


@_api.get("/api/models")
async def models(request: Request) -> dict[str, Any]:
    """The models on offer (zoo entries present here and --weights), the classic
    methods, the strategies and the blends (defaults first)."""
    from pconv_cli.inpainting.blending import BLENDS
    from pconv_cli.inpainting.classic import CLASSIC_METHODS, USER_METHODS
    from pconv_cli.inpainting.strategy import STRATEGIES

    serving = _serving(request)
    return {
        "models": serving.store.describe(),
        "default": serving.store.default,
        "methods": [
            {"name": name, "description": CLASSIC_METHODS[name].description}
            for name in USER_METHODS
        ],
        "default_method": serving.default_method,
        "strategies": list(STRATEGIES),
        "blends": list(BLENDS),
        "default_blend": serving.default_blend,
    }


@_api.post("/api/inpaint")
async def inpaint(
    request: Request,
    image: UploadFile = File(..., description="The photo (PNG, JPEG, WebP, BMP, TIFF)."),
    mask: UploadFile = File(..., description="The mask: white = hole, the image's size."),
    model: str = Form("", description="A name from /api/models (empty: the default)."),
    method: str = Form("", description="A classic method from /api/models instead of a model."),
    strategy: str = Form("auto", description="auto, full, crop or resize."),
    blend: str = Form("", description="poisson or none (empty: the server's default)."),
    invert_mask: bool = Form(False, description="The mask is black = hole."),
    format: str = Form("same", description="Output format: same (the image's), png, ..."),
) -> Response:
    """Fill the mask's holes; known pixels stay byte-identical in lossless formats."""
    from pconv_cli.data.images import SUFFIX_OF_FORMAT

    serving = _serving(request)
    image_bytes = await _read_upload(image, "image", serving.limit)
    mask_bytes = await _read_upload(mask, "mask", serving.limit)
    image_format = _image_format(image_bytes, "image", serving.max_pixels)
    _image_format(mask_bytes, "mask", serving.max_pixels)
    chosen_method, blend_used = _inpaint_choices(serving, model, method, strategy, blend)
    out_format = _output_format(format, image_format)
    choice = None if chosen_method else serving.store.resolve(model)
    options = {"strategy": strategy, "invert_mask": invert_mask, "blend": blend_used,
               "max_pass_pixels": serving.max_pass_pixels}  # fmt: skip

    def job() -> tuple[bytes, tuple[str, str], list[str]]:
        source = chosen_method or serving.store.model(choice)
        return _inpaint(source, image_bytes, image_format, mask_bytes, out_format, options)

    data, (used, blend_ran), notes = await serving.jobs.run(job)
    name = f"{_safe_stem(image.filename)}_inpainted{SUFFIX_OF_FORMAT[out_format]}"
    headers = {
        "Content-Disposition": f'inline; filename="{name}"',
        "X-Pconv-Model": choice.name if choice else f"method:{chosen_method}",
        "X-Pconv-Strategy": used,
        "X-Pconv-Blend": blend_ran or blend_used,
    }
    if notes:
        headers["X-Pconv-Notes"] = " | ".join(notes).encode("ascii", "replace").decode()
    return Response(data, media_type=_MEDIA_TYPES[out_format], headers=headers)


def _inpaint_choices(
    serving: _Serving, model: str, method: str, strategy: str, blend: str
) -> tuple[str | None, str]:
    """The classic method to run (None: a model) and the blend, from the form and the
    server's defaults; a 400 for a bad strategy, blend or method, or both sources."""
    from pconv_cli.inpainting.blending import BLENDS
    from pconv_cli.inpainting.classic import USER_METHODS
    from pconv_cli.inpainting.strategy import STRATEGIES

    if strategy not in STRATEGIES:
        raise ApiError(400, f"strategy {strategy!r}: use {', '.join(STRATEGIES)}")
    blend_used = blend or serving.default_blend
    if blend_used not in BLENDS:
        raise ApiError(400, f"blend {blend!r}: use {', '.join(BLENDS)}")
    if model and method:
        raise ApiError(400, "give model or method, not both (one source at a time)")
    chosen_method = method or (None if model else serving.default_method)
    if chosen_method is not None and chosen_method not in USER_METHODS:
        raise ApiError(400, f"method {method!r}: use {', '.join(USER_METHODS)}")
    return chosen_method, blend_used


@_api.post("/api/convert")
async def convert(
    request: Request,
    image: UploadFile = File(..., description="An image."),
    format: str = Form(..., description="png, jpeg, webp, bmp or tiff."),
) -> Response:
    """The image re-encoded in another format (JPEG/WebP at quality 95)."""
    serving = _serving(request)
    data = await _read_upload(image, "image", serving.limit)
    image_format = _image_format(data, "image", serving.max_pixels)
    out_format = _output_format(format, image_format)
    encoded = await serving.jobs.run(_convert, data, image_format, out_format)
    return Response(encoded, media_type=_MEDIA_TYPES[out_format])
