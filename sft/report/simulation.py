"""Known truths for the report's statistics (`sft.report.design`): simulated few-shot results whose true
accuracy is known, to measure how often the intervals cover it and how often the tests reject a true
"no difference". tests/report/test_design.py runs a few cells; benchmarks/simulation.py the full sweep.

A simulated experiment: S seeds scored on the same n test examples. Example k has a difficulty b_k
(on the logit scale; with clusters, b_k = the cluster's c_g + the example's own u_k), seed j a shift
a_j, and the answer is right with probability expit(mu + a_j + b_k), independently given those. The
truth of an experiment is the accuracy expected over seeds and examples; with one seed, the accuracy
expected over examples for that seed (one run cannot speak for other seeds). Two experiments under
"no difference" have the same mu and the same test examples, with seed shifts of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtri, stdtrit
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # scikit-learn's dependency

from sft.report.comparisons import mcnemar_exact
from sft.report.design import (
    Components,
    components,
    detectable,
    effective_examples,
    interval,
    mcnemar_mid_p,
    t_test,
    wilson,
)
from sft.report.intervals import Resampler

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(64)  # E[f(Z)], Z standard normal: sum(w f(x)) / sqrt(2 pi)


@dataclass(frozen=True)
class Design:
    """One cell of the sweep."""

    examples: int
    seeds: int
    seed_sd: float = 0.0  # of a_j (logit scale): 0 is "no seed variance"
    example_sd: float = 1.0  # of an example's own difficulty u_k
    cluster_size: int = 1  # examples per cluster; 1: no clustering
    cluster_sd: float = 0.0  # of a cluster's difficulty c_g
    mu: float = 0.8  # logit of the typical accuracy (about 0.69)

    @property
    def clusters(self) -> np.ndarray | None:
        if self.cluster_size <= 1:
            return None
        return np.arange(self.examples) // self.cluster_size

    @property
    def units(self) -> int:
        return -(-self.examples // self.cluster_size)

    def label(self) -> str:
        seeds = "seed var" if self.seed_sd else "no seed var"
        clusters = f"clusters of {self.cluster_size}" if self.cluster_size > 1 else "no clusters"
        return f"n={self.examples}, S={self.seeds}, {seeds}, {clusters}"


def expected_accuracy(mu: float, sd: float) -> float:
    """E[expit(mu + sd Z)], Z standard normal (Gauss-Hermite)."""
    return float(np.sum(_WEIGHTS * expit(mu + sd * _NODES)) / math.sqrt(2 * math.pi))


def truth(design: Design, shift: float | None = None) -> float:
    """The experiment's true accuracy; `shift`: that of the one seed with this shift."""
    examples = math.hypot(design.example_sd, design.cluster_sd)
    if shift is not None:
        return expected_accuracy(design.mu + shift, examples)
    return expected_accuracy(design.mu, math.hypot(examples, design.seed_sd))


