"""Training data: images from a folder or a file list, masks from files or a generator.

Items are dicts with ``image`` float RGB in [0, 1] (3, S, S), ``mask`` float
(1, S, S) with **1 = valid, 0 = hole**, ``path`` (str) and ``skipped`` (paths of
unreadable images that were stepped over to produce this item).

Every random choice of an item (crop, flip, mask) comes from
``numpy.random.default_rng([seed, position])`` where ``position`` is the item's
place in the infinite sample stream. :class:`InfiniteSampler` yields
``(index, position)`` keys, so the data depend on nothing but the seed and the
position: not on worker count or timing, and a resumed run continues exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from pconv_cli.data import masks as mask_lib
from pconv_cli.data.images import IMAGE_SUFFIXES, ImageError, find_images, open_rgb
from pconv_cli.errors import PconvError

__all__ = [
    "CROP_MODES",
    "DataError",
    "InfiniteSampler",
    "InpaintingDataset",
    "MaskSource",
    "collate",
    "open_readable",
    "read_file_list",
    "resolve_images",
]

CROP_MODES = ("mmagic", "resize")
# Width of the hole-ratio parts a --hole-ratio range is cut into (see MaskSource).
_RATIO_PART = 0.1
# How many following images to try when one is unreadable, before giving up on an item.
_MAX_SKIPS = 16


class DataError(PconvError, ValueError):
    """A data set that cannot be used (one-line message for the CLI)."""


# -- image lists -------------------------------------------------------------------------


def read_file_list(
    list_file: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Paths from a Places365/CelebA-style list: one ``path [label ...]`` per line.

    Paths are relative to ``root`` (default: the list's folder); a leading ``/``
    (as in ``places365_train_challenge.txt``) is relative to ``root`` too. Blank
    lines and ``#`` comments are ignored. Order is kept.
    """
    list_file = Path(list_file)
    root = Path(root) if root is not None else list_file.parent
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read file list {list_file}: {exc}") from None
    paths = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        paths.append(root / line.split()[0].lstrip("/"))
    return paths


