"""Evaluation data: listing, pairing, buckets from ratio/border/manifest, loading, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pconv_cli.data.images import ImageError
from pconv_cli.data.masks import ManifestRow, MaskError, save_mask, write_manifest
from pconv_cli.evaluation.pairs import (
    OTHER_BUCKET,
    EvalError,
    ImageEntry,
    MaskSet,
    PairLoader,
    iter_batches,
    list_images,
    load_mask_set,
    map_to_size,
    plan_pairs,
)

ROOT = Path(__file__).resolve().parents[1]
EVAL_SET = ROOT / "masks" / "eval-256"


def write_image(path: Path, size: tuple[int, int] = (40, 30), value: int = 128) -> Path:
    """An RGB PNG of (width, height) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path)
    return path


def hole_with(count: int, size: int = 32, *, border: bool = False) -> np.ndarray:
    """A size x size mask with exactly ``count`` hole pixels, away from or on the edge."""
    hole = np.zeros((size, size), bool)
    flat = hole.reshape(-1)
    inner = [r * size + c for r in range(2, size - 2) for c in range(2, size - 2)]
    cells = ([0] if border else []) + inner
    flat[cells[:count]] = True
    return hole


def image_folder(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "images"
    for i, name in enumerate(names):
        write_image(folder / name, value=20 * i)
    return folder


def mask_folder(tmp_path: Path, holes: dict[str, np.ndarray]) -> Path:
    folder = tmp_path / "masks"
    for name, hole in holes.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        save_mask(folder / name, hole)
    return folder


# --------------------------------------------------------------------------- listing


def test_images_are_listed_recursively_and_sorted(tmp_path):
    folder = image_folder(tmp_path, ["b.png", "a.jpg", "sub/c.png", "Z.PNG"])
    (folder / "notes.txt").write_text("not an image")
    write_image(folder / ".hidden" / "x.png")
    keys = [entry.key for entry in list_images(folder)]
    assert keys == ["Z", "a", "b", "sub/c"]


def test_duplicate_image_stems_are_refused(tmp_path):
    folder = image_folder(tmp_path, ["a.png", "a.jpg"])
    with pytest.raises(EvalError, match="share the name 'a'"):
        list_images(folder)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_no_images_is_an_error(tmp_path, make):
    folder = tmp_path / "images"
    if make == "empty":
        folder.mkdir()
    with pytest.raises(EvalError, match=r"no images|not a folder"):
        list_images(folder)


def test_empty_mask_set_is_an_error(tmp_path):
    (tmp_path / "masks").mkdir()
    with pytest.raises(EvalError, match="empty"):
        load_mask_set(tmp_path / "masks")
    with pytest.raises(EvalError, match="does not exist"):
        load_mask_set(tmp_path / "nowhere")
    write_manifest(tmp_path / "m2" / "manifest.csv", [])
    with pytest.raises(EvalError, match="empty"):
        load_mask_set(tmp_path / "m2")


def test_manifest_listing_a_missing_file_is_an_error(tmp_path):
    folder = mask_folder(tmp_path, {"a.png": hole_with(20)})
    rows = [ManifestRow("a.png", 32, 32, 0.02, "0.01-0.1", False, "box", 0)]
    rows.append(ManifestRow("gone.png", 32, 32, 0.02, "0.01-0.1", False, "box", 0))
    write_manifest(folder / "manifest.csv", rows)
    with pytest.raises(EvalError, match=r"gone\.png"):
        load_mask_set(folder)


def test_shipped_set_reads_its_manifest():
    masks = load_mask_set(EVAL_SET)
    assert masks.manifest == EVAL_SET / "manifest.csv"
    assert len(masks.entries) == 120
    assert [e.key for e in masks.entries] == sorted(e.key for e in masks.entries)
    first = masks.entries[0]
    assert first.key == "0.01-0.1/border/00000"
    assert (first.bucket, first.touches_border) == ("0.01-0.1", True)
    # The manifest file itself works as --masks too.
    assert load_mask_set(EVAL_SET / "manifest.csv").entries == masks.entries


# --------------------------------------------------------------------------- pairing


def entries(n: int, prefix: str) -> list[ImageEntry]:
    return [ImageEntry(f"{prefix}{i}", Path(f"{prefix}{i}.png")) for i in range(n)]


def fake_masks(n: int) -> MaskSet:
    from pconv_cli.evaluation.pairs import MaskEntry

    return MaskSet(Path("m"), tuple(MaskEntry(f"d/m{i}", Path(f"m/d/m{i}.png")) for i in range(n)))


def test_cycle_pairing_few_images_many_masks():
    plan = plan_pairs(entries(2, "img"), fake_masks(5))
    assert len(plan) == 5
    assert [(p.image.key, p.mask.key) for p in plan] == [
        ("img0", "d/m0"),
        ("img1", "d/m1"),
        ("img0", "d/m2"),
        ("img1", "d/m3"),
        ("img0", "d/m4"),
    ]
    # Images repeat, so a pair is named after both (the mask's '/' becomes '_').
    assert plan[0].name == "img0__d_m0"
    assert [p.index for p in plan] == list(range(5))


def test_cycle_pairing_many_images_few_masks():
    plan = plan_pairs(entries(5, "img"), fake_masks(2))
    assert [(p.image.key, p.mask.key) for p in plan][:3] == [
        ("img0", "d/m0"),
        ("img1", "d/m1"),
        ("img2", "d/m0"),
    ]
    assert [p.name for p in plan] == [f"img{i}" for i in range(5)]  # unique images: the stem


def test_all_pairing_and_limit():
    plan = plan_pairs(entries(3, "img"), fake_masks(4), "all")
    assert len(plan) == 12
    assert (plan[5].image.key, plan[5].mask.key) == ("img1", "d/m1")
    assert plan[-1].name == "img2__d_m3"
    limited = plan_pairs(entries(3, "img"), fake_masks(4), "all", limit=5)
    assert len(limited) == 5 and list(limited)[-1] == plan[4]
    assert len(plan_pairs(entries(3, "img"), fake_masks(4), "all", limit=100)) == 12
    single = plan_pairs(entries(3, "img"), fake_masks(1), "all")
    assert [p.name for p in single] == ["img0", "img1", "img2"]


def test_pairs_file(tmp_path):
    images = image_folder(tmp_path, ["a.png", "b.png"])
    masks = mask_folder(tmp_path, {"x/one.png": hole_with(30), "two.png": hole_with(40)})
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text("image,mask\nb.png,x/one.png\na.png,two.png\nb.png,two.png\n")
    plan = plan_pairs(list_images(images), load_mask_set(masks), str(pairs_csv), image_root=images)
    assert [(p.image.key, p.mask.key, p.name) for p in plan] == [
        ("b", "x/one", "b__x_one"),
        ("a", "two", "a__two"),
        ("b", "two", "b__two"),
    ]
    named = tmp_path / "named.csv"
    named.write_text(f"image,mask,name\n{images / 'a.png'},two.png,first\nb.png,two.png,\n")
    plan = plan_pairs([], load_mask_set(masks), str(named), image_root=images)
    assert [p.name for p in plan] == ["first", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,mask\nmissing.png,two.png\n", "image .*missing.png not found"),
        ("image,mask\na.png,nope.png\n", "mask .*nope.png not found"),
        ("picture,mask\na.png,two.png\n", "needs columns image and mask"),
        ("image,mask\n", "lists no pairs"),
        ("image,mask,name\na.png,two.png,z\nb.png,two.png,z\n", "gives the name 'z'"),
    ],
)
def test_bad_pairs_files(tmp_path, text, message):
    images = image_folder(tmp_path, ["a.png", "b.png"])
    masks = mask_folder(tmp_path, {"two.png": hole_with(40)})
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text(text)
    with pytest.raises(EvalError, match=message):
        plan_pairs(list_images(images), load_mask_set(masks), str(pairs_csv), image_root=images)


