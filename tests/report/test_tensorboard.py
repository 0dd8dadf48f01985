"""The report links each run's TensorBoard folder (the trainer's event files in the run folder) and W&B offline
runs by a path relative to the report, and nothing outside the results folder."""

from __future__ import annotations

from helpers.report import classification_config, classification_metrics, write_results

from sft.report.aggregate import ReportOptions, aggregate

EVENTS = "events.out.tfevents.1700000000.host.1.0"


def test_the_report_links_the_tensorboard_folders_of_the_runs_that_wrote_one(tmp_path):
    root, outside = tmp_path / "results", tmp_path / "elsewhere"
    (outside / "board").mkdir(parents=True)
    (outside / "board" / EVENTS).write_bytes(b"")
    folders = {
        (name, seed): write_results(root, name, seed, classification_config(8), classification_metrics(0.5)).parent
        for name, seed in (("lora-r8", 2), ("lora-r8", 10), ("zero", 1), ("linked", 1))
    }
    for key in (("lora-r8", 10), ("lora-r8", 2)):
        (folders[key] / "tensorboard").mkdir()
        (folders[key] / "tensorboard" / EVENTS).write_bytes(b"")
    (folders[("zero", 1)] / "tensorboard").mkdir()  # asked for, but nothing written: no link
    (folders[("linked", 1)] / "tensorboard").symlink_to(outside / "board")  # leaves the results folder: no link

    _, markdown_path = aggregate(root, ReportOptions(plots=frozenset(), statistics=False))
    markdown = markdown_path.read_text(encoding="utf-8")
    section = markdown.split("## TensorBoard", 1)[1].split("\n## ", 1)[0]
    links = [line for line in section.splitlines() if line.startswith("- ")]
    assert links == [
        "- [lora-r8/seed-2/tensorboard](lora-r8/seed-2/tensorboard)",
        "- [lora-r8/seed-10/tensorboard](lora-r8/seed-10/tensorboard)",
    ]
    for line in links:  # each link is relative to the report and opens the run's folder
        target = line.split("](", 1)[1].rstrip(")")
        assert (markdown_path.parent / target / EVENTS).is_file()


def test_no_tensorboard_section_without_event_files(tmp_path):
    write_results(tmp_path, "zero", 1, classification_config(0), classification_metrics(0.5))
    _, markdown_path = aggregate(tmp_path, ReportOptions(plots=frozenset(), statistics=False))
    markdown = markdown_path.read_text(encoding="utf-8")
    assert "TensorBoard" not in markdown and "## W&B" not in markdown


def test_the_report_links_the_wandb_offline_runs(tmp_path):
    root, outside = tmp_path / "results", tmp_path / "elsewhere"
    folders = {
        (name, seed): write_results(root, name, seed, classification_config(8), classification_metrics(0.5)).parent
        for name, seed in (("lora-r8", 1), ("lora-r8", 2), ("linked", 1))
    }
    for key, runs in ((("lora-r8", 1), ["offline-run-20261206_100000-a1", "offline-run-20261206_110000-b2"]),
                      (("lora-r8", 2), ["offline-run-20261206_100500-c3"])):  # fmt: skip
        for name in runs:
            (folders[key] / "wandb" / name).mkdir(parents=True)
            (folders[key] / "wandb" / name / f"run-{name[-2:]}.wandb").write_bytes(b":W&B")
    (folders[("lora-r8", 2)] / "wandb" / "offline-run-20261206_120000-d4").mkdir()  # no log in it: no link
    (outside / "wandb" / "offline-run-20261206_100000-e5").mkdir(parents=True)
    (outside / "wandb" / "offline-run-20261206_100000-e5" / "run-e5.wandb").write_bytes(b":W&B")
    (folders[("linked", 1)] / "wandb").symlink_to(outside / "wandb")  # leaves the results folder: no link

    _, markdown_path = aggregate(root, ReportOptions(plots=frozenset(), statistics=False))
    section = markdown_path.read_text(encoding="utf-8").split("## W&B", 1)[1].split("\n## ", 1)[0]
    links = [line.split("](", 1)[1].rstrip(")") for line in section.splitlines() if line.startswith("- ")]
    assert links == [
        "lora-r8/seed-1/wandb/offline-run-20261206_100000-a1",
        "lora-r8/seed-1/wandb/offline-run-20261206_110000-b2",
        "lora-r8/seed-2/wandb/offline-run-20261206_100500-c3",
    ]
    assert all((markdown_path.parent / link).is_dir() for link in links)
    assert "wandb sync" in section
