"""sft.report.intervals / comparisons / statistics: intervals and p-values against reference
implementations (scipy.stats.bootstrap, scipy.stats.permutation_test, an exact binomial McNemar written
out here), Holm against hand-worked numbers, and planted differences through `aggregate`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers.report import (
    build_planted,
    build_results,
    planted_config,
    planted_predictions,
    write_scored_run,
)
from scipy import sparse, stats

from sft.config import EvaluationConfig
from sft.evaluation.batched import sufficient_statistics
from sft.evaluation.metrics import MetricInputs
from sft.report.aggregate import ReportOptions, aggregate
from sft.report.comparisons import holm, mcnemar_exact, paired_difference, permutation_p
from sft.report.intervals import Resampler, bootstrap_interval, leave_one_out, t_interval

LABELS = ["a", "b", "c"]


def inputs(n: int, seed: int) -> MetricInputs:
    rng = np.random.default_rng(seed)
    references = [LABELS[i] for i in rng.integers(0, 3, n)]
    predictions = [r if rng.random() < 0.7 else LABELS[rng.integers(0, 3)] for r in references]
    return MetricInputs(references, predictions, LABELS)


def macro_f1_of_codes(codes: np.ndarray, axis: int = -1) -> np.ndarray:
    """Macro F1 of examples coded reference * 3 + prediction, along `axis`: scipy calls it on resamples."""
    codes = np.moveaxis(np.asarray(codes), axis, -1)
    reference, prediction = codes // 3, codes % 3
    scores = []
    for label in range(3):
        tp = np.sum((reference == label) & (prediction == label), axis=-1)
        size = np.sum(reference == label, axis=-1) + np.sum(prediction == label, axis=-1)
        scores.append(np.where(size > 0, 2 * tp / np.maximum(size, 1), 0.0))
    return np.mean(scores, axis=0)


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_bootstrap_interval_equals_scipy_bootstrap(method, metric):
    data = inputs(250, seed=4)
    names = ["accuracy"] if metric == "accuracy" else ["f1"]
    statistic = sufficient_statistics(data, names, EvaluationConfig())[metric]
    resampler = Resampler(999, seed=7)
    resampled = statistic.finish(resampler.sums(statistic.features))
    jackknife = statistic.finish(leave_one_out(statistic.features))
    low, high = bootstrap_interval(statistic.value(), resampled, 0.95, method, jackknife)
    codes = np.array([LABELS.index(r) * 3 + LABELS.index(p) for r, p in zip(data.references, data.predictions)])
    if metric == "accuracy":
        sample, function = (codes // 3 == codes % 3).astype(float), np.mean
    else:
        sample, function = codes, macro_f1_of_codes
    reference = stats.bootstrap(
        (sample,), function, n_resamples=999, method="BCa" if method == "bca" else "percentile",
        rng=np.random.default_rng(7), vectorized=True,
    )  # fmt: skip
    assert (low, high) == pytest.approx(tuple(reference.confidence_interval), abs=1e-12)
    assert low < statistic.value() < high


def test_resamples_depend_only_on_the_seed_and_the_size():
    features = sparse.csr_matrix(np.ones((40, 1)))
    first, second = Resampler(50, 3), Resampler(50, 3)
    second.counts(17)  # another size drawn first changes nothing
    assert np.array_equal(first.counts(40), second.counts(40))
    assert first.counts(40).sum(axis=0).tolist() == [40.0] * 50  # every resample has n examples
    assert np.array_equal(first.sums(features)[:, 0], np.full(50, 40.0))


def test_t_interval_by_hand():
    # values 0.5 and 0.7: mean 0.6, std 0.141421, t(0.975, 1) = 12.7062; half width 12.7062 * 0.1 = 1.27062
    interval = t_interval(0.6, math.sqrt(0.02), 2, 0.95)
    assert (interval.low, interval.high) == pytest.approx((0.6 - 1.270620, 0.6 + 1.270620), abs=1e-6)
    assert interval.kind == "t"
    assert t_interval(0.6, None, 1, 0.95) is None


def exact_mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar: twice the smaller binomial tail of the discordant pairs, capped at 1."""
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize(("only_a", "only_b"), [(4, 1), (10, 50), (7, 7), (0, 9), (0, 0)])
def test_mcnemar_equals_an_exact_binomial_written_out(only_a, only_b):
    shared_right, shared_wrong = 30, 12
    a = np.array([1] * only_a + [0] * only_b + [1] * shared_right + [0] * shared_wrong)
    b = np.array([0] * only_a + [1] * only_b + [1] * shared_right + [0] * shared_wrong)
    p, found_a, found_b = mcnemar_exact(a, b)
    assert (found_a, found_b) == (only_a, only_b)
    assert p == pytest.approx(exact_mcnemar(only_a, only_b) if only_a + only_b else 1.0, rel=1e-12)


