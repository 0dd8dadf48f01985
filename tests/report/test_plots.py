"""sft.report.plots, and the CSV and JSON schema of sft.report.aggregate: PNGs are real images of the documented
size, a failing plot is named, the CSV round-trips through pandas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.report import (
    CLASSIFICATION_RUNS,
    DETERMINISTIC_PREDICTIONS,
    GENERATION_RUNS,
    SEEDS,
    build_results_with_16_shots,
    classification_config,
    tables,
    write_predictions,
    write_results,
)

from sft.report.aggregate import ReportOptions, aggregate, parse_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def results(tmp_path) -> Path:
    return build_results_with_16_shots(tmp_path)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_parse_plots():
    assert parse_plots("metric,confusion") == {"metric", "confusion"}
    assert parse_plots("all") == {"metric", "forest", "confusion", "reliability", "learning_curve"}
    assert parse_plots("none") == frozenset()
    with pytest.raises(ValueError, match="did you mean 'reliability'"):
        parse_plots("reliabilty")


# -- plots ---------------------------------------------------------------------------------------------


def test_plots_are_png_images_of_the_documented_size(results):
    from matplotlib.image import imread

    from sft.report.plots import HEIGHT, WIDTH

    for folder in results.glob("*/seed-*"):
        if folder.parent.name in CLASSIFICATION_RUNS or folder.parent.name == "shots16_default":
            write_predictions(folder)
    document_path, markdown_path = aggregate(results, ReportOptions(plots=parse_plots("all")))
    document = json.loads(document_path.read_text(encoding="utf-8"))
    markdown = markdown_path.read_text(encoding="utf-8")
    experiments = sorted([*CLASSIFICATION_RUNS, "shots16_default"])
    expected = [
        "_plots/cardiffnlp_tweet_eval_sentiment_classification_f1_macro.png",
        "_plots/cardiffnlp_tweet_eval_sentiment_classification_f1_macro_forest.png",
    ] + [f"_plots/{name}/{kind}.png" for name in experiments for kind in ("confusion", "reliability")]
    assert document["plots"] == expected
    for relative in expected:
        path = results / relative
        assert png_size(path) == (WIDTH, HEIGHT) == (640, 400)
        image = imread(path)
        assert image.shape[:2] == (HEIGHT, WIDTH)
        assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas
        assert f"]({relative})" in markdown  # linked with a relative path
    # generation runs get no confusion matrix; the metric plot needs at least two columns
    assert not any(name in plot for plot in document["plots"] for name in GENERATION_RUNS)


def test_plots_are_replaced_not_accumulated(results):
    aggregate(results, ReportOptions(plots=parse_plots("metric")))
    stale = results / "_plots" / "gone" / "confusion.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_SIGNATURE)
    _, markdown_path = aggregate(results, ReportOptions(plots=frozenset()))
    assert not (results / "_plots").exists()
    assert "![" not in markdown_path.read_text(encoding="utf-8")


def test_reliability_bins_give_the_metrics_ece():
    """The diagram's bins are the ones sft.evaluation.metrics' ECE uses: same data, same number."""
    from sft.config import EvaluationConfig
    from sft.evaluation.classification import ece as expected_calibration_error
    from sft.evaluation.metrics import MetricInputs
    from sft.report.plots import expected_calibration_error as diagram_ece
    from sft.report.plots import reliability_bins

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    probabilities = rng.dirichlet(np.ones(3), size=200)
    references = [labels[i] for i in rng.integers(0, 3, size=200)]
    predictions = [labels[i] for i in probabilities.argmax(axis=1)]
    for bins in (1, 5, 10, 15):
        inputs = MetricInputs(references, predictions, labels, probabilities)
        expected = expected_calibration_error(inputs, EvaluationConfig(ece_bins=bins))["ece"]
        correct = (np.array(predictions) == np.array(references)).astype(float)
        found = reliability_bins(probabilities.max(axis=1), correct, bins)
        assert found["counts"].sum() == 200
        assert diagram_ece(found) == pytest.approx(expected, abs=1e-12)


def test_confusion_plot_counts_pool_the_seeds(results, monkeypatch):
    import sft.report.plots

    seen = {}

    def record(path, labels, matrix, title):
        seen[path.parent.name] = (labels, matrix.tolist())
        return path

    monkeypatch.setattr(sft.report.plots, "confusion_plot", record)
    for seed in SEEDS:
        write_predictions(results / "shots8_default" / f"seed-{seed}")
    aggregate(results, ReportOptions(plots=frozenset({"confusion"})))
    labels, matrix = seen["shots8_default"]
    assert labels == ["negative", "neutral", "positive"]
    expected = np.zeros((3, 3), dtype=int)
    for reference, prediction, _, _ in DETERMINISTIC_PREDICTIONS:
        expected[labels.index(reference), labels.index(prediction)] += len(SEEDS)
    assert matrix == expected.tolist()


def test_unreadable_predictions_are_named(results):
    write_predictions(results / "shots8_default" / "seed-1")
    (results / "shots8_default" / "seed-2" / "predictions.jsonl").write_text('{"reference": "neg', encoding="utf-8")
    document_path, _ = aggregate(results, ReportOptions(plots=frozenset({"reliability"})))
    document = json.loads(document_path.read_text(encoding="utf-8"))
    assert document["problems"] == [
        "shots8_default/seed-2/predictions.jsonl: unreadable predictions (JSONDecodeError: Unterminated string "
        "starting at: line 1 column 15 (char 14))"
    ]
    assert document["plots"] == ["_plots/shots8_default/reliability.png"]


# -- CSV -----------------------------------------------------------------------------------------------


def test_csv_round_trips_through_pandas(results):
    import pandas as pd

    document_path, _ = aggregate(results, ReportOptions(plots=frozenset()))
    document = json.loads(document_path.read_text(encoding="utf-8"))
    frame = pd.read_csv(results / "aggregated_results.csv")
    normalized = pd.json_normalize(document["rows"])
    assert len(frame) == len(document["rows"]) == 12
    # the CSV has the columns json_normalize gives (sections that are empty dicts aside) in a fixed order
    empty_sections = {
        f"settings.{key}" for row in document["rows"] for key, value in row["settings"].items() if value == {}
    }
    assert empty_sections and set(frame.columns) - set(normalized.columns) <= empty_sections
    assert list(frame.columns[:3]) == ["experiment", "seed", "status"]
    settings = [c for c in frame.columns if c.startswith("settings.")]
    metrics = [c for c in frame.columns if c.startswith("metrics.")]
    assert metrics == sorted(metrics) and frame.columns.get_loc(settings[-1]) < frame.columns.get_loc(metrics[0])
    for (_, line), row in zip(frame.iterrows(), document["rows"]):
        assert (line["experiment"], line["seed"]) == (row["experiment"], row["seed"])
        for name, value in row["metrics"].items():
            assert line[f"metrics.{name}"] == pytest.approx(value)
        assert line["settings.dataset.shots"] == row["settings"]["dataset.shots"]
        # lists as JSON text
        assert json.loads(line["settings.prompting.input_columns"]) == row["settings"]["prompting.input_columns"]
    assert frame["settings.dataset.shots"].dtype.kind == "i"
    generation = frame[frame["task_type"] == "generation"]
    assert generation["metrics.accuracy"].isna().all() and generation["settings.lora.r"].isna().all()


def test_the_docs_document_the_json_schema():
    from sft.reference import results_page
    from sft.report.aggregate import ROW_FIELDS
    from sft.report.document import AggregatedResults

    page = results_page()
    assert (
        f"| `aggregated_results.json` | `sft.report.document.AggregatedResults` | {AggregatedResults.version()} |"
        in page
    )
    rows = page.split("### `AggregatedResults.rows`", 1)[1].split("<a id=", 1)[0]
    for name in ROW_FIELDS:
        assert f"| `{name}` |" in rows, name


# -- CLI -----------------------------------------------------------------------------------------------


def test_cli_aggregate_with_options(results, tmp_path_factory):
    from typer.testing import CliRunner

    from sft.cli import app

    grid = tmp_path_factory.mktemp("grid") / "grid.jsonnet"
    grid.write_text(json.dumps({"configs": {"extra": classification_config(64), **CLASSIFICATION_RUNS}}))
    runner = CliRunner()
    args = ["aggregate", str(results), "--rows", "lora.init_lora_weights", "--cols", "dataset.shots",
            "--metric", "mcc", "--plots", "none", "--grid", str(grid), "--seeds", "1,2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    markdown = (results / "aggregated_results.md").read_text(encoding="utf-8")
    assert "### mcc by lora.init_lora_weights and dataset.shots" in markdown
    assert "| extra        | 1      | not started |" in markdown
    assert (results / "aggregated_results.csv").is_file()
    bad = runner.invoke(app, ["aggregate", str(results), "--plots", "pie"])
    assert bad.exit_code == 2 and "--plots: unknown plot 'pie'" in bad.output


def test_a_plot_that_fails_is_named_and_the_report_still_written(results):
    write_predictions(results / "shots8_default" / "seed-1")
    # the other seed scored a different label set: the pooled probabilities cannot form one matrix
    odd = {"text": "t", "reference": "negative", "prediction": "negative", "probabilities": {"negative": 1.0}}
    (results / "shots8_default" / "seed-2" / "predictions.jsonl").write_text(json.dumps(odd) + "\n")
    document_path, markdown_path = aggregate(results, ReportOptions(plots=parse_plots("all")))
    document = json.loads(document_path.read_text(encoding="utf-8"))
    assert document["problems"] == ["_plots/shots8_default/reliability.png: plot failed (KeyError: 'neutral')"]
    assert "_plots/shots8_default/confusion.png" in document["plots"]
    assert "reliability.png: plot failed" in markdown_path.read_text(encoding="utf-8")


# -- model selection during training -----------------------------------------------------------------------


def add_selection(results_file: Path, best_step: int, stopped_early: bool) -> None:
    """Give a results.json the record of an early-stopped training (sft.training.selection)."""
    results = json.loads(results_file.read_text(encoding="utf-8"))
    curve = [
        {"step": step, "epoch": step / 4, "train_loss": 1.0 / step, "validation_loss": 1.0 + abs(step - best_step) / 10,
         "metrics": {"accuracy": 0.5, "f1_macro": 0.6 - abs(step - best_step) / 100}}
        for step in range(4, 4 * 8 + 1, 4)
    ]  # fmt: skip
    results["training"] = {
        "train_loss": 0.5,
        "selection": {"metric": "f1_macro", "higher_is_better": True, "best_step": best_step, "best_value": 0.6,
                      "stopped_early": stopped_early, "learning_curve": curve},
    }  # fmt: skip
    results_file.write_text(json.dumps(results), encoding="utf-8")


def test_learning_curves_and_the_best_step_columns(tmp_path):
    from sft.report.plots import HEIGHT, WIDTH

    for seed, (step, stopped) in zip(SEEDS, [(8, True), (16, False)]):
        add_selection(write_results(tmp_path, "selected", seed, classification_config(16), {"accuracy": 0.7}), step,
                      stopped)  # fmt: skip
        write_results(tmp_path, "fixed", seed, classification_config(16, icl=1), {"accuracy": 0.6})
    _, markdown_path = aggregate(tmp_path, ReportOptions(plots=parse_plots("learning_curve")))
    markdown = markdown_path.read_text(encoding="utf-8")
    rows = {row["experiment"]: row for table in tables(markdown).values() for row in table if "experiment" in row}
    assert rows["selected"]["best step"] == "12 ± 5.7"
    assert rows["selected"]["validation metric"] == "0.6000 ± 0.0000 (f1_macro)"
    assert rows["selected"]["stopped early"] == "1/2"
    assert rows["fixed"]["best step"] == "—"
    plot = tmp_path / "_plots" / "selected" / "learning_curve.png"
    assert png_size(plot) == (WIDTH, HEIGHT)
    assert "![learning curve](_plots/selected/learning_curve.png)" in markdown
    assert not (tmp_path / "_plots" / "fixed").exists()
