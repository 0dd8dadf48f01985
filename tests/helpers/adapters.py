"""The shared adapter store (`sft.results.adapters`) as the tests fill it: the marker a training run
writes once its adapter is in place."""

from __future__ import annotations

from sft.results.adapters import ReadyRecord, SharedAdapter


def ready_marker(shared: SharedAdapter, trained_by: str) -> ReadyRecord:
    """The store's ready.json for `shared`, as the training run `trained_by` writes it."""
    return ReadyRecord(
        training_key=shared.key, seed=shared.seed, trained_by=trained_by, training={"train_loss": 1.0},
        train_seconds=0.6, training_settings={}, finished_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
