"""``pconv eval`` end to end: sources side by side, reports, determinism and bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "examples" / "images"
EVAL_SET = ROOT / "masks" / "eval-256"
BUCKETS = ["0.01-0.1", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5", "0.5-0.6"]


def run(*args: str | Path):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def ok(*args: str | Path):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def fails(code: int, *args: str | Path) -> str:
    """Run, expect ``code`` and a one-line error without traceback; return stderr."""
    result = run(*args)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def read_json(path: Path) -> dict:
    def no_constants(name: str):
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constants)


def per_image(report: dict, source: str) -> dict[str, dict]:
    return {record["name"]: record for record in report["sources"][source]["images"]}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """(images, masks): 3 small real photos (varied sizes) and 4 masks of 48x48."""
    root = tmp_path_factory.mktemp("small")
    images = root / "images"
    images.mkdir()
    for name, size in (("astronaut", (64, 64)), ("chelsea", (72, 48)), ("coffee", (60, 50))):
        with Image.open(PHOTOS / f"{name}.jpg") as photo:
            photo.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(images / f"{name}.png")
    masks = root / "masks"
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i, (side, border) in enumerate(((8, False), (16, True), (24, False), (30, True))):
        hole = np.zeros((48, 48), bool)
        y, x = (0, 0) if border else rng.integers(6, 48 - side - 6, 2)
        hole[y : y + side, x : x + side] = True
        save_mask(masks / f"m{i}.png", hole)
    return images, masks


# --------------------------------------------------------------------------- the harness


def test_biharmonic_beats_zero_fill_on_real_photos(tmp_path):
    """A sanity check of the whole harness: real photos, the shipped masks, every bucket."""
    chosen = [
        f"{bucket}/{half}/00000.png" for bucket in BUCKETS for half in ("border", "no-border")
    ]
    photos = sorted(p.name for p in PHOTOS.glob("*.jpg"))
    pairs = tmp_path / "pairs.csv"
    rows = [f"{photos[k % len(photos)]},{mask}" for k, mask in enumerate(chosen)]
    pairs.write_text("image,mask\n" + "\n".join(rows) + "\n")
    report_path = tmp_path / "report.json"
    result = ok(
        "--folder", PHOTOS, "--masks", EVAL_SET, "--pairing", pairs,
        "--method", "zeros", "--method", "biharmonic", "--json", report_path,
    )  # fmt: skip
    report = read_json(report_path)
    zeros, biharmonic = per_image(report, "zeros"), per_image(report, "biharmonic")
    assert len(zeros) == 12
    for name, zero in zeros.items():
        better = biharmonic[name]
        assert better["l1"] < zero["l1"] and better["psnr"] > zero["psnr"], name
        assert better["ssim"] > zero["ssim"], name
    summary = report["sources"]["biharmonic"]["summary"]
    assert [(r["bucket"], r["touches_border"]) for r in summary] == [
        *((bucket, border) for bucket in BUCKETS for border in (False, True)),
        ("overall", None),
    ]
    assert all(row["count"] == 1 for row in summary[:-1]) and summary[-1]["count"] == 12
    for line in BUCKETS:
        assert line in result.stdout
    assert "overall" in result.stdout and "biharmonic" in result.stdout


def test_predictions_score_like_the_method_that_wrote_them(tmp_path, small):
    images, masks = small
    first = tmp_path / "first.json"
    ok(
        "-f", images, "-m", masks, "--method", "mean", "--method", "biharmonic",
        "--save-outputs", tmp_path / "out", "--json", first,
    )  # fmt: skip
    names = sorted(p.stem for p in (tmp_path / "out" / "mean").glob("*.png"))
    assert names == ["astronaut__m0", "astronaut__m3", "chelsea__m1", "coffee__m2"]
    second = tmp_path / "second.json"
    ok(
        "-f", images, "-m", masks, "--predictions", tmp_path / "out" / "mean",
        "--predictions", tmp_path / "out" / "biharmonic", "--json", second,
    )  # fmt: skip
    a, b = read_json(first), read_json(second)
    for method in ("mean", "biharmonic"):
        assert per_image(a, method) == per_image(b, method)  # bit-identical values
        assert a["sources"][method]["summary"] == b["sources"][method]["summary"]
        assert b["sources"][method]["kind"] == "predictions"


def test_raw_predictions_are_composited(tmp_path, small):
    """Black full images (a raw output) score exactly like --method zeros."""
    images, masks = small
    black = tmp_path / "black"
    black.mkdir()
    for name in ("astronaut__m0", "chelsea__m1", "coffee__m2", "astronaut__m3"):
        Image.new("RGB", (48, 48)).save(black / f"{name}.png")
    ok("-f", images, "-m", masks, "--method", "zeros", "-p", black, "--json", tmp_path / "r.json")
    report = read_json(tmp_path / "r.json")
    assert per_image(report, "zeros") == per_image(report, "black")


def test_perfect_predictions_report_inf(tmp_path, small):
    images, masks = small
    ok("-f", images, "-m", masks, "--method", "zeros", "--save-outputs", tmp_path / "o")
    truth = tmp_path / "truth"
    truth.mkdir()
    for path in (tmp_path / "o" / "zeros").glob("*.png"):  # rebuild the truths at mask size
        image_name = path.stem.split("__")[0]
        from pconv_cli.evaluation.pairs import map_to_size

        with Image.open(images / f"{image_name}.png") as image:
            map_to_size(image.convert("RGB"), (48, 48), "center").save(truth / path.name)
    result = ok(
        "-f", images, "-m", masks, "-p", truth, "--method", "zeros",
        "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv",
    )  # fmt: skip
    report = read_json(tmp_path / "r.json")
    for record in report["sources"]["truth"]["images"]:
        assert (record["l1"], record["psnr"], record["ssim"]) == (0.0, "inf", 1.0)
    overall = report["sources"]["truth"]["summary"][-1]
    assert (overall["psnr"], overall["psnr_inf"], overall["count"]) == ("inf", 4, 4)
    assert "inf" in result.stdout
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    truth_rows = [r for r in rows if r["source"] == "truth"]
    assert {r["psnr"] for r in truth_rows} == {"inf"}
    assert truth_rows[-1]["psnr_inf"] == "4"


def test_partly_perfect_bucket_averages_finite_psnr(tmp_path, small):
    """One perfect output among imperfect ones: PSNR mean over the finite ones, marked *."""
    images, masks = small
    ok("-f", images, "-m", masks, "--method", "mean", "--save-outputs", tmp_path / "o")
    mixed = tmp_path / "o" / "mean"
    from pconv_cli.evaluation.pairs import map_to_size

    with Image.open(images / "astronaut.png") as image:
        map_to_size(image.convert("RGB"), (48, 48), "center").save(mixed / "astronaut__m0.png")
    result = ok("-f", images, "-m", masks, "-p", mixed, "--json", tmp_path / "r.json")
    report = read_json(tmp_path / "r.json")
    finite = [r["psnr"] for r in report["sources"]["mean"]["images"] if r["psnr"] != "inf"]
    overall = report["sources"]["mean"]["summary"][-1]
    assert overall["psnr_inf"] == 1 and overall["psnr"] == pytest.approx(np.mean(finite))
    assert "*" in result.stdout and "PSNR inf" in result.stdout


def test_models_and_methods_side_by_side(tmp_path, small):
    from pconv_cli.models import build_model
    from pconv_cli.weights.checkpoint import save_checkpoint

    images, masks = small
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, build_model("pconv", layers=3, width=0.125))
    result = ok(
        "-f", images, "-m", masks, "--method", "zeros", "--weights", checkpoint,
        "--device", "cpu", "--batch", "3", "--json", tmp_path / "r.json",
    )  # fmt: skip
    report = read_json(tmp_path / "r.json")
    assert list(report["sources"]) == ["zeros", "tiny"]
    model = report["sources"]["tiny"]
    assert model["kind"] == "weights" and model["checkpoint"]["family"] == "pconv_unet"
    assert model["checkpoint"]["config"]["layers"] == 3
    assert len(model["images"]) == 4 and all(0 <= r["ssim"] <= 1 for r in model["images"])
    assert "zeros" in result.stdout and "tiny" in result.stdout
    assert report["config"]["scored_image"].startswith("composite")


def test_two_runs_write_identical_reports(tmp_path, small):
    images, masks = small
    for name in ("a", "b"):
        ok(
            "-f", images, "-m", masks, "--method", "mean", "--pairing", "all", "--batch", "5",
            "--json", tmp_path / f"{name}.json", "--csv", tmp_path / f"{name}.csv",
        )  # fmt: skip
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert len(read_json(tmp_path / "a.json")["sources"]["mean"]["images"]) == 12


def test_batch_size_does_not_change_numbers(tmp_path, small):
    images, masks = small
    for batch in ("1", "4"):
        ok("-f", images, "-m", masks, "--method", "mean", "-b", batch, "--json", tmp_path / batch)
    one, four = read_json(tmp_path / "1"), read_json(tmp_path / "4")
    assert one["sources"] == four["sources"]


def test_csv_and_grid(tmp_path, small):
    images, masks = small
    ok(
        "-f", images, "-m", masks, "--method", "zeros", "--method", "mean",
        "--csv", tmp_path / "r.csv", "--grid", tmp_path / "grid.png", "--grid-count", "2",
    )  # fmt: skip
    with (tmp_path / "r.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == [
            "source", "bucket", "touches_border", "count", "l1", "psnr", "psnr_inf", "ssim",
        ]  # fmt: skip
        rows = list(reader)
    assert [r["source"] for r in rows].count("zeros") == len(rows) // 2
    assert rows[-1]["bucket"] == "overall" and rows[-1]["count"] == "4"
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.format == "PNG" and grid.mode == "RGB"
        assert grid.width == 4 * 48 + 5 * 4
        assert grid.height > 2 * 4 * 48  # 2 sources x (2 best + 2 worst) rows


def test_invert_mask_reads_black_holes(tmp_path, small):
    images, masks = small
    inverted = tmp_path / "inverted"
    inverted.mkdir()
    for path in masks.glob("*.png"):
        with Image.open(path) as mask:
            Image.fromarray(255 - np.asarray(mask)).save(inverted / path.name)
    ok("-f", images, "-m", masks, "--method", "mean", "--json", tmp_path / "a.json")
    ok(
        "-f", images, "-m", inverted, "--invert-mask", "--method", "mean",
        "--json", tmp_path / "b.json",
    )  # fmt: skip
    a, b = read_json(tmp_path / "a.json"), read_json(tmp_path / "b.json")
    assert a["sources"]["mean"]["images"] == b["sources"]["mean"]["images"]
    assert b["config"]["invert_mask"] is True


def test_default_mask_set_from_another_directory(tmp_path, small, monkeypatch):
    images, _ = small
    monkeypatch.chdir(tmp_path)
    ok("-f", images, "--method", "zeros", "--limit", "2", "--json", "r.json")
    report = read_json(tmp_path / "r.json")
    assert report["config"]["mask_count"] == 120 and report["config"]["pairs"] == 2
    assert report["config"]["sizes"] == ["256x256"]


def test_opencv_methods(tmp_path, small):
    pytest.importorskip("cv2")
    images, masks = small
    ok(
        "-f", images, "-m", masks, "--method", "zeros", "--method", "telea", "--method", "ns",
        "--json", tmp_path / "r.json",
    )  # fmt: skip
    report = read_json(tmp_path / "r.json")
    zeros = report["sources"]["zeros"]["summary"][-1]
    for method in ("telea", "ns"):
        overall = report["sources"][method]["summary"][-1]
        assert overall["l1"] < zeros["l1"] and overall["psnr"] > zeros["psnr"]
        assert report["sources"][method]["inpaint_radius"] == 3


def test_opencv_missing_is_a_clear_error(small, monkeypatch):
    images, masks = small
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    message = fails(1, "-f", images, "-m", masks, "--method", "telea")
    assert "pconv-cli[baselines]" in message


# --------------------------------------------------------------------------- bad input


def test_missing_prediction_names_it(tmp_path, small):
    images, masks = small
    ok("-f", images, "-m", masks, "--method", "mean", "--save-outputs", tmp_path / "o")
    (tmp_path / "o" / "mean" / "chelsea__m1.png").unlink()
    message = fails(
        1, "-f", images, "-m", masks, "-p", tmp_path / "o" / "mean", "--json", tmp_path / "r.json"
    )
    assert "no prediction for 'chelsea__m1'" in message and "1 of 4 missing" in message
    assert not (tmp_path / "r.json").exists()


def test_prediction_of_the_wrong_size(tmp_path, small):
    images, masks = small
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in ("astronaut__m0", "chelsea__m1", "coffee__m2", "astronaut__m3"):
        Image.new("RGB", (40, 30)).save(wrong / f"{name}.png")
    message = fails(1, "-f", images, "-m", masks, "-p", wrong, "--csv", tmp_path / "r.csv")
    assert "is 40x30, expected 48x48" in message
    assert not (tmp_path / "r.csv").exists()


def test_empty_mask_set(tmp_path, small):
    images, _ = small
    (tmp_path / "empty").mkdir()
    assert "empty" in fails(1, "-f", images, "-m", tmp_path / "empty", "--method", "zeros")


def test_weights_errors(tmp_path, small):
    images, masks = small
    common = ("-f", images, "-m", masks, "--device", "cpu")
    assert "not found" in fails(1, *common, "--weights", tmp_path / "gone.safetensors")
    message = fails(1, *common, "--weights", "no-such-model")
    assert "no such file and no such published weights" in message
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00garbage")
    assert str(broken) in fails(1, *common, "--weights", broken)


def test_no_source_scores_the_default_weights(tmp_path, small, monkeypatch):
    """``pconv eval --folder DIR --masks DIR`` as typed: the zoo's default entry."""
    from pconv_cli.models import build_model
    from pconv_cli.weights import save_checkpoint, zoo

    images, masks = small
    default = save_checkpoint(
        tmp_path / "default.safetensors", build_model("pconv", layers=2, width=0.125)
    )
    monkeypatch.setattr(zoo, "DEFAULT_WEIGHTS", str(default))
    report = tmp_path / "r.json"
    ok("-f", images, "-m", masks, "--device", "cpu", "--json", report)
    sources = read_json(report)["sources"]
    assert list(sources) == ["default"] and sources["default"]["kind"] == "weights"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--method", "magic"), "unknown --method 'magic'"),
        (("--method", "zeros", "--crop", "squash"), "--crop"),
        (("--method", "zeros", "--batch", "0"), "Invalid value for '--batch'"),
        (("--method", "zeros", "--device", "tpu"), "--device"),
    ],
)
def test_usage_errors(small, args, message):
    images, masks = small
    assert message in fails(2, "-f", images, "-m", masks, *args)


