"""Statistics of the few-shot design: several seeds scored on one set of test examples.

A few-shot score varies with two things: the seed (which shots were drawn, how training went) and
which test examples were scored. With S seeds on the same n test examples, the mean over seeds is

    mean = mu + (seed effects averaged over S) + (test-example effects shared by every seed) + noise

and its variance has three components (a crossed seeds x examples design, one score per cell):
`seed` / S (seed to seed, net of test noise), `shared` (the test examples' effect every seed shares:
it does not shrink with more seeds) and `within` / S (each seed's own noise on each example).

This module estimates them with a *variance-components* interval rather than a two-level bootstrap.
With 3 seeds a bootstrap over seeds resamples 3 values: at most 10 distinct means, a variance too small
by (S - 1) / S, and percentile intervals that cover far less than they claim (the simulation in
tests/report/test_design.py shows it). Instead:

- the seeds' spread `s2` (sample variance of the per-seed metrics, S - 1 degrees of freedom) estimates
  seed + within;
- the bootstrap over test examples, the *same* example resamples for every seed (the resamples of
  `sft.report.intervals.Resampler` depend only on the number of examples), gives each seed's
  resampled metric; their covariance between two seeds is the shared test component, their variance
  shared + within;
- the variance of the mean is s2 / S + shared, with Satterthwaite's degrees of freedom for its
  t quantile: with few seeds and seed noise dominating it is Student's t on S - 1 (exact under
  normality), with test noise dominating it tends to the normal.

It works for every metric with a bootstrap (F1, MCC, BLEU are not means of per-example scores) from
what the report already keeps per run (`sft.report.cache`), and the same formulas give a difference
between two experiments paired by seed and example, its p-value, and the smallest difference the
design could detect at 80% power (`power`). Seeds scored on different test examples share no test
component: their covariance counts as 0, and s2 / S alone is then the right variance.

Single runs of a proportion (accuracy, exact match) get Wilson's interval instead of the percentile
bootstrap, which is too narrow at small n and collapses to a point at 0% or 100%. With clustered test
examples (`evaluation.cluster_column`) the bootstrap resamples whole clusters, and Wilson's interval is
taken at the effective number of examples (n divided by the design effect).

The normal and t distributions come from `scipy.special`, not `scipy.stats`: importing the latter is
most of a report's start-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import bdtr, ndtri, stdtr, stdtrit

MCNEMAR = ("exact", "mid-p")  # McNemar's test for one seed: the exact binomial, or its mid-p variant
POWER = 0.8  # the power at which `detectable` differences are reported
_MAX_SEEDS = 1000  # planning searches stop here: beyond, "more seeds" is no advice
_MAX_EXAMPLES = 10_000_000


@dataclass(frozen=True)
class Components:
    """The variance components of a mean over `seeds` runs on `examples` test examples (or clusters
    `units` of them), each in units of the variance of the mean at this design."""

    mean: float
    seeds: int
    examples: int
    units: int  # the resampled units: examples, or clusters of them
    spread: float | None  # s2: sample variance of the per-seed values; None with one seed
    shared: float  # test-example variance every seed shares (sigma_b^2 / n)
    within: float  # each seed's own test noise (sigma_e^2 / n)
    variance: float  # of the mean
    df: float  # Satterthwaite's degrees of freedom of `variance`

    @property
    def seed(self) -> float | None:
        """Seed-to-seed variance of one run's value, net of test noise (sigma_a^2; None with one seed)."""
        return None if self.spread is None else max(self.spread - self.within, 0.0)

    @property
    def standard_error(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    def shares(self) -> tuple[float, float] | None:
        """(share from seeds, share from test examples) of the mean's variance; None with one seed.
        The noise of each seed on each example shrinks with both; it counts as test examples."""
        if self.seed is None:
            return None
        from_seeds = self.seed / self.seeds
        from_examples = self.shared + self.within / self.seeds
        total = from_seeds + from_examples
        if total <= 0:
            return None
        return from_seeds / total, from_examples / total

    def at(self, seeds: int, examples: int) -> Components:
        """The same components at another design: what `seeds` seeds on `examples` test examples would give."""
        scale = self.examples / examples
        within, shared = self.within * scale, self.shared * scale
        spread = (self.seed or 0.0) + within if seeds > 1 else None
        units = max(self.units / scale, 2.0)
        variance = (spread / seeds if spread is not None else within) + shared
        df = satterthwaite(spread / seeds, seeds, shared, units) if spread is not None else max(units - 1, 1.0)
        return Components(self.mean, seeds, examples, round(units), spread, shared, within, variance, df)

    def critical(self, probability: float) -> float:
        """The multiple of the standard error at `probability` (0.975 for a 95% interval): the t quantile on
        the design's degrees of freedom, but never less than what the seeds' spread alone asks (Student's t
        on S - 1); with few seeds Satterthwaite's degrees of freedom alone make intervals too narrow."""
        quantile = t_quantile(self.df, probability)
        if self.spread is None or self.variance <= 0:
            return quantile
        return max(
            quantile, t_quantile(self.seeds - 1, probability) * math.sqrt(self.spread / self.seeds / self.variance)
        )


def satterthwaite(seed_part: float, seeds: int, test_part: float, units: float) -> float:
    """Degrees of freedom of seed_part + test_part, the first estimated on seeds - 1 degrees of freedom
    (the seeds' spread), the second on units - 1 (the test examples, or clusters, resampled).

    Not Satterthwaite's own 1 / df = w^2 / (S - 1) + (1 - w)^2 / (units - 1) (w: the seed part's share):
    with 3 seeds, a seed spread small by chance shrinks w and inflates df just when the variance is
    underestimated, and intervals cover 92% (the simulations of tests/report/test_design.py). Weighting
    by w itself, 1 / df = w / (S - 1) + (1 - w) / (units - 1), keeps every simulated cell in 93-97%."""
    examples = max(units - 1, 1.0)
    total = seed_part + test_part
    if total <= 0:
        return float(seeds - 1) if seeds > 1 else examples
    share = seed_part / total if seeds > 1 else 0.0
    return float(1 / (share / max(seeds - 1, 1) + (1 - share) / examples))


def components(
    values: np.ndarray,
    resampled: np.ndarray,
    examples: int,
    units: int | None = None,
    shared_tests: np.ndarray | None = None,
) -> Components:
    """The components of the mean of `values` (S per-seed values; or S per-seed differences) from
    `resampled` (S, B): each seed's value in the same B resamples of the test examples.
    `shared_tests[i, j]` says whether seeds i and j scored the same test examples (default: all did);
    `units` is the number of resampled units (clusters; default the examples), for the degrees of freedom."""
    values = np.asarray(values, dtype=float)
    resampled = np.atleast_2d(np.asarray(resampled, dtype=float))
    seeds, resamples = resampled.shape
    units = units or examples
    mean = float(values.mean())
    centred = resampled - resampled.mean(axis=1, keepdims=True)
    # the bootstrap's variance is the plug-in one, low by (units - 1) / units: 17% with 6 clusters
    covariance = centred @ centred.T / max(resamples - 1, 1) * units / max(units - 1, 1)
    spreads = np.diag(covariance)
    if seeds == 1:
        variance = float(spreads[0])
        return Components(mean, 1, examples, units, None, variance, 0.0, variance, float(max(units - 1, 1)))
    same = np.ones((seeds, seeds), bool) if shared_tests is None else np.asarray(shared_tests, bool)
    off = ~np.eye(seeds, dtype=bool)
    # covariance between seeds on different test examples is 0 by design (independent resamples)
    shared = max(float(np.where(same & off, covariance, 0.0).sum()) / (seeds * (seeds - 1)), 0.0)
    within = max(float(spreads.mean()) - shared, 0.0)
    spread = float(values.var(ddof=1))
    variance = spread / seeds + shared
    df = satterthwaite(spread / seeds, seeds, shared, units)
    return Components(mean, seeds, examples, units, spread, shared, within, variance, df)


def t_quantile(df: float, probability: float) -> float:
    return float(stdtrit(df, probability)) if math.isfinite(df) else float(ndtri(probability))


def interval(found: Components, level: float, bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """mean -/+ t(df) x standard error; clipped to `bounds` (a proportion's [0, 1])."""
    half = found.critical(0.5 + level / 2) * found.standard_error
    low, high = found.mean - half, found.mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high


def t_test(found: Components) -> float:
    """Two-sided p of "the mean difference is 0" from components of per-seed differences."""
    if found.variance <= 0:
        return 1.0 if found.mean == 0 else 0.0
    p = 2 * stdtr(found.df, -abs(found.mean) / found.standard_error)
    if found.spread is not None and found.spread > 0:  # as `critical`: the seeds' own t-test must reject too
        p = max(p, 2 * stdtr(found.seeds - 1, -abs(found.mean) / math.sqrt(found.spread / found.seeds)))
    return float(min(1.0, p))


def detectable(found: Components, alpha: float, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at `alpha` finds with probability `power` (the
    minimal detectable difference): (t(1 - alpha/2) + t(power)) x standard error, on the same df."""
    return (found.critical(1 - alpha / 2) + found.critical(power)) * found.standard_error


@dataclass(frozen=True)
class Needed:
    """What would detect a difference at 80% power: seeds at the same test examples, test examples at
    the same seeds (None: not within reach, e.g. more seeds cannot remove shared test noise)."""

    seeds: int | None
    examples: int | None


def needed(found: Components, difference: float, alpha: float, power: float = POWER) -> Needed:
    """Seeds (at this many test examples) or test examples (at this many seeds) whose design detects
    `difference` at `power`, by the same components. With one seed the seed variance is unknown: no
    seed count, and the test-example count assumes none."""
    target = abs(difference)
    if target == 0:
        return Needed(None, None)

    def enough(seeds: int, examples: int) -> bool:
        return detectable(found.at(seeds, examples), alpha, power) <= target

    seeds = None
    if found.seed is not None:
        seeds = _smallest(lambda count: enough(count, found.examples), found.seeds, _MAX_SEEDS, exact=True)
    examples = _smallest(lambda count: enough(found.seeds, count), found.examples, _MAX_EXAMPLES, exact=False)
    return Needed(seeds, examples)


def _smallest(enough: Callable[[int], bool], start: int, limit: int, exact: bool) -> int | None:
    """The smallest count from `start` up to `limit` for which `enough` holds (it only grows with the count),
    by doubling then halving: exactly for seeds, to within 1% for test examples (a plan, not a measurement)."""
    if not enough(limit):
        return None
    low, high = start - 1, max(start, 1)
    while not enough(high):
        low, high = high, min(high * 2, limit)
    while high - low > (1 if exact else max(1, low // 100)):
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def wilson(successes: float, n: float, level: float, df: float | None = None) -> tuple[float, float]:
    """Wilson's score interval for a proportion successes / n; equals
    `scipy.stats.binomtest(k, n).proportion_ci(level, "wilson")`. For clustered examples n is the
    effective size (n over the design effect) and `df` the clusters less one: its t quantile replaces
    the normal one, as few clusters estimate the design effect roughly."""
    if n <= 0:
        return 0.0, 1.0
    z = t_quantile(df, 0.5 + level / 2) if df is not None else float(ndtri(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_mid_p(only_a: int, only_b: int) -> float:
    """McNemar's mid-p: the exact two-sided p minus the probability of the observed split, which the
    exact test counts in full. Less conservative, close to nominal at small counts (Fagerland et al. 2013)."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    smaller = min(only_a, only_b)
    at_most = float(bdtr(smaller, discordant, 0.5))
    below = float(bdtr(smaller - 1, discordant, 0.5)) if smaller > 0 else 0.0
    return min(1.0, 2 * at_most - (at_most - below))


def effective_examples(proportion: float, examples: int, variance: float) -> float:
    """The number of independent examples whose proportion varies as much as the clustered one does
    (`variance`, from the cluster bootstrap): n / design effect, never more than n."""
    if variance <= 0 or not 0 < proportion < 1:
        return float(examples)
    return min(float(examples), proportion * (1 - proportion) / variance)
