"""sft.report.design: Wilson and McNemar's mid-p against scipy, the variance components against the
crossed-design ANOVA estimator, power planning, clustered runs through `aggregate`; and (slow) the
simulations of sft.report.simulation: 95% intervals cover 93-97% of known truths, tests reject a true
null at most 5.5% of the time, and the intervals they replace fail where they should."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.report import planted_config, planted_predictions, write_scored_run
from scipy import stats

from sft.report.aggregate import ReportOptions, aggregate
from sft.report.design import (
    components,
    detectable,
    effective_examples,
    interval,
    mcnemar_mid_p,
    needed,
    t_test,
    wilson,
)
from sft.report.intervals import Resampler
from sft.report.simulation import Design, simulate


@pytest.mark.parametrize(("successes", "n"), [(0, 30), (30, 30), (21, 30), (3, 7), (700, 1000)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_wilson_equals_scipy(successes, n, level):
    expected = stats.binomtest(successes, n).proportion_ci(level, method="wilson")
    assert wilson(successes, n, level) == pytest.approx((expected.low, expected.high))
    assert wilson(0, 30, 0.95)[1] > 0.05  # never the ±0 of a normal interval at 0%


@pytest.mark.parametrize(("only_a", "only_b"), [(0, 0), (4, 1), (1, 4), (10, 10), (50, 10), (0, 7)])
def test_mcnemar_mid_p_is_the_exact_p_less_the_observed_split(only_a, only_b):
    d, k = only_a + only_b, min(only_a, only_b)
    exact = min(1.0, 2 * stats.binom.cdf(k, d, 0.5)) if d else 1.0
    expected = min(1.0, 2 * stats.binom.cdf(k, d, 0.5) - stats.binom.pmf(k, d, 0.5)) if d else 1.0
    assert mcnemar_mid_p(only_a, only_b) == pytest.approx(expected)
    assert mcnemar_mid_p(only_a, only_b) <= exact


def crossed(seeds: int, n: int, seed_sd: float, example_sd: float, rng: np.random.Generator) -> np.ndarray:
    """(S, n) 0/1: seeds x test examples, right with probability expit(0.5 + a_j + b_k)."""
    logits = 0.5 + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, example_sd, (1, n))
    return (rng.random((seeds, n)) < 1 / (1 + np.exp(-logits))).astype(float)


@pytest.mark.parametrize(
    ("seed_sd", "example_sd", "mostly_seeds"), [(0.5, 1.0, True), (0.0, 1.5, False), (0.3, 0.0, True)]
)
def test_components_of_accuracy_match_the_crossed_anova_estimator(seed_sd, example_sd, mostly_seeds):
    seeds, n = 4, 300
    right = crossed(seeds, n, seed_sd, example_sd, np.random.default_rng(3))
    counts = Resampler(4000, 0).counts(n)
    found = components(right.mean(axis=1), right @ counts / counts.sum(axis=0), n)
    # two-way ANOVA without replication: var(mean) = (MS_seeds + MS_examples - MS_residual) / (n S)
    grand = right.mean()
    ms_seeds = n * np.sum((right.mean(axis=1) - grand) ** 2) / (seeds - 1)
    ms_examples = seeds * np.sum((right.mean(axis=0) - grand) ** 2) / (n - 1)
    residual = right - right.mean(axis=1, keepdims=True) - right.mean(axis=0, keepdims=True) + grand
    ms_residual = np.sum(residual**2) / ((seeds - 1) * (n - 1))
    anova = (ms_seeds + ms_examples - ms_residual) / (n * seeds)
    assert found.variance == pytest.approx(anova, rel=0.1)
    assert found.within == pytest.approx(ms_residual / n, rel=0.1)
    shares = found.shares()
    assert shares is not None and sum(shares) == pytest.approx(1)
    assert (shares[0] > 0.5) == mostly_seeds  # where the variance comes from follows the truth


def test_seeds_on_different_test_examples_share_no_test_variance():
    rng = np.random.default_rng(5)
    resampled = rng.normal(0, 0.02, (1, 500)) + rng.normal(0, 0.001, (3, 500))  # strongly correlated
    values = np.array([0.70, 0.74, 0.72])
    shared = components(values, resampled, 200)
    apart = components(values, resampled, 200, shared_tests=np.eye(3, dtype=bool))
    assert shared.shared > 0 and apart.shared == 0
    assert apart.variance == pytest.approx(values.var(ddof=1) / 3)
    assert shared.variance > apart.variance
    low, high = interval(apart, 0.95)
    t_low, t_high = stats.t.interval(0.95, apart.df, loc=values.mean(), scale=apart.standard_error)
    assert (low, high) == pytest.approx((t_low, t_high))


def test_one_run_is_its_bootstrap():
    resampled = np.random.default_rng(1).normal(0.7, 0.03, (1, 2000))
    found = components(np.array([0.7]), resampled, 100)
    assert found.seed is None and found.shares() is None
    assert found.variance == pytest.approx(resampled.var(ddof=1) * 100 / 99)
    assert found.df == 99


def power(found, seeds: int, examples: int) -> float:
    """The minimal detectable difference at (seeds, examples) by scipy's t quantiles: the design's, and
    never less than the seeds' own t-test needs."""
    other = found.at(seeds, examples)
    mdd = (stats.t.ppf(0.975, other.df) + stats.t.ppf(0.8, other.df)) * np.sqrt(other.variance)
    if other.spread is None:
        return mdd
    alone = (stats.t.ppf(0.975, seeds - 1) + stats.t.ppf(0.8, seeds - 1)) * np.sqrt(other.spread / seeds)
    return max(mdd, alone)


