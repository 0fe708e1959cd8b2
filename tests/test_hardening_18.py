"""Issue 18, items 5-6: nothing a user owns is destroyed, every bad input is one ``Error:`` line.

One table of bad commands, run against one workspace of inputs: each must exit with its code,
print exactly one ``Error`` line (no traceback) naming the problem, and leave every file of
the workspace byte-identical (nothing written, nothing half-written, no temporary left).
Then the cases a table cannot express: a full disk and a read-only folder (real ones where
this machine can mount a tmpfs, else the writer fails in-process), signals, stale
temporaries, valid inputs that were refused, and gen-masks' swap. Re-runnable: every case
builds what it needs under pytest's tmp_path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.models import build_model
from pconv_cli.weights import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EVAL_SET = ROOT / "masks" / "eval-256"


def _invoke(*args, cwd: Path | None = None):
    with contextlib.chdir(cwd) if cwd else contextlib.nullcontext():
        return CliRunner().invoke(app, [str(a) for a in args])


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: files by content, folders and others by kind."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            found[key] = "other"
        elif path.is_dir():
            found[key] = "folder"
        else:
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _one_error(result, code: int) -> str:
    text = result.output.strip()
    assert result.exit_code == code, (result.exit_code, text, result.exception)
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, text
    return errors[0]


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _hole(height: int, width: int) -> np.ndarray:
    hole = np.zeros((height, width), dtype=bool)
    hole[height // 4 : height // 2, width // 4 : width // 2] = True
    return hole


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """The inputs every case reads (never to be changed by any case)."""
    root = tmp_path_factory.mktemp("ws")
    (root / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(_rgb(48, 64, i)).save(root / "imgs" / f"p{i}.png")
    (root / "masks").mkdir()
    for i in (1, 2):
        save_mask(root / "masks" / f"m{i}.png", _hole(48, 64))
    (root / "allhole").mkdir()
    save_mask(root / "allhole" / "m.png", np.ones((48, 64), dtype=bool))
    (root / "preds").mkdir()
    for i in range(2):
        Image.fromarray(_rgb(48, 64, 10 + i)).save(root / "preds" / f"p{i}.png")
    save_checkpoint(root / "tiny.safetensors", build_model("pconv", layers=3, width=0.125),
                    size=32)  # fmt: skip
    save_checkpoint(root / "clf.safetensors", build_model("squeezenet1_1", num_classes=2),
                    size=32, classes='["class0", "class1"]')  # fmt: skip
    for label in ("class0", "class1"):
        (root / "cdata" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(_rgb(40, 40, i)).save(root / "cdata" / label / f"{i}.png")
    (root / "pairs.csv").write_text("image,mask\np0.png,m1.png\np1.png,m2.png\n")
    (root / "pairs_latin1.csv").write_bytes("image,mask\np0.png,m1.png # für\n".encode("latin-1"))
    (root / "pairs_escape.csv").write_text("image,mask,name\np0.png,m1.png,../../escaped\n")
    (root / "pairs_absolute.csv").write_text(f"image,mask,name\np0.png,m1.png,{root}/abs\n")
    (root / "file").write_text("a regular file")
    os.mkfifo(root / "fifo")
    Image.fromarray(_rgb(48, 64)).save(root / ("x" * 246 + ".png"))  # 250 characters
    (root / "folder.safetensors").mkdir()
    shutil.copy(root / "tiny.safetensors", root / "other.safetensors")
    return root


@dataclass(frozen=True)
class Case:
    """A bad command: ``args(ws)``, its exit ``code`` and words of its one Error line."""

    name: str
    args: Callable[[Path], list]
    code: int
    words: tuple[str, ...]
    cwd: Callable[[Path], Path] | None = None


W, IMGS, MASKS = "tiny.safetensors", "imgs", "masks"


def _eval(*more: str) -> Callable[[Path], list]:
    return lambda ws: ["eval", "--folder", ws / IMGS, "--masks", ws / MASKS,
                       *[str(m).replace("WS", str(ws)) for m in more]]  # fmt: skip


CASES = [
    # 5: nothing a user owns is destroyed ------------------------------------------------------
    Case("convert onto its own input",
         lambda ws: ["weights", "convert", ws / W, "-o", ws / W, "--half"], 2,
         ("is the input", "--overwrite")),
    Case("convert onto an existing -o",
         lambda ws: ["weights", "convert", ws / W, "-o", ws / "other.safetensors"], 2,
         ("exists; pass --overwrite",)),
    Case("convert to a .pth name", lambda ws: ["weights", "convert", ws / W, "-o", ws / "x.pth"],
         2, ("safetensors", "x.safetensors")),
    Case("eval --json onto an image", _eval("--method", "zeros", "--json", "WS/imgs/p0.png"), 2,
         ("--json", "an input of this run")),
    Case("eval --grid onto a mask", _eval("--method", "zeros", "--grid", "WS/masks/m1.png"), 2,
         ("--grid", "an input of this run")),
    Case("eval --grid into the image folder",
         _eval("--method", "zeros", "--grid", "WS/imgs/grid.png"), 2, ("inside",)),
    Case("eval --csv onto the pairing CSV",
         _eval("--method", "zeros", "--pairing", "WS/pairs.csv", "--csv", "WS/pairs.csv"), 2,
         ("--csv", "an input of this run")),
    Case("eval --json onto the weights", _eval("-w", "WS/tiny.safetensors", "--json",
                                               "WS/tiny.safetensors"), 2, ("an input",)),
    Case("eval --json onto a prediction",
         _eval("-p", "WS/preds", "--json", "WS/preds/p1.png"), 2, ("an input",)),
    Case("eval pair name ../../escaped",
         _eval("--method", "zeros", "--pairing", "WS/pairs_escape.csv", "--save-outputs",
               "WS/out"), 1, ("'../../escaped'", "relative path")),
    Case("eval pair name absolute",
         _eval("--method", "zeros", "--pairing", "WS/pairs_absolute.csv", "--save-outputs",
               "WS/out"), 1, ("relative path",)),
    Case("eval --save-outputs over the --predictions read",
         lambda ws: ["eval", "--folder", ws / IMGS, "--masks", ws / MASKS, "-p", ws / "preds",
                     "--save-outputs", "."], 2, ("--save-outputs", "preds"), cwd=lambda ws: ws),
    Case("eval --save-outputs into the image folder",
         _eval("--method", "zeros", "--save-outputs", "WS/imgs/out"), 2, ("inside",)),
    Case("classify eval --json onto an image",
         lambda ws: ["classify", "eval", "-w", ws / "clf.safetensors", "--data", ws / "cdata",
                     "--json", ws / "cdata" / "class0" / "0.png"], 2, ("an input of this run",)),
    Case("classify eval --json onto the weights",
         lambda ws: ["classify", "eval", "-w", ws / "clf.safetensors", "--data", ws / "cdata",
                     "--json", ws / "clf.safetensors"], 2, ("an input",)),
    Case("train --out = --data",
         lambda ws: ["train", "--data", ws / IMGS, "--out", ws / IMGS], 2,
         ("is the training data folder",)),
    Case("train --out inside --data",
         lambda ws: ["train", "--data", ws / IMGS, "--out", ws / IMGS / "run"], 2, ("overlaps",)),
    Case("train --data inside --out",
         lambda ws: ["train", "--data", ws / IMGS, "--out", ws], 2, ("overlaps",)),
    # 6: one Error line for every bad input ----------------------------------------------------
    Case("convert onto a folder",
         lambda ws: ["weights", "convert", ws / W, "-o", ws / "folder.safetensors"], 2,
         ("is a folder",)),
    Case("convert under a regular file",
         lambda ws: ["weights", "convert", ws / W, "-o", ws / "file" / "x.safetensors"], 2,
         ("is not a folder",)),
    Case("eval --save-outputs onto a file", _eval("--method", "zeros", "--save-outputs",
                                                  "WS/file"), 2, ("not a folder",)),
    Case("classify eval --json onto a folder",
         lambda ws: ["classify", "eval", "-w", ws / "clf.safetensors", "--data", ws / "cdata",
                     "--json", ws / "imgs"], 2, ("is a folder",)),
    Case("train --out /dev/null/run", lambda ws: ["train", "--data", ws / IMGS, "--out",
                                                  "/dev/null/run"], 2, ("not a folder",)),
    Case("train --out an existing file",
         lambda ws: ["train", "--data", ws / IMGS, "--out", ws / "file"], 2, ("not a folder",)),
    Case("inpaint a FIFO", lambda ws: ["inpaint", ws / "fifo", "--mask", ws / MASKS / "m1.png",
                                       "-w", ws / W], 2, ("neither a file nor a folder",)),
    Case("inpaint with a FIFO mask",
         lambda ws: ["inpaint", ws / IMGS / "p0.png", "--mask", ws / "fifo", "-w", ws / W], 2,
         ("neither a file nor a folder",)),
    Case("inpaint a 250-character name without -o",
         lambda ws: ["inpaint", ws / ("x" * 246 + ".png"), "--mask", ws / MASKS / "m1.png",
                     "-w", ws / W], 2, ("file name is", "pass -o")),
    Case("inpaint with a classifier",
         lambda ws: ["inpaint", ws / IMGS / "p0.png", "--mask", ws / MASKS / "m1.png", "-w",
                     ws / "clf.safetensors", "-o", ws / "o.png"], 1,
         ("holds a squeezenet1_1 model (classification)", "not an inpainting model")),
    Case("eval with a classifier", _eval("-w", "WS/clf.safetensors"), 1,
         ("holds a squeezenet1_1 model (classification)",)),
    Case("classify eval with an inpainting model",
         lambda ws: ["classify", "eval", "-w", ws / W, "--data", ws / "cdata"], 1,
         ("holds a pconv_unet model (inpainting)", "not a classifier")),
    Case("serve with a classifier", lambda ws: ["serve", "-w", ws / "clf.safetensors"], 1,
         ("(classification)",)),
    Case("eval with a non-UTF-8 pairing CSV",
         _eval("--method", "zeros", "--pairing", "WS/pairs_latin1.csv"), 1, ("not UTF-8",)),
    Case("eval --masks a non-UTF-8 manifest", lambda ws: ["eval", "--folder", ws / IMGS, "--masks",
                                                         ws / "pairs_latin1.csv", "--method",
                                                         "zeros"], 1, ("not UTF-8",)),
    Case("gen-masks --size 100000", lambda ws: ["gen-masks", ws / "big", "--size", "100000"], 2,
         ("too large", "8192x8192")),
    # found by the adversarial pass ------------------------------------------------------------
    Case("eval --json and --csv onto one file",
         _eval("--method", "zeros", "--json", "WS/r.out", "--csv", "WS/r.out"), 2,
         ("different paths",)),
    Case("eval --grid that is not a PNG", _eval("--method", "zeros", "--grid", "WS/g.txt"), 2,
         ("g.png",)),
    Case("gen-masks --count 10**9 (its plan alone would fill the memory)",
         lambda ws: ["gen-masks", ws / "huge", "--count", "1000000000"], 2, ("at most",)),
    Case("gen-masks --overwrite of the folder it runs in",
         lambda ws: ["gen-masks", ".", "-n", "1", "--size", "32", "--overwrite"], 1,
         ("holds the current folder",), cwd=lambda ws: ws / "masks"),
    Case("inpaint -o the folder of the input (the input itself)",
         lambda ws: ["inpaint", ws / IMGS / "p0.png", "--mask", ws / MASKS / "m1.png", "-w",
                     ws / W, "-o", ws / IMGS], 2, ("is the input image",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_error_line_and_touches_nothing(ws, case):
    before = _snapshot(ws)
    result = _invoke(*case.args(ws), cwd=case.cwd(ws) if case.cwd else None)
    error = _one_error(result, case.code)
    for word in case.words:
        assert word in error, error
    assert _snapshot(ws) == before


# --------------------------------------------------------------------- a full disk, read-only


def _mount(folder: Path, options: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "pconv-test", str(folder)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


def _fill(folder: Path) -> None:
    """Use up every free byte of the file system of ``folder``."""
    with (folder / "filler").open("wb", buffering=0) as handle:
        for block in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(block)


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a full disk, with ``previous`` files copied in first: a real tmpfs when this
    machine lets the tests mount one; else every pconv temp file fails to land with ENOSPC."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = _mount(folder, "size=4m")

    def fill(previous: dict[str, Path]) -> None:
        for name, source in previous.items():
            target = folder / name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)
        if mounted:
            _fill(folder)
            return
        real = os.replace

        def no_space(src, dst, *args, **kwargs):
            if ".tmp" in str(src) or str(src).endswith(".new"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", no_space)
        monkeypatch.setattr(os, "rename", no_space)

    yield folder, fill
    if mounted:
        monkeypatch.undo()
        subprocess.run(["umount", str(folder)], check=False)


def _no_temporaries(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".new", ".old"))]
    assert not left, left


def test_full_disk_leaves_previous_files_intact(ws, full_disk, tmp_path):
    folder, fill = full_disk
    assert _invoke("gen-masks", tmp_path / "set", "-n", "2", "--size", "32").exit_code == 0
    fill({"w.safetensors": ws / "other.safetensors", "r.json": ws / "file",
          "out.png": ws / "preds" / "p0.png", "set": tmp_path / "set"})  # fmt: skip
    before = _snapshot(folder)
    cases = [
        ["weights", "convert", ws / W, "-o", folder / "w.safetensors", "--half", "--overwrite"],
        ["classify", "eval", "-w", ws / "clf.safetensors", "--data", ws / "cdata", "--json",
         folder / "r.json"],
        ["eval", "--folder", ws / IMGS, "--masks", ws / MASKS, "--method", "zeros", "--json",
         folder / "r.json"],
        ["eval", "--folder", ws / IMGS, "--masks", ws / MASKS, "--method", "zeros",
         "--save-outputs", folder / "saved"],
        ["inpaint", ws / IMGS / "p0.png", "--mask", ws / MASKS / "m1.png", "-w", ws / W, "-o",
         folder / "out.png", "--overwrite"],
        ["gen-masks", folder / "set", "-n", "3", "--size", "32", "--seed", "1", "--overwrite"],
    ]  # fmt: skip
    for args in cases:
        error = _one_error(_invoke(*args), 1)
        assert "No space left" in error or "cannot write" in error, (args[0], error)
        _no_temporaries(folder)
        now = _snapshot(folder)
        assert {k: v for k, v in now.items() if k in before} == before, args[0]
        assert set(now) - set(before) <= {"saved", "saved/zeros"}, set(now) - set(before)


@pytest.fixture
def read_only(tmp_path):
    """A folder that cannot be written, holding ``previous.txt``; root ignores permission
    bits, so there a read-only tmpfs is mounted (skipped where neither works)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        (folder / "previous.txt").write_text("mine")
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not _mount(folder, "size=1m"):
        pytest.skip("running as root without mount: no folder is read-only")
    (folder / "previous.txt").write_text("mine")
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_read_only_folders_are_one_error_line(ws, read_only):
    before = _snapshot(read_only)
    cases = [
        ["weights", "convert", ws / W, "-o", read_only / "w.safetensors"],
        ["eval", "--folder", ws / IMGS, "--masks", ws / MASKS, "--method", "zeros",
         "--save-outputs", read_only / "out"],
        ["eval", "--folder", ws / IMGS, "--masks", ws / MASKS, "--method", "zeros", "--json",
         read_only / "r.json"],
        ["classify", "eval", "-w", ws / "clf.safetensors", "--data", ws / "cdata", "--json",
         read_only / "r.json"],
        ["inpaint", ws / IMGS / "p0.png", "--mask", ws / MASKS / "m1.png", "-w", ws / W, "-o",
         read_only / "o.png"],
        ["inpaint", ws / IMGS, "--mask", ws / MASKS / "m1.png", "-w", ws / W, "-o",
         read_only / "outs"],
        ["gen-masks", read_only / "set", "-n", "2", "--size", "32"],
        ["train", "--data", ws / IMGS, "--out", read_only / "run"],
    ]  # fmt: skip
    for args in cases:
        error = _one_error(_invoke(*args), 2)
        assert "cannot write in" in error, (args[0], error)
        assert _snapshot(read_only) == before


