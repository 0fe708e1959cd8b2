"""LPIPS, FID and P-IDS/U-IDS against the reference packages' own code on the same weights.

References: the ``lpips`` package (v0.1, ``net='alex'``, its shipped linear heads),
``pytorch-fid`` (its ``InceptionV3``, ``calculate_frechet_distance`` and
``calculate_fid_given_paths``) and scikit-learn's ``LinearSVC`` with MAT's settings.
Networks get random-but-fixed weights written by :mod:`metric_nets` in the reference
layouts; nothing is downloaded.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from metric_nets import (
    lpips_heads_file,
    make_alexnet,
    make_inception,
    reference_inception,
    reference_lpips,
)
from PIL import Image
from typer.testing import CliRunner

from pconv_cli.cli import app
from pconv_cli.data.masks import save_mask
from pconv_cli.evaluation.feature_metrics import MetricSuite, check_metric_names
from pconv_cli.evaluation.set_metrics import (
    FeatureSpool,
    RealFactor,
    frechet_distance,
    gaussian_stats,
    inception_discriminative_scores,
)

pytest.importorskip("lpips")
pytest.importorskip("pytorch_fid")

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "examples" / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nets")
    return {
        "lpips-alex": make_alexnet(root / "alexnet.pth"),
        "lpips-alex-lin": lpips_heads_file(),
        "fid-inception": make_inception(root / "pt_inception.pth"),
    }


def weight_args(nets: dict[str, Path]) -> list[str]:
    return [arg for key, path in nets.items() for arg in ("--metric-weights", f"{key}={path}")]


def photos(size: tuple[int, int], count: int = 4) -> np.ndarray:
    """(count, H, W, 3) uint8 crops of the example photos at ``size=(H, W)``."""
    out = []
    for path in PHOTOS[:count]:
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB").resize(size[::-1], Image.BICUBIC)))
    return np.stack(out)


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


def degraded(images: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-60, 61, images.shape)
    out = np.clip(images.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    out[:, : images.shape[1] // 3] = images[:, : images.shape[1] // 3]  # partly identical
    return out


# --------------------------------------------------------------------------- LPIPS


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_lpips_matches_the_lpips_package(nets, size):
    truth = photos(size)
    output = degraded(truth, sum(size))
    output[1] = truth[1]  # an identical pair: 0
    suite = MetricSuite(("lpips",), weights=nets).load(progress=False)
    ours = suite.lpips(nchw(output), nchw(truth))
    reference = reference_lpips(nets["lpips-alex"])
    with torch.no_grad():
        expected = reference(
            nchw(output).float() / 127.5 - 1, nchw(truth).float() / 127.5 - 1
        ).flatten()
    assert ours.dtype == np.float64 and ours.shape == (4,)
    np.testing.assert_allclose(ours, expected.double().numpy(), atol=1e-4, rtol=0)
    assert ours[1] == pytest.approx(0.0, abs=1e-7)
    assert (ours[[0, 2, 3]] > 1e-3).all()


# --------------------------------------------------------------------------- FID


def test_inception_features_match_pytorch_fid(nets, monkeypatch):
    images = photos((72, 56))
    suite = MetricSuite(("fid",), weights=nets).load(progress=False)
    ours = suite.features(nchw(images))
    reference = reference_inception(nets["fid-inception"], monkeypatch)
    with torch.no_grad():
        expected = reference(nchw(images).float() / 255)[0].flatten(1).numpy()
    assert ours.shape == (4, 2048) and ours.dtype == np.float32
    assert np.abs(expected).mean() > 1e-2  # the random net is not degenerate
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("n_real", "n_fake"), [(12, 12), (12, 90), (90, 70)])
def test_frechet_distance_matches_pytorch_fid(n_real, n_fake):
    """Low-rank and full-rank covariances (d = 64 here, so 90 rows are full rank)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(n_real + n_fake)
    mix = rng.normal(size=(64, 64)) / 8
    real = np.abs(rng.normal(size=(n_real, 64)) @ mix).astype(np.float32)
    fake = np.abs(rng.normal(size=(n_fake, 64)) @ mix * 1.2 + 0.1).astype(np.float32)
    spools = []
    for rows in (real, fake):
        spool = FeatureSpool(64)
        spool.append(rows[:5])
        spool.append(rows[5:])
        spools.append(spool)
    ours = frechet_distance(RealFactor(gaussian_stats(spools[0])), gaussian_stats(spools[1]))
    r64, f64 = real.astype(np.float64), fake.astype(np.float64)
    expected = calculate_frechet_distance(
        r64.mean(0), np.cov(r64, rowvar=False), f64.mean(0), np.cov(f64, rowvar=False)
    )
    assert ours == pytest.approx(expected, rel=1e-6)
    same = frechet_distance(RealFactor(gaussian_stats(spools[0])), gaussian_stats(spools[0]))
    assert same == pytest.approx(0.0, abs=1e-6)  # square roots of ~0 eigenvalues: ~1e-8