def test_permutation_p_matches_scipy_exact_permutation_test():
    rng = np.random.default_rng(5)
    n = 11  # scipy enumerates all 2^11 swaps
    truth = rng.integers(0, 3, n)
    a = np.where(rng.random(n) < 0.8, truth, (truth + 1) % 3)
    b = np.where(rng.random(n) < 0.4, truth, (truth + 1) % 3)
    data_a = MetricInputs([LABELS[i] for i in truth], [LABELS[i] for i in a], LABELS)
    data_b = MetricInputs([LABELS[i] for i in truth], [LABELS[i] for i in b], LABELS)
    f1_a = sufficient_statistics(data_a, ["f1"], EvaluationConfig())["f1_macro"]
    f1_b = sufficient_statistics(data_b, ["f1"], EvaluationConfig())["f1_macro"]
    found = permutation_p([f1_a], [f1_b], Resampler(20_000, seed=1))

    def difference(x, y, axis=-1):
        return macro_f1_of_codes(x, axis) - macro_f1_of_codes(y, axis)

    reference = stats.permutation_test(
        (truth * 3 + a, truth * 3 + b), difference, permutation_type="samples", vectorized=True
    )  # fmt: skip
    assert found == pytest.approx(reference.pvalue, abs=0.01)
    assert 0.0 < found <= 1.0


def test_paired_difference_equals_scipy_paired_bootstrap():
    data_a, data_b = inputs(200, seed=8), inputs(200, seed=9)
    data_b = MetricInputs(data_a.references, data_b.predictions, LABELS)  # the same examples
    a = sufficient_statistics(data_a, ["accuracy"], EvaluationConfig())["accuracy"]
    b = sufficient_statistics(data_b, ["accuracy"], EvaluationConfig())["accuracy"]
    resampler = Resampler(999, 2)
    difference, low, high = paired_difference([a], [b], resampler, 0.95, "percentile")
    assert difference == pytest.approx(a.value() - b.value())
    reference = stats.bootstrap(
        (a.correct(), b.correct()), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis), paired=True,
        n_resamples=999, method="percentile", rng=np.random.default_rng(2), vectorized=True,
    )  # fmt: skip
    assert (low, high) == pytest.approx(tuple(reference.confidence_interval), abs=1e-12)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4 = 0.02, x3 = 0.03, x2 = 0.06, x1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


# -- through aggregate -------------------------------------------------------------------------------------


def comparisons(document: dict, metric: str) -> dict[str, dict]:
    (section,) = [s for s in document["statistics"]["sections"] if s["dataset"] == "planted/reviews"]
    return {c["experiment"]: c for c in section["comparisons"] if c["metric"] == metric}


def test_planted_differences_of_5_and_60_items_against_a_baseline(tmp_path):
    build_planted(tmp_path)
    json_path, markdown_path = aggregate(tmp_path, ReportOptions(baseline="reference", plots=frozenset({"forest"})))
    document = json.loads(json_path.read_text(encoding="utf-8"))
    accuracy = comparisons(document, "accuracy")
    close, far = accuracy["close"], accuracy["far"]
    assert (close["test"], close["discordant"]) == ("mcnemar", [4, 1])
    assert close["p_value"] == pytest.approx(exact_mcnemar(4, 1))  # 0.375: five items decide nothing
    assert (far["test"], far["discordant"]) == ("mcnemar", [50, 10])
    assert far["p_value"] == pytest.approx(exact_mcnemar(50, 10))
    # Holm over the two comparisons of the table: the smaller p doubled, the larger at least that
    assert far["p_holm"] == pytest.approx(2 * exact_mcnemar(50, 10))
    assert close["p_holm"] == pytest.approx(max(exact_mcnemar(4, 1), 2 * exact_mcnemar(50, 10)))
    assert not close["significant"] and far["significant"]
    assert far["difference"] == pytest.approx(40 / 300) and far["low"] < 40 / 300 < far["high"]
    assert close["role"] == "baseline" and close["reference"] == "reference"
    # the run whose test examples differ is left out, and the report says so
    assert "other-test" not in accuracy
    notes = next(s for s in document["statistics"]["sections"] if s["dataset"] == "planted/reviews")["notes"]
    assert "other-test and reference scored different test examples (seed 1); not compared on those seeds." in notes
    # F1 goes through the permutation test: 60 items differ significantly, 5 do not
    f1 = comparisons(document, "f1_macro")
    assert f1["close"]["test"] == "permutation" and not f1["close"]["significant"] and f1["far"]["significant"]
    markdown = markdown_path.read_text(encoding="utf-8")
    line = next(line for line in markdown.splitlines() if line.startswith("| close "))
    assert line.count("≈") == 5  # every table metric: not different from the baseline
    assert "≈" not in next(line for line in markdown.splitlines() if line.startswith("| far "))
    assert "_plots/planted_reviews_classification_f1_macro_forest.png" in document["plots"]
    assert "(_plots/planted_reviews_classification_f1_macro_forest.png)" in markdown