# --------------------------------------------------------------------- checks before the model


def test_inpaint_checks_its_outputs_before_torch_is_imported(ws):
    script = (
        "import sys\nfrom pconv_cli.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print('torch' in sys.modules, code)\n"
    )
    args = ["inpaint", ws / IMGS / "p0.png", "--mask", ws / MASKS / "m1.png", "-w", ws / W,
            "-o", ws / IMGS / "p1.png"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert "exists; pass --overwrite" in done.stderr
    assert done.stdout.split() == ["False", "2"]


def test_classify_leaves_nothing_in_tmpdir(ws, tmp_path):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "pconv_cli", "classify", "eval", "-w", str(ws / "clf.safetensors"),
         "--data", str(ws / "cdata"), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(tmpdir.iterdir()) == []  # torchvision's import made torchinductor_<user> here


# --------------------------------------------------------------------- signals, stale temporaries


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_start(ws, tmp_path):
    out = tmp_path / "outs"
    out.mkdir()
    dead, alive = _dead_pid(), os.getpid()
    stale = out / f".p0.png.{dead}.abcd1234.tmp"
    running = out / f".p1.png.{alive}.abcd1234.tmp"  # a writer that still runs
    foreign = out / ".p0.png.tmp"  # not of pconv's naming
    for path in (stale, running, foreign):
        path.write_bytes(b"half")
    result = _invoke("inpaint", ws / IMGS, "--mask", ws / MASKS / "m1.png", "-w", ws / W,
                     "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not stale.exists() and running.exists() and foreign.exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "p0.png", "p1.png"]  # fmt: skip


def _wait_for(condition, limit: float = 120.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_sigterm_during_a_folder_inpaint_is_ctrl_c(ws, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.fromarray(_rgb(384, 512, i)).save(photos / f"{i:02d}.png")
    out = tmp_path / "outs"
    process = subprocess.Popen(
        [sys.executable, "-m", "pconv_cli", "inpaint", str(photos), "--mask",
         str(ws / MASKS / "m1.png"), "-w", str(ws / W), "-o", str(out), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(lambda: (out.is_dir() and any(out.iterdir())) or process.poll() is not None)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (130, 0), stderr  # 0: it had finished before the signal
    assert "Traceback" not in stderr
    if process.returncode == 130:
        assert "Interrupted" in stderr
    _no_temporaries(out)


def test_sigterm_during_gen_masks_leaves_the_old_set(tmp_path):
    out = tmp_path / "set"
    assert _invoke("gen-masks", out, "-n", "3", "--size", "32").exit_code == 0
    before = _snapshot(out)
    process = subprocess.Popen(
        [sys.executable, "-m", "pconv_cli", "gen-masks", str(out), "-n", "5000", "--size", "256",
         "--overwrite"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(lambda: any(p.name.endswith(".new") for p in tmp_path.iterdir())
              or process.poll() is not None)  # fmt: skip
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "Error: interrupted by SIGTERM; stopped cleanly, no partial file left"
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


# --------------------------------------------------------------------- gen-masks --overwrite


def test_failed_gen_masks_overwrite_keeps_the_old_set(tmp_path, monkeypatch):
    from pconv_cli.data import mask_sets
    from pconv_cli.data.masks import MaskError

    out = tmp_path / "set"
    assert _invoke("gen-masks", out, "-n", "4", "--size", "32").exit_code == 0
    (out / "mine.txt").write_text("a note of the user")
    before = _snapshot(out)
    calls, real = [], mask_sets.generate_mask

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MaskError("simulated failure on the third mask")
        return real(*args, **kwargs)

    monkeypatch.setattr(mask_sets, "generate_mask", flaky)
    result = _invoke("gen-masks", out, "-n", "4", "--size", "32", "--seed", "7", "--overwrite")
    assert "simulated failure" in _one_error(result, 1)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    monkeypatch.undo()
    result = _invoke("gen-masks", out, "-n", "4", "--size", "32", "--seed", "7", "--overwrite")
    assert result.exit_code == 0, result.output
    after = _snapshot(out)
    assert after["mine.txt"] == before["mine.txt"] and after["00000.png"] != before["00000.png"]


def test_interrupted_swap_is_undone_on_the_next_start(tmp_path):
    from pconv_cli.data.mask_sets import recover_mask_set
    from pconv_cli.files import temporary_prefix

    out = tmp_path / "set"
    assert _invoke("gen-masks", out, "-n", "2", "--size", "32").exit_code == 0
    before = _snapshot(out)
    dead = _dead_pid()
    aside = tmp_path / (temporary_prefix(out).replace(f".{os.getpid()}.", f".{dead}.")
                        + "0a1b2c3d.old")  # fmt: skip
    out.rename(aside)  # killed between the two renames of the swap
    unfinished = tmp_path / (temporary_prefix(out).replace(f".{os.getpid()}.", f".{dead}.")
                             + "9f8e7d6c.new")  # fmt: skip
    unfinished.mkdir()
    recover_mask_set(out)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_readme_eval_set_regeneration_over_the_shipped_set_is_byte_identical(tmp_path):
    """The README's command, as written, over a copy of the shipped set (the swap path)."""
    import shlex

    command = ("pconv gen-masks masks/eval-256 --nvidia-buckets --count 10 --size 256 "
               "--kind irregular --seed 0 --overwrite")  # fmt: skip
    assert command in (ROOT / "README.md").read_text()
    shutil.copytree(EVAL_SET, tmp_path / "masks" / "eval-256")
    before = _snapshot(tmp_path / "masks" / "eval-256")
    result = _invoke(*shlex.split(command)[1:], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert _snapshot(tmp_path / "masks" / "eval-256") == before
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["eval-256"]


# --------------------------------------------------------------------- valid inputs, accepted


def test_valid_inputs_that_were_refused(ws, tmp_path):
    mask = ws / MASKS / "m1.png"
    hole = _hole(48, 64)
    # an LA PNG written as BMP
    la = tmp_path / "la.png"
    Image.fromarray(np.dstack([_rgb(48, 64)[..., 0], np.full((48, 64), 200, np.uint8)]),
                    "LA").save(la)  # fmt: skip
    result = _invoke("inpaint", la, "--mask", mask, "-w", ws / W, "-o", tmp_path / "la.bmp")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "la.bmp").size == (64, 48)
    # a 16-bit grey mask reads as its 8-bit twin
    deep = tmp_path / "m16.png"
    Image.fromarray(np.where(hole, 65535, 0).astype(np.uint16)).save(deep)
    for name, mask_file in (("a.png", mask), ("b.png", deep)):
        result = _invoke("inpaint", ws / IMGS / "p0.png", "--mask", mask_file, "-w", ws / W,
                         "-o", tmp_path / name)  # fmt: skip
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # a JPEG-saved binary mask: quiet, and the same holes
    jpeg_mask = tmp_path / "m.jpg"
    Image.fromarray(np.where(hole, 255, 0).astype(np.uint8)).save(jpeg_mask, quality=90)
    result = _invoke("inpaint", ws / IMGS / "p0.png", "--mask", jpeg_mask, "-w", ws / W, "-o",
                     tmp_path / "c.png")  # fmt: skip
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "c.png").read_bytes()
    # a PNG with 70 KB of EXIF written as JPEG: written without it, and told
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000  # ImageDescription
    big = tmp_path / "exif.png"
    Image.fromarray(_rgb(48, 64)).save(big, exif=exif.tobytes())
    result = _invoke("inpaint", big, "--mask", mask, "-w", ws / W, "-o", tmp_path / "e.jpg")
    assert result.exit_code == 0, result.output
    assert "EXIF" in result.output and Image.open(tmp_path / "e.jpg").format == "JPEG"
    # `inpaint .`: the folder it is run in
    work = tmp_path / "here"
    shutil.copytree(ws / IMGS, work)
    result = _invoke("inpaint", ".", "--mask", mask, "-w", ws / W, cwd=work)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "here_inpainted").iterdir()) == ["p0.png", "p1.png"]
    # biharmonic with an all-hole mask: black, as mean and zeros give (was a ValueError)
    result = _invoke("eval", "--folder", ws / IMGS, "--masks", ws / "allhole", "--method",
                     "biharmonic", "--method", "zeros", "--json", tmp_path / "b.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "b.json").read_text())["sources"]
    assert scores["biharmonic"]["summary"] == scores["zeros"]["summary"]
    # eval --masks with one mask file
    result = _invoke("eval", "--folder", ws / IMGS, "--masks", mask, "--method", "zeros")
    assert result.exit_code == 0 and "2 pairs" in result.output, result.output


def test_every_model_pass_stays_under_max_pass_pixels():
    """The library bound behind serve's memory limit: full, crop and resize, on an all-hole
    image four times the budget, with a model that records what it is given."""
    import torch

    from pconv_cli.inpainting import inpaint_image

    sizes: list[int] = []

    class Recorder(torch.nn.Module):
        def forward(self, image, mask):
            sizes.append(image.shape[-2] * image.shape[-1])
            return torch.full_like(image, 0.5)

    image = _rgb(200, 300)
    for strategy in ("full", "crop", "resize", "auto"):
        sizes.clear()
        result = inpaint_image(Recorder(), image, np.ones((200, 300), bool), strategy=strategy,
                               min_window=64, max_pass_pixels=15_000)  # fmt: skip
        assert sizes and max(sizes) <= 15_000, (strategy, sizes)
        assert result.image.shape == image.shape
        assert (result.image == 128).mean() > 0.99  # the (upscaled) fill covers the image
    sizes.clear()
    inpaint_image(Recorder(), image, np.ones((200, 300), bool), strategy="full")
    assert sizes == [60_000]  # no bound: one pass at full size


def test_image_io_unit_cases(tmp_path):
    """The image layer behind the valid-input cases, without a model."""
    import warnings

    from pconv_cli.data.images import ImageMetadataWarning, load_image, output_image, save_image
    from pconv_cli.data.masks import load_mask

    la = tmp_path / "la.png"
    Image.fromarray(np.zeros((8, 8, 2), np.uint8), "LA").save(la)
    loaded = load_image(la)
    hole = np.zeros((8, 8), bool)
    save_image(tmp_path / "la.bmp", output_image(loaded, loaded.rgb, hole, "BMP"), loaded,
               file_format="BMP")  # fmt: skip
    exif = Image.Exif()
    exif[0x010E] = "y" * 70_000
    Image.new("RGB", (8, 8)).save(tmp_path / "e.png", exif=exif.tobytes())
    loaded = load_image(tmp_path / "e.png")
    with pytest.warns(ImageMetadataWarning, match="EXIF"):
        save_image(tmp_path / "e.jpg", output_image(loaded, loaded.rgb, hole, "JPEG"), loaded,
                   file_format="JPEG")  # fmt: skip
    for mode, white in (("I;16", 65535), ("I", 65535)):
        array = np.zeros((8, 8), np.uint16 if mode == "I;16" else np.int32)
        array[2:4, 2:4] = white
        name = tmp_path / ("m.png" if mode == "I;16" else "m.tif")  # PNG cannot hold mode I
        Image.fromarray(array).save(name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert load_mask(name).sum() == 4
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (8, 1))).save(buffer, "PNG")
    (tmp_path / "grey.png").write_bytes(buffer.getvalue())
    with pytest.warns(UserWarning, match="neither black nor white"):
        load_mask(tmp_path / "grey.png")  # a real gradient still warns
