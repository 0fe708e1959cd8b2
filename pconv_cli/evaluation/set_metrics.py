"""Set-level metrics over Inception features: FID (pytorch-fid) and P-IDS/U-IDS (MAT).

Features are (N, 2048) float32 rows, row ``k`` = pair ``k`` (the real set: each
pair's truth; the fake set: a source's composites). They are spooled to a
temporary file as they come (:class:`FeatureSpool`), so scoring holds no images
and only a chunk of features at a time; P-IDS needs all of them at once (its SVM
is fitted on both sets together, as MAT does).

- :func:`gaussian_stats`: the mean and ``np.cov(rowvar=False)`` (ddof 1) in float64,
  as pytorch-fid's ``calculate_activation_statistics``; computed in two passes over
  the spool (mean, then centred products), so the covariance is as accurate as numpy's.
- :func:`frechet_distance`: ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))``,
  pytorch-fid's formula, with the trace term computed exactly from eigenvalues instead
  of ``scipy.linalg.sqrtm``: with ``S1 = G^T G``, the eigenvalues of ``S1 S2`` are
  those of the symmetric ``G S2 G^T``, so ``tr(sqrtm(S1 S2)) = sum sqrt(eig(G S2 G^T))``.
  ``G`` is the centred features / sqrt(N - 1) when N <= 2048 (low rank: an N x N
  problem, or the singular values of ``A2 G^T`` when the fake set is small too), else
  ``diag(sqrt(w)) V^T`` from ``eigh(S1)``; it is computed once for the real set and
  reused for every source.
- :func:`inception_discriminative_scores`: MAT's ``compute_ids``: ``LinearSVC(dual=False)``
  fitted on real (label 1) and fake (label 0) features; U-IDS = 1 - its accuracy on
  that set; P-IDS = share of pairs whose fake decision value exceeds its real one.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from typing import IO

import numpy as np

__all__ = [
    "FeatureSpool",
    "GaussianStats",
    "RealFactor",
    "frechet_distance",
    "gaussian_stats",
    "inception_discriminative_scores",
    "require_sklearn",
]

_CHUNK_ROWS = 1024


class FeatureSpool:
    """(N, dims) float32 feature rows in an anonymous temporary file, appended in pair order."""

    def __init__(self, dims: int = 2048) -> None:
        self.dims = dims
        self.rows = 0
        self._file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dims:
            raise ValueError(f"expected (N, {self.dims}) features, got {rows.shape}")
        self._file.seek(0, 2)
        self._file.write(rows.tobytes())
        self.rows += rows.shape[0]

    def chunks(self, rows: int = _CHUNK_ROWS):
        """Consecutive (<= rows, dims) float32 blocks, in order."""
        self._file.flush()
        for start in range(0, self.rows, rows):
            count = min(rows, self.rows - start)
            self._file.seek(start * self.dims * 4)
            data = self._file.read(count * self.dims * 4)
            yield np.frombuffer(data, dtype=np.float32).reshape(count, self.dims)

    def read(self) -> np.ndarray:
        """All rows as one (N, dims) float32 array."""
        if not self.rows:
            return np.zeros((0, self.dims), np.float32)
        return np.concatenate(list(self.chunks()))

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class GaussianStats:
    """Mean (d,), ``count`` rows; ``centred`` = (X - mean) / sqrt(N - 1) when N <= d, else
    ``cov`` (d, d). Either way ``S = centred^T centred`` or ``cov`` is np.cov's (ddof 1)."""

    mean: np.ndarray
    count: int
    centred: np.ndarray | None = None
    cov: np.ndarray | None = None

    @property
    def trace(self) -> float:
        if self.centred is not None:
            return float(np.einsum("ij,ij->", self.centred, self.centred))
        assert self.cov is not None
        return float(np.trace(self.cov))

    def covariance(self) -> np.ndarray:
        """The (d, d) covariance matrix (formed from the centred rows when needed)."""
        if self.cov is not None:
            return self.cov
        assert self.centred is not None
        return self.centred.T @ self.centred


def gaussian_stats(spool: FeatureSpool) -> GaussianStats:
    """Mean and covariance of the spooled features in float64 (two passes, see the module)."""
    n, d = spool.rows, spool.dims
    if n < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n}")
    total = np.zeros(d, np.float64)
    for block in spool.chunks():
        total += block.sum(axis=0, dtype=np.float64)
    mean = total / n
    if n <= d:
        centred = (spool.read().astype(np.float64) - mean) / math.sqrt(n - 1)
        return GaussianStats(mean, n, centred=centred)
    cov = np.zeros((d, d), np.float64)
    for block in spool.chunks():
        centred = block.astype(np.float64) - mean
        cov += centred.T @ centred
    return GaussianStats(mean, n, cov=cov / (n - 1))


class RealFactor:
    """``G`` with ``S_real = G^T G`` (see the module docstring), made once per evaluation."""

    def __init__(self, real: GaussianStats) -> None:
        self.stats = real
        if real.centred is not None:
            self.g = real.centred
        else:
            assert real.cov is not None
            values, vectors = np.linalg.eigh(real.cov)
            self.g = np.sqrt(np.clip(values, 0.0, None))[:, None] * vectors.T

    def trace_sqrt_product(self, fake: GaussianStats) -> float:
        """``tr(sqrtm(S_real S_fake))`` from eigenvalues of a symmetric PSD matrix."""
        if fake.centred is not None:
            c = fake.centred @ self.g.T  # (n_fake, k): S_real S_fake ~ C^T C
            small = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
        else:
            assert fake.cov is not None
            small = self.g @ fake.cov @ self.g.T
        values = np.linalg.eigvalsh((small + small.T) / 2)
        return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance(real: RealFactor, fake: GaussianStats) -> float:
    """pytorch-fid's Fréchet distance of the two Gaussians (exact trace term, see above)."""
    diff = real.stats.mean - fake.mean
    return float(diff @ diff + real.stats.trace + fake.trace - 2.0 * real.trace_sqrt_product(fake))


def require_sklearn() -> None:
    """Raise EvalError with a one-line install hint when scikit-learn is missing."""
    from pconv_cli.evaluation.pairs import EvalError

    try:
        import sklearn.svm  # noqa: F401
    except ImportError:
        raise EvalError(
            "--metric pids needs scikit-learn (MAT's LinearSVC): pip install 'pconv-cli[metrics]'"
        ) from None


def inception_discriminative_scores(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """``(p_ids, u_ids)`` of paired (N, d) real and fake features, as MAT computes them."""
    require_sklearn()
    import warnings

    import sklearn.svm
    from sklearn.exceptions import ConvergenceWarning

    if real.shape != fake.shape:
        raise ValueError(f"real {real.shape} and fake {fake.shape} features differ in shape")
    svm = sklearn.svm.LinearSVC(dual=False)
    inputs = np.concatenate([real, fake])
    targets = np.array([1] * real.shape[0] + [0] * fake.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(inputs, targets)
    u_ids = 1 - svm.score(inputs, targets)
    p_ids = np.mean(svm.decision_function(fake) > svm.decision_function(real))
    return float(p_ids), float(u_ids)