def test_run_intervals_are_stored_and_shown(tmp_path):
    build_planted(tmp_path)
    json_path, markdown_path = aggregate(tmp_path, ReportOptions(plots=frozenset(), resamples=500, level=0.9))
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["statistics"]["resamples"] == 500 and document["statistics"]["confidence_level"] == 0.9
    (section,) = document["statistics"]["sections"]
    interval = section["run_intervals"]["reference/seed-1"]["accuracy"]
    assert interval["kind"] == "bootstrap" and interval["low"] < 0.75 < interval["high"]
    # one seed of a proportion: the table shows Wilson's interval, the bootstrap stays in run_intervals
    shown = section["experiment_intervals"]["reference"]["accuracy"]
    wilson = stats.binomtest(225, 300).proportion_ci(0.9, method="wilson")
    assert shown["kind"] == "wilson" and (shown["low"], shown["high"]) == pytest.approx((wilson.low, wilson.high))
    assert f"| 0.7500 [{shown['low']:.4f}, {shown['high']:.4f}]" in markdown_path.read_text(encoding="utf-8")
    f1 = section["run_intervals"]["reference/seed-1"]["f1_macro"]
    assert section["experiment_intervals"]["reference"]["f1_macro"] == f1  # not a proportion: the bootstrap
    # no baseline: the reference of each metric is the best of the table
    assert section["references"]["accuracy"] == {"experiment": "far", "role": "best"}
    assert section["references"]["ece"] == {"experiment": "reference", "role": "best"}  # lower is better


def test_several_seeds_count_seed_and_test_variance_in_intervals_and_tests(tmp_path):
    n = 120
    for seed, step in ((1, 3), (2, 4)):  # a: 40 wrong with seed 1, 30 with seed 2
        write_scored_run(tmp_path, "a", seed, planted_config(0), planted_predictions(n, set(range(0, n, step))))
        write_scored_run(tmp_path, "b", seed, planted_config(1), planted_predictions(n, set(range(0, n, 5))))
    write_scored_run(tmp_path, "c", 2, planted_config(2), planted_predictions(n, set(range(0, n, 4))))
    document = json.loads(aggregate(tmp_path, ReportOptions(plots=frozenset()))[0].read_text(encoding="utf-8"))
    accuracy = comparisons(document, "accuracy")
    assert accuracy["a"]["reference"] == "b" and accuracy["a"]["seeds"] == [1, 2]
    assert accuracy["a"]["test"] == "seeds×examples t" and accuracy["a"]["examples"] == n
    per_seed = [(n - 40) / n - (n - 24) / n, (n - 30) / n - (n - 24) / n]
    assert accuracy["a"]["difference"] == pytest.approx(np.mean(per_seed))  # the mean of the seeds' differences
    assert accuracy["a"]["low"] < accuracy["a"]["difference"] < accuracy["a"]["high"]
    assert accuracy["a"]["detectable"] > 0 and accuracy["a"]["df"] >= 1
    assert accuracy["c"]["seeds"] == [2] and accuracy["c"]["test"] == "mcnemar"  # only the seed both ran
    (section,) = document["statistics"]["sections"]
    values = [row["metrics"]["accuracy"] for row in document["rows"] if row["experiment"] == "a"]
    t_low, t_high = stats.t.interval(0.95, 1, loc=np.mean(values), scale=np.std(values, ddof=1) / np.sqrt(2))
    shown = section["experiment_intervals"]["a"]["accuracy"]
    assert shown["kind"] == "seeds+examples" and shown["low"] < np.mean(values) < shown["high"]
    # never narrower than the seeds' own t-interval (one degree of freedom with two seeds): the seeds differ
    # by far more than the shared test examples explain, so that is what it shows
    assert shown["low"] == pytest.approx(t_low) and shown["high"] == pytest.approx(min(t_high, 1.0))  # a proportion
    components = section["variance_components"]["a"]["accuracy"]
    assert components["seeds"] == 2 and components["examples"] == n
    assert components["share_seeds"] + components["share_test_examples"] == pytest.approx(1)
    assert section["experiment_intervals"]["c"]["accuracy"]["kind"] == "wilson"


