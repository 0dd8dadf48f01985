"""sft.results.layout: a run's folder stays inside the results folder, whatever the experiment name, and run
folders are built and parsed in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from sft.results.layout import Run, run_dir, run_folders, seed_folder, seed_of_folder


def test_run_dir_is_inside_the_results_folder(tmp_path):
    folder = run_dir(tmp_path / "results", "exp-1", 3)
    assert folder == (tmp_path / "results").resolve() / "exp-1" / "seed-3"


@pytest.mark.parametrize("name", ["../escape", "..", "a/b", "/abs", "a/../../b", "", ".", "~", "a\\..\\b"])
def test_run_dir_refuses_names_that_could_escape(tmp_path, name):
    with pytest.raises(ValueError):
        run_dir(tmp_path / "results", name, 1)


def test_run_dir_refuses_a_symlink_leading_out_of_the_results_folder(tmp_path):
    results, outside = tmp_path / "results", tmp_path / "outside"
    results.mkdir()
    outside.mkdir()
    (results / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escape"):
        run_dir(results, "linked", 1)


@pytest.mark.parametrize("name", ["exp", "a.b", "x=1,y=2", "m@v+1", "A" * 200, "a-b_c"])
def test_run_dir_accepts_safe_names(tmp_path, name):
    root = (tmp_path / "results").resolve()
    folder = run_dir(root, name, 0)
    assert root in folder.parents
    assert folder.name == "seed-0"


def test_a_run_is_parsed_from_its_folder_relative_or_absolute(tmp_path, monkeypatch):
    run = Run("exp-1", 3, tmp_path / "results")
    assert Run.from_folder(run.folder) == Run("exp-1", 3, (tmp_path / "results").resolve())
    monkeypatch.chdir(tmp_path)
    relative = Run.from_folder(Path("results") / "exp-1" / "seed-3")
    assert relative.relative == run.relative == "exp-1/seed-3"
    assert relative.folder == run.folder
    assert Run.from_folder(Path("results/exp-1/seed--2"), share_training=False) == Run(
        "exp-1", -2, (tmp_path / "results").resolve(), False
    )


@pytest.mark.parametrize(
    "folder", ["results/exp/seed-x", "results/exp/seed-07", "results/exp/run-1", "results/a b/seed-1"]
)
def test_any_other_folder_is_not_a_run(tmp_path, folder):
    with pytest.raises(ValueError, match="not a run folder; give RESULTS/<experiment>/seed-<n>"):
        Run.from_folder(tmp_path / folder)


def test_seed_folder_names_are_written_and_read_in_one_place():
    assert seed_folder(7) == "seed-7" and seed_of_folder("seed-7") == 7 and seed_of_folder("seed--1") == -1
    assert [seed_of_folder(name) for name in ("seed-", "seed-01", "seed-1.5", "seed_1", "7")] == [None] * 5


def test_run_folders_are_the_runs_of_a_results_folder_and_nothing_else(tmp_path, monkeypatch):
    root = tmp_path / "results"
    for folder in ("b/seed-2", "a/seed-10", "a/seed-9", "_adapters/0abc/seed-1", ".cache/seed-1", "a/seed-x",
                   "a/seed-9/previous/seed-9", "a b/seed-1"):  # fmt: skip
        (root / folder).mkdir(parents=True)
    (root / "c").mkdir()
    (root / "c" / "seed-1").write_text("a file")
    assert [folder.relative_to(root).as_posix() for folder in run_folders(root)] == [
        "a/seed-10",
        "a/seed-9",
        "b/seed-2",
    ]
    monkeypatch.chdir(tmp_path)
    assert [Run.from_folder(folder).relative for folder in run_folders("results")] == [
        "a/seed-10",
        "a/seed-9",
        "b/seed-2",
    ]
