"""What the zoo knows of one set of published weights (torch-free: family zoo modules use it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WeightsEntry"]


@dataclass(frozen=True)
class WeightsEntry:
    """One set of published weights: where to get it and what it is.

    ``sha256_prefix`` is the start of the file's sha256 (torch.hub's convention:
    the 8 hex digits in MMagic's file names); ``None`` means no hash is published
    and the download is not checked. ``family`` and ``config`` are what the file
    converts to; ``colour_order`` and ``normalization`` describe the *original*
    weights (after conversion every entry runs on RGB images in [0, 1]).
    ``metrics`` maps an evaluation set to the publisher's scores. ``bundled`` names
    a file in ``pconv_cli/weights/bundled/`` (no URL; ``sha256_prefix`` is then the
    whole digest); ``recipe`` says how it was made, ``data_sha256`` identifies its
    training data (the sha256 of the data set's SHA256SUMS file). ``file_name`` is the
    file's name in the cache when the URL does not end with it (e.g. a Google Drive
    link); an entry with no ``url`` is downloaded by hand from ``download_page``.
    ``download_mb`` is the download's size in MB (10**6 bytes), None when not known.
    """

    name: str
    url: str
    sha256_prefix: str | None
    source_format: str
    family: str
    config: Mapping[str, Any]
    dataset: str
    description: str
    train_size: int = 256
    colour_order: str = "rgb"
    normalization: str = "minus_one_one"
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    license: str = ""
    citation: str = ""
    homepage: str = ""
    bundled: str | None = None
    recipe: str = ""
    data_sha256: str = ""
    file_name: str | None = None
    download_page: str = ""
    download_mb: float | None = None

    @property
    def filename(self) -> str:
        """The file name: the bundled file's, ``file_name``, or the URL's last component."""
        return self.bundled or self.file_name or self.url.rsplit("/", 1)[-1]