def test_runs_without_predictions_change_nothing_else(tmp_path):
    build_results(tmp_path)  # no predictions.jsonl anywhere
    json_path, markdown_path = aggregate(tmp_path, ReportOptions(plots=frozenset()))
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["problems"] == []
    assert all(not s["comparisons"] and not s["run_intervals"] for s in document["statistics"]["sections"])
    assert "### Paired comparisons" not in markdown_path.read_text(encoding="utf-8")
    without, _ = aggregate(tmp_path, ReportOptions(plots=frozenset(), statistics=False))
    assert json.loads(without.read_text(encoding="utf-8"))["statistics"] is None


def test_a_recomputed_metric_that_disagrees_gets_no_interval(tmp_path):
    path = write_scored_run(tmp_path, "a", 1, planted_config(0), planted_predictions(60, {1, 2}))
    write_scored_run(tmp_path, "b", 1, planted_config(1), planted_predictions(60, {3}))
    results = json.loads(path.read_text(encoding="utf-8"))
    results["metrics"]["accuracy"] = 0.5  # not what the predictions give
    path.write_text(json.dumps(results), encoding="utf-8")
    document = json.loads(aggregate(tmp_path, ReportOptions(plots=frozenset()))[0].read_text(encoding="utf-8"))
    (section,) = document["statistics"]["sections"]
    assert "accuracy" not in section["run_intervals"]["a/seed-1"] and "f1_macro" in section["run_intervals"]["a/seed-1"]
    assert any("a/seed-1/predictions.jsonl: accuracy recomputed" in note for note in section["notes"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ReportOptions(baseline="refrence"), "--baseline: no finished experiment is named 'refrence'"),
        (ReportOptions(level=1.5), "--confidence: 1.5"),
        (ReportOptions(method="student"), "--interval-method: unknown method 'student'"),
        (ReportOptions(resamples=0), "--resamples: 0"),
    ],
)
def test_bad_statistics_options_fail_before_writing(tmp_path, options, message):
    build_planted(tmp_path)
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        aggregate(tmp_path, options)
    assert not (tmp_path / "aggregated_results.md").exists()


def test_cli_passes_the_statistics_options(tmp_path):
    from typer.testing import CliRunner

    from sft.cli import app

    build_planted(tmp_path)
    args = ["aggregate", str(tmp_path), "--baseline", "reference", "--resamples", "200", "--confidence", "0.9",
            "--interval-method", "bca", "--plots", "none"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    statistics = json.loads((tmp_path / "aggregated_results.json").read_text(encoding="utf-8"))["statistics"]
    assert (statistics["baseline"], statistics["resamples"], statistics["confidence_level"]) == ("reference", 200, 0.9)
    assert statistics["interval_method"] == "bca"
    bad = CliRunner().invoke(app, ["aggregate", str(tmp_path), "--baseline", "nobody"])
    assert bad.exit_code == 2 and "--baseline: no finished experiment is named 'nobody'" in bad.output


def test_the_test_hash_of_a_run_equals_the_one_computed_from_its_predictions(tmp_path: Path):
    from sft.results.fingerprint import hash_test_inputs

    rows = planted_predictions(20, {1})
    path = write_scored_run(tmp_path, "a", 1, planted_config(0), rows)
    stored = json.loads(path.read_text(encoding="utf-8"))["test_hash"]
    read_back = [json.loads(line) for line in (path.parent / "predictions.jsonl").read_text().splitlines()]
    assert hash_test_inputs(read_back, ["text"]) == stored
    assert hash_test_inputs(read_back[::-1], ["text"]) != stored  # order matters: items are paired by position


def test_generation_runs_get_intervals_and_comparisons(tmp_path):
    from helpers.report import generation_config

    words = ["ein", "Hund", "läuft", "schnell", "über", "die", "grüne", "Wiese"]
    references = [" ".join(words[i % 4 : i % 4 + 4]) for i in range(40)]
    for name, tokens, changed in (("short", 32, 3), ("long", 64, 25)):
        rows = [
            {"en": f"sentence {i}", "reference": reference,
             "prediction": reference if i >= changed else " ".join(reversed(reference.split()))}
            for i, reference in enumerate(references)
        ]  # fmt: skip
        write_scored_run(tmp_path, name, 1, generation_config(tokens), rows)
    document = json.loads(aggregate(tmp_path, ReportOptions(plots=frozenset()))[0].read_text(encoding="utf-8"))
    (section,) = document["statistics"]["sections"]
    assert set(section["run_intervals"]["short/seed-1"]) == {"bleu", "chrf", "rougeL", "exact_match"}
    assert section["notes"] == []  # every recomputed metric matched results.json
    exact = next(c for c in section["comparisons"] if c["metric"] == "exact_match")
    assert (exact["experiment"], exact["reference"], exact["test"]) == ("long", "short", "mcnemar")
    assert exact["discordant"] == [0, 22] and exact["significant"]
