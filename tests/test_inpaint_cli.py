"""``pconv inpaint`` end to end (in process) with a tiny pconv checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.models import build_model
from pconv_cli.weights.checkpoint import save_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    model = build_model("pconv", layers=3, width=0.125)
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors", model)


def _run(*args: str):
    result = CliRunner().invoke(app, ["inpaint", *map(str, args)])
    return result


def _photo(path: Path, size=(517, 333), fmt=None, **save) -> np.ndarray:
    """A smooth-ish RGB picture of ``size`` = (height, width) written to ``path``."""
    base = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize(size[::-1])
    base.save(path, format=fmt, **save)
    return np.asarray(base)


def _mask(path: Path, size, boxes) -> np.ndarray:
    hole = np.zeros(size, dtype=bool)
    for top, left, bottom, right in boxes:
        hole[top:bottom, left:right] = True
    save_mask(path, hole)
    return hole


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_odd_size_png_known_pixels_byte_identical(tmp_path, tiny_weights):
    src = tmp_path / "odd.png"
    original = _photo(src, size=(517, 333))
    hole = _mask(tmp_path / "mask.png", (517, 333), [(40, 30, 120, 200), (400, 300, 517, 333)])
    out = tmp_path / "out.png"
    result = _run(src, "--mask", tmp_path / "mask.png", "-w", tiny_weights, "-o", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    got = _pixels(out)
    assert got.shape == original.shape
    np.testing.assert_array_equal(got[~hole], original[~hole])
    assert (got[hole] != original[hole]).any()  # the holes were filled with something
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png", "odd.png", "out.png"]


def test_jpeg_in_jpeg_out_with_quality(tmp_path, tiny_weights):
    src = tmp_path / "photo.jpg"
    _photo(src, size=(256, 320), quality=90)
    _mask(tmp_path / "mask.png", (256, 320), [(100, 100, 150, 180)])
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    result = _run(src, "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", outdir)
    assert result.exit_code == 0, result.output
    out = outdir / "photo.jpg"
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (320, 256)
    # Known pixels only change by re-encoding: close to the decoded input.
    hole = np.asarray(Image.open(tmp_path / "mask.png")) > 127
    diff = np.abs(_pixels(out).astype(int) - _pixels(src).astype(int))[~hole]
    assert diff.mean() < 2.0

    low = tmp_path / "low.jpg"
    args = ("-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", low, "--quality", "20")
    assert _run(src, *args).exit_code == 0
    assert low.stat().st_size < out.stat().st_size

    as_png = tmp_path / "as_png.png"
    result = _run(src, "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", as_png)
    assert result.exit_code == 0
    assert Image.open(as_png).format == "PNG"
    np.testing.assert_array_equal(_pixels(as_png)[~hole], _pixels(src)[~hole])


def test_exif_rotated_input_is_written_upright_without_orientation(tmp_path, tiny_weights):
    stored = np.asarray(
        Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").resize((120, 80))
    )  # 80 high, 120 wide as stored
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # display rotated 90 degrees clockwise: upright is 120 x 80
    exif[0x010F] = "TestCam"
    src = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(src, exif=exif.tobytes(), quality=95)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(src)).convert("RGB"))
    assert upright.shape == (120, 80, 3)
    hole = _mask(tmp_path / "mask.png", (120, 80), [(10, 10, 40, 30)])

    out_png = tmp_path / "out.png"
    result = _run(src, "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", out_png)
    assert result.exit_code == 0, result.output
    got = _pixels(out_png)
    assert got.shape == upright.shape
    np.testing.assert_array_equal(got[~hole], upright[~hole])
    assert ORIENTATION not in Image.open(out_png).getexif()

    out_jpg = tmp_path / "out.jpg"
    assert _run(src, "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", out_jpg).exit_code == 0
    with Image.open(out_jpg) as image:
        assert image.size == (80, 120)
        tags = image.getexif()
        assert ORIENTATION not in tags and tags[0x010F] == "TestCam"


def test_mask_conventions_resize_invert_alpha_and_dilate(tmp_path, tiny_weights):
    src = tmp_path / "img.png"
    original = _photo(src, size=(64, 96))
    # A half-size mask: resized with nearest, said once, still binary.
    hole_small = _mask(tmp_path / "small.png", (32, 48), [(8, 8, 16, 20)])
    out = tmp_path / "out.png"
    result = _run(src, "-m", tmp_path / "small.png", "-w", tiny_weights, "-o", out)
    assert result.exit_code == 0, result.output
    assert "nearest neighbour" in result.output
    hole = np.repeat(np.repeat(hole_small, 2, 0), 2, 1)
    np.testing.assert_array_equal(_pixels(out)[~hole], original[~hole])

    # black = hole with --invert-mask
    inverted = tmp_path / "inverted.png"
    Image.fromarray(np.where(hole, 0, 255).astype(np.uint8)).save(inverted)
    args = ("-m", inverted, "-w", tiny_weights, "-o", tmp_path / "inv.png", "--invert-mask")
    assert _run(src, *args).exit_code == 0
    np.testing.assert_array_equal(_pixels(tmp_path / "inv.png")[~hole], original[~hole])

    # an alpha mask: opaque painted pixels are the hole, whatever their colour
    rgba = np.zeros((64, 96, 4), dtype=np.uint8)
    rgba[hole] = (0, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    args = ("-m", tmp_path / "alpha.png", "-w", tiny_weights, "-o", tmp_path / "alpha_out.png")
    assert _run(src, *args).exit_code == 0
    alpha_out = _pixels(tmp_path / "alpha_out.png")
    np.testing.assert_array_equal(alpha_out[~hole], original[~hole])
    np.testing.assert_array_equal(alpha_out, _pixels(out))

    # --dilate 3 grows the hole: pixels next to it change, pixels far away do not
    args = ("-m", tmp_path / "small.png", "-w", tiny_weights, "-o", tmp_path / "d.png")
    assert _run(src, *args, "--dilate", "3").exit_code == 0
    dilated = _pixels(tmp_path / "d.png")
    ring = np.zeros_like(hole)
    ring[13:15, 16:40] = True  # 1-2 pixels below the hole
    assert (dilated[ring] != original[ring]).any()
    far = np.ones_like(hole)
    far[10:40, 10:46] = False
    np.testing.assert_array_equal(dilated[far], original[far])


@pytest.mark.parametrize("strategy", ["crop", "resize"])
def test_crop_and_resize_change_only_hole_pixels(tmp_path, tiny_weights, strategy):
    src = tmp_path / "big.png"
    original = _photo(src, size=(300, 420))
    hole = _mask(tmp_path / "mask.png", (300, 420), [(20, 20, 40, 50), (250, 380, 290, 415)])
    out = tmp_path / "out.png"
    args = ["-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", out, "--strategy", strategy]
    args += ["--margin", "16", "--resize-limit", "200"]
    result = _run(src, *args)
    assert result.exit_code == 0, result.output
    assert strategy in result.output
    got = _pixels(out)
    np.testing.assert_array_equal(got[~hole], original[~hole])
    assert (got[hole] != original[hole]).any()


def test_concat_writes_input_mask_result(tmp_path, tiny_weights):
    src = tmp_path / "img.png"
    original = _photo(src, size=(40, 56))
    hole = _mask(tmp_path / "mask.png", (40, 56), [(5, 5, 20, 20)])
    out = tmp_path / "strip.png"
    args = ("-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", out, "--concat")
    assert _run(src, *args).exit_code == 0
    strip = _pixels(out)
    assert strip.shape == (40, 3 * 56, 3)
    np.testing.assert_array_equal(strip[:, :56], original)
    np.testing.assert_array_equal(strip[:, 56:112, 0] == 255, hole)
    np.testing.assert_array_equal(strip[:, 112:][~hole], original[~hole])


def test_folder_mode_skips_a_corrupt_image_and_exits_non_zero(tmp_path, tiny_weights):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    first = _photo(images / "a.png", size=(48, 64))
    _photo(images / "b.jpg", size=(50, 70))
    (images / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (images / "notes.txt").write_text("not an image")
    hole_a = _mask(masks / "a.png", (48, 64), [(4, 4, 20, 30)])
    _mask(masks / "b.png", (50, 70), [(10, 10, 30, 30)])
    _mask(masks / "c.png", (50, 70), [(10, 10, 30, 30)])
    result = _run(images, "-m", masks, "-w", tiny_weights, "-o", out)
    assert result.exit_code == 1, result.output
    assert "c.jpg" in result.output and "cannot read image" in result.output
    assert "2 of 3 images" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]  # no temp files
    np.testing.assert_array_equal(_pixels(out / "a.png")[~hole_a], first[~hole_a])


def test_folder_mode_one_mask_for_all_and_missing_masks(tmp_path, tiny_weights):
    images = tmp_path / "images"
    images.mkdir()
    _photo(images / "a.png", size=(48, 64))
    _photo(images / "b.png", size=(64, 48))
    _mask(tmp_path / "one.png", (48, 64), [(4, 4, 20, 30)])
    out = tmp_path / "out"
    args = ("-m", tmp_path / "one.png", "-w", tiny_weights, "-o", out, "--format", "jpeg")
    result = _run(images, *args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg"]

    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks / "a.png", (48, 64), [(4, 4, 20, 30)])
    result = _run(images, "-m", masks, "-w", tiny_weights, "-o", tmp_path / "out2")
    assert result.exit_code == 1
    assert "no mask named b.*" in result.output


def test_a_failed_write_leaves_no_file(tmp_path, tiny_weights, monkeypatch):
    src = tmp_path / "img.png"
    _photo(src, size=(32, 32))
    _mask(tmp_path / "mask.png", (32, 32), [(4, 4, 10, 10)])

    def broken_save(self, fp, format=None, **params):
        Path(fp).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    out = tmp_path / "out" / "result.png"
    result = _run(src, "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", out)
    assert result.exit_code == 1
    assert "disk full" in result.output
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_an_mmagic_pth_by_path_just_works(tmp_path):
    """A local file named like MMagic's release is recognised by its keys and converted."""
    net = build_model("pconv", layers=3, width=0.125).net
    state = {f"generator.{k}": v for k, v in net.state_dict().items()}
    state.update(
        {
            k.replace("weight", "weight_mask_updater"): torch.ones(1)
            for k in list(state)
            if k.endswith("conv.weight")
        }
    )
    weights = tmp_path / "pconv_256x256_stage2_4x2_places_20200619-1ffed0e8.pth"
    torch.save({"meta": {"iter": 500000}, "state_dict": state}, weights)
    src = tmp_path / "img.png"
    original = _photo(src, size=(40, 60))
    hole = _mask(tmp_path / "mask.png", (40, 60), [(5, 5, 25, 30)])
    out = tmp_path / "out.png"
    result = _run(src, "-m", tmp_path / "mask.png", "-w", weights, "-o", out)
    assert result.exit_code == 0, result.output
    assert "(mmagic" in result.output
    np.testing.assert_array_equal(_pixels(out)[~hole], original[~hole])


