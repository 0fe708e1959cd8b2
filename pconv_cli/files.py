"""Small file helpers shared by the core (no torch import).

- :func:`atomic_write`: a temp file beside the target, renamed into place;
- :func:`writable_problem`: why a path could not be written, checked before any work;
- :func:`input_clash`: whether an output would land on (or among) the files a run reads;
- :func:`remove_stale_temporaries`: the temp files of pconv writers that died
  (SIGKILL, power cut) before they could remove them.

Temporary files are named ``.<name>.<pid>.<random>.tmp`` (``<name>`` shortened so
the whole stays within the file-name limit): the writer's process id tells a stale
temporary (its writer is gone) from one being written right now.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "NAME_MAX",
    "atomic_write",
    "input_clash",
    "is_inside",
    "is_own_temporary",
    "name_too_long",
    "remove_stale_temporaries",
    "temporary_prefix",
    "writable_problem",
    "writer_alive",
]

NAME_MAX = 255
"""Longest file name in bytes on common file systems (used when the OS cannot say)."""

_TEMP_SUFFIX = ".tmp"
_TEMP_OVERHEAD = 32  # ".", ".<pid>.", 8 random characters, ".tmp", with room to spare
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)\.[a-z0-9_]{8}\.(?:tmp|new|old)$")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def _shorten(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` UTF-8 bytes (never inside a character)."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def temporary_prefix(path: str | os.PathLike[str]) -> str:
    """The ``prefix`` for ``tempfile.mkstemp``/``mkdtemp`` of a temporary for ``path``:
    ``.<name>.<pid>.``, short enough for the random part and suffix to fit."""
    path = Path(path)
    room = _name_max(path.parent if path.parent.is_dir() else Path(".")) - _TEMP_OVERHEAD
    return f".{_shorten(path.name, max(room, 8))}.{os.getpid()}."


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], *, fsync: bool = True
) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, fsync it, rename it into place.

    A crash or Ctrl-C at any point leaves either the old file or the new one at
    ``path``, never a half-written one; the temp file is removed on failure (and,
    after a SIGKILL, by :func:`remove_stale_temporaries` on a later run).
    ``fsync=False`` skips the flushes to disk (still atomic for the processes on
    this machine, not across a power cut): for many small files, like mask sets.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=temporary_prefix(path), suffix=_TEMP_SUFFIX, dir=path.parent
    )
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


def name_too_long(path: str | os.PathLike[str]) -> str | None:
    """Why ``path``'s file name is too long for its folder (one line), or None."""
    path = Path(path)
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    limit = _name_max(folder)
    size = len(path.name.encode("utf-8"))
    if size > limit:
        return f"its file name is {size} bytes long; the limit here is {limit}"
    return None


def writable_problem(path: str | os.PathLike[str], *, folder: bool = False) -> str | None:
    """Why ``path`` could not be written (one line), or None if it can.

    ``folder=True``: ``path`` is a folder to write files into (it may exist);
    otherwise a file, which must not be a folder or anything but a regular file.
    Checked for real, before any work: a temporary file is created (and removed) in
    the nearest existing folder on the way to ``path``; nothing else is left behind.
    """
    path = Path(path)
    parent = path if folder else path.parent
    for part in [path, *path.parents]:  # first: stat() itself fails on too long names
        too_long = name_too_long(part)
        if too_long:
            return f"{part.name[:40]}...: {too_long}"
    if folder:
        if path.exists() and not path.is_dir():
            return f"{path} exists and is not a folder"
    else:
        if path.is_dir():
            return f"{path} is a folder"
        if path.exists() and not path.is_file():
            return f"{path} exists and is not a regular file"
    for part in [parent, *parent.parents]:
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                return f"{part} is not a folder"
            break
    nearest = parent
    while not nearest.exists():
        nearest = nearest.parent
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as error:
        return f"cannot write in {nearest}: {error.strerror or error}"
    return None


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``folder`` or lies somewhere below it (links resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def input_clash(
    output: str | os.PathLike[str],
    files: Iterable[str | os.PathLike[str]] = (),
    folders: Iterable[str | os.PathLike[str]] = (),
) -> str | None:
    """Why writing ``output`` would destroy or pollute an input (one line), or None.

    ``files``: every file the run reads (an output may not replace one, hard links
    and symbolic links included); ``folders``: folders the run reads recursively (an
    output inside one would be read as an input next time).
    """
    output = Path(output)
    resolved = output.resolve()
    identity = _identity(output)  # an existing output: the same file under another name?
    for file in files:
        file = Path(file)
        if file.resolve() == resolved or (identity and _identity(file) == identity):
            return f"it is {file}, an input of this run"
    for folder in folders:
        if is_inside(output, folder):
            return f"it is inside {folder}, which this run reads"
    return None


def writer_alive(pid: int) -> bool:
    """Whether process ``pid`` (a temporary's writer) still runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (someone else's), or we cannot tell: keep its file
    return True


def is_own_temporary(path: Path) -> bool:
    """Whether ``path`` is named like a temporary of :func:`atomic_write`: ``.NAME.PID.XXXX.tmp``
    (or ``.NAME.XXXX.tmp``, as pconv named them before the writer's pid was part of it)."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.name.count(".") >= 3


def remove_stale_temporaries(folder: str | os.PathLike[str], *, locked: bool = False) -> list[Path]:
    """Delete the temporaries of pconv writers that are gone, in ``folder`` (not below).

    Only names of pconv's own making (``.<name>.<pid>.<random>.tmp``, and the
    ``.new`` folders of an unfinished mask-set swap) whose process no longer runs are
    removed; anything else, and the temporaries of running writers, stay. ``locked``:
    the caller holds the folder's lock (a run directory), so no one else writes there
    and every temporary of pconv's naming goes, older ones without a pid included.
    Returns what was removed.
    """
    import shutil

    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        found = _TEMPORARY.match(entry.name)
        if found:
            stale = locked or not writer_alive(int(found["pid"]))
        else:
            stale = locked and entry.is_file(follow_symlinks=False) and is_own_temporary(path)
        if not stale or entry.name.endswith(".old"):
            continue  # (a mask set's previous version: recover_mask_set decides)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


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
