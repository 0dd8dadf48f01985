"""Confidence intervals: a bootstrap over test examples for one run, a t-interval over seeds for several.

The bootstrap draws resamples exactly as `scipy.stats.bootstrap` does (`rng.integers(0, n, (B, n))`
from `numpy.random.default_rng(seed)`), so with the same seed both give the same interval; but it
scores all B resamples at once: the draws become a (n, B) matrix of how often each example was drawn,
and a metric's per-example statistics (`sft.evaluation.batched.Sufficient`) times that matrix are the
B resamples' sums, one sparse product. The resamples depend only on the number of examples and the
seed, so runs on the same test examples are resampled alike (the paired bootstrap of
`sft.report.comparisons` relies on it).

Percentile intervals take the quantiles of the resampled metric; BCa corrects them for bias and
skew (Efron & Tibshirani 1993, 14.3), with the acceleration from leave-one-out sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse

METHODS = ("percentile", "bca")
_ROWS_PER_CHUNK = 100  # resamples turned into counts at a time (bounds the index arrays' memory)


@dataclass(frozen=True)
class Interval:
    """A two-sided interval and what it is: "bootstrap" (over test examples) or "t" (over seeds/runs)."""

    low: float
    high: float
    kind: str

    def as_dict(self) -> dict[str, float | str]:
        return {"low": self.low, "high": self.high, "kind": self.kind}


class Resampler:
    """B bootstrap resamples of n examples per n, drawn once from a fixed seed and kept."""

    def __init__(self, resamples: int, seed: int):
        self.resamples = resamples
        self.seed = seed
        self._counts: dict[int, np.ndarray] = {}

    def counts(self, n: int) -> np.ndarray:
        """(n, B): how often each example is in each resample."""
        if n not in self._counts:
            indices = np.random.default_rng(self.seed).integers(0, n, (self.resamples, n))
            counts = np.empty((n, self.resamples), dtype=np.float64)
            for start in range(0, self.resamples, _ROWS_PER_CHUNK):
                block = indices[start : start + _ROWS_PER_CHUNK]
                rows = len(block)
                flat = (block * rows + np.arange(rows)[:, None]).ravel()  # example-major: lands as (n, rows)
                counts[:, start : start + rows] = np.bincount(flat, minlength=rows * n).reshape(n, rows)
            self._counts[n] = counts
        return self._counts[n]

    def sums(self, features: sparse.spmatrix) -> np.ndarray:
        """(B, s): the column sums of `features` (examples, s) in every resample."""
        return np.asarray(features.T @ self.counts(features.shape[0])).T


def leave_one_out(features: sparse.spmatrix) -> np.ndarray:
    """(n, s): the column sums without each example in turn (the jackknife of BCa)."""
    total = np.asarray(features.sum(axis=0))
    return total - features.toarray()


def bootstrap_interval(
    point: float, resampled: np.ndarray, level: float, method: str, jackknife: np.ndarray | None = None
) -> tuple[float, float]:
    """(low, high) from the resampled values of a statistic; `jackknife` (its leave-one-out values) is
    needed for BCa. A statistic that never changes gives (point, point)."""
    resampled = np.asarray(resampled, dtype=float)
    alpha = (1 - level) / 2
    quantiles = np.array([alpha, 1 - alpha])
    if method == "bca":
        if jackknife is None:
            raise ValueError("a BCa interval needs the leave-one-out values")
        quantiles = _bca_quantiles(point, resampled, np.asarray(jackknife, dtype=float), alpha)
    elif method != "percentile":
        raise ValueError(f"unknown interval method {method!r}; choose from {', '.join(METHODS)}")
    if np.all(resampled == resampled[0]) or not np.all(np.isfinite(quantiles)):
        if np.all(resampled == resampled[0]):
            return point, point
        quantiles = np.array([alpha, 1 - alpha])  # BCa undefined (every resample on one side): percentile
    low, high = np.percentile(resampled, 100 * quantiles)
    return float(low), float(high)


def _bca_quantiles(point: float, resampled: np.ndarray, jackknife: np.ndarray, alpha: float) -> np.ndarray:
    from scipy.special import ndtr, ndtri

    share = (np.count_nonzero(resampled < point) + np.count_nonzero(resampled <= point)) / (2 * len(resampled))
    bias = ndtri(share)
    spread = jackknife.mean() - jackknife
    denominator = 6 * (spread**2).sum() ** 1.5
    acceleration = (spread**3).sum() / denominator if denominator > 0 else 0.0
    z = ndtri(np.array([alpha, 1 - alpha]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return ndtr(bias + (bias + z) / (1 - acceleration * (bias + z)))


def t_interval(mean: float, std: float | None, n: int, level: float) -> Interval | None:
    """The t-interval of a mean over n >= 2 values (seeds, or the runs of a pivot cell)."""
    if n < 2 or std is None:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean - half, mean + half, "t")
