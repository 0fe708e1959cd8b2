"""``pconv gen-masks``: files, manifest, NVIDIA bucket layout, determinism, errors, no torch."""

from __future__ import annotations

import csv
import hashlib
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]
EVAL_SET = ROOT / "masks" / "eval-256"
EVAL_COMMAND = (
    "pconv gen-masks masks/eval-256 --nvidia-buckets --count 10 --size 256 "
    "--kind irregular --seed 0 --overwrite"
)
COLUMNS = ["file", "width", "height", "hole_ratio", "bucket", "touches_border", "kind", "seed"]
BUCKETS = ["0.01-0.1", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5", "0.5-0.6"]


def run(*args: str):
    return CliRunner().invoke(app, ["gen-masks", *args])


def read_rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def read_png(path: Path) -> np.ndarray:
    """The file's holes (white), checking it is a strict {0, 255} mode-L PNG."""
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "L"
        values = np.asarray(image)
    assert set(np.unique(values)) <= {0, 255}
    return values == 255


def on_edge(hole: np.ndarray) -> bool:
    return bool(hole[0].any() or hole[-1].any() or hole[:, 0].any() or hole[:, -1].any())


def tree_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        digest.update(path.relative_to(out).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def expected_bucket(ratio: float) -> str:
    for label in BUCKETS:
        lo, hi = map(float, label.split("-"))
        if lo <= ratio < hi:
            return label
    return ""


def test_writes_masks_and_a_matching_manifest(tmp_path: Path) -> None:
    out = tmp_path / "set"
    result = run(str(out), "--count", "6", "--size", "48", "--kind", "mixed", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "Wrote 6 mixed masks" in result.stdout
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{i:05d}.png" for i in range(6)] + ["manifest.csv"]
    rows = read_rows(out)
    assert [row["file"] for row in rows] == files[:-1]
    for row in rows:
        hole = read_png(out / row["file"])
        assert hole.shape == (48, 48) and (row["width"], row["height"]) == ("48", "48")
        ratio = hole.sum() / hole.size
        assert float(row["hole_ratio"]) == ratio
        assert row["bucket"] == expected_bucket(ratio)
        assert row["touches_border"] == ("true" if on_edge(hole) else "false")
        assert row["kind"] in {"irregular", "brush", "box", "thin", "medium", "thick"}
        assert row["seed"] == "3"


def test_ratio_border_and_size_options(tmp_path: Path) -> None:
    out = tmp_path / "set"
    result = run(
        str(out),
        "-n",
        "5",
        "--height",
        "40",
        "--width",
        "64",
        "--kind",
        "brush",
        "--hole-ratio",
        "0.2-0.3",
        "--no-border",
        "--margin",
        "5",
    )
    assert result.exit_code == 0, result.output
    for row in read_rows(out):
        hole = read_png(out / row["file"])
        assert hole.shape == (40, 64) and (row["width"], row["height"]) == ("64", "40")
        assert 0.2 <= hole.mean() < 0.3 and row["bucket"] == "0.2-0.3"
        assert not hole[:5].any() and not hole[-5:].any()
        assert not hole[:, :5].any() and not hole[:, -5:].any()
        assert row["touches_border"] == "false"
    result = run(str(tmp_path / "edge"), "-n", "4", "--size", "40", "--border", "--kind", "box")
    assert result.exit_code == 0, result.output
    assert all(on_edge(read_png(p)) for p in (tmp_path / "edge").glob("*.png"))


def test_nvidia_bucket_layout_agrees_with_files(tmp_path: Path) -> None:
    out = tmp_path / "nvidia"
    result = run(str(out), "--nvidia-buckets", "--count", "2", "--size", "64", "--seed", "1")
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    expected_files = [
        f"{bucket}/{half}/{i:05d}.png"
        for bucket in BUCKETS
        for half in ("border", "no-border")
        for i in range(2)
    ]
    assert [row["file"] for row in rows] == expected_files
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert on_disk == expected_files  # file names sort in generation (manifest) order
    margin = round(50 * 64 / 512)
    for row in rows:
        bucket, half, _ = row["file"].split("/")
        hole = read_png(out / row["file"])
        ratio = hole.sum() / hole.size
        lo, hi = map(float, bucket.split("-"))
        assert lo <= ratio < hi and row["bucket"] == bucket
        assert float(row["hole_ratio"]) == ratio
        assert row["touches_border"] == ("true" if half == "border" else "false")
        assert on_edge(hole) is (half == "border")
        if half == "no-border":
            inner = np.zeros_like(hole)
            inner[margin:-margin, margin:-margin] = True
            assert not hole[~inner].any()


def test_same_files_whatever_the_workers(tmp_path: Path) -> None:
    args = ["--nvidia-buckets", "--count", "2", "--size", "48", "--kind", "mixed", "--seed", "5"]
    assert run(str(tmp_path / "a"), *args).exit_code == 0
    assert run(str(tmp_path / "b"), *args).exit_code == 0
    pooled = subprocess.run(
        [
            sys.executable,
            "-m",
            "pconv_cli",
            "gen-masks",
            str(tmp_path / "c"),
            *args,
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert pooled.returncode == 0, pooled.stderr
    assert run(str(tmp_path / "d"), *args[:-1], "6").exit_code == 0
    digests = [tree_digest(tmp_path / name) for name in "abcd"]
    assert digests[0] == digests[1] == digests[2]
    assert digests[3] != digests[0]  # another seed, other masks


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hole-ratio", "0.5-0.2"], "--hole-ratio: expected LO-HI"),
        (["--hole-ratio", "half"], "--hole-ratio: expected LO-HI"),
        (["--kind", "blob"], "unknown mask kind 'blob'"),
        (["--count", "0"], "--count must be >= 1"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--size", "4"], "too small"),
        (["--nvidia-buckets", "--no-border"], "--nvidia-buckets sets"),
        (["--no-border", "--hole-ratio", "0.7-0.8", "--size", "64"], "0.7-0.8 without holes"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "set"
    result = run(str(out), *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_refuses_a_non_empty_out_dir_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run(str(out), "-n", "2", "--size", "32")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    result = run(str(out), "-n", "2", "--size", "32", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "00000.png",
        "00001.png",
        "keep.txt",
        "manifest.csv",
    ]
    (tmp_path / "file").write_text("x")
    assert run(str(tmp_path / "file"), "-n", "1").exit_code == 2


def test_unreachable_ratio_fails_clearly(tmp_path: Path) -> None:
    # at 64 px the thinnest irregular stroke already covers more than the 2 pixels allowed
    out = tmp_path / "set"
    result = run(str(out), "-n", "2", "--size", "64", "--hole-ratio", "0-0.0005")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: could not draw a 64x64 irregular mask with hole ratio 0-0.0005 in 50 tries"
    )
    assert not out.exists()


def test_failure_midway_leaves_no_partial_set(tmp_path: Path, monkeypatch) -> None:
    from pconv_cli.data import mask_sets as command
    from pconv_cli.data.masks import MaskError

    calls = []
    real = command.generate_mask

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MaskError("simulated failure on the third mask")
        return real(*args, **kwargs)

    monkeypatch.setattr(command, "generate_mask", flaky)
    out = tmp_path / "set"
    result = run(str(out), "--nvidia-buckets", "-n", "2", "--size", "32")
    assert result.exit_code == 1 and "simulated failure" in result.stderr
    assert not out.exists()  # the two masks already written were removed again


def test_gen_masks_never_imports_torch() -> None:
    script = (
        "import sys, tempfile\n"
        "from pconv_cli.cli import app\n"
        "for argv in (['gen-masks', '--help'],\n"
        "             ['gen-masks', tempfile.mkdtemp() + '/m', '-n', '2', '--size', '32']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, exit.code\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_committed_eval_set_regenerates_byte_identically(tmp_path: Path) -> None:
    assert EVAL_COMMAND in (ROOT / "masks" / "README.md").read_text()
    args = shlex.split(EVAL_COMMAND)[2:]
    args[0] = str(tmp_path / "eval-256")
    result = run(*args)
    assert result.exit_code == 0, result.output
    committed = sorted(p.relative_to(EVAL_SET).as_posix() for p in EVAL_SET.rglob("*.png"))
    regenerated = sorted(
        p.relative_to(tmp_path / "eval-256").as_posix()
        for p in (tmp_path / "eval-256").rglob("*.png")
    )
    assert committed == regenerated and len(committed) == 6 * 2 * 10
    for name in committed:
        mine, theirs = tmp_path / "eval-256" / name, EVAL_SET / name
        assert np.array_equal(read_png(mine), read_png(theirs)), f"{name}: other pixels"
        assert mine.read_bytes() == theirs.read_bytes(), (
            f"{name}: same pixels, other PNG bytes (a different Pillow/zlib build?)"
        )
    assert (tmp_path / "eval-256" / "manifest.csv").read_bytes() == (
        EVAL_SET / "manifest.csv"
    ).read_bytes()


def test_failed_overwrite_leaves_the_old_set(tmp_path: Path, monkeypatch) -> None:
    from pconv_cli.data import mask_sets as command
    from pconv_cli.data.masks import MaskError

    out = tmp_path / "set"
    assert run(str(out), "-n", "3", "--size", "32").exit_code == 0
    before = tree_digest(out)

    def broken(*args, **kwargs):
        raise MaskError("simulated failure")

    monkeypatch.setattr(command, "generate_mask", broken)
    result = run(str(out), "-n", "3", "--size", "32", "--seed", "1", "--overwrite")
    assert result.exit_code == 1
    assert tree_digest(out) == before  # the new set is written aside: the old one is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
