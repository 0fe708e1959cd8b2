"""The ``pconv`` command-line app.

Every subcommand lives in ``pconv_cli.commands.<name>`` and is registered here.
Nothing at import time may pull in torch: ``pconv --help`` must stay instant, so
commands import the heavy core modules inside their function bodies.
"""

from __future__ import annotations

import signal
import sys

import typer

from pconv_cli import __version__
from pconv_cli.commands._options import FLAG, Command, Group, command_group
from pconv_cli.commands.classify import classify_app
from pconv_cli.commands.evaluate import evaluate
from pconv_cli.commands.gen_masks import gen_masks
from pconv_cli.commands.inpaint import inpaint
from pconv_cli.commands.serve import serve
from pconv_cli.commands.train import finetune, train
from pconv_cli.commands.weights import weights_app
from pconv_cli.errors import PconvError


class _OneLineErrors(Group):
    """The root command: usage errors are one ``Error: ...`` line on stderr (exit code 2),
    every :class:`~pconv_cli.errors.PconvError` one ``Error: ...`` line with its exit code,
    Ctrl-C (and SIGTERM, see :func:`main`) is ``Aborted.`` (130), ``pconv`` alone prints
    the help. However it is run: the console script, ``python -m pconv_cli`` or a test's
    CliRunner."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            code = 130
        except PconvError as exc:  # the one place every command's user errors end up
            typer.echo(f"Error: {exc}", err=True)
            code = exc.exit_code
        except typer.TyperException as exc:  # typer's (vendored click's) usage errors
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(message)  # `pconv` alone: the help text
                code = 0
            else:
                typer.echo(f"Error: {message}{hint}", err=True)
                code = getattr(exc, "exit_code", 2)
        sys.exit(code if isinstance(code, int) else 0)


app = command_group(
    "pconv",
    "Image inpainting with partial convolutions (Liu et al., ECCV 2018).\n\n"
    "Mask files are white = hole everywhere in pconv (use --invert-mask to flip).",
    cls=_OneLineErrors,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pconv {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
        **FLAG,
    ),
) -> None:
    """Image inpainting with partial convolutions."""


app.command("train", cls=Command)(train)
app.command("finetune", cls=Command)(finetune)
app.command("gen-masks", cls=Command)(gen_masks)
app.command("eval", cls=Command)(evaluate)
app.command("evaluate", hidden=True, cls=Command)(evaluate)
app.command("inpaint", cls=Command)(inpaint)
app.command("serve", cls=Command)(serve)
app.add_typer(weights_app, name="weights")
app.add_typer(classify_app, name="classify")


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (what ``kill``, ``timeout``, SLURM and Kubernetes send) acts as Ctrl-C."""
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point (see :class:`_OneLineErrors`); SIGTERM is handled as Ctrl-C."""
    signal.signal(signal.SIGTERM, _terminate)
    app()
