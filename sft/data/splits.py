"""Loading every split of a dataset: a save_to_disk folder, a data file, a data folder or a hub id."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sft.config import ConfigError, DatasetConfig

if TYPE_CHECKING:
    from datasets import DatasetDict

DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def load_splits(config: DatasetConfig) -> DatasetDict:
    """Load every split of `config.path`: a save_to_disk folder, a data file, a data folder or a hub id."""
    import datasets

    datasets.disable_progress_bars()  # one bar per split would drown the run log
    path = Path(config.path)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_file() and path.suffix in DATA_FILE_BUILDERS:
            loaded = datasets.load_dataset(DATA_FILE_BUILDERS[path.suffix], data_files=str(path), **config.args)
        else:
            loaded = datasets.load_dataset(config.path, **config.args)
    except Exception as error:  # datasets raises many types; the user needs the path and the cause
        raise ConfigError([f"dataset.path: cannot load {config.path!r}: {type(error).__name__}: {error}"]) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded
