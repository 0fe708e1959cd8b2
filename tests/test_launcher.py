"""Multi-process training as users run it: the README's command with default options, SIGTERM,
a neighbour on the same machine, and nothing left running afterwards (checked by session)."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pconv_cli.weights import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PCONV = [sys.executable, "-m", "pconv_cli"]


def _readme_command(pattern: str) -> list[str]:
    """The README's command line matching ``pattern`` (as a user would paste it)."""
    for line in README.splitlines():
        line = line.strip()
        if line.startswith("pconv ") and re.search(pattern, line):
            return shlex.split(line.split("#")[0])
    raise AssertionError(f"no README command matches {pattern!r}")


def session_processes(sid: int) -> list[int]:
    """Every live process whose session id is ``sid`` (what a launcher must leave empty)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            found.append(int(entry.name))
    return found


def _assert_session_empty(sid: int) -> None:
    deadline = time.monotonic() + 10
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(sid) == [], "processes of the run are still alive"


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*PCONV, *args[1:]], cwd=cwd, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _logged_step(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line]
    return max(steps, default=0)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory where the README's relative paths (examples/images) exist."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    return tmp_path


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_readme_multiprocess_command_sigterm_resume(workdir: Path):
    """The README's 2-process CPU command as written (default --workers), stopped by SIGTERM:
    every rank stops at one step, one checkpoint, exit 130 with one line, nothing left running;
    --resume continues it to the same weights as a straight run."""
    command = _readme_command(r"--nproc 2")
    assert "--workers" not in command
    out = Path(command[command.index("--out") + 1])
    process = _start(command, workdir)
    deadline = time.monotonic() + 600
    while _logged_step(workdir / out) < 10 and process.poll() is None:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1][-2000:]
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()
    stop_lines = [line for line in last if "stopped by SIGTERM at step" in line]
    assert len(stop_lines) == 1, stderr[-2000:]
    stopped_at = int(re.search(r"at step (\d+)", stop_lines[0]).group(1))
    assert stopped_at >= 10
    _assert_session_empty(process.pid)
    checkpoints = sorted((workdir / out / "checkpoints").glob("step-*.safetensors"))
    assert [p.name for p in checkpoints][-1] == f"step-{stopped_at:08d}.safetensors"
    assert not list((workdir / out).rglob("*.tmp*"))

    target = stopped_at + 2
    resumed = _start(["pconv", "train", "--out", str(out), "--resume", "--steps", str(target)],
                     workdir)  # fmt: skip
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-2000:]
    _assert_session_empty(resumed.pid)

    straight = [*command[: command.index("--out") + 1], "straight", *command[command.index("--out")
                + 2 :], "--steps", str(target), "--workers", "0"]  # fmt: skip
    reference = _start(straight, workdir)
    _, stderr = reference.communicate(timeout=600)
    assert reference.returncode == 0, stderr[-2000:]
    a = read_checkpoint(workdir / out / "last.safetensors").net_state()
    b = read_checkpoint(workdir / "straight" / "last.safetensors").net_state()
    for key in b:
        assert torch.equal(a[key], b[key]), key


def _launch_and_fail() -> None:
    from test_launcher import fail_on_rank_one

    from pconv_cli.train.distributed import LaunchError, launch

    try:
        launch(fail_on_rank_one, ("disk on fire",), processes=2)
    except LaunchError as exc:
        print(exc)
        raise SystemExit(3) from None


def fail_on_rank_one(message: str) -> str:
    """Rank 1 fails; rank 0 starts a data loader process, then blocks in a collective."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    if os.environ["RANK"] == "1":
        time.sleep(1)
        raise RuntimeError(message)
    loader = iter(DataLoader(list(range(100)), num_workers=1, persistent_workers=True))
    next(loader)
    dist.init_process_group("gloo")
    dist.barrier()
    return "unreachable"


def test_a_failing_rank_leaves_nothing_running(tmp_path: Path):
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); from test_launcher import _launch_and_fail; "
    code += "_launch_and_fail()"
    process = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 3, stderr[-2000:]
    assert stdout.strip() == "worker rank 1 failed: disk on fire"
    _assert_session_empty(process.pid)


TINY = ["--layers", "4", "--width", "0.125", "--size", "32", "--batch", "2",
        "--vgg-weights", "none", "--device", "cpu", "--nproc", "2", "--steps", "3",
        "--data", str(REPO / "examples" / "images")]  # fmt: skip


def test_two_runs_started_together_both_finish(tmp_path: Path):
    runs = [_start(["pconv", "train", "--out", f"run{k}", *TINY], tmp_path) for k in range(2)]
    for process in runs:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
        _assert_session_empty(process.pid)
    for k in range(2):
        assert (tmp_path / f"run{k}" / "last.safetensors").is_file()


