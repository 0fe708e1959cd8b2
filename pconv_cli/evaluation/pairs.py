"""Evaluation data for ``pconv eval``: image and mask listing, pairing, loading, batches.

numpy and PIL only (never torch). Conventions:

- Images are uint8 RGB arrays (H, W, 3); masks are bool (H, W), **True = hole**
  (mask files white = hole; ``invert`` for black = hole sets).
- Every pair is scored at its mask's size: the image is mapped onto it with
  ``crop='center'`` (Pillow bicubic resize of the image so it covers the mask,
  then a centred crop) or ``crop='resize'`` (plain bicubic resize to the mask
  size). An image already at the mask size is used as is.
- Files are listed recursively and sorted by their path relative to the folder
  (``/``-separated); a file's *key* is that path without its suffix.
- Pairing (deterministic, so two runs score the same pairs): ``cycle`` (default)
  makes ``max(N, M)`` pairs, pair ``k`` = image ``k mod N`` with mask ``k mod M``;
  ``all`` makes N x M pairs (image-major); a CSV file with columns ``image`` and
  ``mask`` (paths relative to the image folder and the mask set, or absolute)
  and optionally ``name`` lists the pairs.
- A pair's *name* (the file stem ``--predictions`` and ``--save-outputs`` use) is
  the image key when every image occurs in one pair only, else
  ``<image key>__<mask key with '/' replaced by '_'>``; a CSV ``name`` column wins.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from PIL import Image

from pconv_cli.data.images import IMAGE_SUFFIXES, find_images, open_rgb
from pconv_cli.data.masks import (
    MANIFEST_NAME,
    bucket_label,
    hole_ratio_of,
    load_mask,
    read_manifest,
    touches_border,
)
from pconv_cli.errors import PconvError

__all__ = [
    "CROP_MODES",
    "OTHER_BUCKET",
    "PAIRING_MODES",
    "Batch",
    "EvalError",
    "ImageEntry",
    "MaskEntry",
    "MaskSet",
    "Pair",
    "PairLoader",
    "PairPlan",
    "iter_batches",
    "list_images",
    "load_mask_set",
    "map_to_size",
    "plan_pairs",
]

CROP_MODES: tuple[str, ...] = ("center", "resize")
PAIRING_MODES: tuple[str, ...] = ("cycle", "all")
"""Named pairing rules; any other ``--pairing`` value is a CSV file of pairs."""

OTHER_BUCKET = "other"
"""Bucket label of masks outside NVIDIA's 0.01-0.6 hole-ratio buckets."""

_RESAMPLE = Image.Resampling.BICUBIC
_MIN_SIDE = 11
"""Smallest evaluated side: SSIM's Gaussian window is 11 px wide."""
_CACHE_BYTES = 64 * 2**20
"""Decoded images (and, apart, masks) kept per run: a few photos against a whole mask
set, or many photos against a few masks, decode each file once."""


class EvalError(PconvError, ValueError):
    """Bad evaluation input; the message is one line for the CLI."""


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ImageEntry:
    """An image to score: ``key`` is its folder-relative path without suffix."""

    key: str
    path: Path


@dataclass(frozen=True)
class MaskEntry:
    """A mask of the set. ``bucket``/``touches_border`` come from a manifest (None: compute)."""

    key: str
    path: Path
    bucket: str | None = None
    touches_border: bool | None = None


@dataclass(frozen=True)
class MaskSet:
    """The masks to score against, sorted by file name; ``manifest`` when one was read."""

    root: Path
    entries: tuple[MaskEntry, ...]
    manifest: Path | None = None