def test_unknown_pairing_and_bad_limit():
    with pytest.raises(EvalError, match="cycle or all or a CSV"):
        plan_pairs(entries(1, "i"), fake_masks(1), "zigzag")
    with pytest.raises(EvalError, match="--limit"):
        plan_pairs(entries(1, "i"), fake_masks(1), limit=0)


# --------------------------------------------------------------------------- buckets


@pytest.mark.parametrize(
    ("count", "border", "bucket"),
    [
        (5, False, OTHER_BUCKET),  # 0.5% < 1%
        (11, False, "0.01-0.1"),
        (102, True, "0.01-0.1"),  # 0.0996
        (103, False, "0.1-0.2"),  # 0.1006
        (410, True, "0.4-0.5"),
        (614, False, "0.5-0.6"),  # 0.5996
        (615, False, OTHER_BUCKET),  # 0.6006
    ],
)
def test_bucket_from_ratio_and_border(tmp_path, count, border, bucket):
    masks = mask_folder(tmp_path, {"m.png": hole_with(count, border=border)})
    loaded = PairLoader().mask(load_mask_set(masks).entries[0])
    assert loaded.hole_ratio == count / 1024
    assert loaded.bucket == bucket
    assert loaded.touches_border is border


def test_manifest_buckets_win_over_the_mask(tmp_path):
    """A manifest's bucket and border flag are used as written (unless --invert-mask)."""
    masks = mask_folder(tmp_path, {"m.png": hole_with(50)})
    write_manifest(
        masks / "manifest.csv",
        [ManifestRow("m.png", 32, 32, 0.3, "0.3-0.4", True, "irregular", 0)],
    )
    entry = load_mask_set(masks).entries[0]
    loaded = PairLoader().mask(entry)
    assert (loaded.bucket, loaded.touches_border) == ("0.3-0.4", True)
    assert loaded.hole_ratio == 50 / 1024  # the measured ratio is still reported
    inverted = PairLoader(invert=True).mask(load_mask_set(masks, invert=True).entries[0])
    assert (inverted.bucket, inverted.touches_border) == (OTHER_BUCKET, True)  # 95% hole
    assert inverted.hole_ratio == 1 - 50 / 1024


