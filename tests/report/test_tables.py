"""sft.report.tables pivots: each cell equals brute-force statistics of the runs it pools; bad options fail early."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from helpers.report import (
    CLASSIFICATION_RUNS,
    SEEDS,
    build_results_with_16_shots,
    classification_config,
    score,
    tables,
    write_results,
)
from scipy.stats import t

from sft.report.aggregate import ReportOptions, aggregate, parse_plots


@pytest.fixture
def results(tmp_path) -> Path:
    return build_results_with_16_shots(tmp_path)


def pivot_cells(markdown: str, heading: str) -> dict[tuple[str, ...], dict[str, str]]:
    """The pivot under `### heading` as {row label cells: {column: cell}}."""
    block = markdown.split(f"### {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    width = sum(not name.startswith(("shots=", "r=")) for name in header)
    cells = {}
    for line in lines[1:]:
        values = [cell.strip() for cell in line.strip("|").split("|")]
        cells[tuple(values[:width])] = dict(zip(header[width:], values[width:]))
    return cells


def stats_text(values: list[float]) -> str:
    """A pivot cell: mean ± std, the 95% t-interval of the mean over the runs, and the run count."""
    if len(values) == 1:
        return f"{values[0]:.4f} (1)"
    mean, std, n = statistics.mean(values), statistics.stdev(values), len(values)
    low, high = t.interval(0.95, n - 1, loc=mean, scale=std / n**0.5)
    return f"{mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}] ({n})"


def test_default_pivot_is_initializer_and_icl_by_shots(results):
    _, markdown_path = aggregate(results, ReportOptions(plots=frozenset()))
    markdown = markdown_path.read_text(encoding="utf-8")
    # model.name does not vary, so the default rows keep only the initializer and the in-context examples
    cells = pivot_cells(markdown, "f1_macro by lora.init_lora_weights × inference.icl_examples and dataset.shots")
    f1 = {name: [score(name, seed) - 0.1 for seed in SEEDS] for name in CLASSIFICATION_RUNS}
    assert cells[("—", "0")] == {"shots=0": stats_text(f1["zero-shot_icl0"]), "shots=8": "", "shots=16": ""}
    assert cells[("—", "1")]["shots=0"] == f"**{stats_text(f1['zero-shot_icl1'])}**"
    assert cells[("True", "0")] == {"shots=0": "", "shots=8": stats_text(f1["shots8_default"]),
                                    "shots=16": stats_text([0.5, 0.54])}  # fmt: skip
    assert cells[("gaussian", "0")]["shots=8"] == f"**{stats_text(f1['shots8_gaussian'])}**"
    assert list(cells) == [("—", "0"), ("—", "1"), ("True", "0"), ("gaussian", "0")]


def test_pivot_options_choose_rows_columns_and_metric(results):
    options = ReportOptions(rows=["model", "init_lora_weights"], cols=["lora.r"], metric="accuracy", plots=frozenset())
    _, markdown_path = aggregate(results, options)
    markdown = markdown_path.read_text(encoding="utf-8")
    cells = pivot_cells(markdown, "accuracy by model.name × lora.init_lora_weights and lora.r")
    model = "Qwen/Qwen2.5-0.5B-Instruct"
    zero_shot = [score(name, seed) for name in ("zero-shot_icl0", "zero-shot_icl1") for seed in SEEDS]
    default = [score("shots8_default", seed) for seed in SEEDS] + [0.6, 0.64]
    assert cells[(model, "—")] == {"r=—": stats_text(zero_shot), "r=8": ""}
    assert cells[(model, "True")] == {"r=—": "", "r=8": f"**{stats_text(default)}**"}
    # the cell of default-initialized adapters pools 8 and 16 shots, and the report says so
    assert "Cells pool runs that differ in dataset.shots" in markdown
    # the generation section has no accuracy: it says so instead of a pivot
    assert "No run here has the metric 'accuracy', so there is no pivot." in markdown


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ReportOptions(rows=["modle"]), "--rows: no run has the setting 'modle' (did you mean 'model'?)"),
        (ReportOptions(cols=["init"]), "--cols: no run has the setting 'init'"),
        (
            ReportOptions(cols=["name"]),
            "--cols: no run has the setting 'name' (it matches dataset.args.name, model.name; write one of them)",
        ),
        (ReportOptions(metric="f1_macr"), "--metric: no run has the metric 'f1_macr' (did you mean 'f1_macro'?)"),
    ],
)
def test_unknown_pivot_options_fail_before_writing(results, options, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        aggregate(results, options)
    assert not (results / "aggregated_results.md").exists()


def test_training_columns_show_throughput_padding_and_batching(tmp_path):
    """Runs that recorded their training batching get the training columns; older runs show a dash."""
    for seed, speed in zip(SEEDS, (100.0, 300.0)):
        path = write_results(tmp_path, "packed", seed, classification_config(16), {"accuracy": 0.7})
        results = json.loads(path.read_text(encoding="utf-8"))
        results["training"] = {
            "train_loss": 0.5, "batching_used": "padding_free", "tokens_per_second": speed, "padding_share": 0.0,
        }  # fmt: skip
        path.write_text(json.dumps(results), encoding="utf-8")
        write_results(tmp_path, "older", seed, classification_config(16, icl=1), {"accuracy": 0.6})
    document_path, markdown_path = aggregate(tmp_path, ReportOptions(plots=parse_plots("none")))
    rows = {
        row["experiment"]: row
        for table in tables(markdown_path.read_text(encoding="utf-8")).values()
        for row in table
        if "experiment" in row
    }
    assert (rows["packed"]["train tokens/s"], rows["packed"]["padding"], rows["packed"]["batching"]) == (
        "200",
        "0.0%",
        "padding_free",
    )
    assert rows["older"]["train tokens/s"] == rows["older"]["batching"] == "—"
    document = json.loads(document_path.read_text(encoding="utf-8"))
    packed = [row for row in document["rows"] if row["experiment"] == "packed"]
    assert {row["tokens_per_second"] for row in packed} == {100.0, 300.0}
