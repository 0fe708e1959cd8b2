"""A second family registered from outside ``pconv_cli`` trains, resumes, runs under DDP,
inpaints and evaluates through the same commands as the PConv U-Net (see toy_family.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import toy_family
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.models import build_model, list_models
from pconv_cli.weights import load_model, open_weights, read_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
TRAIN = [
    "--arch", toy_family.FAMILY, "--data", str(EXAMPLES), "--size", "32", "--batch", "2",
    "--workers", "0", "--log-every", "1", "--save-every", "3", "--sample-every", "3",
    "--device", "cpu", "--seed", "3",
]  # fmt: skip


def _invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.safetensors").state


def _assert_same(a: dict, b: dict, **tolerance):
    assert a.keys() == b.keys()
    for key in a:
        if tolerance:
            torch.testing.assert_close(a[key], b[key], msg=key, **tolerance)
        else:
            assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("toy") / "run"
    _invoke("train", *TRAIN, "--out", run, "--steps", "6")
    return run


def test_the_family_is_registered_and_builds():
    assert toy_family.FAMILY in list_models()
    model = build_model(toy_family.FAMILY, width=3)
    assert model.family == toy_family.FAMILY and model.config.width == 3
    out = model(torch.rand(1, 3, 13, 17), torch.ones(1, 1, 13, 17))
    assert out.shape == (1, 3, 13, 17)


def test_train_logs_both_losses_and_checkpoints_both_nets(toy_run):
    records = [json.loads(line) for line in (toy_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for record in records:
        for term in ("loss", "d_loss", "l1", "adversarial"):
            assert np.isfinite(record[term]), (term, record)
    weights = read_checkpoint(toy_run / "last.safetensors")
    assert weights.family == toy_family.FAMILY and weights.metadata["step"] == "6"
    assert set(weights.net_state()) == set(build_model(toy_family.FAMILY).net.state_dict())
    discriminator = weights.module_state("discriminator")
    assert set(discriminator) == {"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"}
    state = torch.load(toy_run / "checkpoints" / "step-00000006.state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    assert set(state["scalers"]) == {"generator", "discriminator"}
    assert (toy_run / "samples" / "step-00000006.png").is_file()
    config = json.loads((toy_run / "config.json").read_text())
    assert config["arch"] == toy_family.FAMILY and config["model"]["width"] == 8
    assert config["loss_weights"] == {"l1": 1.0, "adversarial": 0.1}


def test_both_nets_and_optimizers_change(toy_run, tmp_path):
    _invoke("train", *TRAIN, "--out", tmp_path / "one", "--steps", "1", "--save-every", "1")
    first, last = _weights(tmp_path / "one"), _weights(toy_run)
    assert not torch.equal(first["body.0.weight"], last["body.0.weight"])
    key = "discriminator.body.0.weight"
    assert not torch.equal(first[key], last[key])


def test_resume_is_bit_exact(toy_run, tmp_path):
    split = tmp_path / "split"
    _invoke("train", *TRAIN, "--out", split, "--steps", "3")
    _invoke("train", "--out", split, "--resume", "--steps", "6")
    _assert_same(_weights(toy_run), _weights(split))
    steps = [json.loads(line)["step"] for line in (split / "log.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_two_process_gloo_ddp_equals_one_process_with_the_global_batch(tmp_path):
    _invoke("train", *TRAIN, "--out", tmp_path / "ddp", "--steps", "3", "--nproc", "2")
    args = [a if a != "2" else "4" for a in TRAIN]  # --batch 2 -> 4: the global batch
    assert args.count("4") == 1
    _invoke("train", *args, "--out", tmp_path / "one", "--steps", "3")
    # Adam turns float noise on near-zero gradients into steps of up to lr: 1e-4 is still far
    # below one step's change (about 1e-3 per weight)
    _assert_same(_weights(tmp_path / "ddp"), _weights(tmp_path / "one"), rtol=1e-5, atol=1e-4)
    logs = [
        [json.loads(line) for line in (tmp_path / run / "log.jsonl").open()]
        for run in ("ddp", "one")
    ]
    for ddp, one in zip(*logs, strict=True):
        for term in ("loss", "d_loss", "l1", "adversarial"):
            assert ddp[term] == pytest.approx(one[term], rel=1e-5), term


def test_inpaint_and_eval_use_the_toy_checkpoint(toy_run, tmp_path):
    photo = tmp_path / "photo.png"
    Image.open(EXAMPLES / "coffee.jpg").convert("RGB").resize((48, 40)).save(photo)
    hole = np.zeros((40, 48), dtype=bool)
    hole[10:25, 12:30] = True
    save_mask(tmp_path / "mask.png", hole)
    out = tmp_path / "out.png"
    output = _invoke("inpaint", photo, "--mask", tmp_path / "mask.png", "--weights",
                     toy_run / "last.safetensors", "-o", out, "--blend", "none")  # fmt: skip
    assert toy_family.FAMILY in output
    original, result = np.asarray(Image.open(photo)), np.asarray(Image.open(out))
    np.testing.assert_array_equal(result[~hole], original[~hole])
    model = load_model(toy_run / "last.safetensors")
    with torch.no_grad():
        x = torch.from_numpy(np.array(original)).permute(2, 0, 1)[None].float() / 255
        mask = torch.from_numpy(~hole)[None, None].float()
        expected = model(x, mask).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(result[hole], np.rint(expected[hole] * 255).astype(np.uint8))

    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(2):
        hole = np.zeros((64, 64), dtype=bool)
        hole[8 + 10 * i : 30 + 10 * i, 16:40] = True
        save_mask(masks / f"{i}.png", hole)
    report = tmp_path / "eval.json"
    _invoke("eval", "--folder", EXAMPLES, "--masks", masks, "--weights",
            toy_run / "last.safetensors", "--method", "zeros", "--device", "cpu",
            "--json", report)  # fmt: skip
    sources = json.loads(report.read_text())["sources"]
    toy = sources["last"]
    assert toy["checkpoint"]["family"] == toy_family.FAMILY
    assert len(toy["images"]) == 6
    # the trained toy fills holes better than black
    assert toy["summary"][-1]["l1"] < sources["zeros"]["summary"][-1]["l1"]


def test_a_foreign_toy_file_loads_for_inference_and_init(tmp_path):
    path, generator, critic = toy_family.toyformat_file(tmp_path / "toy_release.pth")
    weights = open_weights(str(path))
    assert (weights.family, weights.source_format, weights.config.width) == (
        toy_family.FAMILY, "toyformat", 6,
    )  # fmt: skip
    model = load_model(str(path))
    image, mask = torch.rand(1, 3, 16, 16), (torch.rand(1, 1, 16, 16) > 0.3).float()
    with torch.no_grad():
        expected = (generator(image * 2 - 1, mask) + 1) / 2  # minus_one_one in and out
        torch.testing.assert_close(model(image, mask), expected)
    run = tmp_path / "ft"
    _invoke("train", *TRAIN, "--init", path, "--out", run, "--steps", "1")
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"] == "init" and config["model"]["width"] == 6
    # the first D step started from the file's critic: its weights moved from there
    trained = read_checkpoint(run / "last.safetensors").module_state("discriminator")
    start = critic.state_dict()["body.0.weight"]
    assert trained["body.0.weight"].shape == start.shape
    assert 0 < (trained["body.0.weight"] - start).abs().max() < 0.01


def test_an_installed_plugin_is_found_by_the_weights_path_alone(tmp_path):
    """Installed through the ``pconv_cli.plugins`` entry-point group, in a fresh process that
    never lists models: its converter reads its files and its zoo entries resolve."""
    import subprocess
    import sys

    site = tmp_path / "site"
    (site / "toyplugin-0.1.dist-info").mkdir(parents=True)
    (site / "toyplugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toyplugin\nVersion: 0.1\n"
    )
    (site / "toyplugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[pconv_cli.plugins]\ntoy = toyplugin\n"
    )
    (site / "toyplugin.py").write_text(
        "import toy_family\n"
        "from pconv_cli.weights.zoo import WeightsEntry, register_weights\n"
        "register_weights(WeightsEntry(name='toy-release', url='https://example.org/t.pth',\n"
        "    sha256_prefix=None, source_format='toyformat', family=toy_family.FAMILY,\n"
        "    config={'width': 6}, dataset='none', description='a toy'))\n"
    )
    path, _, _ = toy_family.toyformat_file(tmp_path / "toy_release.pth")
    script = (
        "import sys\n"
        "from pconv_cli.weights import get_weights, load_model, open_weights\n"
        f"print(open_weights({str(path)!r}).family, type(load_model({str(path)!r})).__name__)\n"
        "print(get_weights('toy-release').family)\n"
    )
    env = {**__import__("os").environ,
           "PYTHONPATH": f"{site}:{Path(__file__).parent}:{Path(__file__).parents[1]}"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == toy_family.FAMILY and lines[-1] == toy_family.FAMILY