@pytest.mark.parametrize(
    ("differences", "seed_noise", "test_noise", "helps"),
    [([0.01, 0.012, 0.008], 0.001, 0.02, "examples"), ([0.01, 0.06, -0.02], 0.001, 0.002, "seeds")],
)
def test_power_planning_is_consistent(differences, seed_noise, test_noise, helps):
    rng = np.random.default_rng(2)
    differences = np.array(differences)
    resampled = differences[:, None] + rng.normal(0, test_noise, (1, 1000)) + rng.normal(0, seed_noise, (3, 1000))
    found = components(differences, resampled, 200)
    assert 0.005 < abs(found.mean) < detectable(found, 0.05) and t_test(found) > 0.05  # too small to be found
    assert detectable(found, 0.05) == pytest.approx(power(found, 3, 200), rel=0.05)
    plan = needed(found, found.mean, 0.05)
    if helps == "examples":  # shared test noise: only more test examples narrow it
        assert plan.examples is not None and plan.examples > 200
        assert power(found, 3, plan.examples) <= abs(found.mean) < power(found, 3, int(plan.examples * 0.98))
    else:  # seed to seed: more test examples cannot do it, more seeds can
        assert plan.examples is None and plan.seeds is not None and plan.seeds > 3
        assert power(found, plan.seeds, 200) <= abs(found.mean) < power(found, plan.seeds - 1, 200)


def test_effective_examples_shrink_with_the_design_effect():
    assert effective_examples(0.7, 100, 0.7 * 0.3 / 100) == pytest.approx(100)
    assert effective_examples(0.7, 100, 4 * 0.7 * 0.3 / 100) == pytest.approx(25)
    assert effective_examples(0.7, 100, 0.0001) == 100  # never more than n


def test_clusters_resample_and_swap_whole_clusters():
    clusters = np.repeat(np.arange(20), 5)
    resampler = Resampler(50, 0, clusters)
    counts, swaps = resampler.counts(100), resampler.swaps(100)
    assert np.all(counts.reshape(20, 5, 50) == counts[::5][:, None, :])
    assert np.all(swaps.reshape(20, 5, 50) == swaps[::5][:, None, :])
    assert np.all(counts.sum(axis=0) == 100)
    assert Resampler(50, 0).counts(100).shape == (100, 50)  # other sizes: examples as before
    assert resampler.counts(60).shape == (60, 50)