def difficulties(design: Design, rng: np.random.Generator) -> np.ndarray:
    """(n,) b_k of one test set."""
    own = rng.normal(0, design.example_sd, design.examples)
    if design.cluster_size <= 1:
        return own
    return own + rng.normal(0, design.cluster_sd, design.units)[np.arange(design.examples) // design.cluster_size]


def answers(design: Design, test: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """((S, n) 0/1 right answers, (S,) seed shifts) of one experiment on the test set `test`."""
    shifts = rng.normal(0, design.seed_sd, design.seeds)
    right = rng.random((design.seeds, design.examples)) < expit(design.mu + shifts[:, None] + test[None, :])
    return right.astype(float), shifts


def accuracy_components(right: np.ndarray, counts: np.ndarray, design: Design) -> Components:
    """The components of the mean accuracy of (S, n) answers, from the (n, B) example resample counts."""
    values = right.mean(axis=1)
    resampled = (right @ counts) / counts.sum(axis=0)[None, :]
    return components(values, resampled, design.examples, design.units)


def single_interval(right: np.ndarray, counts: np.ndarray, design: Design, level: float) -> tuple[float, float]:
    """One run's accuracy: Wilson, at the effective number of examples when they are clustered."""
    p = float(right.mean())
    if design.cluster_size <= 1:
        return wilson(p * design.examples, design.examples, level)
    n = effective_examples(p, design.examples, accuracy_components(right[None, :], counts, design).variance)
    return wilson(p * n, n, level)


def normal_interval(right: np.ndarray, level: float) -> tuple[float, float]:
    """The textbook normal (Wald) interval p -/+ z sqrt(p (1 - p) / n): too narrow at small n."""
    p, n = float(right.mean()), right.size
    half = float(ndtri(0.5 + level / 2)) * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def seeds_t_interval(right: np.ndarray, level: float) -> tuple[float, float]:
    """The report's former interval for several seeds: the t-interval of the seed means, blind to the
    test examples every seed shares."""
    values = right.mean(axis=1)
    half = float(stdtrit(len(values) - 1, 0.5 + level / 2)) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()) - half, float(values.mean()) + half


@dataclass(frozen=True)
class Cell:
    """What one cell's simulations found."""

    design: Design
    simulations: int
    coverage: float  # the design's interval (Wilson for one seed, variance components for several)
    rejections: float | None  # the design's test under a true null; None where one seed cannot test it
    mcnemar_mid_p: float | None  # one seed, no clusters: McNemar's mid-p
    detectable: float  # mean minimal detectable difference at 80% power
    naive_coverage: float  # normal interval (one seed) or the former t over seeds (several)


def simulate(design: Design, simulations: int, seed: int = 0, level: float = 0.95, resamples: int = 400) -> Cell:
    """Coverage and type-I error of the design's interval and test over `simulations` simulated
    results (fixed `seed`). One BLAS thread: the products are small, and threads only contend."""
    with threadpool_limits(1):
        return _simulate(design, simulations, seed, level, resamples)


def _simulate(design: Design, simulations: int, seed: int, level: float, resamples: int) -> Cell:
    rng = np.random.default_rng([seed, design.examples, design.seeds, int(design.seed_sd * 100), design.cluster_size])
    resampler = Resampler(resamples, seed, design.clusters)
    counts, swaps = resampler.counts(design.examples), resampler.swaps(design.examples)
    alpha = 1 - level
    covered = naive = rejected = rejected_mid = 0
    mdd = 0.0
    testable = design.seeds > 1 or design.seed_sd == 0
    for _ in range(simulations):
        test = difficulties(design, rng)
        right, shifts = answers(design, test, rng)
        other, _ = answers(design, test, rng)
        if design.seeds == 1:
            target = truth(design, float(shifts[0]))
            low, high = single_interval(right[0], counts, design, level)
            naive_low, naive_high = normal_interval(right[0], level)
        else:
            target = truth(design)
            low, high = interval(accuracy_components(right, counts, design), level, (0.0, 1.0))
            naive_low, naive_high = seeds_t_interval(right, level)
        covered += low <= target <= high
        naive += naive_low <= target <= naive_high
        differences = accuracy_components(right - other, counts, design)
        mdd += detectable(differences, alpha)
        if not testable:
            continue
        if design.seeds > 1:
            rejected += t_test(differences) < alpha
        elif design.cluster_size > 1:  # clusters swapped together
            observed = abs(float((right - other).sum()))
            moved = (other - right)[0] @ swaps
            extreme = np.count_nonzero(np.abs((right - other).sum() + 2 * moved) >= observed - 1e-9)
            rejected += (1 + extreme) / (1 + resamples) < alpha
        else:
            exact, only_a, only_b = mcnemar_exact(right[0] > 0, other[0] > 0)
            rejected += exact < alpha
            rejected_mid += mcnemar_mid_p(only_a, only_b) < alpha
    share = 1 / simulations
    mid = rejected_mid * share if design.seeds == 1 and design.cluster_size == 1 and testable else None
    return Cell(design, simulations, covered * share, rejected * share if testable else None, mid, mdd * share,
                naive * share)  # fmt: skip


def sweep(
    examples: tuple[int, ...] = (30, 100, 300, 1000), seeds: tuple[int, ...] = (1, 3, 5), cluster_size: int = 5
) -> list[Design]:
    """Every cell of the issue's grid: n x seeds x {no seed variance, seed variance} x {no clusters, clusters}."""
    return [
        Design(n, s, seed_sd=seed_sd, cluster_size=size, cluster_sd=0.8 if size > 1 else 0.0)
        for n in examples
        for s in seeds
        for seed_sd in (0.0, 0.3)
        for size in (1, cluster_size)
    ]
