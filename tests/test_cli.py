import subprocess
import sys
from pathlib import Path

import pytest

import pconv_cli

NO_TORCH = """
import runpy, sys
sys.argv = ["pconv", *{args!r}]
try:
    runpy.run_module("pconv_cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "torchvision", "skimage", "scipy", "numpy") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
sys.exit(code or 0)
"""


def _run_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH.format(args=list(args))],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args", [("--help",), ("--version",), (), ("train", "--help"), ("finetune", "--help")]
)
def test_cli_entry_does_not_import_torch(args):
    result = _run_without_torch(*args)
    assert result.returncode in (0, 1, 2), result.stderr  # `pconv` alone prints help
    assert "Usage" in result.stdout or "pconv" in result.stdout
    assert result.stdout.splitlines()[-1] == "HEAVY:", result.stdout


def test_version_matches_package():
    result = subprocess.run(
        [sys.executable, "-m", "pconv_cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"pconv {pconv_cli.__version__}"


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("pconv")
    assert script.exists(), "pip install -e . should create the pconv console script"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "Usage" in result.stdout and "pconv" in result.stdout


def test_unknown_command_fails_cleanly():
    result = subprocess.run(
        [sys.executable, "-m", "pconv_cli", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
