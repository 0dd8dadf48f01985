"""sft.runner.resume: whether a run is done, to rerun or to set aside (a changed config, unreadable results)."""

from __future__ import annotations

from sft.results.layout import Run
from sft.runner.resume import decide, set_aside


def test_decide_and_set_aside(tmp_path):
    run = Run("x", 1, tmp_path)
    assert decide(run, "h1").run and "no results yet" in decide(run, "h1").reason
    run.folder.mkdir(parents=True)
    (run.folder / "results.json").write_text('{"config_hash": "h1"}')
    (run.folder / "run.log").write_text("log")
    assert not decide(run, "h1").run
    assert decide(run, "h1", force=True).set_aside
    assert decide(run, "h2").set_aside and "config changed" in decide(run, "h2").reason
    (run.folder / "results.json").write_text('{"config_hash": ')
    assert decide(run, "h1").set_aside and "unreadable" in decide(run, "h1").reason
    first, second = set_aside(run.folder), set_aside(run.folder)
    assert first != second and (first / "run.log").read_text() == "log"
    assert sorted(path.name for path in run.folder.iterdir()) == ["previous"]
