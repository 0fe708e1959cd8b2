"""Every CUDA path of pconv in one run (under 8 minutes on one GPU), with one summary table.

    python bench/gpu_check.py              # run every step
    python bench/gpu_check.py --dry-run    # list the steps and their commands
    python bench/gpu_check.py --only bench-unet,train-cuda [--budget 480] [--json out.json]

Steps: the CUDA-marked tests (``pytest -m cuda``); the demo training on one GPU; a
2-process NCCL run of the demo (``--gpus 2``; on a one-GPU machine two NCCL ranks
sharing it are tried with a probe and reported, since NCCL may refuse that); fp32 /
channels_last / bf16 / fp16 / torch.compile training steps of the PConv U-Net and of
DeepFillv2 (``bench_precision.py``); ``bench_unet``, ``bench_deepfill`` and
``bench_padding`` on CUDA; ``pconv inpaint`` on CUDA against the CPU result.

Each step runs in its own process group with a timeout (the remaining time budget at
most); a failure or a timeout is reported and the next step runs. Logs go to
``--logs`` (default: a temporary folder, printed at the end). Exit status: 0 when every
step that ran passed, 1 otherwise, 2 without a CUDA GPU (nothing run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PCONV = [PY, "-m", "pconv_cli"]
DEFAULT_BUDGET = 480.0
"""Seconds for the whole check (8 minutes)."""

_NCCL_PROBE = r"""
import os, sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank(r, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=r, world_size=2)
    t = torch.ones(1, device="cuda:0") * (r + 1)
    dist.all_reduce(t)
    assert t.item() == 3, t.item()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank, args=(sys.argv[1],), nprocs=2)
    print("2 NCCL ranks sharing one GPU: all_reduce ok")
"""

_INPAINT = """
import subprocess, sys
import numpy as np
from PIL import Image

pconv, args, work = sys.argv[1:4], sys.argv[4:7], sys.argv[7]
for device in ("cuda", "cpu"):
    out = f"{work}/rocket-{device}.png"
    subprocess.run([*pconv, "inpaint", *args, "-o", out, "--device", device, "--overwrite"],
                   check=True)
a, b = (np.asarray(Image.open(f"{work}/rocket-{d}.png")).astype(int) for d in ("cuda", "cpu"))
diff = int(np.abs(a - b).max())
print(f"max |cuda - cpu| = {diff} levels over {a.size} values")
sys.exit(diff > 8)
"""


@dataclass
class Step:
    """One check: ``command`` (argv) run from the repository root, at most ``timeout`` s.

    ``needs_gpus``: GPUs it needs (else it is reported n/a with ``why``);
    ``fallback``: the command to run instead when there are fewer GPUs.
    """

    name: str
    what: str
    command: list[str]
    timeout: float
    needs_gpus: int = 1
    fallback: list[str] | None = None
    why: str = ""


@dataclass
class Outcome:
    name: str
    status: str  # ok | FAIL | timeout | n/a | skipped
    seconds: float = 0.0
    note: str = ""
    log: str = ""
    command: list[str] = field(default_factory=list)


def steps(work: Path) -> list[Step]:
    """The checks, in order (``work``: a scratch folder for runs and outputs)."""
    demo = [*PCONV, "train", "--data", "examples/images", "--preset", "demo", "--steps", "40",
            "--save-every", "40", "--sample-every", "40", "--workers", "2"]  # fmt: skip
    rocket = ["examples/images/rocket.jpg", "--mask", "examples/masks/rocket.png"]
    probe = work / "nccl_probe.py"  # written by prepare()
    port = str(29400 + os.getpid() % 1000)
    return [
        Step("env", "nvidia-smi and torch's view of the GPUs",
             [PY, "-c", "import torch; print(torch.__version__, torch.version.cuda, "
              "[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], "
              "'bf16', torch.cuda.is_bf16_supported())"], 60),
        Step("cuda-tests", "the CUDA-marked tests", [PY, "-m", "pytest", "-q", "-m", "cuda",
             "-p", "no:cacheprovider", "tests"], 150),
        Step("train-cuda", "the demo training on one GPU (bf16, channels_last)",
             [*demo, "--out", str(work / "one"), "--device", "cuda", "--precision", "bf16",
              "--channels-last"], 90),
        Step("train-nccl-2proc", "the demo training in 2 NCCL processes (--gpus 2)",
             [*demo, "--out", str(work / "two"), "--gpus", "2"], 120, needs_gpus=2,
             fallback=[PY, str(probe), port],
             why="one GPU: NCCL may refuse two ranks on one device; probed with 2 ranks on "
                 "cuda:0"),
        Step("precision-pconv", "PConv U-Net step: fp32, channels_last, bf16, fp16, compile",
             [PY, "bench/bench_precision.py", "--device", "cuda", "--steps", "5"], 150),
        Step("precision-deepfill", "DeepFillv2 step: fp32, channels_last, bf16, fp16, compile",
             [PY, "bench/bench_precision.py", "--device", "cuda", "--steps", "5", "--arch",
              "deepfillv2"], 150),
        Step("bench-unet", "PConv U-Net vs plain U-Net vs dense-mask PConv on CUDA",
             [PY, "bench/bench_unet.py", "--device", "cuda", "--repeats", "10"], 90),
        Step("bench-deepfill", "DeepFillv2 inference 256-1024 and a training step on CUDA",
             [PY, "bench/bench_deepfill.py", "--device", "cuda", "--skip", "attention",
              "--sizes", "256", "512", "1024"], 120),
        Step("bench-padding", "partial vs zero padding (resnet50) on CUDA",
             [PY, "bench/bench_padding.py", "--device", "cuda", "--repeats", "5"], 90),
        Step("inpaint-cuda", "pconv inpaint on CUDA, compared with the CPU",
             [PY, "-c", _INPAINT, *PCONV, *rocket, str(work)], 90),
    ]  # fmt: skip


def prepare(work: Path) -> None:
    """Write the files the steps read into ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "nccl_probe.py").write_text(_NCCL_PROBE)


