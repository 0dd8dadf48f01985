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
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

# the normal CDF and quantile and Student's t quantile that scipy.stats.norm and scipy.stats.t evaluate, without
# importing scipy.stats (most of a report's start-up)
from scipy.special import ndtr, ndtri, stdtrit

if TYPE_CHECKING:
    from sft.evaluation.batched import Sufficient

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
    """The random draws of a report, made once per number of examples from a fixed seed and kept: B
    bootstrap resamples, and B swap patterns for permutation tests. What they give for a run's
    statistics is kept too (by object, for as long as the Resampler lives), so a reference run compared
    with 19 others and on five metrics that share one confusion matrix is resampled once."""

    def __init__(self, resamples: int, seed: int, clusters: np.ndarray | None = None):
        self.resamples = resamples
        self.seed = seed
        # cluster of each example (codes 0..G-1): resample and swap whole clusters, as the examples of one
        # source document or author are not independent; None: every example is its own
        self.clusters = None if clusters is None else np.asarray(clusters, dtype=np.int64)
        self._counts: dict[int, np.ndarray] = {}
        self._swaps: dict[int, np.ndarray] = {}
        self._sums: dict[int, tuple[sparse.spmatrix, tuple[np.ndarray, np.ndarray]]] = {}
        self._totals: dict[int, tuple[sparse.spmatrix, np.ndarray]] = {}
        self._values: dict[tuple, tuple[list, np.ndarray]] = {}

    def counts(self, n: int) -> np.ndarray:
        """(n, B): how often each example is in each resample (with clusters: its cluster's count)."""
        units = self._units(n)
        if units not in self._counts:
            indices = np.random.default_rng(self.seed).integers(0, units, (self.resamples, units))
            counts = np.empty((units, self.resamples), dtype=np.float64)
            for start in range(0, self.resamples, _ROWS_PER_CHUNK):
                block = indices[start : start + _ROWS_PER_CHUNK]
                rows = len(block)
                flat = (block * rows + np.arange(rows)[:, None]).ravel()  # example-major: lands as (n, rows)
                counts[:, start : start + rows] = np.bincount(flat, minlength=rows * units).reshape(units, rows)
            self._counts[units] = counts
        return self._per_example(self._counts[units], n)

    def swaps(self, n: int) -> np.ndarray:
        """(n, B): 1 where a permutation swaps the two systems' outputs on an example (with clusters: on
        every example of a cluster together)."""
        units = self._units(n)
        if units not in self._swaps:
            rng = np.random.default_rng([self.seed, 1])
            self._swaps[units] = rng.integers(0, 2, (units, self.resamples)).astype(float)
        return self._per_example(self._swaps[units], n)

    def _units(self, n: int) -> int:
        """What is drawn for n examples: the clusters when they are this Resampler's examples, else the examples."""
        return int(self.clusters.max()) + 1 if self.clusters is not None and len(self.clusters) == n else n

    def _clustered(self, n: int) -> bool:
        return self.clusters is not None and len(self.clusters) == n

    def _per_example(self, per_unit: np.ndarray, n: int) -> np.ndarray:
        return np.ascontiguousarray(per_unit[self.clusters]) if self._clustered(n) else per_unit

    def sums(self, features: sparse.spmatrix) -> np.ndarray:
        """(B, s): the column sums of `features` (examples, s) in every resample."""
        return self._products(features)[0]

    def swapped(self, features: sparse.spmatrix) -> np.ndarray:
        """(B, s): the column sums of `features` over the examples each swap pattern swaps. Linear in the
        features, so what a pattern moves between two systems is the difference of theirs."""
        return self._products(features)[1]

    def _products(self, features: sparse.spmatrix) -> tuple[np.ndarray, np.ndarray]:
        key = id(features)
        if key not in self._sums:  # the matrix is kept with its sums, so its id is never reused meanwhile
            transposed = features.T
            n = features.shape[0]
            # C order, as `sft.report.cache` gives them back: a reduction's rounding depends on the layout
            sums, swapped = (
                np.ascontiguousarray(np.asarray(transposed @ draws(n)).T) for draws in (self.counts, self.swaps)
            )
            self._sums[key] = (features, (sums, swapped))
        return self._sums[key][1]

    def remember(self, features: sparse.spmatrix, sums: np.ndarray, swapped: np.ndarray) -> None:
        """Take `features`' products as computed before (`sft.report.cache`) instead of computing them."""
        if sums.shape[0] != self.resamples or swapped.shape[0] != self.resamples:
            raise ValueError(f"{sums.shape[0]} resamples remembered; this report draws {self.resamples}")
        self._sums[id(features)] = (features, (sums, swapped))

    def total(self, features: sparse.spmatrix) -> np.ndarray:
        """(1, s): the column sums of `features` over the examples as they are."""
        key = id(features)
        if key not in self._totals:
            self._totals[key] = (features, np.asarray(features.sum(axis=0)))
        return self._totals[key][1]

    def values(self, parts: list[Sufficient]) -> np.ndarray:
        """(B,): a metric in every resample, its statistics `parts` (one per seed) pooled per example;
        kept, so a reference compared with 19 others is finished once."""
        key = tuple(map(id, parts))
        if key not in self._values:
            pooled = self.pooled_sums([part.features for part in parts])
            self._values[key] = (parts, parts[0].finish(pooled))
        return self._values[key][1]

    def pooled_sums(self, parts: list[sparse.spmatrix]) -> np.ndarray:
        """(B, s): the resampled sums of the examples' statistics summed over `parts` (seeds): an example
        is drawn with all its seeds."""
        return sum((self.sums(part) for part in parts[1:]), self.sums(parts[0]))

    def moved(self, parts_a: list[sparse.spmatrix], parts_b: list[sparse.spmatrix]) -> np.ndarray:
        """(B, s): what each swap pattern moves from b's sums to a's (summed over the parts)."""
        return np.asarray(sum(map(self.swapped, parts_b)) - sum(map(self.swapped, parts_a)))


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
    half = float(stdtrit(n - 1, 0.5 + level / 2)) * std / math.sqrt(n)
    return Interval(mean - half, mean + half, "t")
