"""A new user's rough edges (issue 18, item 8): one vocabulary of option names across the
commands, ``pconv finetune --resume``, classify keeping its last checkpoints, choices in the
help."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import typer
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.models import build_model
from pconv_cli.weights import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
SMALL = ["--size", "32", "--batch", "2", "--workers", "0", "--vgg-weights", "none",
         "--device", "cpu", "--save-every", "1"]  # fmt: skip


def _options():
    """(command path, option) of every visible option of every command."""
    root = typer.main.get_command(app)

    def walk(group, prefix=()):
        for name, command in group.commands.items():
            if getattr(command, "hidden", False):
                continue
            if hasattr(command, "commands"):
                yield from walk(command, (*prefix, name))
            else:
                for param in command.params:
                    if param.param_type_name == "option" and param.name != "help":
                        yield " ".join((*prefix, name)), param

    yield from walk(root)


def test_one_vocabulary_of_option_names():
    """An option name means one thing everywhere: the same short form, the same --no- form;
    every --weights has -w, --batch -b, --workers -j, --out -o, --data --folder and -f."""
    shorts: dict[str, set] = defaultdict(set)
    negations: dict[str, set] = defaultdict(set)
    for _, param in _options():
        names = param.opts + param.secondary_opts
        short = tuple(sorted(n for n in names if re.fullmatch(r"-[A-Za-z]", n)))
        for name in param.opts:
            if name.startswith("--"):
                shorts[name].add(short)
                if param.is_flag and param.secondary_opts:
                    negations[name].add(tuple(param.secondary_opts))
                elif param.is_flag:
                    negations[name].add(())
    for name, seen in shorts.items():
        assert len(seen) == 1, f"{name} has the short forms {seen} in different commands"
    for name, seen in negations.items():
        assert len(seen) == 1, f"{name} has the negations {seen} in different commands"
    expected = {"--weights": ("-w",), "--batch": ("-b",), "--workers": ("-j",), "--out": ("-o",),
                "--data": ("-f",), "--masks": ("-m",), "--invert-mask": None}  # fmt: skip
    for name, short in expected.items():
        if short is not None:
            assert shorts[name] == {short}, (name, shorts[name])
    assert negations["--invert-mask"] == {("--no-invert-mask",)}
    for where, param in _options():
        if "--data" in param.opts:
            assert "--folder" in param.opts, where


def test_classify_help_lists_its_choices():
    text = CliRunner().invoke(app, ["classify", "train", "--help"], env={"COLUMNS": "240"}).output
    assert "[demo]" in text and "pd_resnet50|resnet50" in text


def test_finetune_resume_as_the_readme_shows(tmp_path):
    assert "pconv finetune --out runs/mine --resume" in (ROOT / "README.md").read_text()
    weights = save_checkpoint(tmp_path / "w.safetensors",
                              build_model("pconv", layers=3, width=0.125), size=32)  # fmt: skip
    run = tmp_path / "mine"
    first = CliRunner().invoke(app, ["finetune", "--init", str(weights), "--data", str(EXAMPLES),
                                     "--out", str(run), "--steps", "2", *SMALL])  # fmt: skip
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, ["finetune", "--out", str(run), "--resume", "--steps", "3"])
    assert again.exit_code == 0, again.output
    assert "resume at step 2" in again.output
    config = json.loads((run / "config.json").read_text())
    assert config["stage"] == 2 and (run / "checkpoints" / "step-00000003.safetensors").is_file()
    missing = CliRunner().invoke(app, ["finetune", "--out", str(tmp_path / "new")])
    assert missing.exit_code == 2 and "--data is required (unless --resume)" in missing.output


def test_classify_keeps_only_the_last_checkpoints_by_default(tmp_path):
    data = tmp_path / "data"
    for part in ("train", "val"):
        for label in ("a", "b"):
            (data / part / label).mkdir(parents=True)
            for i in range(2):
                value = 60 * i + (100 if label == "b" else 0)
                Image.fromarray(np.full((24, 24, 3), value, np.uint8)).save(
                    data / part / label / f"{i}.png"
                )
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "classify", "train", "--data", str(data), "--out", str(run), "--arch", "squeezenet1_1",
        "--epochs", "5", "-b", "4", "--size", "32", "-j", "0", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*.safetensors"))
    assert kept == [f"step-{s:08d}.safetensors" for s in (3, 4, 5)]  # --keep-last 3 of 5 epochs
    small = CliRunner().invoke(app, [
        "classify", "train", "--data", str(data), "--out", str(tmp_path / "small"), "--arch",
        "squeezenet1_1", "--size", "16", "--device", "cpu",
    ])  # fmt: skip
    assert small.exit_code == 2 and "--size 16 is too small for squeezenet1_1" in small.output
    assert "Traceback" not in small.output
    assert {p.name for p in (tmp_path / "small").iterdir()} <= {".lock"}  # nothing written
