"""Mask files (white = hole) and manifests: save/load round trips, modes, alpha, resize, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pconv_cli.data.masks import (
    MANIFEST_COLUMNS,
    ManifestRow,
    MaskError,
    MaskResizedWarning,
    load_mask,
    read_manifest,
    save_mask,
    write_manifest,
)


@pytest.fixture
def hole() -> np.ndarray:
    rng = np.random.default_rng(0)
    pattern = rng.random((24, 40)) < 0.3
    pattern[0, 0], pattern[-1, -1] = True, False
    return pattern


def test_save_writes_mode_l_with_white_holes(tmp_path: Path, hole: np.ndarray) -> None:
    path = tmp_path / "m.png"
    save_mask(path, hole)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "L" and image.size == (40, 24)
        values = np.asarray(image)
    assert set(np.unique(values)) == {0, 255}
    assert np.array_equal(values == 255, hole)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temp file left behind


def test_round_trip_and_invert(tmp_path: Path, hole: np.ndarray) -> None:
    path = tmp_path / "m.png"
    save_mask(path, hole)
    assert np.array_equal(load_mask(path), hole)
    assert np.array_equal(load_mask(path, invert=True), ~hole)
    assert load_mask(path).dtype == np.bool_


def test_save_rejects_non_boolean(tmp_path: Path) -> None:
    for bad in [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 1), bool)]:
        with pytest.raises(MaskError, match="2-D boolean"):
            save_mask(tmp_path / "x.png", bad)
    assert not list(tmp_path.iterdir())


def _write(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def test_each_mode_loads(tmp_path: Path, hole: np.ndarray) -> None:
    white = Image.fromarray(hole.astype(np.uint8) * 255)
    rgb = np.zeros((*hole.shape, 3), np.uint8)
    rgb[hole] = (255, 255, 255)
    rgb[~hole] = (30, 60, 10)  # dark colour: luminance below the threshold
    palette = Image.fromarray(hole.astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 255, 255])
    files = {
        "L": _write(white, tmp_path / "l.png"),
        "1": _write(white.convert("1"), tmp_path / "one.png"),
        "P": _write(palette, tmp_path / "p.png"),
        "RGB": _write(Image.fromarray(rgb), tmp_path / "rgb.png"),
        "RGBA opaque": _write(Image.fromarray(rgb).convert("RGBA"), tmp_path / "rgba.png"),
        "BMP": _write(white, tmp_path / "l.bmp"),
    }
    for name, path in files.items():
        assert np.array_equal(load_mask(path), hole), name


def test_alpha_masks_use_opacity(tmp_path: Path, hole: np.ndarray) -> None:
    # painted (opaque) strokes on a transparent layer are the hole, whatever their colour
    rgba = np.zeros((*hole.shape, 4), np.uint8)
    rgba[hole] = (0, 0, 0, 255)  # black paint
    rgba[~hole] = (255, 255, 255, 0)  # white but transparent
    path = _write(Image.fromarray(rgba, mode="RGBA"), tmp_path / "a.png")
    assert np.array_equal(load_mask(path), hole)
    assert np.array_equal(load_mask(path, invert=True), ~hole)
    la = Image.fromarray(rgba[..., 3]).convert("LA")
    la.putalpha(Image.fromarray(rgba[..., 3]))
    assert np.array_equal(load_mask(_write(la, tmp_path / "la.png")), hole)


def test_palette_with_transparency_uses_alpha(tmp_path: Path, hole: np.ndarray) -> None:
    image = Image.fromarray(hole.astype(np.uint8), mode="P")
    image.putpalette([255, 255, 255, 255, 0, 0])  # 0 = white (transparent), 1 = red paint
    path = tmp_path / "pt.png"
    image.save(path, transparency=0)
    assert np.array_equal(load_mask(path), hole)


def test_threshold_is_127(tmp_path: Path) -> None:
    values = np.array([[0, 126, 127, 128, 200, 255]], np.uint8)
    path = _write(Image.fromarray(values), tmp_path / "t.png")
    assert load_mask(path).tolist() == [[False, False, False, True, True, True]]


def test_nearest_resize_stays_binary_and_warns(tmp_path: Path, hole: np.ndarray) -> None:
    path = tmp_path / "m.png"
    save_mask(path, hole)
    with pytest.warns(MaskResizedWarning, match=r"from 40x24 to 80x48"):
        bigger = load_mask(path, size=(48, 80))
    assert bigger.dtype == np.bool_
    assert np.array_equal(bigger, hole.repeat(2, axis=0).repeat(2, axis=1))
    # grey levels (20 / 220, as after JPEG) are thresholded before resizing: no new levels
    Image.fromarray((hole * 200 + 20).astype(np.uint8)).save(tmp_path / "g.png")
    with pytest.warns(MaskResizedWarning):
        tripled = load_mask(tmp_path / "g.png", size=(72, 120))
    assert np.array_equal(tripled, hole.repeat(3, axis=0).repeat(3, axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mask(path, size=(24, 40))  # same size: no warning


def test_downscale_by_two_picks_block_samples(tmp_path: Path) -> None:
    blocks = np.kron(np.array([[1, 0, 1], [0, 1, 1]], bool), np.ones((4, 4), bool))
    path = tmp_path / "b.png"
    save_mask(path, blocks)
    with pytest.warns(MaskResizedWarning):
        small = load_mask(path, size=(2, 3))
    assert small.tolist() == [[True, False, True], [False, True, True]]


def test_unreadable_files_fail_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    truncated = tmp_path / "truncated.png"
    save_mask(truncated, np.ones((64, 64), bool))
    truncated.write_bytes(truncated.read_bytes()[:60])
    deep = tmp_path / "deep.png"  # 16-bit grey: read (issue 18), value > 32767 = hole
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(deep)
    assert load_mask(deep).all()
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 4)).save(cmyk)
    cases = {
        empty: "is empty",
        garbage: "cannot read mask file",
        truncated: "cannot read mask file",
        tmp_path / "missing.png": "cannot read mask file",
        tmp_path: "cannot read mask file",
        cmyk: "unsupported image mode",
    }
    for path, message in cases.items():
        with pytest.raises(MaskError, match=message) as info:
            load_mask(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def _rows() -> list[ManifestRow]:
    return [
        ManifestRow("0.01-0.1/border/00000.png", 64, 48, 0.05, "0.01-0.1", True, "irregular", 7),
        ManifestRow("00001.png", 64, 48, 1 / 3, "", False, "brush", 7),
    ]


def test_manifest_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    write_manifest(path, _rows())
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(MANIFEST_COLUMNS)
    assert lines[1] == "0.01-0.1/border/00000.png,64,48,0.05,0.01-0.1,true,irregular,7"
    assert read_manifest(path) == _rows()  # ratios survive exactly


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,width\na.png,3\n", "lacks column"),
        (",".join(MANIFEST_COLUMNS) + "\na.png,x,4,0.1,,true,box,0\n", "line 2"),
        (",".join(MANIFEST_COLUMNS) + "\na.png,4,4,0.1,,yes,box,0\n", "touches_border"),
    ],
)
def test_bad_manifest(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    with pytest.raises(MaskError, match=message):
        read_manifest(path)
    with pytest.raises(MaskError, match="cannot read manifest"):
        read_manifest(tmp_path / "none.csv")
