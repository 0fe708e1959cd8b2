"""Bad input and CLI ergonomics (issue #13): one test per item, each checking the exit code,
a one-line message without traceback, and that no file that existed before changed."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.models import build_model
from pconv_cli.weights import save_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
TRAIN = ["--data", str(EXAMPLES), "--size", "32", "--batch", "2", "--workers", "0",
         "--vgg-weights", "none", "--layers", "3", "--width", "0.125",
         "--device", "cpu"]  # fmt: skip


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, text
    return errors[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("w") / "tiny.safetensors",
                           build_model("pconv", layers=3, width=0.125), size=32)  # fmt: skip


@pytest.fixture
def photo(tmp_path) -> tuple[Path, Path, np.ndarray]:
    src = tmp_path / "photo.jpg"
    Image.open(EXAMPLES / "coffee.jpg").convert("RGB").resize((64, 48)).save(src, quality=92)
    hole = np.zeros((48, 64), dtype=bool)
    hole[10:30, 20:40] = True
    save_mask(tmp_path / "m.png", hole)
    return src, tmp_path / "m.png", hole


# 1 ------------------------------------------------------------------------------------------
def test_1_inpaint_never_overwrites_the_input_unless_asked(photo, tiny):
    src, mask, _ = photo
    before = _snapshot(src.parent)
    error = _one_line_error(_invoke("inpaint", src, "--mask", mask, "-w", tiny, "-o", src), 2)
    assert "is the input image; pass --overwrite" in error
    assert _snapshot(src.parent) == before
    result = _invoke("inpaint", src, "--mask", mask, "-w", tiny, "-o", src, "--overwrite")
    assert result.exit_code == 0, result.output
    assert _snapshot(src.parent)["photo.jpg"] != before["photo.jpg"]
    assert not list(src.parent.glob(".*.tmp"))


# 2 ------------------------------------------------------------------------------------------
def test_2_resume_of_a_copied_run_trains_the_copy_from_any_folder(tmp_path):
    run = tmp_path / "run"
    assert (
        _invoke("train", *TRAIN, "--out", run, "--steps", "2", "--save-every", "2").exit_code == 0
    )
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    original = _snapshot(run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pconv_cli", "train", "--out", str(copy), "--resume",
         "--steps", "3"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _snapshot(run) == original  # the original run is untouched
    assert (copy / "checkpoints" / "step-00000003.safetensors").is_file()
    assert json.loads((copy / "config.json").read_text())["out"] == str(copy)
    missing = _invoke(
        "train", "--out", copy, "--resume", "--steps", "4", "--data", tmp_path / "gone"
    )
    assert "does not exist; pass --data PATH" in _one_line_error(missing, 1)


# 3, 4 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,hint",
    [
        (["--layers", "0"], "--layers"), (["--layers", "-1"], "--layers"),
        (["--layers", "9"], "--layers"), (["--layers", "12"], "--layers"),
        (["--width", "0"], "--width"), (["--width", "-1"], "--width"),
        (["--arch", "foo"], "unknown model family 'foo'"), (["--seed", "-1"], "--seed"),
        (["--loss-hole", "-1"], "--loss-hole"), (["--loss", "hole=-2"], "--loss"),
        (["--nproc", "0"], "--nproc"), (["--precision", "fp8"], "--precision"),
        (["--device", "tpu"], "--device"), (["--masks", "nowhere"], "--masks"),
        (["--crop", "squash"], "--crop"), (["--lr", "0"], "--lr"),
    ],
)  # fmt: skip
def test_3_4_bad_options_are_usage_errors_and_write_nothing(tmp_path, args, hint):
    out = tmp_path / "out"
    error = _one_line_error(_invoke("train", "--data", EXAMPLES, "--out", out, *args), 2)
    assert hint in error
    assert not out.exists()


# 5 ------------------------------------------------------------------------------------------
def test_5_resume_names_the_unreadable_checkpoint_it_skips(tmp_path):
    run = tmp_path / "run"
    assert (
        _invoke("train", *TRAIN, "--out", run, "--steps", "4", "--save-every", "2").exit_code == 0
    )
    newest = run / "checkpoints" / "step-00000004.safetensors"
    newest.write_bytes(newest.read_bytes()[:200])  # truncated
    result = _invoke("train", "--out", run, "--resume", "--steps", "5")
    assert result.exit_code == 0, result.output
    assert "skipped checkpoint step 4 (step-00000004.safetensors" in result.output
    assert "resuming from step 2" in result.output


# 7 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["out.gif", "out.xyz", "out"])
def test_7_output_suffix_gives_the_format_or_is_refused(photo, tiny, name):
    src, mask, _ = photo
    before = _snapshot(src.parent)
    error = _one_line_error(
        _invoke("inpaint", src, "--mask", mask, "-w", tiny, "-o", src.parent / name), 2
    )
    assert "unknown image suffix" in error
    assert _snapshot(src.parent) == before
    ok = _invoke("inpaint", src, "--mask", mask, "-w", tiny, "-o", src.parent / "out.webp")
    assert ok.exit_code == 0 and Image.open(src.parent / "out.webp").format == "WEBP"


# 8 ------------------------------------------------------------------------------------------
def test_8_grey_and_all_hole_masks_are_warned_about(photo, tiny):
    src, _, _ = photo
    gradient = src.parent / "gradient.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))).save(gradient)
    result = _invoke("inpaint", src, "--mask", gradient, "-w", tiny, "-o", src.parent / "a.png")
    assert result.exit_code == 0 and "of its pixels are neither black nor white" in result.output
    white = src.parent / "white.png"
    save_mask(white, np.ones((48, 64), dtype=bool))
    result = _invoke("inpaint", src, "--mask", white, "-w", tiny, "-o", src.parent / "b.png")
    assert result.exit_code == 0 and "covers the whole of photo.jpg" in result.output


# 9 ------------------------------------------------------------------------------------------
def test_9_eval_checks_report_paths_before_scoring(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for option in ("--json", "--csv", "--grid"):
        result = _invoke(
            "eval", "--folder", EXAMPLES, "--method", "zeros", option, blocker / "r.out"
        )
        assert "is not a folder" in _one_line_error(result, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# 10 -----------------------------------------------------------------------------------------
def test_10_weights_folder_names_its_checkpoints(photo, tiny):
    src, mask, _ = photo
    error = _one_line_error(
        _invoke("inpaint", src, "--mask", mask, "-w", tiny.parent, "-o", src.parent / "x.png"), 1
    )
    assert "is a folder, not a weights file; it holds tiny.safetensors" in error


# 11 -----------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_11_gpus_without_cuda_names_the_option(tmp_path):
    no_device = TRAIN[: TRAIN.index("--device")]
    error = _one_line_error(_invoke("train", *no_device, "--out", tmp_path / "g", "--gpus", "4"), 1)
    assert error.startswith("Error: --gpus 4: no CUDA GPU") and not (tmp_path / "g").exists()


# 12 -----------------------------------------------------------------------------------------
def test_12_identical_runs_write_identical_checkpoints(tmp_path):
    digests = []
    for name in ("a", "b"):  # separate processes: a per-process hash seed may not matter
        done = subprocess.run(
            [sys.executable, "-m", "pconv_cli", "train", *TRAIN, "--out", str(tmp_path / name),
             "--steps", "2", "--save-every", "2"], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        digests.append(
            hashlib.sha256((tmp_path / name / "last.safetensors").read_bytes()).hexdigest()
        )
    assert digests[0] == digests[1]


# 13 -----------------------------------------------------------------------------------------
def test_13_a_file_that_is_not_vgg16_is_named_so(tmp_path):
    other = tmp_path / "random.pth"
    torch.save({"x": torch.zeros(2)}, other)
    result = _invoke("train", "--data", EXAMPLES, "--out", tmp_path / "o", "--vgg-weights", other)
    error = _one_line_error(result, 1)
    assert "not a VGG16 state dict" in error and "weights_only" not in result.output


# 14 -----------------------------------------------------------------------------------------
def _commands(group, prefix=()):
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_14_every_option_has_help_a_default_and_its_choices():
    import typer

    root = typer.main.get_command(app)
    checked = 0
    for path, command in _commands(root):
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            checked += 1
            where = f"pconv {' '.join(path)} {param.opts[0]}"
            assert param.help and "\n" not in param.help.strip(), where
            shown = param.default is not None and param.show_default is not False
            assert param.is_flag or param.required or shown or "[default:" in param.help, where
            # markdown help would swallow "<name>" as an HTML tag
            assert not re.search(r"<[A-Za-z]", param.help), where
        text = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "220"}).output
        assert "<bool>" not in text, " ".join(path)
    assert checked > 100
    assert "<bool>" not in CliRunner().invoke(app, ["--help"], env={"COLUMNS": "220"}).output
    text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "220"}).output
    assert "'path [label]' lines" in text and "[default: 256" in text
    assert "fp32|bf16|fp16" in text and "mmagic|resize" in text


# 15 -----------------------------------------------------------------------------------------
def test_15_usage_lines_work_as_typed(photo, tiny, tmp_path, monkeypatch):
    from pconv_cli.weights import zoo

    src, mask, _ = photo
    monkeypatch.setattr(zoo, "DEFAULT_WEIGHTS", str(tiny))  # the zoo's default, offline
    result = _invoke("inpaint", src, "--mask", mask)
    assert result.exit_code == 0, result.output
    written = src.with_name("photo_inpainted.jpg")
    assert Image.open(written).size == (64, 48)
    again = _invoke("inpaint", src, "--mask", mask)  # never over an existing file silently
    assert "exists; pass --overwrite" in _one_line_error(again, 2)
    # stage 2 without --init continues the stage-1 run in --out
    run = tmp_path / "run"
    assert (
        _invoke("train", *TRAIN, "--out", run, "--steps", "2", "--save-every", "2").exit_code == 0
    )
    stage2 = _invoke("train", *TRAIN[:-8], "--workers", "0", "--out", run, "--stage", "2",
                     "--steps", "1", "--vgg-weights", "none", "--device", "cpu")  # fmt: skip
    assert stage2.exit_code == 0, stage2.output
    assert json.loads((run / "stage2" / "config.json").read_text())["init"].endswith(
        "step-00000002.safetensors"
    )
    lost = _invoke("train", *TRAIN, "--out", tmp_path / "none", "--stage", "2")
    assert "pass --init WEIGHTS, or --out pointing at a stage-1 run" in _one_line_error(lost, 2)


# 16 -----------------------------------------------------------------------------------------
def test_16_one_vocabulary_and_exit_codes(photo, tiny, tmp_path):
    src, mask, _ = photo
    assert (
        _invoke(
            "inpaint", src, "--masks", mask, "--weights", tiny, "-o", tmp_path / "v.png"
        ).exit_code
        == 0
    )
    report = tmp_path / "r.json"
    masks = tmp_path / "masks"
    masks.mkdir()
    shutil.copy(mask, masks / "m.png")
    ok = _invoke("eval", "--data", EXAMPLES, "--mask", masks, "--method", "zeros", "--json", report)
    assert ok.exit_code == 0, ok.output
    usage = [
        ("inpaint", src, "--mask", mask, "--strategy", "sideways"),
        ("eval", "--folder", EXAMPLES, "--limit", "0"),
        ("gen-masks", tmp_path / "g", "--count", "0"),
        ("weights", "download", "nope"),
        ("classify", "train", "--data", EXAMPLES, "--out", tmp_path / "c", "--batch", "0"),
        ("train", "--data", EXAMPLES, "--out", tmp_path / "t", "--steps", "0"),
    ]
    for args in usage:
        _one_line_error(_invoke(*args), 2)
    runtime = [
        (
            "inpaint",
            src,
            "--mask",
            mask,
            "-w",
            tmp_path / "missing.safetensors",
            "-o",
            tmp_path / "x.png",
        ),
        ("eval", "--folder", tmp_path / "empty-nothing", "--method", "zeros"),
        ("classify", "eval", "--weights", tiny, "--data", EXAMPLES),
    ]
    for args in runtime:
        _one_line_error(_invoke(*args), 1)


# 17 -----------------------------------------------------------------------------------------
def test_17_finetune_fits_the_machine_and_the_weights(tmp_path):
    import os

    from pconv_cli.train import resolve_config

    weights = save_checkpoint(
        tmp_path / "w.safetensors", build_model("pconv", layers=3, width=0.125), size=48
    )
    options = {"data": str(EXAMPLES), "out": str(tmp_path / "f"), "init": str(weights)}
    config = resolve_config(options, finetune=True)
    assert config.size == 48 and config.stage == 2 and config.lr == 5e-5
    assert config.workers <= (os.cpu_count() or 1)
    result = CliRunner().invoke(app, ["finetune", "--help"], env={"COLUMNS": "240"})
    assert "PConv U-Net: 800000 steps at lr 2e-4 (stage 1), 500000 at 5e-5 (stage 2" in " ".join(
        result.output.split()
    )


# 18 -----------------------------------------------------------------------------------------
def test_18_eval_labels_are_readable_and_distinct(tmp_path):
    for run in ("run-a", "run-b"):
        save_checkpoint(
            tmp_path / run / "last.safetensors", build_model("pconv", layers=2, width=0.125)
        )
    masks = tmp_path / "masks"
    masks.mkdir()
    save_mask(masks / "m.png", np.pad(np.ones((16, 16), dtype=bool), 24))
    report = tmp_path / "r.json"
    result = _invoke(
        "eval", "--folder", EXAMPLES, "--masks", masks, "--device", "cpu", "--json", report,
        "-w", tmp_path / "run-a" / "last.safetensors",
        "-w", tmp_path / "run-b" / "last.safetensors",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(json.loads(report.read_text())["sources"]) == ["run-a/last", "run-b/last"]
    from pconv_cli.commands._progress import progress_bar

    assert any(type(c).__name__ == "RateColumn" for c in progress_bar("x", unit="img").columns)


# 19 -----------------------------------------------------------------------------------------
def test_19_pictures_are_labelled_complete_and_bounded(tmp_path):
    from pconv_cli.train.visuals import loss_terms, sample_grid

    image, mask = torch.rand(2, 3, 16, 16), torch.ones(2, 1, 16, 16)
    grid = sample_grid(image, mask, image)
    assert grid.size[1] > 2 * 16 + 14  # a title line above the two rows
    history = [{"step": s, "loss": 1.0 / s, "valid": 0.5, "hole": 2.0 / s, "lr": 1e-3,
                "images_per_s": 10.0} for s in range(1, 5)]  # fmt: skip
    assert loss_terms(history) == ["loss", "valid", "hole"]
    from pconv_cli.evaluation.report import GRID_ROWS, render_grid
    from pconv_cli.evaluation.scoring import GridPick, Record

    class _Extremes:
        pick = GridPick(Record(0, "p", "i", "m", "0.1-0.2", False, 0.15, 1.0, 30.0, 0.9),
                        np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool),
                        np.zeros((8, 8, 3), np.uint8))  # fmt: skip
        best = [pick] * 6
        worst = [pick] * 6

    class _Source:
        def __init__(self, label):
            self.label, self.extremes = label, _Extremes()

    class _Result:
        def __init__(self):
            self.sources = [_Source(f"s{i}") for i in range(3)]

    pages = render_grid(_Result())
    assert len(pages) == 3  # 36 pairs, 16 per page
    assert all(page.size[1] <= GRID_ROWS * (8 + 14 + 4) + 40 * 14 for page in pages)