def _key_of(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def index_images(folder: str | os.PathLike[str], what: str) -> dict[str, list[Path]]:
    """``{key: [paths]}`` of the image files under ``folder`` (``what`` names it in errors)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"{what} {folder} is not a folder")
    index: dict[str, list[Path]] = {}
    for path in find_images(folder):
        index.setdefault(_key_of(path, folder), []).append(path)
    return index


def list_images(folder: str | os.PathLike[str]) -> list[ImageEntry]:
    """The images under ``folder``, sorted by relative path; keys must be unique."""
    index = index_images(folder, "image folder")
    if not index:
        raise EvalError(f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in {Path(folder)}")
    entries = []
    for key, paths in index.items():
        if len(paths) > 1:
            names = " and ".join(p.name for p in paths[:2])
            raise EvalError(f"{names} in {Path(folder)} share the name {key!r}; keep one")
        entries.append(ImageEntry(key, paths[0]))
    return entries


def load_mask_set(path: str | os.PathLike[str], invert: bool = False) -> MaskSet:
    """Masks of a folder (its ``manifest.csv`` if present, else every image file) or a manifest.

    Manifest buckets and border flags describe files as written (white = hole), so
    with ``invert`` they are recomputed from the loaded masks instead.
    """
    path = Path(path)
    if path.is_file():
        manifest: Path | None = path
        root = path.parent
    elif path.is_dir():
        root = path
        manifest = path / MANIFEST_NAME if (path / MANIFEST_NAME).is_file() else None
    else:
        raise EvalError(f"mask set {path} does not exist (give a mask folder or a manifest.csv)")
    if manifest is not None:
        rows = read_manifest(manifest)
        entries = [
            MaskEntry(
                key=Path(row.file).with_suffix("").as_posix(),
                path=root / row.file,
                bucket=None if invert else (row.bucket or OTHER_BUCKET),
                touches_border=None if invert else row.touches_border,
            )
            for row in sorted(rows, key=lambda row: row.file)
        ]
    else:
        entries = [MaskEntry(_key_of(p, root), p) for p in find_images(root)]
    if not entries:
        raise EvalError(f"mask set {path} is empty: no mask files found")
    missing = next((entry.path for entry in entries if not entry.path.is_file()), None)
    if missing is not None:
        raise EvalError(f"mask file {missing} listed in {manifest} does not exist")
    return MaskSet(root, tuple(entries), manifest)


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pair:
    """Pair number ``index`` of a plan: ``image`` scored against ``mask``, saved as ``name``."""

    index: int
    name: str
    image: ImageEntry
    mask: MaskEntry


def _mask_tag(mask: MaskEntry) -> str:
    return mask.key.replace("/", "_")


class PairPlan(Sequence[Pair]):
    """The deterministic list of pairs, computed on demand (``all`` can be N x M long)."""

    def __init__(
        self,
        mode: str,
        images: Sequence[ImageEntry],
        masks: Sequence[MaskEntry],
        *,
        explicit: Sequence[tuple[ImageEntry, MaskEntry, str | None]] = (),
        limit: int | None = None,
    ):
        self.mode = mode
        self.images = tuple(images)
        self.masks = tuple(masks)
        self.explicit = tuple(explicit)
        n, m = len(self.images), len(self.masks)
        if mode == "cycle":
            total, unique_images = max(n, m), m <= n
        elif mode == "all":
            total, unique_images = n * m, m == 1
        else:
            total = len(self.explicit)
            unique_images = len({entry[0].key for entry in self.explicit}) == total
        self.total = total
        self.unique_images = unique_images
        self.length = total if limit is None else min(total, limit)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self._pair(index)

    def __iter__(self) -> Iterator[Pair]:
        return (self._pair(i) for i in range(self.length))

    def _pair(self, index: int) -> Pair:
        name = None
        if self.mode == "cycle":
            image = self.images[index % len(self.images)]
            mask = self.masks[index % len(self.masks)]
        elif self.mode == "all":
            image, mask = divmod(index, len(self.masks))
            image, mask = self.images[image], self.masks[mask]
        else:
            image, mask, name = self.explicit[index]
        if name is None:
            name = image.key if self.unique_images else f"{image.key}__{_mask_tag(mask)}"
        return Pair(index, name, image, mask)


def _resolve(text: str, root: Path) -> Path:
    path = Path(text)
    return path if path.is_absolute() else root / path


def _read_pairs_file(
    path: Path, image_root: Path, masks: MaskSet
) -> list[tuple[ImageEntry, MaskEntry, str | None]]:
    by_path = {entry.path.resolve(): entry for entry in masks.entries}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            if "image" not in fields or "mask" not in fields:
                raise EvalError(f"pairs file {path} needs columns image and mask")
            pairs = []
            for record in reader:
                image_path = _resolve(record["image"] or "", image_root)
                mask_path = _resolve(record["mask"] or "", masks.root)
                for kind, file in (("image", image_path), ("mask", mask_path)):
                    if not file.is_file():
                        raise EvalError(
                            f"pairs file {path} line {reader.line_num}: {kind} {file} not found"
                        )
                mask = by_path.get(mask_path.resolve())
                if mask is None:
                    mask = MaskEntry(_relative_key(mask_path, masks.root), mask_path)
                image = ImageEntry(_relative_key(image_path, image_root), image_path)
                name = (record.get("name") or "").strip() or None
                pairs.append((image, mask, name))
    except OSError as error:
        raise EvalError(f"cannot read pairs file {path}: {error.strerror or error}") from None
    if not pairs:
        raise EvalError(f"pairs file {path} lists no pairs")
    return pairs


def _relative_key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).with_suffix("").as_posix()
    except ValueError:
        return path.stem


def plan_pairs(
    images: Sequence[ImageEntry],
    masks: MaskSet,
    pairing: str = "cycle",
    *,
    image_root: str | os.PathLike[str] = ".",
    limit: int | None = None,
) -> PairPlan:
    """Pairs for ``pairing`` = ``cycle`` | ``all`` | a CSV file (see the module docstring)."""
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be >= 1, got {limit}")
    if pairing in PAIRING_MODES:
        if not images:
            raise EvalError("no images to evaluate")
        return PairPlan(pairing, images, masks.entries, limit=limit)
    path = Path(pairing)
    if not path.is_file():
        raise EvalError(
            f"--pairing must be {' or '.join(PAIRING_MODES)} or a CSV file of pairs; "
            f"{pairing} is neither"
        )
    explicit = _read_pairs_file(path, Path(image_root), masks)
    plan = PairPlan("file", images, masks.entries, explicit=explicit, limit=limit)
    names = [pair.name for pair in plan]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise EvalError(f"pairs file {path} gives the name {duplicate!r} to several pairs")
    return plan


# --------------------------------------------------------------------------- loading


def map_to_size(image: Image.Image, size: tuple[int, int], crop: str) -> Image.Image:
    """``image`` mapped to ``size=(height, width)`` by ``crop`` (see the module docstring)."""
    height, width = size
    if image.size == (width, height):
        return image
    if crop == "resize":
        return image.resize((width, height), _RESAMPLE)
    if crop != "center":
        raise EvalError(f"--crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    scale = max(width / image.width, height / image.height)
    new_w = max(width, round(image.width * scale))
    new_h = max(height, round(image.height * scale))
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), _RESAMPLE)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A least-recently-used cache holding at most ``budget`` bytes (``size(value)`` each).

    Per run, so nothing outlives an evaluation; the item just loaded is always kept.
    """

    def __init__(self, load: Callable[[K], V], size: Callable[[V], int], budget: int):
        self._load, self._size, self._budget = load, size, budget
        self._items: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0

    def __call__(self, key: K) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._load(key)
        self._items[key] = value
        self._bytes += self._size(value)
        while self._bytes > self._budget and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= self._size(old)
        return value


@dataclass(frozen=True)
class LoadedMask:
    """A decoded mask (``hole`` True = hole, read-only) and its report bucket."""

    hole: np.ndarray
    bucket: str
    touches_border: bool
    hole_ratio: float


class PairLoader:
    """Decodes the truth image and hole mask of pairs (with small per-run caches)."""

    def __init__(self, crop: str = "center", invert: bool = False, cache_bytes: int = _CACHE_BYTES):
        if crop not in CROP_MODES:
            raise EvalError(f"--crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
        self.crop = crop
        self.invert = invert
        self._masks = _LRU(self._load_mask, lambda mask: mask.hole.nbytes, cache_bytes)
        self._images = _LRU(self._load_image, lambda image: image.nbytes, cache_bytes)

    def _load_mask(self, entry: MaskEntry) -> LoadedMask:
        hole = load_mask(entry.path, invert=self.invert)
        if not hole.any():
            hint = "" if self.invert else " (white = hole; --invert-mask reads black = hole)"
            raise EvalError(f"mask {entry.path} has no hole pixels{hint}")
        if min(hole.shape) < _MIN_SIDE:
            raise EvalError(
                f"mask {entry.path} is {hole.shape[1]}x{hole.shape[0]}; SSIM needs at least "
                f"{_MIN_SIDE}x{_MIN_SIDE}"
            )
        hole.setflags(write=False)
        ratio = hole_ratio_of(hole)
        bucket = entry.bucket if entry.bucket is not None else bucket_label(ratio) or OTHER_BUCKET
        border = entry.touches_border
        return LoadedMask(hole, bucket, touches_border(hole) if border is None else border, ratio)

    def _load_image(self, key: tuple[ImageEntry, tuple[int, int]]) -> np.ndarray:
        entry, size = key
        array = np.asarray(map_to_size(open_rgb(entry.path, "image"), size, self.crop))
        array.setflags(write=False)
        return array

    def mask(self, entry: MaskEntry) -> LoadedMask:
        return self._masks(entry)

    def image(self, entry: ImageEntry, size: tuple[int, int]) -> np.ndarray:
        """uint8 RGB (H, W, 3) of ``entry`` mapped to ``size=(height, width)``."""
        return self._images((entry, size))


@dataclass
class Batch:
    """Consecutive pairs of one size: ``truth`` uint8 (B, H, W, 3), ``hole`` bool (B, H, W)."""

    pairs: list[Pair]
    truth: np.ndarray
    hole: np.ndarray
    masks: list[LoadedMask]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def size(self) -> tuple[int, int]:
        return self.truth.shape[1], self.truth.shape[2]


def _make_batch(loader: PairLoader, pairs: list[Pair]) -> list[Batch]:
    """Load ``pairs`` and split them wherever the mask size changes."""
    batches: list[Batch] = []
    group: list[tuple[Pair, np.ndarray, LoadedMask]] = []

    def flush() -> None:
        if group:
            batches.append(
                Batch(
                    pairs=[g[0] for g in group],
                    truth=np.stack([g[1] for g in group]),
                    hole=np.stack([g[2].hole for g in group]),
                    masks=[g[2] for g in group],
                )
            )
            group.clear()

    for pair in pairs:
        mask = loader.mask(pair.mask)
        size = mask.hole.shape
        if group and group[-1][2].hole.shape != size:
            flush()
        group.append((pair, loader.image(pair.image, size), mask))
    flush()
    return batches


def iter_batches(
    plan: Sequence[Pair], loader: PairLoader, batch_size: int, *, prefetch: bool = True
) -> Iterator[Batch]:
    """Batches of up to ``batch_size`` pairs in plan order (a mask-size change starts a new one).

    With ``prefetch`` the next chunk is decoded in a background thread while the
    caller scores the current one; only two chunks are ever held.
    """
    if batch_size < 1:
        raise EvalError(f"--batch must be >= 1, got {batch_size}")
    chunks = (list(plan[i : i + batch_size]) for i in range(0, len(plan), batch_size))
    if not prefetch:
        for chunk in chunks:
            yield from _make_batch(loader, chunk)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pconv-eval-load") as pool:
        pending: Future[list[Batch]] | None = None
        for chunk in chunks:
            future = pool.submit(_make_batch, loader, chunk)
            if pending is not None:
                yield from pending.result()
            pending = future
        if pending is not None:
            yield from pending.result()