@pytest.mark.parametrize("args", [["inpaint", "--help"], ["weights", "--help"]])
def test_help_does_not_import_torch(args):
    code = (
        "import sys; from pconv_cli.cli import app; "
        f"app({args!r}, standalone_mode=False); "
        "print('HEAVY:' + ','.join(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout and result.stdout.splitlines()[-1] == "HEAVY:"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_keeps_its_bit_depth(tmp_path, tiny_weights, suffix):
    values = (np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 50 + 7).astype(np.uint16)
    src = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(src)  # mode I;16
    hole = _mask(tmp_path / "mask.png", (32, 40), [(4, 4, 12, 20)])
    out = tmp_path / f"out{suffix}"
    result = _run(src, "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", out)
    assert result.exit_code == 0, result.output
    got = Image.open(out)
    assert got.mode.startswith("I;16")
    pixels = np.asarray(got)
    np.testing.assert_array_equal(pixels[~hole], values[~hole])  # all 16 bits of known pixels
    assert (pixels[hole] % 257 == 0).all()  # holes: the 8-bit result, spread over 16 bits
    assert "warning" not in result.output


def test_16_bit_grey_to_jpeg_says_it_drops_to_8_bits(tmp_path, tiny_weights):
    values = (np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 50).astype(np.uint16)
    src = tmp_path / "deep.png"
    Image.fromarray(values).save(src)
    _mask(tmp_path / "mask.png", (32, 40), [(4, 4, 12, 20)])
    result = _run(src, "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", tmp_path / "o.jpg")
    assert result.exit_code == 0, result.output
    assert "16 bits per channel; the JPEG output has 8" in result.output
    assert Image.open(tmp_path / "o.jpg").mode == "L"


def test_usage_and_weights_errors_are_one_line(tmp_path, tiny_weights):
    src = tmp_path / "img.png"
    _photo(src, size=(32, 32))
    _mask(tmp_path / "mask.png", (32, 32), [(4, 4, 10, 10)])
    base = (src, "-m", tmp_path / "mask.png", "-o", tmp_path / "o.png")
    result = _run(*base, "-w", tmp_path / "missing.pth")
    assert result.exit_code == 1 and "weights file not found" in result.output
    result = _run(*base, "-w", tiny_weights, "--strategy", "tiles")
    assert result.exit_code == 2
    result = _run(*base, "-w", tiny_weights, "--format", "gif")
    assert result.exit_code == 2
    result = _run(tmp_path / "nope.png", "-m", tmp_path / "mask.png", "-w", tiny_weights, "-o", "x")
    assert result.exit_code == 2
    result = _run(*base, "-w", tiny_weights, "--device", "cuda:7")
    assert result.exit_code == 1 and "Traceback" not in result.output
