"""The one exception a bad config, grid, dataset or command line raises: every problem found, at once."""

from __future__ import annotations


class ConfigError(Exception):
    """A config (or a grid of configs) is invalid. Holds every problem found, one message each."""

    def __init__(self, messages: list[str]):
        self.messages = list(messages)
        count = len(self.messages)
        header = f"{count} problem{'s' if count != 1 else ''} found in the config:"
        super().__init__("\n".join([header, *(f"  - {m}" for m in self.messages)]))
