"""Harness internals: compositing, quantisation, aggregation, extremes, streaming memory."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from pconv_cli.data.masks import save_mask
from pconv_cli.devices import DeviceError, resolve_device
from pconv_cli.evaluation.pairs import EvalError, ImageEntry, MaskEntry, Pair, PairLoader
from pconv_cli.evaluation.scoring import (
    BucketStats,
    MethodSource,
    Record,
    _Extremes,
    composite_uint8,
    evaluate,
    unique_labels,
)
from pconv_cli.inpainting.classic import BaselineError, inpaint_classic


def test_composite_takes_known_pixels_from_the_truth_and_rounds_half_to_even():
    truth = torch.full((1, 3, 2, 3), 7, dtype=torch.uint8)
    values = [0.5 / 255, 1.5 / 255, 2.5 / 255, -1.0, 2.0, 254.5 / 255]
    raw = torch.tensor(values, dtype=torch.float64).view(1, 1, 2, 3).expand(1, 3, 2, 3)
    hole = torch.ones(1, 1, 2, 3, dtype=torch.bool)
    hole[0, 0, 0, 0] = False  # a known pixel
    out = composite_uint8(truth, raw, hole)
    assert out.dtype == torch.uint8
    assert out[0, 0].tolist() == [[7, 2, 2], [0, 255, 254]]  # 1.5->2, 2.5->2, clamped


def test_composite_passes_uint8_outputs_through():
    truth = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    raw = torch.full((1, 3, 4, 4), 200, dtype=torch.uint8)
    hole = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    hole[..., 1:3, 1:3] = True
    out = composite_uint8(truth, raw, hole)
    assert int(out.sum()) == 200 * 3 * 4


def test_composite_rejects_nan_and_wrong_shapes():
    truth = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    hole = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(EvalError, match="NaN"):
        composite_uint8(truth, torch.full((1, 3, 4, 4), math.nan), hole)
    with pytest.raises(EvalError, match="shape"):
        composite_uint8(truth, torch.zeros(1, 3, 4, 5), hole)


def test_bucket_stats_means_and_inf_policy():
    stats = BucketStats()
    stats.add(10.0, 20.0, 0.5)
    stats.add(20.0, math.inf, 1.0)
    stats.add(math.nan, 30.0, 0.9)
    assert stats.count == 3
    assert stats.l1 == 15.0  # NaN (no holes) left out
    assert stats.psnr == 25.0 and stats.psnr_inf == 1  # mean over the finite values
    assert stats.ssim == pytest.approx(0.8)
    perfect = BucketStats()
    perfect.add(0.0, math.inf, 1.0)
    assert perfect.psnr == math.inf
    assert math.isnan(BucketStats().psnr) and math.isnan(BucketStats().ssim)


def record(index: int, psnr: float) -> Record:
    return Record(index, f"p{index}", "img", "mask", "0.1-0.2", False, 0.15, 1.0, psnr, 0.9)


def test_extremes_keep_the_best_and_worst_by_psnr():
    extremes = _Extremes(2)
    made = []
    for index, value in enumerate([20.0, 35.0, 12.0, 35.0, math.inf, 12.0, 25.0]):

        def make(index=index):
            made.append(index)
            return index

        extremes.offer(record(index, value), make)
    assert extremes.best == [4, 1]  # inf first, then the earlier of the two 35s
    assert extremes.worst == [2, 5]  # 12 (index 2) before the later 12
    assert 6 not in made  # a pair that qualifies for neither list is never copied


def test_unique_labels_and_devices():
    assert unique_labels(["zeros", "last", "last", "zeros", "last"]) == [
        "zeros",
        "last",
        "last-2",
        "zeros-2",
        "last-3",
    ]
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_classic_methods_fill_only_what_they_should():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    hole = np.zeros((20, 24), bool)
    hole[5:10, 6:12] = True
    assert not inpaint_classic("zeros", image, hole).any()
    mean = inpaint_classic("mean", image, hole)
    np.testing.assert_allclose(mean[0, 0], image[~hole].mean(axis=0) / 255)
    assert np.ptp(mean.reshape(-1, 3), axis=0).max() == 0  # one colour everywhere
    biharmonic = inpaint_classic("biharmonic", image, hole)
    assert biharmonic.shape == (20, 24, 3) and 0 <= biharmonic.min() <= biharmonic.max() <= 1
    with pytest.raises(BaselineError, match="unknown method"):
        inpaint_classic("magic", image, hole)
    with pytest.raises(BaselineError, match="uint8"):
        inpaint_classic("zeros", image.astype(float), hole)


def test_memory_stays_flat_over_many_pairs(tmp_path):
    """Per-image values go to a spool file: Python memory does not grow with the pair count."""
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 120, 200)).save(tmp_path / "image.png")
    hole = np.zeros((16, 16), bool)
    hole[4:9, 3:12] = True
    save_mask(tmp_path / "mask.png", hole)
    image = ImageEntry("image", tmp_path / "image.png")
    mask = MaskEntry("mask", tmp_path / "mask.png")

    def peak(count: int) -> int:
        plan = [Pair(i, f"pair{i:05d}", image, mask) for i in range(count)]
        tracemalloc.start()
        try:
            result = evaluate(
                plan, [MethodSource("mean")], PairLoader(), batch_size=32, grid_count=2
            )
            with result:
                assert result.pairs == count
                assert sum(1 for _ in result.sources[0].records()) == count
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(64), peak(1024)
    # Keeping a record per pair (a few hundred bytes each) would add well over 64 bytes/pair.
    assert (large - small) / (1024 - 64) < 64, (small, large)


def test_evaluate_needs_a_source(tmp_path):
    with pytest.raises(EvalError, match="no prediction source"):
        evaluate([], [], PairLoader())


def test_records_are_unavailable_without_keep_records(tmp_path):
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "i.png")
    save_mask(tmp_path / "m.png", np.ones((16, 16), bool))
    pair = Pair(0, "i", ImageEntry("i", tmp_path / "i.png"), MaskEntry("m", tmp_path / "m.png"))
    with evaluate([pair], [MethodSource("zeros")], PairLoader(), keep_records=False) as result:
        assert result.sources[0].overall.count == 1
        with pytest.raises(RuntimeError, match="not kept"):
            result.sources[0].records()


def test_classic_methods_module_does_not_need_torch():
    import subprocess
    import sys

    code = (
        "import sys, pconv_cli.inpainting.classic, pconv_cli.evaluation.pairs\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.stdout.strip() == "False", done.stderr
