"""The one exception hierarchy of pconv (torch-free, so every command can name it cheaply).

Every error a user can cause (a bad option, a missing file, weights of another
family, a full disk) is a :class:`PconvError`: its message is one line, printed
by the ``pconv`` app as ``Error: <message>`` with the error's ``exit_code``
(1: the job failed; 2: the command line is wrong; 130: interrupted). Commands
let these errors propagate; the app catches :class:`PconvError` once. Modules
define their own subclasses (``WeightsError``, ``MaskError``, ...) so callers can
tell them apart; some also derive from ``ValueError``/``RuntimeError`` for the
code that catches those.

Anything else that escapes a command is a bug, shown with its traceback.
"""

from __future__ import annotations

__all__ = ["Interrupted", "PconvError", "UsageError", "one_line"]


def one_line(text: object) -> str:
    """The first non-empty line of ``str(text)`` (what a one-line error shows)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


class PconvError(Exception):
    """An error with a one-line message for the user; ``exit_code`` is what the app exits with."""

    exit_code: int = 1

    def __str__(self) -> str:
        return one_line(super().__str__())

    def prefixed(self, context: str) -> PconvError:
        """This error with ``context: `` before its message (same class, same exit code)."""
        if self.args:
            self.args = (f"{context}: {self.args[0]}", *self.args[1:])
        return self


class UsageError(PconvError):
    """Options that do not fit together or a value that is refused (exit code 2)."""

    exit_code = 2


class Interrupted(PconvError):
    """Ctrl-C or SIGTERM stopped the job cleanly (exit code 130)."""

    exit_code = 130
