"""Small file helpers shared by the core: atomic writes (no torch import)."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], *, fsync: bool = True
) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, fsync it, rename it into place.

    A crash or Ctrl-C at any point leaves either the old file or the new one at
    ``path``, never a half-written one; the temp file is removed on failure.
    ``fsync=False`` skips the flushes to disk (still atomic for the processes on
    this machine, not across a power cut): for many small files, like mask sets.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _new_file_mode())  # mkstemp makes 0600 files; outputs follow the umask
        if fsync:
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def is_own_temporary(path: Path) -> bool:
    """Whether ``path`` is named like a temporary of :func:`atomic_write` (``.NAME.XXXX.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.name.count(".") >= 3


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries :func:`atomic_write` left in ``folder`` (not below) when its
    process was killed; only call this while no other process writes there. Returns them."""
    removed = []
    for path in sorted(Path(folder).glob(".*.tmp")):
        if path.is_file() and is_own_temporary(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def writable_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` could not be written (one line), or None if it can.

    Checked for real, before any work: a temporary file is created (and removed) in
    the nearest existing folder on the way to ``path``; nothing else is left behind.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder"
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"cannot write in {folder}: {error.strerror or error}"
    return None


@functools.cache
def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 minus the umask.

    Read once per process: reading the umask means setting it briefly, which must
    not race with threads creating files.
    """
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: not every OS can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