def test_report_path_that_is_a_folder(tmp_path, small):
    images, masks = small
    message = fails(2, "-f", images, "-m", masks, "--method", "zeros", "--json", tmp_path)
    assert "is a folder" in message


def test_unreadable_image_and_missing_folder(tmp_path, small):
    images, masks = small
    broken = tmp_path / "broken"
    shutil.copytree(images, broken)
    (broken / "zz.jpg").write_bytes(b"\xff\xd8 not really")
    assert "cannot read image" in fails(1, "-f", broken, "-m", masks, "--method", "zeros")
    assert "not a folder" in fails(1, "-f", tmp_path / "nope", "-m", masks, "--method", "zeros")


# --------------------------------------------------------------------------- the app


def test_eval_is_listed_and_evaluate_is_a_hidden_alias():
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"]).stdout
    assert " eval " in listing and "evaluate" not in listing
    alias = runner.invoke(app, ["evaluate", "--help"])
    assert alias.exit_code == 0 and "--predictions" in alias.stdout


def test_eval_help_does_not_import_torch():
    script = (
        "import runpy, sys\n"
        "sys.argv = ['pconv', 'eval', '--help']\n"
        "try:\n    runpy.run_module('pconv_cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('HEAVY:' + ','.join(m for m in ('torch', 'skimage', 'cv2') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "HEAVY:"
