"""``bench/gpu_check.py`` without a GPU: the steps it lists, and a runner that reports every
failure and timeout without stopping, kills what a step started, and keeps to its budget."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_check  # noqa: E402

STEPS = ["env", "cuda-tests", "train-cuda", "train-nccl-2proc", "precision-pconv",
         "precision-deepfill", "bench-unet", "bench-deepfill", "bench-padding",
         "inpaint-cuda"]  # fmt: skip


def test_dry_run_lists_every_cuda_path_as_the_readme_shows():
    assert "python bench/gpu_check.py --dry-run" in (ROOT / "README.md").read_text()
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert listed == STEPS
    for words in ("-m cuda", "--gpus 2", "--arch deepfillv2", "bench_unet.py --device cuda",
                  "bench_deepfill.py --device cuda", "bench_padding.py --device cuda"):  # fmt: skip
        assert words in done.stdout, words
    assert sum(step.timeout for step in gpu_check.steps(Path("w"))) >= gpu_check.DEFAULT_BUDGET


@pytest.mark.skipif(gpu_check._gpus() > 0, reason="checks the machine without a GPU")
def test_without_a_gpu_it_runs_nothing_and_says_so():
    done = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "no CUDA GPU" in done.stdout


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _alive(pid: int) -> bool:
    """Running (a killed process whose new parent has not reaped it yet is a zombie: dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def test_every_step_is_reported_and_none_stops_the_others(tmp_path):
    grandchild = tmp_path / "grandchild.pid"
    plan = [
        gpu_check.Step("fine", "", _python("print('all good')"), 60),
        gpu_check.Step("broken", "", _python("import sys; print('bad news'); sys.exit(3)"), 60),
        gpu_check.Step("hangs", "", _python(
            "import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            f"open({str(grandchild)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(600)"), 3),
        gpu_check.Step("missing", "", ["/nonexistent/program"], 60),
        gpu_check.Step("two-gpus", "", _python("print('x')"), 60, needs_gpus=2, why="one GPU"),
        gpu_check.Step("probe", "", _python("print('x')"), 60, needs_gpus=2,
                       fallback=_python("import sys; print('refused'); sys.exit(1)"),
                       why="one GPU: probed"),
        gpu_check.Step("after", "", _python("print('still runs')"), 60),
    ]  # fmt: skip
    seen = []
    outcomes = gpu_check.run_all(plan, budget=300, logs=tmp_path / "logs", gpus=1,
                                 on_outcome=seen.append)  # fmt: skip
    status = {o.name: o.status for o in outcomes}
    assert status == {"fine": "ok", "broken": "FAIL", "hangs": "timeout", "missing": "FAIL",
                      "two-gpus": "n/a", "probe": "n/a", "after": "ok"}  # fmt: skip
    assert seen == outcomes
    notes = {o.name: o.note for o in outcomes}
    assert notes["broken"] == "bad news" and notes["after"] == "still runs"
    assert notes["probe"] == "one GPU: probed: refused"
    pid = int(grandchild.read_text())
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:  # (a readiness wait, not a timing test)
        time.sleep(0.05)
    assert not _alive(pid)  # the whole process group of the step was killed
    text = gpu_check.table(outcomes)
    assert all(name in text for name in status)


def test_the_budget_skips_what_no_longer_fits(tmp_path):
    plan = [gpu_check.Step("slow", "", _python("import time; time.sleep(600)"), 600),
            gpu_check.Step("next", "", _python("print(1)"), 60)]  # fmt: skip
    outcomes = gpu_check.run_all(plan, budget=6, logs=tmp_path, gpus=1)
    assert [o.status for o in outcomes] == ["timeout", "skipped"]
