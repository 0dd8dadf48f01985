"""sft.results.layout: a run's folder stays inside the results folder, whatever the experiment name."""

from __future__ import annotations

import pytest

from sft.results.layout import run_dir


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