def resolve_images(
    data: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> list[Path]:
    """``data`` is an image folder (recursive) or a text file list; error if it has no image."""
    data = Path(data)
    if data.is_dir():
        paths = find_images(data)
    elif data.is_file():
        paths = read_file_list(data, root)
    else:
        raise DataError(f"--data {data}: no such folder or file list")
    if not paths:
        raise DataError(
            f"no images found in {data} (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return paths


# -- masks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskSource:
    """Where training masks come from: a generator ``kind`` or a folder of mask files.

    Generated masks have hole ratios in the kind's own range, or in ``hole_ratio =
    (lo, hi)`` evenly: the range is cut into equal parts about 0.1 wide, each mask is
    drawn into one part picked uniformly (``(0.01, 0.6)``: about NVIDIA's six test
    buckets, each as often; one draw over the whole range would favour large ratios,
    since a single stroke can overshoot a small target).
    Mask files are white = hole (``invert=True`` for black = hole); they are
    resized with nearest to the training size and randomly flipped/rotated.
    """

    kind: str | None = None
    files: tuple[Path, ...] = ()
    invert: bool = False
    hole_ratio: tuple[float, float] | None = None

    @classmethod
    def parse(
        cls, spec: str, *, invert: bool = False, hole_ratio: str | None = None
    ) -> MaskSource:
        """A mask kind (``irregular``, ``brush``, ``mixed``, ...) or an existing folder;
        ``hole_ratio`` ``"LO-HI"`` for a kind's masks."""
        path = Path(spec)
        if path.is_dir():
            if hole_ratio is not None:
                raise DataError(f"--hole-ratio applies to generated masks, not to {spec}")
            files = tuple(find_images(path))
            if not files:
                raise DataError(f"--masks {spec}: the folder holds no mask images")
            return cls(files=files, invert=invert)
        if all(part in mask_lib.MASK_KINDS for part in spec.split("+")):
            ratio = None
            if hole_ratio is not None:
                try:
                    ratio = mask_lib.parse_ratio_range(hole_ratio)
                except ValueError as exc:
                    raise DataError(f"--hole-ratio: {exc}") from None
            return cls(kind=spec, invert=invert, hole_ratio=ratio)
        raise DataError(
            f"--masks {spec}: neither a folder nor a mask kind "
            f"({', '.join(mask_lib.MASK_KINDS)}, or several joined by +)"
        )

    def describe(self) -> str:
        if self.kind is None:
            return f"{len(self.files)} mask files"
        if self.hole_ratio is None:
            return self.kind
        return f"{self.kind}, hole ratio {mask_lib.format_ratio_range(*self.hole_ratio)}"

    def _ratio_part(self, rng: np.random.Generator) -> tuple[float, float] | None:
        if self.hole_ratio is None:
            return None
        lo, hi = self.hole_ratio
        parts = max(1, math.ceil((hi - lo) / _RATIO_PART - 1e-9))
        k = int(rng.integers(parts))
        width = (hi - lo) / parts
        return lo + k * width, hi if k == parts - 1 else lo + (k + 1) * width

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A (size, size) bool array, True = hole."""
        if self.kind is not None:
            return mask_lib.generate_mask(
                self.kind, rng, size=(size, size), hole_ratio=self._ratio_part(rng)
            )
        path = self.files[int(rng.integers(len(self.files)))]
        hole = mask_lib.load_mask(path, invert=self.invert)
        if hole.shape[0] == hole.shape[1] and rng.random() < 0.5:
            hole = hole.T
        if rng.random() < 0.5:
            hole = hole[:, ::-1]
        if rng.random() < 0.5:
            hole = hole[::-1, :]
        if hole.shape != (size, size):
            image = Image.fromarray(np.ascontiguousarray(hole))
            hole = np.asarray(image.resize((size, size), Image.NEAREST))
        return np.ascontiguousarray(hole)


def open_readable(paths: Sequence[Path], index: int) -> tuple[int, Image.Image, list[str]]:
    """The first readable image from ``paths[index]`` on (wrapping around), as RGB:
    ``(its index, the image, the unreadable paths stepped over)``; a DataError after
    :data:`_MAX_SKIPS` unreadable files in a row."""
    skipped: list[str] = []
    for attempt in range(min(_MAX_SKIPS, len(paths))):
        found = (index + attempt) % len(paths)
        try:
            return found, open_rgb(paths[found]), skipped
        except ImageError:
            skipped.append(str(paths[found]))
    raise DataError(f"{len(skipped)} images in a row are unreadable, starting at {skipped[0]}")


# -- dataset -----------------------------------------------------------------------------


def _crop_and_resize(
    image: Image.Image, rng: np.random.Generator, *, size: int, mode: str, crop_size: int
) -> Image.Image:
    """MMagic: a random square crop of ``crop_size`` (clipped to the image), resized to ``size``.

    ``resize``: the short side resized to ``size``, then a random ``size`` x ``size`` crop.
    """
    width, height = image.size
    if mode == "mmagic":
        side = min(crop_size, width, height)
        left = int(rng.integers(width - side + 1))
        top = int(rng.integers(height - side + 1))
        image = image.crop((left, top, left + side, top + side))
        return image.resize((size, size), Image.BICUBIC) if side != size else image
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left = int(rng.integers(new_w - size + 1))
    top = int(rng.integers(new_h - size + 1))
    return image.crop((left, top, left + size, top + size))


class InpaintingDataset(Dataset):
    """Random training items; index with ``(image_index, position)`` keys (see module doc).

    ``dataset[i]`` with a plain int uses position ``i``.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        masks: MaskSource,
        *,
        size: int = 256,
        crop: str = "mmagic",
        crop_size: int | None = None,
        flip: bool = True,
        seed: int = 0,
    ):
        if not paths:
            raise DataError("the data set is empty")
        if crop not in CROP_MODES:
            raise DataError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        self.paths = [Path(p) for p in paths]
        self.masks = masks
        self.size = size
        self.crop = crop
        self.crop_size = crop_size if crop_size is not None else round(1.5 * size)
        self.flip = flip
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, position = (key, key) if isinstance(key, int) else key
        rng = np.random.default_rng([self.seed, position])
        found, image, skipped = open_readable(self.paths, index)
        path = self.paths[found]
        image = _crop_and_resize(
            image, rng, size=self.size, mode=self.crop, crop_size=self.crop_size
        )
        if self.flip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        hole = self.masks.draw(rng, self.size)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return {
            "image": torch.from_numpy(array).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(~hole).float().unsqueeze(0),
            "path": str(path),
            "skipped": skipped,
        }


def collate(items: list[dict]) -> dict:
    """Stack images and masks; keep paths and the flat list of skipped files."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
        "path": [it["path"] for it in items],
        "skipped": [p for it in items for p in it["skipped"]],
    }


class InfiniteSampler(Sampler):
    """Endless ``(index, position)`` keys: a fresh seeded permutation every epoch.

    Position ``p`` is in epoch ``p // n``; ``start`` resumes the stream exactly. With
    ``num_replicas > 1`` each replica takes every ``num_replicas``-th position,
    offset by ``rank``.
    """

    def __init__(
        self, size: int, *, seed: int = 0, start: int = 0, rank: int = 0, num_replicas: int = 1
    ):
        if size <= 0:
            raise DataError("the data set is empty")
        self.size = size
        self.seed = seed
        self.start = start
        self.rank = rank
        self.num_replicas = num_replicas

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 0x5EED, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank
        epoch, perm = -1, None
        while True:
            if position // self.size != epoch:
                epoch = position // self.size
                perm = self.order(epoch)
            yield int(perm[position % self.size]), position
            position += self.num_replicas
