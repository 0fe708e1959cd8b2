"""``pconv serve``: a local web page to paint a mask over a photo and inpaint it.

A thin wrapper over :mod:`pconv_cli.web` (FastAPI + uvicorn, the ``web`` extra);
fastapi, uvicorn and torch are imported inside the command only.
"""

from __future__ import annotations

import typer

from pconv_cli.commands._options import DEVICE_METAVAR, device_value

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (None: it can), checked before starting."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"unknown address ({exc.strerror or exc})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def serve(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on. Anything but 127.0.0.1/localhost lets other machines "
        "use the page (a warning says so).",
    ),
    port: int = typer.Option(7860, "--port", "-p", min=0, max=65535, help="Port (0: any free)."),
    weights: str = typer.Option(
        None,
        "--weights",
        "-w",
        metavar="NAME|PATH",
        help="Also offer these weights (and make them the default). [default: the zoo's "
        "default; every zoo entry available here is offered]",
    ),
    method: str = typer.Option(
        None,
        "--method",
        metavar="[telea|ns|biharmonic|patchmatch]",
        help="Make a classic method the page's default source instead of a model (every "
        "method is offered either way). [default: none: the model]",
    ),
    blend: str = typer.Option(
        "auto",
        "--blend",
        metavar="[auto|poisson|none]",
        help="The page's default blend: auto (poisson, or none for weights that reproduce "
        "their publisher's pipeline), poisson (gradient domain, no seams) or none.",
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        metavar=DEVICE_METAVAR,
        callback=device_value,
        help="Where the models run (auto: CUDA, then MPS, then CPU).",
    ),
    max_upload_mb: int = typer.Option(
        32, "--max-upload-mb", min=1, help="Largest accepted upload per file, in MiB."
    ),
    max_megapixels: float = typer.Option(
        40.0, "--max-megapixels", min=0.01, help="Largest accepted image, in megapixels."
    ),
    max_pass_megapixels: float = typer.Option(
        4.0,
        "--max-pass-megapixels",
        min=0.01,
        help="Largest model pass, in megapixels: larger images or crop windows are inpainted "
        "shrunk to fit (as --strategy resize). Bounds memory: ~0.7 GB per megapixel with "
        "the default model.",
    ),
    allowed_host: list[str] = typer.Option(
        None,
        "--allowed-host",
        metavar="NAME",
        help="Also accept requests whose Host header names NAME (repeatable; '*': any), "
        "e.g. the name a reverse proxy serves. [default: the --host address and localhost]",
    ),
    allowed_origin: list[str] = typer.Option(
        None,
        "--allowed-origin",
        metavar="URL",
        help="Also accept POSTs from pages of this origin (repeatable), e.g. "
        "https://pconv.example.org behind a proxy. [default: this server's own page only]",
    ),
) -> None:
    """Paint a mask in the browser and inpaint (a local web page; needs the web extra).

    The page: open or drop a photo, paint the hole, choose a model or a classic
    method, the strategy and the blend, inpaint, compare, inpaint again, download.
    The API it uses is at /docs. Only this server's own page (and --allowed-origin)
    may POST; Host headers must name this server (or --allowed-host).
    """
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    _check_options(weights=weights, method=method, blend=blend)
    _require_web_extra()

    from pconv_cli.errors import PconvError
    from pconv_cli.web.app import create_app
    from pconv_cli.weights import expect_kind, open_weights

    if weights:
        expect_kind(open_weights(weights), "inpainting")  # fail now, not on the first request
    app = create_app(
        weights=weights,
        device=device,
        max_upload_mb=max_upload_mb,
        max_pixels=int(max_megapixels * 1e6),
        max_pass_pixels=int(max_pass_megapixels * 1e6),
        host=host,
        allowed_hosts=allowed_host or (),
        allowed_origins=allowed_origin or (),
        method=method,
        blend=blend,
    )
    problem = _bind_problem(host, port)
    if problem:
        raise PconvError(f"cannot listen on {host}:{port}: {problem}")
    if host not in _LOCAL_HOSTS:
        console.print(
            f"[yellow]warning:[/] listening on {escape(host)}: anyone who can reach this "
            "machine can use the page and its models"
        )
    _run_server(app, host=host, port=port, method=method, blend=blend, console=console)


def _check_options(*, weights: str | None, method: str | None, blend: str) -> None:
    """Usage errors of --weights, --method and --blend (before anything is imported)."""
    if weights and method:
        raise typer.BadParameter(
            "give --weights or --method, not both (one source at a time)", param_hint="--method"
        )
    if method is not None and method not in ("telea", "ns", "biharmonic", "patchmatch"):
        raise typer.BadParameter(
            f"unknown method {method!r}; choose from telea, ns, biharmonic, patchmatch",
            param_hint="--method",
        )
    if blend not in ("auto", "poisson", "none"):
        raise typer.BadParameter(
            f"{blend!r} is not one of auto, poisson, none", param_hint="--blend"
        )


def _require_web_extra() -> None:
    """Fail in one line when fastapi, uvicorn or python-multipart is missing."""
    from pconv_cli.errors import PconvError
    from pconv_cli.web import missing_web_modules

    missing = missing_web_modules()
    if missing:
        raise PconvError(
            f"pconv serve needs the web extra ({', '.join(missing)} missing): "
            "pip install 'pconv-cli[web]'"
        )


def _run_server(app, *, host: str, port: int, method: str | None, blend: str, console) -> None:
    """Serve ``app`` until Ctrl-C; the address line is printed once the socket listens."""
    import uvicorn

    from pconv_cli.errors import PconvError

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets=None) -> None:
        await original_startup(sockets=sockets)
        if server.started:
            _announce(server, app.state.store, host=host, port=port, method=method, blend=blend,
                      console=console)  # fmt: skip

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    except (OSError, SystemExit) as exc:  # uvicorn exits when it cannot bind after all
        raise PconvError(f"cannot listen on {host}:{port} ({exc})") from None
    if not server.started:
        raise PconvError(f"cannot listen on {host}:{port}")


def _announce(
    server, store, *, host: str, port: int, method: str | None, blend: str, console
) -> None:
    """The line that says where the page is (the port bound, for --port 0) and what it offers."""
    bound = port
    for socket in (s for srv in getattr(server, "servers", []) for s in srv.sockets):
        bound = socket.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"pconv serve: http://{shown}:{bound}/ (models: {', '.join(store.choices) or 'none'};"
        f" default {('method ' + method) if method else store.default}; blend {blend}; "
        f"device {store.device}); Ctrl-C stops"
    )
