"""What a trial's own process does (`run-experiment` in a folder with a `trial.json` marker): each validation
evaluation of the training is reported to the study's pruner, which may stop the training; then the trial
tells the study its outcome itself, in one transaction of the study database, so a trial is finished in the
study exactly when its process said so, whatever happens to the runner afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sft.config import ExperimentConfig
from sft.results.records import RecordError
from sft.search.study import TrialRecord, open_study


def trial_marker(folder: Path) -> TrialRecord | None:
    """The marker of a trial's run folder, or None for an ordinary run."""
    path = folder / TrialRecord.FILE
    if not path.exists():
        return None
    try:
        return TrialRecord.read(path)
    except (OSError, RecordError) as error:
        raise RuntimeError(f"{path}: unreadable trial marker ({error}); rerun the grid to retry the trial") from None


class Reporter:
    """Reports (step, value) of every validation evaluation to the trial; True when the pruner stops it."""

    def __init__(self, config: ExperimentConfig, marker: TrialRecord, search_path: Path):
        import optuna

        assert config.search is not None
        self.study = open_study(search_path, config.search, marker.study, samples=False)
        self.trial = optuna.trial.Trial(self.study, marker.trial_id)
        self.pruned_at: int | None = None
        self.reported: list[tuple[int, float]] = []

    def __call__(self, step: int, value: float) -> bool:
        self.trial.report(value, step)
        self.reported.append((step, value))
        if self.trial.should_prune():
            self.pruned_at = step
            return True
        return False

    def finish(self, selection: dict[str, Any] | None, train_seconds: float) -> dict[str, Any]:
        """Tell the study how the trial ended: pruned (at its step), or complete with the best validation value
        (that of the adapter model selection kept). Returns what was told."""
        from optuna.trial import TrialState

        best = (selection or {}).get("best_value")
        self.trial.set_user_attr("train_seconds", round(train_seconds, 3))
        self.trial.set_user_attr("best_step", (selection or {}).get("best_step"))
        if self.pruned_at is not None:
            self.trial.set_user_attr("pruned_step", self.pruned_at)
            self.study.tell(self.trial, state=TrialState.PRUNED)
            return {"state": "pruned", "step": self.pruned_at, "value": best}
        if best is None:
            raise RuntimeError("the trial's training made no validation evaluation; check training.eval_every")
        self.study.tell(self.trial, float(best))
        return {"state": "complete", "value": best}