def test_empty_manifest_bucket_is_other(tmp_path):
    masks = mask_folder(tmp_path, {"m.png": hole_with(900)})
    row = ManifestRow("m.png", 32, 32, 0.88, "", False, "box", 0)
    write_manifest(masks / "manifest.csv", [row])
    assert PairLoader().mask(load_mask_set(masks).entries[0]).bucket == OTHER_BUCKET


def test_masks_without_holes_or_too_small_are_refused(tmp_path):
    masks = mask_folder(tmp_path, {"none.png": np.zeros((32, 32), bool)})
    with pytest.raises(EvalError, match=r"no hole pixels.*--invert-mask"):
        PairLoader().mask(load_mask_set(masks).entries[0])
    tiny = mask_folder(tmp_path / "t", {"tiny.png": np.ones((8, 20), bool)})
    with pytest.raises(EvalError, match="20x8; SSIM needs at least 11x11"):
        PairLoader().mask(load_mask_set(tiny).entries[0])


def test_unreadable_mask_is_an_error(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    (folder / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match=r"bad\.png"):  # its own class, not re-raised as EvalError
        PairLoader().mask(load_mask_set(folder).entries[0])


# --------------------------------------------------------------------------- images


def striped(width: int, height: int) -> Image.Image:
    """Each column's red value is its x coordinate (so crops are easy to locate)."""
    array = np.zeros((height, width, 3), np.uint8)
    array[..., 0] = np.arange(width, dtype=np.uint8)[None, :]
    return Image.fromarray(array)


def test_center_crop_covers_then_crops_the_middle():
    out = map_to_size(striped(200, 100), (50, 50), "center")  # scale 0.5 -> 100x50
    assert out.size == (50, 50)
    red = np.asarray(out)[25, :, 0].astype(int)
    assert abs(red[0] - 50) <= 2 and abs(red[-1] - 148) <= 2  # the middle half survives


def test_resize_stretches_and_same_size_is_untouched():
    image = striped(200, 100)
    assert map_to_size(image, (50, 60), "resize").size == (60, 50)
    assert map_to_size(image, (100, 200), "center") is image
    assert map_to_size(striped(20, 10), (30, 30), "center").size == (30, 30)  # upscales


def test_loader_maps_images_to_the_mask_size(tmp_path):
    images = image_folder(tmp_path, ["wide.png"])
    write_image(images / "wide.png", (64, 40))
    masks = mask_folder(tmp_path, {"a.png": hole_with(30), "b.png": hole_with(30, size=24)})
    loader = PairLoader("center")
    plan = plan_pairs(list_images(images), load_mask_set(masks), "all")
    batches = list(iter_batches(plan, loader, batch_size=8))
    assert [b.truth.shape for b in batches] == [(1, 32, 32, 3), (1, 24, 24, 3)]  # size change
    assert batches[0].truth.dtype == np.uint8 and batches[0].hole.dtype == bool


def test_batches_keep_plan_order_with_and_without_prefetch(tmp_path):
    images = image_folder(tmp_path, [f"{i}.png" for i in range(7)])
    masks = mask_folder(tmp_path, {f"{i}.png": hole_with(20 + i) for i in range(3)})
    plan = plan_pairs(list_images(images), load_mask_set(masks))
    for prefetch in (True, False):
        batches = list(iter_batches(plan, PairLoader(), 3, prefetch=prefetch))
        assert [len(b) for b in batches] == [3, 3, 1]
        assert [p.index for b in batches for p in b.pairs] == list(range(7))
    with pytest.raises(EvalError, match="--batch"):
        list(iter_batches(plan, PairLoader(), 0))


def test_unreadable_image_is_an_error(tmp_path):
    images = image_folder(tmp_path, ["a.png"])
    (images / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    masks = mask_folder(tmp_path, {"m.png": hole_with(30)})
    plan = plan_pairs(list_images(images), load_mask_set(masks), "all")
    with pytest.raises(ImageError, match=r"cannot read image .*broken\.jpg"):
        list(iter_batches(plan, PairLoader(), 4))


def test_unknown_crop_is_refused():
    with pytest.raises(EvalError, match="--crop"):
        PairLoader("squash")


def test_cache_is_bounded_by_bytes_and_keeps_recent_items():
    from pconv_cli.evaluation.pairs import _LRU

    loads = []

    def load(key: str) -> bytes:
        loads.append(key)
        return b"x" * 10

    cache = _LRU(load, len, budget=25)  # room for two values
    for key in ["a", "b", "a", "c", "a", "b"]:
        assert cache(key) == b"x" * 10
    assert loads == ["a", "b", "c", "b"]  # 'b' was the least recently used when 'c' came
    big = _LRU(lambda key: b"y" * 100, len, budget=25)
    assert big("z") == b"y" * 100  # larger than the budget: still returned (and kept alone)
