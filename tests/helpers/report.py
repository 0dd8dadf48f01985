"""Result files as sft.experiment.run writes them, built through their records, and the report's markdown
tables read back: for the report tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sft.config import parse_config
from sft.results.layout import Run
from sft.results.run_record import ResultsRecord, Timings
from sft.results.states import StatusRecord

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
CLASSIFICATION_METRICS = ["accuracy", "f1_macro", "f1_micro", "mcc", "ece"]
GENERATION_METRICS = ["bleu", "chrf", "rougeL", "exact_match"]


def classification_config(shots: int, icl: int = 0, init: Any = True) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "dataset": {"path": "cardiffnlp/tweet_eval", "args": {"name": "sentiment"}, "shots": shots},
        "model": {"name": MODEL},
        "prompting": {"instruction": "Classify the tweet.", "input_columns": ["text"], "output_column": "label"},
        "inference": {"icl_examples": icl},
    }
    if shots:
        raw["lora"] = {"r": 8, "lora_alpha": 16, "init_lora_weights": init}
        raw["training"] = {"trainer_args": {"num_train_epochs": 3, "learning_rate": 1e-4}}
    return raw


def generation_config(max_new_tokens: int) -> dict[str, Any]:
    return {
        "dataset": {"path": "bentrevett/multi30k", "task_type": "generation", "shots": 0},
        "model": {"name": MODEL},
        "prompting": {"instruction": "Translate.", "input_columns": ["en"], "output_column": "de"},
        "inference": {"generation_args": {"max_new_tokens": max_new_tokens}},
    }


def classification_metrics(score: float) -> dict[str, Any]:
    return {
        "accuracy": score,
        "f1_macro": score - 0.1,
        "f1_micro": score,
        "f1_weighted": score - 0.05,
        "precision_macro": score - 0.02,
        "recall_macro": score - 0.03,
        "mcc": score - 0.3,
        "balanced_accuracy": score - 0.03,
        "ece": 0.123456,
        "per_class": {"negative": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 3}},
        "confusion_matrix": {"labels": ["negative", "positive"], "matrix": [[1, 2], [0, 3]]},
    }


def generation_metrics(score: float) -> dict[str, Any]:
    return {"bleu": score, "chrf": score + 10, "rouge1": 0.5, "rouge2": 0.3, "rougeL": 0.45, "exact_match": 0.1}


def write_results(root: Path, experiment: str, seed: int, raw: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """A results.json as sft.experiment.run writes it (without a test hash, a training key or an adapter)."""
    config = parse_config(raw)
    results = ResultsRecord(
        experiment=experiment,
        seed=seed,
        config_hash=config.config_hash(),
        task_type=config.dataset.task_type,
        metrics=metrics,
        n_test=100,
        test_hash=None,
        n_shots=config.dataset.shots * 3,
        labels=["negative", "neutral", "positive"] if config.dataset.task_type == "classification" else None,
        thresholds=None,
        threshold_source=None,
        training={"train_loss": 1.5} if config.trains else None,
        training_key=None,
        adapter_source=None,
        adapter=None,
        calibration=None,
        timings=Timings(train_seconds=None, inference_seconds=1.25, total_seconds=2.5 + seed),
        versions={"python": "3.11.0"},
        finished_at="2025-01-01T00:00:00+00:00",
        config=config.resolved(),
    )
    folder = Run(experiment, seed, root).folder
    folder.mkdir(parents=True)
    return results.write(folder / ResultsRecord.FILE)


CLASSIFICATION_RUNS = {
    "zero-shot_icl0": classification_config(0, icl=0),
    "zero-shot_icl1": classification_config(0, icl=1),
    "shots8_default": classification_config(8, init=True),
    "shots8_gaussian": classification_config(8, init="gaussian"),
}
GENERATION_RUNS = {"translate_short": generation_config(32), "translate_long": generation_config(64)}
SEEDS = (1, 2)


def score(experiment: str, seed: int) -> float:
    return 0.5 + 0.01 * sorted(CLASSIFICATION_RUNS).index(experiment) + 0.001 * seed


DETERMINISTIC_PREDICTIONS = [  # (reference, prediction, P(negative), P(neutral)); P(positive) is the rest
    ("negative", "negative", 0.7, 0.2),
    ("positive", "negative", 0.5, 0.3),
    ("neutral", "neutral", 0.1, 0.6),
    ("positive", "positive", 0.05, 0.05),
    ("neutral", "positive", 0.2, 0.35),
]


def write_predictions(folder: Path) -> Path:
    """A classification predictions.jsonl with label probabilities."""
    lines = [
        {
            "text": f"tweet {i}",
            "reference": reference,
            "prediction": prediction,
            "probabilities": {"negative": neg, "neutral": neu, "positive": 1 - neg - neu},
        }
        for i, (reference, prediction, neg, neu) in enumerate(DETERMINISTIC_PREDICTIONS)
    ]
    path = folder / "predictions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def write_status(root: Path, experiment: str, seed: int, state: str, **extra: Any) -> Path:
    folder = Run(experiment, seed, root).folder
    folder.mkdir(parents=True, exist_ok=True)
    return StatusRecord(experiment=experiment, seed=seed, state=state, **extra).write(folder / StatusRecord.FILE)


def build_results(root: Path) -> Path:
    """Four classification experiments x two seeds and two generation experiments x one seed."""
    for experiment, raw in CLASSIFICATION_RUNS.items():
        for seed in SEEDS:
            write_results(root, experiment, seed, raw, classification_metrics(score(experiment, seed)))
    for index, (experiment, raw) in enumerate(GENERATION_RUNS.items()):
        write_results(root, experiment, 1, raw, generation_metrics(20.0 + index))
    return root


def build_results_with_16_shots(root: Path) -> Path:
    """The shared runs plus a 16-shot experiment, so the metric runs over three shot counts."""
    build_results(root)
    for seed, value in zip(SEEDS, (0.6, 0.64)):
        write_results(root, "shots16_default", seed, classification_config(16), classification_metrics(value))
    return root


# -- runs with predictions, scored by the metric functions a run uses ------------------------------------

PLANTED_LABELS = ["negative", "neutral", "positive"]


def planted_predictions(n: int, wrong: set[int], seed_offset: int = 0) -> list[dict[str, Any]]:
    """n classification prediction rows; the items in `wrong` get the next label instead of the reference.
    The argmax of the probabilities is the prediction, as the classification task writes it."""
    rows = []
    for i in range(n):
        reference = PLANTED_LABELS[(i + seed_offset) % 3]
        prediction = PLANTED_LABELS[(PLANTED_LABELS.index(reference) + (i in wrong)) % 3]
        confidence = 0.5 + 0.4 * ((i * 37) % 11) / 10
        rest = (1 - confidence) / 2
        probabilities = {label: confidence if label == prediction else rest for label in PLANTED_LABELS}
        rows.append({"text": f"review {i}", "reference": reference, "prediction": prediction,
                     "probabilities": probabilities})  # fmt: skip
    return rows


def write_scored_run(root: Path, experiment: str, seed: int, raw: dict[str, Any], rows: list[dict[str, Any]],
                     test_hash: bool = True) -> Path:  # fmt: skip
    """predictions.jsonl and a results.json whose metrics the task's metric functions computed from them
    (as sft.experiment.run._evaluate does), with the test_hash the run records (left out: older results)."""
    from sft.evaluation.metrics import compute_metrics
    from sft.results.fingerprint import hash_test_inputs
    from sft.tasks import task_for

    config = parse_config(raw)
    task = task_for(config)
    labels = PLANTED_LABELS if config.dataset.task_type != "generation" else None
    metrics = compute_metrics(task.metric_inputs(rows, labels), task.default_metrics, config.evaluation)
    path = write_results(root, experiment, seed, raw, metrics)
    results = ResultsRecord.read(path).model_copy(update={"n_test": len(rows), "labels": labels})
    if test_hash:
        results = results.model_copy(update={"test_hash": hash_test_inputs(rows, config.prompting.input_columns)})
    results.write(path)
    (path.parent / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def planted_config(icl: int) -> dict[str, Any]:
    """A zero-shot classification config on its own dataset (its own report section)."""
    raw = classification_config(0, icl=icl)
    raw["dataset"] = {"path": "planted/reviews", "shots": 0}
    return raw


def build_planted(root: Path, n: int = 300) -> Path:
    """One section, one seed: a reference right on 75% of n items; `close` differs from it on 5 items (4
    better, 1 worse), `far` on 60 (50 better, 10 worse); `other-test` scored other examples."""
    base_wrong = {i for i in range(n) if i % 4 == 0}  # 75% right
    right_now = sorted(base_wrong)
    wrong_now = [i for i in range(n) if i not in base_wrong]
    write_scored_run(root, "reference", 1, planted_config(0), planted_predictions(n, base_wrong))
    close = (base_wrong - set(right_now[:4])) | set(wrong_now[:1])
    write_scored_run(root, "close", 1, planted_config(1), planted_predictions(n, close))
    far = (base_wrong - set(right_now[:50])) | set(wrong_now[:10])
    write_scored_run(root, "far", 1, planted_config(2), planted_predictions(n, far), test_hash=False)
    write_scored_run(root, "other-test", 1, planted_config(3), planted_predictions(n, close, seed_offset=1))
    return root


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Each '## section' or '### section' table of the report as a list of {column: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    section, header = None, None
    for line in markdown.splitlines():
        heading = re.fullmatch(r"#{2,3} (.+)|<details><summary>(.+) \(\d+\)</summary>", line)
        if heading:
            section = (heading.group(1) or heading.group(2)).strip()
            found[section] = []
            header = None
        elif section and line.startswith("|"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]  # "\|" is no border
            if header is None:
                header = cells
                found[section + " columns"] = [dict.fromkeys(header, "")]
            elif not set(line) <= set("|-: "):
                found[section].append(dict(zip(header, cells)))
    return found
