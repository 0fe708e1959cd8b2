"""``pconv eval --protocol``: seeded mask sets regenerate identically, pairs as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from metric_nets import make_inception
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import MANIFEST_NAME, load_mask
from pconv_cli.data.reference_masks import LAMA_PRESETS, lama_eval_mask, mat_eval_mask
from pconv_cli.evaluation.pairs import EvalError, ImageEntry
from pconv_cli.evaluation.protocols import (
    CHECKED_MASKS,
    PROTOCOLS,
    REFERENCE_DIGESTS,
    draw_protocol_mask,
    mask_digest,
    prepare_protocol,
)

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "examples" / "images").glob("*.jpg"))


def needs_cv2(protocol: str) -> None:
    if PROTOCOLS[protocol].generator == "lama":
        pytest.importorskip("cv2")


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_first_masks_regenerate_to_the_shipped_digests(name):
    """Pixel-identical (sha256 of the packed bits) to what pconv drew when it shipped."""
    needs_cv2(name)
    protocol = PROTOCOLS[name]
    assert set(REFERENCE_DIGESTS[name]) == set(protocol.mask_sets)
    for set_index, mask_set in enumerate(protocol.mask_sets):
        for k in range(CHECKED_MASKS):
            hole = draw_protocol_mask(protocol, set_index, k)
            assert hole is not None and hole.shape == (protocol.size, protocol.size)
            assert mask_digest(hole) == REFERENCE_DIGESTS[name][mask_set][k], (mask_set, k)


def test_lama_masks_follow_the_configs():
    pytest.importorskip("cv2")
    ratios = {}
    for kind in LAMA_PRESETS:
        holes = [lama_eval_mask(kind, np.random.RandomState(seed), 256) for seed in range(12)]
        kept = [hole for hole in holes if hole is not None]
        assert all(hole.mean() <= 0.5 for hole in kept)  # max_tamper_area
        ratios[kind] = np.mean([hole.mean() for hole in kept])
    assert all(0.02 < ratio < 0.5 for ratio in ratios.values())


def test_mat_masks_are_never_empty_or_full_and_large_exceeds_small():
    small = [mat_eval_mask("small", np.random.RandomState(s), 128).mean() for s in range(20)]
    large = [mat_eval_mask("large", np.random.RandomState(s), 128).mean() for s in range(20)]
    assert all(0 < r < 1 for r in small + large)
    assert np.mean(large) > np.mean(small)


def entries(folder: Path) -> list[ImageEntry]:
    return [ImageEntry(path.stem, path) for path in sorted(folder.glob("*.jpg"))]


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_prepare_writes_a_cache_that_regenerates_byte_identically(name, tmp_path):
    needs_cv2(name)
    protocol = PROTOCOLS[name]
    images = entries(ROOT / "examples" / "images")
    count = 3 if protocol.generator != "nvidia" else 6
    plan, facts = prepare_protocol(protocol, images, limit=count, cache_dir=tmp_path / "a")
    _, facts_again = prepare_protocol(protocol, images, limit=count, cache_dir=tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    files.append(Path(MANIFEST_NAME))
    for file in files:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert facts["mask_list_sha256"] == facts_again["mask_list_sha256"]
    assert facts["protocol_complete"] is False
    pairs = list(plan)
    if protocol.generator == "nvidia":
        assert [p.image.key for p in pairs] == [e.key for e in images[:count]]
        assert len({p.mask.key.rsplit("/", 1)[0] for p in pairs}) == count  # one per half
    else:
        assert len(pairs) == count * len(protocol.mask_sets) - facts["pairs_without_mask"]
        assert {p.mask.bucket for p in pairs} <= set(protocol.mask_sets)
        for pair in pairs:  # image k with mask k of each set
            assert pair.image.key == images[int(pair.mask.key.rsplit("/", 1)[1])].key
    for pair in pairs:
        hole = load_mask(pair.mask.path)
        assert hole.shape == (protocol.size, protocol.size) and hole.any()
    # a second call reuses the cache (no redraw): a manifest row per mask
    before = (tmp_path / "a" / MANIFEST_NAME).stat().st_mtime_ns
    prepare_protocol(protocol, images, limit=count, cache_dir=tmp_path / "a")
    assert (tmp_path / "a" / MANIFEST_NAME).stat().st_mtime_ns == before


def test_a_changed_cached_mask_is_refused(tmp_path):
    protocol = PROTOCOLS["mat-places512"]
    images = entries(ROOT / "examples" / "images")
    plan, _ = prepare_protocol(protocol, images, limit=2, cache_dir=tmp_path)
    first = next(iter(plan)).mask.path
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(first)
    with pytest.raises(EvalError, match="differs from pconv's reference"):
        prepare_protocol(protocol, images, limit=2, cache_dir=tmp_path)


def test_too_few_images_is_one_clear_error():
    images = entries(ROOT / "examples" / "images")
    with pytest.raises(EvalError, match=r"first 36500 images of --folder.*--limit"):
        prepare_protocol(PROTOCOLS["mat-places512"], images)


def test_protocol_end_to_end(tmp_path, monkeypatch):
    """MAT's protocol on 2 images: pinned size and metrics, FID/P-IDS per mask set."""
    pytest.importorskip("sklearn")
    monkeypatch.setenv("PCONV_CACHE", str(tmp_path / "cache"))
    inception = make_inception(tmp_path / "inception.pth")
    report = tmp_path / "eval.json"
    result = CliRunner().invoke(app, [
        "eval", "--folder", str(ROOT / "examples" / "images"), "--protocol", "mat-places512",
        "--limit", "2", "--method", "mean", "--device", "cpu",
        "--metric-weights", f"fid-inception={inception}", "--json", str(report),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    config = data["config"]
    assert config["protocol"] == "mat-places512" and config["sizes"] == ["512x512"]
    assert set(config["metrics"]) == {"fid", "pids"} and config["pairs"] == 4
    source = data["sources"]["mean"]
    assert set(source["set_metrics"]) == {"fid", "p_ids", "u_ids"}
    assert set(source["set_metrics_by_bucket"]) == {"small", "large"}
    assert "l1" not in source["images"][0] and "psnr" not in source["summary"][0]
    assert (tmp_path / "cache" / "protocols" / "mat-places512" / MANIFEST_NAME).is_file()
