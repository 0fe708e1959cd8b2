"""``pconv weights``: the zoo of published weights (list, download, convert).

torch is imported inside the commands only.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import typer

from pconv_cli.commands._options import FLAG, Command, command_group

weights_app = command_group(
    "weights",
    "Published weights: list the zoo, download for offline use, convert to pconv.",
)


def _console(*, stderr: bool = False):
    from rich.console import Console

    return Console(highlight=False, stderr=stderr, soft_wrap=stderr)


def _metrics_text(metrics) -> str:
    parts = []
    for dataset, scores in metrics.items():
        values = "\n".join(f"{k} {v:g}" for k, v in scores.items())
        parts.append(f"{dataset}:\n{values}")
    return "\n".join(parts) or "-"


@weights_app.command("list", cls=Command)
def list_command() -> None:
    """Print the zoo: source, data, family, conventions, scores, whether it is here."""
    from rich.markup import escape
    from rich.table import Table

    from pconv_cli.weights import DEFAULT_WEIGHTS, cached_weights_path, list_weights

    console = _console()
    table = Table(title="pconv weights", show_lines=True)
    table.add_column("name", no_wrap=True, style="bold")
    for column in ("trained on", "original", "scores", "here"):
        table.add_column(column)
    entries = list_weights()
    for entry in entries:
        if entry.bundled:
            here = "[green]bundled[/]"
        else:
            here = "[green]cached[/]" if cached_weights_path(entry).is_file() else "no"
            size = f"downloads {entry.download_mb:,.0f} MB" if entry.download_mb else "size unknown"
            here += f"\n({size})" if here == "no" else ""
        table.add_row(
            entry.name + ("\n(default)" if entry.name == DEFAULT_WEIGHTS else ""),
            f"{entry.dataset}\n{entry.train_size}x{entry.train_size}",
            f"{entry.source_format}, {entry.colour_order.upper()}\n{entry.normalization}\n"
            f"{entry.family}",
            _metrics_text(entry.metrics),
            here,
        )
    console.print(table)
    for entry in entries:
        console.print(f"[bold]{entry.name}[/]: {escape(entry.description)}")
        if entry.bundled:
            where = f"bundled: {cached_weights_path(entry)} (sha256 {entry.sha256_prefix[:16]}...)"
        elif entry.sha256_prefix:
            where = f"{entry.url} (sha256 {entry.sha256_prefix}...)"
        else:
            source = entry.url or f"download {entry.filename} by hand from {entry.download_page}"
            where = f"{source} (no published hash: not checked)"
        console.print(f"  {escape(where)}; {escape(entry.license)}", soft_wrap=True)
        if entry.recipe:
            console.print(f"  recipe: {escape(entry.recipe)}", soft_wrap=True)
    downloaded = [e for e in entries if not e.bundled]
    if downloaded:
        console.print(f"cache: {cached_weights_path(downloaded[0]).parent}")
    default = next((e for e in entries if e.name == DEFAULT_WEIGHTS), None)
    if default is not None and default.bundled:
        console.print(
            f"default: {default.name} (bundled, works offline); mmagic-places gives the best "
            "quality when it can be downloaded (pconv weights download mmagic-places)",
            soft_wrap=True,
        )
    else:
        console.print(f"default: {DEFAULT_WEIGHTS}", soft_wrap=True)


@weights_app.command("download", cls=Command)
def download_command(
    names: list[str] = typer.Argument(None, metavar="[NAME]...", help="Zoo names. [default: all]"),
) -> None:
    """Download published weights into torch.hub's cache (for offline use later)."""
    from rich.markup import escape

    from pconv_cli.weights import ZOO, WeightsError, fetch_weights, get_weights

    console = _console()
    unknown = [name for name in names or [] if name not in ZOO]
    if unknown:
        from pconv_cli.errors import UsageError

        raise UsageError(f"unknown weights {unknown[0]!r}; known: {', '.join(ZOO)}")
    failed = False
    for name in names or list(ZOO):
        try:
            path = fetch_weights(get_weights(name))
        except WeightsError as exc:
            _console(stderr=True).print(f"[red]Error:[/] {escape(str(exc))}")
            failed = True
        else:
            console.print(f"{name}: {escape(str(path))}")
    if failed:
        raise typer.Exit(1)


@weights_app.command("convert", cls=Command)
def convert_command(
    source: str = typer.Argument(..., metavar="NAME|PATH", help="Weights in any supported format."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="The pconv checkpoint to write (a .safetensors file)."
    ),
    half: bool = typer.Option(
        False,
        "--half",
        help="Store floating-point tensors as float16: half the size; loading casts them "
        "back to float32. [default: off, as read]",
        **FLAG,
    ),
    keep_float32: list[str] = typer.Option(
        None,
        "--keep-float32",
        metavar="GLOB",
        help="With --half: tensors whose names match this glob stay float32 (repeatable), "
        "e.g. 'encoder.enc1.*'. [default: none]",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing -o (atomically), even the input itself.",
        **FLAG,
    ),
) -> None:
    """Convert weights (MMagic, naoto0804, ...) into a pconv safetensors checkpoint."""
    from rich.markup import escape

    from pconv_cli.errors import UsageError
    from pconv_cli.files import input_clash, remove_stale_temporaries, writable_problem

    if keep_float32 and not half:
        raise UsageError("--keep-float32 needs --half")
    if out.suffix.lower() != ".safetensors":
        raise UsageError(
            f"-o {out}: pconv checkpoints are safetensors files; name it "
            f"{out.with_suffix('.safetensors').name} (a .pth name would promise a pickle)"
        )
    problem = writable_problem(out)
    if problem:
        raise UsageError(f"-o {out}: {problem}")
    source_path = Path(source).expanduser()
    if source_path.is_file() and input_clash(out, [source_path]) and not overwrite:
        raise UsageError(f"-o {out} is the input; pass --overwrite to replace it")
    if out.exists() and not overwrite:
        raise UsageError(f"-o {out} exists; pass --overwrite to replace it")

    from pconv_cli.weights import WeightsError, model_from_weights, open_weights, write_checkpoint

    console = _console()
    weights = open_weights(source)
    model_from_weights(weights)  # the file must build a working model
    meta = weights.metadata
    read_from = meta.get("source")
    if read_from and input_clash(out, [read_from]) and not overwrite:
        raise UsageError(f"-o {out} is the input ({read_from}); pass --overwrite to replace it")
    extra = {"original_format": weights.source_format}
    extra.update({k: meta[k] for k in ("name", "size") if k in meta})
    state = weights.state
    if half:
        kept = [
            k for k in state if any(fnmatch.fnmatchcase(k, glob) for glob in keep_float32 or [])
        ]
        unmatched = [
            g for g in keep_float32 or [] if not any(fnmatch.fnmatchcase(k, g) for k in state)
        ]
        if unmatched:
            raise UsageError(f"--keep-float32 {unmatched[0]!r} matches no tensor")
        state = {
            k: v.half() if v.is_floating_point() and k not in kept else v for k, v in state.items()
        }
        extra["stored_as"] = "float16" + (f" ({len(kept)} tensors float32)" if kept else "")
    remove_stale_temporaries(out.parent)
    try:
        write_checkpoint(
            out,
            state,
            family=weights.family,
            config=weights.config,
            converted_from=Path(meta.get("source", source)).name,
            **extra,
        )
    except OSError as error:
        raise WeightsError(
            f"cannot write {out}: {error.strerror or error}; nothing was changed"
        ) from None
    console.print(f"wrote {escape(str(out))} ({weights.source_format} -> pconv)")