@pytest.fixture(scope="module")
def scored(nets, tmp_path_factory) -> dict:
    """``pconv eval`` with every metric on 8 photos x 8 masks (64 px), outputs saved."""
    root = tmp_path_factory.mktemp("scored")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    pictures = photos((64, 64), 6)
    for i in range(8):
        picture = pictures[i % 6] if i < 6 else np.flip(pictures[i - 6], 1)
        Image.fromarray(np.ascontiguousarray(picture)).save(images / f"img{i}.png")
        hole = np.zeros((64, 64), bool)
        hole[4 + 3 * i : 24 + 4 * i, 8 + 2 * i : 40 + i] = True
        save_mask(masks / f"m{i}.png", hole)
    report, table = root / "eval.json", root / "eval.csv"
    args = ["eval", "--folder", images, "--masks", masks, "--method", "mean"]
    args += ["--method", "zeros", "--device", "cpu", "--batch", "3"]
    for name in ("l1", "psnr", "ssim", "lpips", "fid", "pids"):
        args += ["--metric", name]
    args += [*weight_args(nets), "--json", report, "--csv", table]
    args += ["--save-outputs", root / "out"]
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return {"root": root, "report": json.loads(report.read_text()), "csv": table, "out": result}


def test_fid_matches_pytorch_fid_on_saved_composites(scored, nets, monkeypatch):
    from pytorch_fid import fid_score

    reference_inception(nets["fid-inception"], monkeypatch)  # patch the download
    for label in ("mean",):  # one source: pytorch-fid's 2048x2048 sqrtm takes ~40 s here
        expected = fid_score.calculate_fid_given_paths(
            [str(scored["root"] / "images"), str(scored["root"] / "out" / label)],
            batch_size=8,
            device="cpu",
            dims=2048,
            num_workers=0,
        )
        got = scored["report"]["sources"][label]["set_metrics"]["fid"]
        assert got == pytest.approx(expected, rel=1e-3)
        assert got > 0


def test_pids_follow_mats_formula_on_the_reference_features(scored, nets, monkeypatch):
    """MAT's compute_ids written out on pytorch-fid's features of the same images."""
    from sklearn.svm import LinearSVC

    net = reference_inception(nets["fid-inception"], monkeypatch)

    def features(folder: Path) -> np.ndarray:
        files = sorted(folder.glob("*.png"), key=lambda p: int(p.stem[3:]))
        batch = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        with torch.no_grad():
            return net(nchw(batch).float() / 255)[0].flatten(1).numpy().astype(np.float32)

    real = features(scored["root"] / "images")
    for label in ("mean", "zeros"):
        fake = features(scored["root"] / "out" / label)
        svm = LinearSVC(dual=False)
        inputs = np.concatenate([real, fake])
        targets = np.array([1] * len(real) + [0] * len(fake))
        svm.fit(inputs, targets)
        u_ids = 1 - svm.score(inputs, targets)
        p_ids = np.mean(svm.decision_function(fake) > svm.decision_function(real))
        values = scored["report"]["sources"][label]["set_metrics"]
        # the SVM sees features within float32 rounding of these: each share may move by
        # one pair of 8 (a borderline decision); here it does not
        assert values["u_ids"] == pytest.approx(u_ids, abs=1 / 8 + 1e-9)
        assert values["p_ids"] == pytest.approx(p_ids, abs=1 / 8 + 1e-9)


def test_ids_hand_computed_cases():
    rng = np.random.default_rng(0)
    real = rng.random((10, 16)).astype(np.float32)
    assert inception_discriminative_scores(real, real.copy()) == (0.0, 0.5)
    fake = real + 5.0  # separable: every fake scores below its real, no errors
    assert inception_discriminative_scores(real, fake) == (0.0, 0.0)


def test_report_carries_every_metric(scored):
    report = scored["report"]
    assert set(report["config"]["metrics"]) == {"l1", "psnr", "ssim", "lpips", "fid", "pids"}
    assert set(report["config"]["metric_weights"]) == {
        "lpips-alex",
        "lpips-alex-lin",
        "fid-inception",
    }
    for label in ("mean", "zeros"):
        source = report["sources"][label]
        assert set(source["set_metrics"]) == {"fid", "p_ids", "u_ids"}
        images = source["images"]
        assert len(images) == 8 and all(isinstance(r["lpips"], float) for r in images)
        overall = source["summary"][-1]
        assert overall["bucket"] == "overall"
        assert overall["lpips"] == pytest.approx(np.mean([r["lpips"] for r in images]))
        for row in source["summary"][:-1]:
            mine = [r["lpips"] for r in images if (r["bucket"], r["touches_border"]) == (
                row["bucket"], row["touches_border"])]  # fmt: skip
            assert row["lpips"] == pytest.approx(np.mean(mine))
    zeros, mean = report["sources"]["zeros"], report["sources"]["mean"]
    assert zeros["summary"][-1]["lpips"] > mean["summary"][-1]["lpips"]
    header = scored["csv"].read_text().splitlines()[0].split(",")
    assert header[-5:] == ["ssim", "lpips", "fid", "p_ids", "u_ids"]
    assert "FID" in scored["out"].output and "LPIPS" in scored["out"].output


