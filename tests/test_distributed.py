"""Data-parallel training (2 gloo processes on CPU) and mixed precision."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reference import cpu_fp16_autocast_supported

from pconv_cli.data.datasets import (
    InfiniteSampler,
    InpaintingDataset,
    MaskSource,
    collate,
    resolve_images,
)
from pconv_cli.models import build_model
from pconv_cli.train import resolve_config, train
from pconv_cli.train.losses import InpaintingLoss, LossWeights
from pconv_cli.weights import read_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
SEED, BATCH, STEPS = 0, 2, 4
ARGS = [
    "--data", str(EXAMPLES), "--layers", "4", "--width", "0.125", "--size", "32",
    "--batch", str(BATCH), "--lr", "1e-3", "--vgg-weights", "none", "--workers", "0",
    "--log-every", "1", "--sample-every", "2", "--save-every", "2", "--seed", str(SEED),
    "--device", "cpu",
]  # fmt: skip


def _train_cli(out: Path, *extra: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pconv_cli", "train", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def _state(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.safetensors").net_state()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """2 processes x batch 2, 4 steps, plain BN (each rank normalises its own batch)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    _train_cli(out, *ARGS, "--steps", str(STEPS), "--nproc", "2")
    return out


def _accumulation_reference(steps: int, world: int) -> dict[str, torch.Tensor]:
    """One process: per step, each rank's micro-batch in turn, gradients averaged."""
    config = resolve_config(
        {"data": str(EXAMPLES), "out": "unused", "model": {"layers": 4, "width": 0.125},
         "size": 32, "lr": 1e-3, "vgg_weights": "none"}
    )  # fmt: skip
    dataset = InpaintingDataset(
        resolve_images(EXAMPLES), MaskSource.parse("irregular"), size=32, seed=SEED
    )
    torch.manual_seed(SEED)
    model = build_model("pconv", layers=4, width=0.125).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = InpaintingLoss(LossWeights(**config.loss_weights), vgg=None)
    streams = [iter(InfiniteSampler(len(dataset), seed=SEED, rank=r, num_replicas=world))
               for r in range(world)]  # fmt: skip
    for _ in range(steps):
        optimizer.zero_grad()
        for stream in streams:
            batch = collate([dataset[next(stream)] for _ in range(BATCH)])
            total, _ = loss_fn(model(batch["image"], batch["mask"]), batch["image"], batch["mask"])
            (total / world).backward()
        optimizer.step()
    return {name: p.detach() for name, p in model.net.named_parameters()}


def test_ddp_equals_gradient_averaged_single_process(ddp_run):
    state = _state(ddp_run)
    reference = _accumulation_reference(STEPS, world=2)
    for name, value in reference.items():
        torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-5, msg=name)


def test_only_rank_zero_writes(ddp_run):
    records = [json.loads(x) for x in (ddp_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # one writer, no duplicate lines
    assert all(r["global_batch"] == 2 * BATCH for r in records)
    assert sorted(p.name for p in (ddp_run / "samples").iterdir()) == [
        "step-00000002.png", "step-00000004.png",
    ]  # fmt: skip
    state = torch.load(ddp_run / "checkpoints" / "step-00000004.state.pt", weights_only=True)
    assert state["sampler_position"] == STEPS * BATCH * 2
    assert not list(ddp_run.rglob("*.tmp"))


def test_sync_bn_equals_one_process_with_the_global_batch(tmp_path):
    _train_cli(tmp_path / "ddp", *ARGS, "--steps", "3", "--nproc", "2", "--sync-bn")
    single = resolve_config({"data": str(EXAMPLES), "out": str(tmp_path / "one"),
                             "model": {"layers": 4, "width": 0.125}, "size": 32,
                             "batch": 2 * BATCH, "lr": 1e-3,
                             "vgg_weights": "none", "workers": 0, "steps": 3, "seed": SEED,
                             "device": "cpu"})  # fmt: skip
    train(single)
    ddp, one = _state(tmp_path / "ddp"), _state(tmp_path / "one")
    assert ddp.keys() == one.keys()
    for name in one:  # parameters and BN running statistics alike
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-5, atol=1e-5, msg=name)


def test_resume_under_ddp_reproduces_the_straight_run(tmp_path, ddp_run):
    out = tmp_path / "cut"
    _train_cli(out, *ARGS, "--steps", str(STEPS // 2), "--nproc", "2")
    _train_cli(out, "--resume", "--steps", str(STEPS), "--nproc", "2")
    straight, resumed = _state(ddp_run), _state(out)
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_launch_errors_before_any_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pconv_cli", "train", "--out", str(tmp_path / "g"), *ARGS[:-2],
         "--gpus", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        pytest.skip("this machine has GPUs")
    assert result.returncode == 1
    assert "CUDA" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "g").exists()


# -- mixed precision -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "precision",
    [
        "bf16",
        pytest.param(
            "fp16", marks=pytest.mark.skipif(not cpu_fp16_autocast_supported(), reason="no fp16")
        ),
    ],
)
def test_reduced_precision_steps_stay_finite_with_fully_masked_windows(tmp_path, precision):
    # 'thick' masks leave whole windows of the first layers without a valid pixel.
    config = resolve_config({"data": str(EXAMPLES), "out": str(tmp_path / precision),
                             "model": {"layers": 4, "width": 0.125}, "size": 64, "batch": 2,
                             "masks": "thick", "vgg_weights": "none", "workers": 0,
                             "steps": 3, "log_every": 1, "precision": precision,
                             "device": "cpu"})  # fmt: skip
    summary = train(config)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in summary["history"])
    for name, value in _state(tmp_path / precision).items():
        assert torch.isfinite(value.float()).all(), name
    # and the forward itself: an all-hole 32x32 block inside a 64x64 image
    model = build_model("pconv", layers=4, width=0.125)
    image = torch.rand(1, 3, 64, 64)
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 8:56, 8:56] = 0
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast("cpu", dtype=dtype):
        out = model(image, mask)
    out.float().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_channels_last_training_matches_contiguous(tmp_path):
    base = {"data": str(EXAMPLES), "model": {"layers": 4, "width": 0.125}, "size": 32,
            "batch": 2,
            "vgg_weights": "none", "workers": 0, "steps": 3, "device": "cpu"}  # fmt: skip
    train(resolve_config({**base, "out": str(tmp_path / "a")}))
    train(resolve_config({**base, "out": str(tmp_path / "b"), "channels_last": True}))
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


def _fail_on_rank_one(message: str) -> str:
    import os

    if os.environ["RANK"] == "1":
        raise RuntimeError(message)
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        dist.barrier()  # rank 0 waits for rank 1 forever: the launcher must end it
    finally:
        dist.destroy_process_group()
    return "unreachable"


def test_a_failing_rank_ends_the_run_with_its_message():
    from pconv_cli.train.distributed import LaunchError, launch

    with pytest.raises(LaunchError, match=r"^worker rank 1 failed: disk on fire$"):
        launch(_fail_on_rank_one, ("disk on fire",), processes=2)
