"""Paired tests between two systems scored on the same test examples, and Holm's correction.

Accuracy-like metrics (the share of examples answered right) get the exact McNemar test: only the
examples where the two systems disagree carry information, and under "no difference" each of them is
a fair coin (the binomial CDF of `scipy.special`). Metrics of the whole confusion matrix (F1, MCC, BLEU) get a
paired permutation test: under "no difference" the two systems' outputs on an example are
exchangeable, so swapping them on a random half of the examples gives the null distribution of the
difference. The difference is reported with a paired bootstrap interval (both systems on the same
resampled examples). Both vectorize like `sft.report.intervals`: a swap is `sums_a + swaps @ (b - a)`
over the per-example statistics (`sft.evaluation.batched.Sufficient`).

With several seeds, an example's statistics are summed over the seeds both experiments share, and the
example stays the unit that is resampled or swapped (its seeds move together).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# the binomial CDF scipy.stats.binom.cdf evaluates, without importing scipy.stats (most of a report's start-up)
from scipy.special import bdtr

from sft.evaluation.batched import Sufficient
from sft.report.intervals import Resampler, bootstrap_interval, leave_one_out


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """(two-sided p, examples only a got right, examples only b got right). Under "no difference" the
    discordant examples are Binomial(d, 1/2), symmetric, so the two-sided p is twice the smaller tail."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return min(1.0, 2 * float(bdtr(min(only_a, only_b), only_a + only_b, 0.5))), only_a, only_b


def _total(parts: list[Sufficient], resampler: Resampler) -> np.ndarray:
    return sum((resampler.total(part.features) for part in parts[1:]), resampler.total(parts[0].features))


def permutation_p(parts_a: list[Sufficient], parts_b: list[Sufficient], resampler: Resampler) -> float:
    """Two-sided p of a paired permutation test of metric(a) - metric(b) with the resampler's swap
    patterns: (1 + patterns at least as extreme) / (1 + patterns), so it is never 0. `parts` are the
    per-seed statistics of one metric; an example's seeds are swapped together."""
    finish = parts_a[0].finish
    total_a, total_b = _total(parts_a, resampler), _total(parts_b, resampler)
    observed = float((finish(total_a) - finish(total_b))[0])
    moved = resampler.moved([part.features for part in parts_a], [part.features for part in parts_b])
    differences = finish(total_a + moved) - finish(total_b - moved)
    extreme = np.count_nonzero(np.abs(differences) >= abs(observed) - 1e-12 * max(1.0, abs(observed)))
    return float((1 + extreme) / (1 + resampler.resamples))


def paired_difference(
    parts_a: list[Sufficient], parts_b: list[Sufficient], resampler: Resampler, level: float, method: str
) -> tuple[float, float, float]:
    """(metric(a) - metric(b), low, high): the paired bootstrap interval of the difference."""
    finish = parts_a[0].finish
    point = float((finish(_total(parts_a, resampler)) - finish(_total(parts_b, resampler)))[0])
    resampled = resampler.values(parts_a) - resampler.values(parts_b)
    jackknife = None
    if method == "bca":
        pooled_a = sum((part.features for part in parts_a[1:]), parts_a[0].features)
        pooled_b = sum((part.features for part in parts_b[1:]), parts_b[0].features)
        jackknife = finish(leave_one_out(pooled_a)) - finish(leave_one_out(pooled_b))
    low, high = bootstrap_interval(point, resampled, level, method, jackknife)
    return point, low, high


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the k-th smallest is multiplied by
    (m - k + 1), then made non-decreasing and capped at 1. Controls the family-wise error rate."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One experiment against the reference (the best of its table, or the chosen baseline) on a metric."""

    metric: str
    experiment: str
    reference: str
    role: str  # "best" or "baseline"
    test: str  # "mcnemar" or "permutation"
    seeds: tuple  # the seeds both have, whose predictions were paired
    examples: int
    difference: float  # experiment - reference
    low: float
    high: float
    p_value: float
    p_holm: float = float("nan")
    significant: bool = False
    discordant: tuple[int, int] | None = None  # McNemar: (only the experiment right, only the reference right)
    detectable: float = float("nan")  # the smallest difference this design detects at 80% power
    seeds_needed: int | None = None  # seeds (same test examples) that would detect `difference` at 80% power
    examples_needed: int | None = None  # test examples (same seeds) that would detect it
    df: float | None = None  # degrees of freedom of the design's standard error

    @property
    def underpowered(self) -> bool:
        """Not significant, and smaller than what the design could detect: a missing difference, not an absent one."""
        return not self.significant and abs(self.difference) < self.detectable

    def as_dict(self) -> dict:
        found = {key: getattr(self, key) for key in self.__dataclass_fields__}
        found["seeds"] = list(self.seeds)
        found["discordant"] = list(self.discordant) if self.discordant else None
        return found
