"""DeepFillv2 on the generic loop: the GAN task trains, resumes exactly and runs under DDP;
its checkpoints work in ``pconv inpaint`` and ``pconv eval``; any size in, same size out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.datasets import InpaintingDataset, MaskSource, collate, resolve_images
from pconv_cli.data.masks import save_mask
from pconv_cli.inpainting import inpaint_image
from pconv_cli.models import build_model
from pconv_cli.weights import load_model, read_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
TINY = [
    "--arch", "deepfillv2", "--width", "0.125", "--data", str(EXAMPLES), "--size", "72",
    "--batch", "2", "--workers", "0", "--log-every", "1", "--save-every", "2",
    "--sample-every", "2", "--device", "cpu", "--seed", "1",
]  # fmt: skip
TERMS = ("loss", "stage1_l1_hole", "stage1_l1_valid", "stage2_l1_hole", "stage2_l1_valid",
         "adversarial", "d_loss", "d_real", "d_fake")  # fmt: skip


def _invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _state(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.safetensors").state


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("deepfill") / "run"
    _invoke("train", *TINY, "--out", run, "--steps", "4")
    return run


def test_every_term_is_logged_and_finite(tiny_run):
    records = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        for term in TERMS:
            assert np.isfinite(record[term]), (term, record)
        assert record["d_loss"] == pytest.approx(record["d_real"] + record["d_fake"], rel=1e-5)
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["lr"] == 1e-4 and config["model"] == {
        "width": 0.125,
        "normalization": "minus_one_one",
    }
    assert config["loss_weights"] == {"l1_hole": 1.0, "l1_valid": 1.0, "adversarial": 0.1}
    weights = read_checkpoint(tiny_run / "last.safetensors")
    assert weights.family == "deepfillv2"
    assert set(weights.module_state("discriminator")) >= {
        "conv1.conv.weight_orig",
        "conv6.conv.weight_v",
    }
    state = torch.load(tiny_run / "checkpoints" / "step-00000004.state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"generator", "discriminator"}


def test_resume_is_bit_exact(tiny_run, tmp_path):
    split = tmp_path / "split"
    _invoke("train", *TINY, "--out", split, "--steps", "2")
    _invoke("train", "--out", split, "--resume", "--steps", "4")
    a, b = _state(tiny_run), _state(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # spectral-norm vectors included


def test_two_process_ddp_equals_the_global_batch(tmp_path):
    _invoke("train", *TINY, "--out", tmp_path / "ddp", "--steps", "2", "--nproc", "2")
    single = list(TINY)
    single[single.index("--batch") + 1] = "4"  # one process with the global batch
    _invoke("train", *single, "--out", tmp_path / "one", "--steps", "2")
    a, b = _state(tmp_path / "ddp"), _state(tmp_path / "one")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4, msg=key)
    logs = [[json.loads(x) for x in (tmp_path / r / "log.jsonl").open()] for r in ("ddp", "one")]
    for ddp, one in zip(*logs, strict=True):
        for term in TERMS:
            assert ddp[term] == pytest.approx(one[term], rel=1e-3, abs=1e-5), term


def test_hole_l1_falls_on_real_photos(tmp_path):
    run = tmp_path / "learn"
    _invoke("train", *TINY, "--width", "0.25", "--batch", "4", "--lr", "2e-3", "--steps", "100",
            "--out", run, "--log-every", "20", "--save-every", "100",
            "--sample-every", "100")  # fmt: skip
    dataset = InpaintingDataset(
        resolve_images(EXAMPLES), MaskSource.parse("irregular"), size=72, seed=9
    )
    batch = collate([dataset[(i, 10**6 + i)] for i in range(len(dataset))])

    def hole_l1(model) -> float:
        with torch.no_grad():
            out = model(batch["image"], batch["mask"]).clamp(0, 1)
        hole = 1 - batch["mask"]
        return ((out - batch["image"]).abs() * hole).sum().item() / (3 * hole.sum().item())

    torch.manual_seed(1)
    before = hole_l1(build_model("deepfillv2", width=0.25).eval())
    after = hole_l1(load_model(run / "last.safetensors"))
    assert after <= 0.9 * before, (before, after)  # 100 steps: from grey to the photos' colours


def test_demo_preset_resolves_for_deepfill():
    from pconv_cli.train import resolve_config

    config = resolve_config(
        {"arch": "deepfillv2", "preset": "demo", "data": str(EXAMPLES), "out": "x"}
    )
    assert config.model["width"] == 0.25 and config.size == 96 and config.steps == 400
    with pytest.raises(Exception, match="no option layers"):
        resolve_config(
            {"arch": "deepfillv2", "data": str(EXAMPLES), "out": "x", "model": {"layers": 5}}
        )


# --------------------------------------------------------------------------- inference


@pytest.mark.parametrize("size", [(37, 53), (130, 200), (72, 72)])
def test_any_size_in_same_size_out_known_pixels_kept(size):
    model = build_model("deepfillv2", width=0.125).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    hole = np.zeros(size, dtype=bool)
    hole[size[0] // 4 : size[0] // 2, size[1] // 3 : size[1] // 2] = True
    result = inpaint_image(model, image, hole, strategy="full").image
    assert result.shape == image.shape
    np.testing.assert_array_equal(result[~hole], image[~hole])
    assert (result[hole] != image[hole]).any()
    # a hole-free mask leaves the picture as it is
    untouched = inpaint_image(model, image, np.zeros(size, dtype=bool), strategy="full").image
    np.testing.assert_array_equal(untouched, image)


def test_banded_and_chunked_inference_equal_the_one_pass_result():
    torch.manual_seed(3)
    model = build_model("deepfillv2", width=0.25).eval()
    image = torch.rand(1, 3, 160, 136)
    mask = torch.ones(1, 1, 160, 136)
    mask[..., 40:100, 30:90] = 0
    with torch.no_grad():
        whole = model(image, mask)
        for module in model.modules():
            if hasattr(module, "band_bytes"):
                module.band_bytes = 1  # every gated conv in single-row bands
            if hasattr(module, "max_bytes"):
                module.max_bytes = 1  # contextual attention one query at a time
        banded = model(image, mask)
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-5)


def test_inpaint_and_eval_with_a_deepfill_checkpoint(tiny_run, tmp_path):
    photo = tmp_path / "photo.png"
    Image.open(EXAMPLES / "rocket.jpg").convert("RGB").resize((90, 75)).save(photo)
    hole = np.zeros((75, 90), dtype=bool)
    hole[20:45, 30:60] = True
    save_mask(tmp_path / "mask.png", hole)
    for strategy in ("full", "crop", "resize"):
        out = tmp_path / f"out-{strategy}.png"
        output = _invoke("inpaint", photo, "--mask", tmp_path / "mask.png", "--weights",
                         tiny_run / "last.safetensors", "-o", out, "--strategy", strategy,
                         "--resize-limit", "64", "--margin", "8")  # fmt: skip
        assert "deepfillv2" in output
        original, result = np.asarray(Image.open(photo)), np.asarray(Image.open(out))
        assert result.shape == original.shape
        np.testing.assert_array_equal(result[~hole], original[~hole])
    masks = tmp_path / "masks"
    masks.mkdir()
    save_mask(masks / "a.png", np.pad(np.ones((20, 24), dtype=bool), ((20, 24), (16, 24))))
    from pconv_cli.weights import save_checkpoint

    pconv = save_checkpoint(
        tmp_path / "pconv.safetensors", build_model("pconv", layers=3, width=0.125)
    )
    report = tmp_path / "eval.json"
    _invoke("eval", "--folder", EXAMPLES, "--masks", masks, "--weights",
            tiny_run / "last.safetensors", "--weights", pconv, "--method", "mean",
            "--device", "cpu", "--json", report)  # fmt: skip
    sources = json.loads(report.read_text())["sources"]
    assert list(sources) == ["mean", "last", "pconv"]  # side by side on the same pairs
    assert sources["last"]["checkpoint"]["family"] == "deepfillv2"
    assert sources["pconv"]["checkpoint"]["family"] == "pconv_unet"
    for source in sources.values():
        assert [r["name"] for r in source["images"]] == [
            r["name"] for r in sources["mean"]["images"]
        ]


def test_loss_weights_by_term_name(tmp_path):
    run = tmp_path / "weights"
    _invoke("train", *TINY, "--out", run, "--steps", "1",
            "--loss", "adversarial=0.5", "--loss", "l1_hole=2")  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["loss_weights"] == {"l1_hole": 2.0, "l1_valid": 1.0, "adversarial": 0.5}
    runner = CliRunner()
    bad = runner.invoke(app, ["train", *TINY, "--out", str(tmp_path / "x"), "--loss", "hole"])
    assert bad.exit_code == 2 and "TERM=WEIGHT" in bad.output
    unknown = runner.invoke(app, ["train", *TINY, "--out", str(tmp_path / "y"), "--loss", "tv=1"])
    assert unknown.exit_code == 1 and "unknown loss term tv" in unknown.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
