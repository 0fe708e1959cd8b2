"""Downloading zoo weights into torch.hub's cache, with their sha256 checked.

Bundled entries are files inside the package (``pconv_cli/weights/bundled/``): they
are never downloaded, only checked. Other files live in
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``) under the URL's file name. Offline,
the error says where to download a file from and where to put it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.zoo import WeightsEntry

__all__ = [
    "BUNDLED_DIR",
    "cached_weights_path",
    "download_to_cache",
    "fetch_weights",
    "sha256_of",
]

_HASH_CHUNK = 1 << 22
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
"""Where the package's own weights files live."""


def cached_weights_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` lives: ``BUNDLED_DIR/<file>`` for a bundled entry, else torch.hub's
    cache, ``torch.hub.get_dir()/checkpoints/<file>``."""
    if entry.bundled:
        return BUNDLED_DIR / entry.bundled
    return Path(torch.hub.get_dir()) / "checkpoints" / entry.filename


def sha256_of(path: Path) -> str:
    """The file's sha256 as hex, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: Path, entry: WeightsEntry) -> None:
    if entry.sha256_prefix is None:
        return
    digest = sha256_of(path)
    if not digest.startswith(entry.sha256_prefix):
        raise WeightsError(
            f"{path} does not match {entry.name}: sha256 {digest[:16]}..., expected "
            f"{entry.sha256_prefix[:16]}...; "
            + ("reinstall pconv" if entry.bundled else f"delete it and download {entry.url} again")
        )


def fetch_weights(entry: WeightsEntry, *, progress: bool = True) -> Path:
    """The local path of ``entry``'s file, downloading it into the hub cache if needed.

    The sha256 prefix is checked on download (torch.hub writes to a temp file and
    moves it into place only when the hash matches) and again for a file already
    in the cache, which may have been put there by hand.
    """
    path = cached_weights_path(entry)
    if path.is_file():
        _check_hash(path, entry)
        return path
    if entry.bundled:
        raise WeightsError(
            f"{entry.name}: the bundled file {path} is missing from this installation; "
            "reinstall pconv"
        )
    if not entry.url:
        raise WeightsError(
            f"{entry.name} cannot be downloaded automatically: download {entry.filename} from "
            f"{entry.download_page or entry.homepage} and either put it at {path} or pass "
            "--weights PATH_TO_THE_FILE"
        )
    return download_to_cache(
        entry.name,
        entry.url,
        entry.sha256_prefix,
        path,
        hint="pass --weights PATH_TO_THE_FILE",
        progress=progress,
    )


def download_to_cache(
    name: str,
    url: str,
    sha256_prefix: str | None,
    path: Path,
    *,
    hint: str,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``path`` (torch.hub's checked download); errors are one line.

    Offline, the :class:`WeightsError` names the URL, ``path`` and ``hint`` (another
    way to give the file, e.g. ``pass --weights PATH``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=sha256_prefix, progress=progress)
    except RuntimeError as exc:
        if "hash" in str(exc):
            raise WeightsError(
                f"download of {name} from {url} failed its sha256 check "
                f"(expected {sha256_prefix}...): {exc}"
            ) from None
        raise WeightsError(_offline_message(name, url, path, hint, exc)) from None
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
        raise WeightsError(_offline_message(name, url, path, hint, exc)) from None
    return path


def _offline_message(name: str, url: str, path: Path, hint: str, exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return (
        f"cannot download {name} ({reason}); download {url} yourself and "
        f"either put it at {path} or {hint}"
    )
