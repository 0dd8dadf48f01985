"""sft.report.cache: a report rebuilt from the cached run statistics equals one computed from the
predictions, reads no predictions, never uses an entry of changed predictions, survives a damaged
entry, and keeps only the entries it used; runs prepared one by one (as the runner does) give the same
report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.report import build_planted, planted_config, planted_predictions, write_scored_run

import sft.report.statistics as statistics_module
from sft.report.aggregate import ReportOptions, aggregate
from sft.report.cache import CACHE_FOLDER
from sft.report.statistics import prepare_run
from sft.results.files import read_jsonl

OPTIONS = ReportOptions(plots=frozenset(), resamples=400, method="bca")


def report_statistics(root: Path, options: ReportOptions = OPTIONS) -> dict:
    return json.loads(aggregate(root, options)[0].read_text(encoding="utf-8"))["statistics"]


def entries(root: Path) -> set[str]:
    return {path.name for path in (root / CACHE_FOLDER).glob("*.safetensors")}


@pytest.fixture
def no_predictions_read(monkeypatch):
    """Fail the test if the statistics parse any predictions.jsonl."""
    read: list[Path] = []

    def refuse(path):
        read.append(Path(path))
        raise AssertionError(f"{path} parsed although its statistics are cached")

    monkeypatch.setattr(statistics_module, "read_jsonl", refuse)
    return read


def test_a_rebuilt_report_equals_the_first_and_reads_no_predictions(tmp_path, monkeypatch):
    build_planted(tmp_path)
    first = report_statistics(tmp_path)
    assert len(entries(tmp_path)) == 4  # one per run with predictions
    read: list[Path] = []
    monkeypatch.setattr(statistics_module, "read_jsonl", lambda path: read.append(path) or read_jsonl(path))
    assert report_statistics(tmp_path) == first
    assert read == []
    # other resampling settings are other entries: computed from the predictions, the old ones removed
    other = report_statistics(tmp_path, ReportOptions(plots=frozenset(), resamples=300))
    assert len(read) == 4 and other["resamples"] == 300
    assert len(entries(tmp_path)) == 4


def test_changed_predictions_are_never_answered_from_the_cache(tmp_path):
    build_planted(tmp_path)
    before = report_statistics(tmp_path)
    old = entries(tmp_path)
    # "close" now gets 60 more items wrong (results.json rewritten to match): its statistics must change
    rows = planted_predictions(300, set(range(0, 300, 5)) | set(range(1, 300, 5)))
    shutil.rmtree(tmp_path / "close" / "seed-1")
    write_scored_run(tmp_path, "close", 1, planted_config(1), rows)
    after = report_statistics(tmp_path)
    intervals = [document["sections"][0]["run_intervals"]["close/seed-1"] for document in (before, after)]
    assert intervals[0] != intervals[1]
    assert len(old - entries(tmp_path)) == 1 and len(entries(tmp_path)) == 4  # the stale entry is gone
    (tmp_path / CACHE_FOLDER).rename(tmp_path / "moved-away")
    assert report_statistics(tmp_path) == after  # what the cache gave equals a computation from scratch


@pytest.mark.faults
def test_a_damaged_entry_is_recomputed(tmp_path):
    build_planted(tmp_path)
    first = report_statistics(tmp_path)
    for path in (tmp_path / CACHE_FOLDER).glob("*.safetensors"):
        path.write_bytes(path.read_bytes()[:100])
    assert report_statistics(tmp_path) == first


def test_runs_prepared_as_they_finish_make_the_report_read_no_predictions(tmp_path, no_predictions_read):
    build_planted(tmp_path)
    with pytest.MonkeyPatch.context() as patch:  # preparing reads each run's predictions once
        patch.setattr(statistics_module, "read_jsonl", read_jsonl)
        for folder in ("reference/seed-1", "close/seed-1", "far/seed-1", "other-test/seed-1"):
            assert prepare_run(tmp_path, folder, OPTIONS)
        assert not prepare_run(tmp_path, "missing/seed-1", OPTIONS)  # no such run: False, no exception
    prepared = report_statistics(tmp_path)
    assert no_predictions_read == []
    (tmp_path / CACHE_FOLDER).rename(tmp_path / "moved-away")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(statistics_module, "read_jsonl", read_jsonl)
        assert report_statistics(tmp_path) == prepared