def _shown(command: Sequence[str]) -> str:
    return " ".join(
        "<script>" if i and command[i - 1] == "-c" else part for i, part in enumerate(command)
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:100] if lines else ""


def run_step(step: Step, timeout: float, log: Path, *, gpus: int) -> Outcome:
    """Run one step (its fallback when the machine has fewer GPUs); never raises."""
    command, note = step.command, ""
    if gpus < step.needs_gpus:
        if step.fallback is None:
            return Outcome(step.name, "n/a", note=step.why, command=command)
        command, note = step.fallback, f"{step.why}: "
    start = time.monotonic()
    process = None
    try:
        with log.open("w") as handle:
            handle.write("$ " + " ".join(command) + "\n")
            handle.flush()
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = process.wait(timeout=max(timeout, 1.0))
            except subprocess.TimeoutExpired:
                _kill_group(process)
                return Outcome(step.name, "timeout", time.monotonic() - start,
                               f"stopped after {timeout:.0f} s", str(log), command)  # fmt: skip
    except Exception as error:  # a step that cannot even start is reported, not raised
        return Outcome(step.name, "FAIL", time.monotonic() - start,
                       f"{type(error).__name__}: {error}", str(log), command)  # fmt: skip
    finally:
        if process is not None:
            _kill_group(process)  # nothing it started stays running
    seconds = time.monotonic() - start
    last = _last_line(log.read_text(errors="replace"))
    if gpus < step.needs_gpus and code != 0:  # the probe's refusal is a finding, not a failure
        return Outcome(step.name, "n/a", seconds, note + last, str(log), command)
    return Outcome(step.name, "ok" if code == 0 else "FAIL", seconds, note + last, str(log),
                   command)  # fmt: skip


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_all(
    plan: Sequence[Step],
    *,
    budget: float,
    logs: Path,
    gpus: int,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Every step of ``plan`` within ``budget`` seconds in all; later steps are skipped once
    it is spent. One step's failure or timeout never stops the others."""
    logs.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget
    outcomes = []
    for step in plan:
        left = deadline - time.monotonic()
        if left < 5:
            outcome = Outcome(step.name, "skipped", note="time budget spent", command=step.command)
        else:
            outcome = run_step(step, min(step.timeout, left), logs / f"{step.name}.log", gpus=gpus)
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes


def table(outcomes: Sequence[Outcome]) -> str:
    """The summary: one row per step."""
    width = max(len(o.name) for o in outcomes)
    rows = [f"{'step':<{width}}  {'status':<8} {'seconds':>7}  note", "-" * (width + 60)]
    for o in outcomes:
        rows.append(f"{o.name:<{width}}  {o.status:<8} {o.seconds:7.1f}  {o.note}")
    return "\n".join(rows)


def _gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="list the steps, run nothing")
    parser.add_argument("--only", default="", help="comma-separated step names")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds in all")
    parser.add_argument("--logs", type=Path, default=None, help="folder for the step logs")
    parser.add_argument("--json", type=Path, default=None, help="also write the outcomes here")
    args = parser.parse_args(argv)
    work = Path(tempfile.gettempdir()) / f"pconv-gpu-check-{os.getpid()}"
    plan = steps(work)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {s.name for s in plan})
        if unknown:
            parser.error(f"unknown step(s) {', '.join(unknown)}; see --dry-run")
        plan = [s for s in plan if s.name in wanted]
    if args.dry_run:
        for step in plan:
            print(f"{step.name}  ({step.timeout:.0f} s max, {step.needs_gpus} GPU): {step.what}")
            print("    " + _shown(step.command))
            if step.fallback:
                print(f"    with fewer GPUs: {step.why}")
        return 0
    gpus = _gpus()
    if gpus == 0:
        print("gpu_check: no CUDA GPU here; nothing run (--dry-run lists the steps)")
        return 2
    prepare(work)
    logs = args.logs or work / "logs"
    env_note = f"{gpus} GPU(s), budget {args.budget:.0f} s, logs in {logs}"
    print(f"gpu_check: {len(plan)} steps, {env_note}", flush=True)
    outcomes = run_all(plan, budget=args.budget, logs=logs, gpus=gpus,
                       on_outcome=lambda o: print(f"  {o.name}: {o.status} ({o.seconds:.0f} s)",
                                                  flush=True))  # fmt: skip
    print()
    print(table(outcomes))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return 0 if all(o.status in ("ok", "n/a") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
