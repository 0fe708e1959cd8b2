import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pconv_cli.data.datasets import (
    DataError,
    InfiniteSampler,
    InpaintingDataset,
    MaskSource,
    collate,
    read_file_list,
    resolve_images,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture
def photo_dir(tmp_path):
    nested = tmp_path / "photos" / "nested"
    nested.mkdir(parents=True)
    files = sorted(EXAMPLES.glob("*.jpg"))
    for path in files[:3]:
        shutil.copy(path, tmp_path / "photos" / path.name)
    for path in files[3:]:
        shutil.copy(path, nested / path.name)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    return tmp_path / "photos"


def test_folder_is_searched_recursively(photo_dir):
    paths = resolve_images(photo_dir)
    assert len(paths) == 6
    assert any("nested" in str(p) for p in paths)
    assert paths == sorted(paths)


def test_places_style_file_list(tmp_path, photo_dir):
    listing = tmp_path / "train.txt"
    listing.write_text("/chelsea.jpg 0\n\n# comment\nnested/rocket.jpg 12\n")
    paths = read_file_list(listing, photo_dir)
    assert paths == [photo_dir / "chelsea.jpg", photo_dir / "nested" / "rocket.jpg"]
    assert resolve_images(listing, photo_dir) == paths


def test_empty_or_missing_data_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        resolve_images(tmp_path / "empty")
    with pytest.raises(DataError, match="no such folder"):
        resolve_images(tmp_path / "missing")
    with pytest.raises(DataError, match="neither a folder nor a mask kind"):
        MaskSource.parse("squiggles")


def test_items_follow_the_conventions(photo_dir):
    dataset = InpaintingDataset(resolve_images(photo_dir), MaskSource.parse("irregular"), size=64)
    item = dataset[(0, 0)]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["image"].min() >= 0.0 and item["image"].max() <= 1.0
    assert item["mask"].shape == (1, 64, 64)
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    hole_ratio = 1 - item["mask"].mean().item()
    assert 0.15 <= hole_ratio < 0.65  # MMagic's training range for irregular masks
    # same key, same item; other position, other item
    again = dataset[(0, 0)]
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["mask"], again["mask"])
    other = dataset[(0, 1)]
    assert not torch.equal(item["mask"], other["mask"])


def test_mmagic_crop_is_clipped_to_small_images(tmp_path):
    small = tmp_path / "small.png"
    gradient = np.tile(np.arange(40, dtype=np.uint8)[None, :, None] * 6, (30, 1, 3))
    Image.fromarray(gradient).save(small)
    dataset = InpaintingDataset([small], MaskSource.parse("box"), size=16, flip=False)
    assert dataset.crop_size == 24
    image = dataset[(0, 3)]["image"]
    assert image.shape == (3, 16, 16)
    # a 30-px square crop of a 40x30 image resized to 16 keeps the horizontal gradient
    row = image[0, 8]
    assert torch.all(row[1:] >= row[:-1] - 1e-6)
    resize = InpaintingDataset([small], MaskSource.parse("box"), size=16, crop="resize")
    assert resize[(0, 0)]["image"].shape == (3, 16, 16)


def test_mask_folder_polarity_and_invert(tmp_path, photo_dir):
    folder = tmp_path / "masks"
    folder.mkdir()
    hole = np.zeros((32, 32), dtype=np.uint8)
    hole[8:24, 8:24] = 255  # white = hole
    Image.fromarray(hole).save(folder / "a.png")
    paths = resolve_images(photo_dir)
    item = InpaintingDataset(paths, MaskSource.parse(str(folder)), size=64)[(0, 0)]
    assert item["mask"].mean().item() == pytest.approx(1 - 0.25)  # 1 = valid
    inverted = InpaintingDataset(paths, MaskSource.parse(str(folder), invert=True), size=64)
    assert inverted[(0, 0)]["mask"].mean().item() == pytest.approx(0.25)


def test_corrupt_image_is_skipped_and_reported(photo_dir):
    bad = photo_dir / "aaa_corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage that is not a jpeg")
    paths = resolve_images(photo_dir)
    assert paths[0] == bad
    dataset = InpaintingDataset(paths, MaskSource.parse("box"), size=32)
    item = dataset[(0, 5)]
    assert item["skipped"] == [str(bad)]
    assert item["path"] == str(paths[1])
    assert dataset[(2, 5)]["skipped"] == []
    all_bad = InpaintingDataset([bad, bad], MaskSource.parse("box"), size=32)
    with pytest.raises(DataError, match="unreadable"):
        all_bad[(0, 0)]


def test_sampler_epochs_and_exact_resume():
    sampler = InfiniteSampler(5, seed=3)
    stream = [key for key, _ in zip(sampler, range(23), strict=False)]
    assert [p for _, p in stream] == list(range(23))
    for epoch in range(4):
        indices = [i for i, p in stream if p // 5 == epoch]
        if len(indices) == 5:
            assert sorted(indices) == list(range(5))
    assert [i for i, _ in stream[:5]] != [i for i, _ in stream[5:10]]  # reshuffled per epoch
    resumed = InfiniteSampler(5, seed=3, start=12)
    assert [k for k, _ in zip(resumed, range(11), strict=False)] == stream[12:]
    # replicas split positions without overlap
    halves = [InfiniteSampler(5, seed=3, rank=r, num_replicas=2) for r in (0, 1)]
    firsts = [[k for k, _ in zip(h, range(4), strict=False)] for h in halves]
    assert sorted(firsts[0] + firsts[1], key=lambda k: k[1]) == stream[:8]


def test_batches_do_not_depend_on_worker_count(photo_dir):
    dataset = InpaintingDataset(resolve_images(photo_dir), MaskSource.parse("mixed"), size=32)

    def first_batches(workers):
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=3,
            sampler=InfiniteSampler(len(dataset), seed=1, start=4),
            num_workers=workers,
            collate_fn=collate,
        )
        return [b for b, _ in zip(loader, range(3), strict=False)]

    for a, b in zip(first_batches(0), first_batches(2), strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["path"] == b["path"]
