"""The states of a run, as the grid runner writes them into `status.json` and the report reads them.

One enum for both sides, so the report recognizes exactly the states something writes. A run whose
`results.json` reads is done whatever its status says; `status.json` matters for the others.
"""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    RUNNING = "running"  # started (or queued by an executor); a runner holds its lock
    DONE = "done"  # results.json written with the config's hash
    FAILED = "failed"  # ended without results: an error, a signal, a timeout (status.json's reason says which)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM of the runner; a rerun resumes it

    @classmethod
    def parse(cls, text: object) -> RunState | None:
        """The state named by `text`, or None for anything else (a status written by hand or by a newer sft)."""
        try:
            return cls(str(text))
        except ValueError:
            return None


# States after which a run has ended without results; the report lists them with their log tails.
FAILED_STATES = frozenset({RunState.FAILED})