def test_single_process_sigterm_stops_at_a_step_and_saves(tmp_path: Path):
    args = ["pconv", "train", "--out", "run", *TINY[:-6], "--steps", "10000", "--log-every", "1",
            "--data", str(REPO / "examples" / "images")]  # fmt: skip
    process = _start(args, tmp_path)
    while _logged_step(tmp_path / "run") < 3:
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    step = int(re.search(r"stopped by SIGTERM at step (\d+)", stderr).group(1))
    assert (tmp_path / "run" / "checkpoints" / f"step-{step:08d}.state.pt").is_file()
    _assert_session_empty(process.pid)


@pytest.mark.parametrize("arch", ["pconv_unet", "deepfillv2", "classify"])
def test_what_data_loader_processes_receive_pickles(tmp_path: Path, arch: str):
    """Whatever the start method, a data loader process gets the dataset and the collate
    function pickled: neither may drag along the task or the progress display (a lock)."""
    import threading

    from pconv_cli.models import build_model
    from pconv_cli.train import resolve_config
    from pconv_cli.train.tasks import get_task

    if arch == "classify":
        data = tmp_path / "data"
        from PIL import Image

        for split in ("train", "val"):
            for label in ("a", "b"):
                (data / split / label).mkdir(parents=True)
                Image.new("RGB", (20, 20), (9, 9, 9)).save(data / split / label / "0.png")
        config = resolve_config({"arch": "resnet18", "data": str(data), "out": "x",
                                 "model": {"num_classes": 2}})  # fmt: skip
    else:
        options = {"layers": 4, "width": 0.125} if arch == "pconv_unet" else {"width": 0.25}
        config = resolve_config({"arch": arch, "data": str(REPO / "examples" / "images"),
                                 "out": "x", "model": options, "vgg_weights": "none"})
    from pconv_cli.models.registry import get_family

    lock = threading.RLock()
    family = get_family(config.arch)
    model = build_model(family.name, **config.model)
    task = get_task(family.task)(config, model, device=torch.device("cpu"),
                                 log=lambda text, lock=lock: None)  # fmt: skip
    dataset = task.dataset()
    restored = pickle.loads(pickle.dumps(dataset))
    batch = pickle.loads(pickle.dumps(task.collate))([restored[(0, 0)], restored[(0, 1)]])
    assert len(batch) > 0


def test_killed_launcher_leaves_no_rank_training(tmp_path: Path):
    """SIGKILL to the launcher (no chance to clean up): its ranks learn from the kernel that
    their parent died, stop at a step boundary, save, and exit; the session empties."""
    args = ["pconv", "train", "--out", "run", *TINY[:-6], "--steps", "10000", "--log-every", "1",
            "--nproc", "2", "--data", str(REPO / "examples" / "images")]  # fmt: skip
    process = _start(args, tmp_path)
    while _logged_step(tmp_path / "run") < 2:
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.1)
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 120
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_processes(process.pid) == []
    assert list((tmp_path / "run" / "checkpoints").glob("step-*.state.pt"))


def test_one_run_per_out_folder(tmp_path: Path):
    """A second run on the same --out fails at once with one line; the first finishes."""
    args = ["pconv", "train", "--out", "run", *TINY[:-6], "--steps", "10000", "--log-every", "1",
            "--data", str(REPO / "examples" / "images")]  # fmt: skip
    first = _start(args, tmp_path)
    while _logged_step(tmp_path / "run") < 1:
        assert first.poll() is None, first.communicate()[1][-2000:]
        time.sleep(0.1)
    second = _start([*args[:-6], "--steps", "3", "--data", str(REPO / "examples" / "images")],
                    tmp_path)  # fmt: skip
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 1
    assert f"is being written by another pconv run (pid {first.pid})" in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("Error")]) == 1
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=300)
    assert first.returncode == 130


def test_deepfill_and_classify_train_on_two_processes_with_default_workers(tmp_path: Path):
    """Every family's task under the launcher with the default --workers (not 0)."""
    from PIL import Image

    deepfill = ["pconv", "train", "--arch", "deepfillv2", "--preset", "demo", "--device", "cpu",
                "--nproc", "2", "--steps", "2", "--size", "64", "--out", "df",
                "--data", str(REPO / "examples" / "images")]  # fmt: skip
    data = tmp_path / "crops"
    for split in ("train", "val"):
        for k, label in enumerate(("a", "b")):
            (data / split / label).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (40, 40), (60 * k + i, 20, 200 - 60 * k)).save(
                    data / split / label / f"{i}.png"
                )
    classify = ["pconv", "classify", "train", "--arch", "pd_resnet18", "--preset", "demo",
                "--device", "cpu", "--nproc", "2", "--epochs", "1", "--data", str(data),
                "--out", "cls"]  # fmt: skip
    for args in (deepfill, classify):
        process = _start(args, tmp_path)
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
        _assert_session_empty(process.pid)
    assert (tmp_path / "df" / "last.safetensors").is_file()
    assert (tmp_path / "cls" / "last.safetensors").is_file()