def test_clustered_runs_through_aggregate(tmp_path):
    n = 120
    for name, wrong, icl in (("a", {i for i in range(n) if i // 10 % 3 == 0}, 0), ("b", set(range(0, n, 5)), 1)):
        raw = planted_config(icl)
        raw["evaluation"] = {"cluster_column": "document"}
        rows = planted_predictions(n, wrong)  # a: whole documents wrong, the clusters matter
        for index, row in enumerate(rows):
            row["document"] = f"doc{index // 10}"
        write_scored_run(tmp_path, name, 1, raw, rows)
    json_path, _ = aggregate(tmp_path, ReportOptions(plots=frozenset(), mcnemar="mid-p"))
    document = json.loads(json_path.read_text(encoding="utf-8"))
    (section,) = document["statistics"]["sections"]
    (accuracy,) = [c for c in section["comparisons"] if c["metric"] == "accuracy"]
    assert accuracy["test"] == "permutation"  # McNemar assumes independent examples: clusters are swapped
    shown = section["experiment_intervals"]["a"]["accuracy"]
    plain = stats.binomtest(80, n).proportion_ci(0.95, method="wilson")
    assert shown["kind"] == "wilson" and shown["low"] <= 80 / n <= shown["high"]
    assert shown["low"] < plain.low and shown["high"] > plain.high  # at the effective size: wider
    cached = list((tmp_path / "_statistics").glob("*.safetensors"))
    assert len(cached) == 2


def test_mcnemar_mid_p_option(tmp_path):
    n = 60
    write_scored_run(tmp_path, "a", 1, planted_config(0), planted_predictions(n, {1, 2, 3, 4, 5}))
    write_scored_run(tmp_path, "b", 1, planted_config(1), planted_predictions(n, {1}))
    exact = 2 * stats.binom.cdf(0, 4, 0.5)
    for variant, expected in (("exact", exact), ("mid-p", exact - stats.binom.pmf(0, 4, 0.5))):
        document = json.loads(
            aggregate(tmp_path, ReportOptions(plots=frozenset(), mcnemar=variant))[0].read_text(encoding="utf-8")
        )
        (section,) = document["statistics"]["sections"]
        (accuracy,) = [c for c in section["comparisons"] if c["metric"] == "accuracy"]
        assert accuracy["p_value"] == pytest.approx(expected) and accuracy["discordant"] == [0, 4]
        assert document["statistics"]["mcnemar"] == variant
    with pytest.raises(ValueError, match=r"^--mcnemar: unknown variant 'mid'"):
        aggregate(tmp_path, ReportOptions(mcnemar="mid"))


# -- proof by simulation (fixed seeds; the full sweep is benchmarks/simulation.py) -----------------------

CELLS = [
    Design(30, 1),
    Design(100, 3, seed_sd=0.3),
    Design(30, 5, cluster_size=5, cluster_sd=0.8),
    Design(300, 3, seed_sd=0.3, cluster_size=5, cluster_sd=0.8),
    Design(1000, 1, cluster_size=5, cluster_sd=0.8),
    Design(300, 5),
]


@pytest.mark.slow
@pytest.mark.parametrize("design", CELLS, ids=lambda design: design.label())
def test_intervals_cover_and_tests_hold_their_level_in_simulation(design):
    cell = simulate(design, 2000, seed=0)
    assert 0.93 <= cell.coverage <= 0.97, cell
    if cell.rejections is not None:
        assert cell.rejections <= 0.055, cell
    if cell.mcnemar_mid_p is not None:
        assert cell.mcnemar_mid_p <= 0.055, cell


@pytest.mark.slow
def test_the_intervals_replaced_fail_in_simulation():
    """What the report did before, and the textbook normal interval, miss the truth far more than 5%:
    the simulations can tell a wrong interval from a right one."""
    small = simulate(Design(30, 1, mu=3.0), 2000, seed=0)  # accuracy about 0.93 on 30 examples
    assert small.naive_coverage < 0.9 and 0.93 <= small.coverage <= 0.97, small
    shared = simulate(Design(100, 3, cluster_size=5, cluster_sd=0.8), 2000, seed=0)  # t over seeds only
    assert shared.naive_coverage < 0.85 and 0.93 <= shared.coverage <= 0.97, shared