def test_lpips_from_saved_outputs_equals_the_report(scored, nets):
    """Per-pair LPIPS is the one of the saved uint8 composite against its truth."""
    suite = MetricSuite(("lpips",), weights=nets).load(progress=False)
    for record in scored["report"]["sources"]["mean"]["images"][:3]:
        out = np.asarray(Image.open(scored["root"] / "out" / "mean" / f"{record['name']}.png"))
        truth = np.asarray(Image.open(scored["root"] / "images" / f"{record['image']}.png"))
        value = suite.lpips(nchw(out[None]), nchw(truth[None]))[0]
        assert value == pytest.approx(record["lpips"], abs=1e-6)


# --------------------------------------------------------------------------- weights, options


def run(*args) -> object:
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def test_offline_download_is_one_line_naming_file_and_url(tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    result = run("--folder", ROOT / "examples" / "images", "--method", "zeros", "--limit", "2",
                 "--metric", "fid", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "pt_inception-2015-12-05-6726825d.pth" in result.stderr
    assert "https://github.com/mseitzer/pytorch-fid/releases/download/" in result.stderr
    assert "--metric-weights fid-inception=PATH" in result.stderr


def test_cached_file_with_a_wrong_hash_is_refused(tmp_path, monkeypatch):
    from pconv_cli.evaluation.metric_weights import metric_weights_path
    from pconv_cli.weights.errors import WeightsError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not alexnet")
    with pytest.raises(WeightsError, match="delete it and download"):
        metric_weights_path("lpips-alex")


def test_real_lpips_heads_pass_the_hash_check(tmp_path, monkeypatch):
    """The lpips package ships the real v0.1 heads: their sha256 is the registered one."""
    import shutil

    from pconv_cli.evaluation.metric_weights import METRIC_WEIGHTS, metric_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / METRIC_WEIGHTS["lpips-alex-lin"].filename
    cached.parent.mkdir(parents=True)
    shutil.copy(lpips_heads_file(), cached)
    assert metric_weights_path("lpips-alex-lin") == cached


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--metric", "vif"), "unknown --metric 'vif'"),
        (("--metric-weights", "fid=/x.pth"), "unknown key 'fid'"),
        (("--metric-weights", "fid-inception"), "KEY=PATH"),
        (("--gpus", "2", "--nproc", "2"), "not both"),
        (("--protocol", "places"), "unknown --protocol"),
        (("--protocol", "mat-places512", "--metric", "lpips"), "pins --metric"),
    ],
)
def test_bad_metric_options_are_usage_errors(args, message):
    result = run("--folder", ROOT / "examples" / "images", "--method", "zeros", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_missing_metric_file_is_one_line(tmp_path):
    result = run("--folder", ROOT / "examples" / "images", "--method", "zeros", "--metric",
                 "lpips", "--metric-weights", f"lpips-alex={tmp_path / 'none.pth'}")  # fmt: skip
    assert result.exit_code == 1
    assert "no such file" in result.stderr and result.stderr.count("\n") == 1


def test_metric_names_keep_report_order():
    assert check_metric_names([]) == ("l1", "psnr", "ssim")
    assert check_metric_names(["fid", "lpips", "fid"]) == ("lpips", "fid")


# --------------------------------------------------------------------------- memory


def test_memory_stays_flat_with_the_number_of_pairs(tmp_path):
    """Per-pair records and features go to temporary files: the Python heap peak of a run
    does not grow with the pairs (the networks are stood in for by cheap functions)."""
    from pconv_cli.evaluation.pairs import PairLoader, list_images, load_mask_set, plan_pairs
    from pconv_cli.evaluation.scoring import MethodSource, evaluate

    suite = MetricSuite(("lpips", "fid"))
    suite.lpips = lambda out, truth: (out.float() - truth.float()).abs().mean((1, 2, 3)).numpy()
    suite.features = lambda images: np.repeat(images.float().mean((2, 3)).numpy(), 683, axis=1)[
        :, :2048
    ].astype(np.float32)
    images = list_images(ROOT / "examples" / "images")
    masks = load_mask_set(ROOT / "masks" / "eval-256")

    def peak(count: int) -> int:
        plan = plan_pairs(images, masks, "all", limit=count)
        tracemalloc.start()
        with evaluate(plan, [MethodSource("zeros")], PairLoader(), batch_size=8, suite=suite,
                      prefetch=False) as result:  # fmt: skip
            assert result.pairs == count and result.sources[0].features.rows == count
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(16), peak(160)
    assert large < 1.5 * small, (small, large)
