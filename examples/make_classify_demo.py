"""Build a small labelled image folder from scikit-image's photos: "which photo is this crop from?"

    python examples/make_classify_demo.py data/photo-crops [--train 40] [--val 16] [--size 64]

Eight classes (astronaut, brick, camera, cat, coffee, grass, gravel, rocket: the
photos scikit-image ships, so nothing is downloaded). Each image is a random
square crop (a quarter to a half of the photo's short side) resized to ``--size``;
training crops come from the left 65% of a photo, validation crops from the rest,
so the two sets never share pixels. The folder has the ImageFolder layout
``OUT/train/<class>/*.png`` and ``OUT/val/<class>/*.png`` that ``pconv classify``
reads. Same arguments, same files (seeded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("astronaut", "brick", "camera", "cat", "coffee", "grass", "gravel", "rocket")
SPLIT = 0.65


def _photo(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array)


def _crops(photo: Image.Image, count: int, size: int, part: str, rng) -> list[Image.Image]:
    width, height = photo.size
    lo, hi = (0, int(width * SPLIT)) if part == "train" else (int(width * SPLIT), width)
    crops = []
    for _ in range(count):
        side = int(rng.uniform(0.25, 0.5) * min(height, hi - lo if part == "val" else height))
        side = max(8, min(side, hi - lo, height))
        left = int(rng.integers(lo, hi - side + 1))
        top = int(rng.integers(0, height - side + 1))
        crops.append(
            photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        )
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=40, help="training crops per class")
    parser.add_argument("--val", type=int, default=16, help="validation crops per class")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    for label, name in enumerate(CLASSES):
        photo = _photo(name)
        for part, count in (("train", options.train), ("val", options.val)):
            rng = np.random.default_rng([options.seed, label, part == "val"])
            folder = options.out / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for index, crop in enumerate(_crops(photo, count, options.size, part, rng)):
                crop.save(folder / f"{index:03d}.png")
    total = len(CLASSES) * (options.train + options.val)
    print(f"wrote {total} crops of {len(CLASSES)} photos to {options.out}")


if __name__ == "__main__":
    main()
