"""sft.runner.resume: whether a run is done, to rerun or to set aside (a changed config, unreadable results)."""

from __future__ import annotations

import json

from sft.results.layout import Run
from sft.runner.resume import decide, set_aside


def finished(config_hash: str) -> str:
    """A results.json as sft wrote it before records carried a version (the shortest a report reads)."""
    return json.dumps(
        {"experiment": "x", "seed": 1, "config_hash": config_hash, "task_type": "classification", "metrics": {},
         "config": {}}
    )  # fmt: skip


def test_decide_and_set_aside(tmp_path):
    run = Run("x", 1, tmp_path)
    assert decide(run, "h1").run and "no results yet" in decide(run, "h1").reason
    run.folder.mkdir(parents=True)
    (run.folder / "results.json").write_text(finished("h1"))
    (run.folder / "run.log").write_text("log")
    assert not decide(run, "h1").run
    assert decide(run, "h1", force=True).set_aside
    assert decide(run, "h2").set_aside and "config changed" in decide(run, "h2").reason
    (run.folder / "results.json").write_text('{"config_hash": ')
    assert decide(run, "h1").set_aside and "unreadable" in decide(run, "h1").reason
    first, second = set_aside(run.folder), set_aside(run.folder)
    assert first != second and (first / "run.log").read_text() == "log"
    assert sorted(path.name for path in run.folder.iterdir()) == ["previous"]


def test_results_this_sft_cannot_read_are_set_aside_not_taken_for_finished(tmp_path):
    """A results.json of a newer version, or without the keys a finished run has, is not a finished run."""
    run = Run("x", 1, tmp_path)
    run.folder.mkdir(parents=True)
    newer = {**json.loads(finished("h1")), "schema_version": 99}
    (run.folder / "results.json").write_text(json.dumps(newer))
    assert decide(run, "h1").set_aside and "unreadable" in decide(run, "h1").reason
    (run.folder / "results.json").write_text('{"config_hash": "h1"}')
    assert decide(run, "h1").set_aside
