"""Labelled image folders for classification: ``ROOT/<class>/<images>`` (ImageFolder layout).

Items are dicts with ``image`` float RGB in [0, 1] (3, S, S), ``label`` (int, the
class's index in sorted folder order), ``path`` and ``skipped`` (unreadable images
stepped over). Training items take a random resized crop (scale 0.08-1, aspect
3/4-4/3, as torchvision's ``RandomResizedCrop``) and a random horizontal flip, both
drawn from ``numpy.random.default_rng([seed, position])``, so the data depend only on
the seed and the place in the sample stream (exact resume, any worker count).
Evaluation items are resized (short side ``S * 256 / 224``) and centre-cropped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pconv_cli.data.datasets import DataError, open_readable
from pconv_cli.data.images import find_images

__all__ = ["ImageFolderDataset", "collate_labelled", "find_classes", "random_resized_crop"]


def find_classes(root: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``root`` (the classes)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def random_resized_crop(
    rng: np.random.Generator,
    width: int,
    height: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop as torchvision's ``RandomResizedCrop`` draws it."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class ImageFolderDataset(Dataset):
    """A labelled folder; ``dataset[(index, position)]`` for training, ``dataset[i]`` for eval.

    ``classes`` may be given (e.g. a model's) to check the folder against them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        size: int = 224,
        train: bool = True,
        seed: int = 0,
        classes: list[str] | None = None,
    ):
        self.root = Path(root)
        found = find_classes(self.root)
        if classes is not None and found != list(classes):
            raise DataError(
                f"{self.root} has classes {', '.join(found[:8])}{'...' if len(found) > 8 else ''}; "
                f"the model was trained on {', '.join(classes[:8])}"
            )
        self.classes = found
        self.samples = [
            (path, label)
            for label, name in enumerate(found)
            for path in find_images(self.root / name)
        ]
        if not self.samples:
            raise DataError(f"{self.root} holds no images in class folders (ROOT/<class>/<image>)")
        self.paths = [path for path, _ in self.samples]
        self.size, self.train, self.seed = size, train, seed

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def _transform(self, image: Image.Image, position: int) -> Image.Image:
        size = self.size
        if self.train:
            rng = np.random.default_rng([self.seed, position])
            top, left, h, w = random_resized_crop(rng, image.width, image.height)
            image = image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
            if rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            return image
        short = round(size * 256 / 224)
        scale = short / min(image.width, image.height)
        new = (max(size, round(image.width * scale)), max(size, round(image.height * scale)))
        image = image.resize(new, Image.BILINEAR)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return image.crop((left, top, left + size, top + size))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, position = (key, key) if isinstance(key, int) else key
        found, image, skipped = open_readable(self.paths, index)
        path, label = self.samples[found]
        array = np.asarray(self._transform(image, position), dtype=np.float32) / 255.0
        return {
            "image": torch.from_numpy(array).permute(2, 0, 1).contiguous(),
            "label": label,
            "path": str(path),
            "skipped": skipped,
        }


def collate_labelled(items: list[dict]) -> dict:
    """Stack images, labels as a long tensor; keep paths and skipped files."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "path": [it["path"] for it in items],
        "skipped": [p for it in items for p in it["skipped"]],
    }
