"""The report's memory of each run's statistics, so a run's predictions are parsed and resampled once.

Parsing a run's predictions.jsonl and resampling its per-example statistics are most of what the
report's statistics cost, and they are the same every time the report is rebuilt (after the grid,
again with `--baseline`, again after one more experiment), as long as the predictions, the metrics
asked for and the resampling settings are. So the report keeps, per run, in
`RESULTS/_statistics/<key>.safetensors`:

- each distinct matrix of per-example statistics (`sft.evaluation.batched.Sufficient.features`, CSR),
  its column sums in every bootstrap resample and in every permutation swap pattern
  (`sft.report.intervals.Resampler`), stored for the columns that hold anything;
- per metric: which matrix, the finisher's name and parameters, the layout, which examples were right;
- the run's test hash, and how many clusters its test examples form (`evaluation.cluster_column`; the
  sums above are then of whole clusters resampled and swapped).

The key is a sha256 over the predictions file's bytes and everything the entry depends on (labels,
metric names and the ones asked for, evaluation settings, resamples, seed, this format's version), so
an entry is never stale: a changed run gets a new key. Entries are written atomically (no fsync: a lost
entry is recomputed); one that does not load is ignored and recomputed; the report removes the
entries it did not use. Safetensors and JSON only: nothing here is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as to_bytes
from scipy import sparse

from sft.evaluation.batched import FINISHERS, Sufficient
from sft.results.files import atomic_write_bytes

CACHE_FOLDER = "_statistics"  # experiment names start with a letter or digit, so this never collides
FORMAT = 2  # 2: the number of clusters; entries of format 1 get other keys and are recomputed
_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class Resampled:
    """A statistics matrix with its column sums in every bootstrap resample and every swap pattern."""

    features: sparse.csr_matrix
    sums: np.ndarray  # (B, s)
    swapped: np.ndarray  # (B, s)


@dataclass(frozen=True)
class CachedRun:
    """What the report needs of one run's predictions, without its predictions."""

    test_hash: str
    sufficient: dict[str, Sufficient]
    resampled: list[Resampled]  # every distinct features matrix of `sufficient`
    clusters: int | None = None  # clusters of test examples resampled together; None: examples independent


def cache_key(predictions: Path, parts: dict[str, Any]) -> str:
    """sha256 of the predictions file's bytes and of `parts` (what else the statistics depend on)."""
    digest = hashlib.sha256(predictions.read_bytes())
    digest.update(json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def _path(root: Path, key: str) -> Path:
    return root / CACHE_FOLDER / f"{key}{_SUFFIX}"


def _compact(values: np.ndarray) -> np.ndarray:
    """float32 when that holds every value exactly (counts do), else float64."""
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow, values) else values


def save(root: Path, key: str, cached: CachedRun) -> Path:
    """Write one run's entry (atomically; a cache needs no fsync)."""
    tensors: dict[str, np.ndarray] = {}
    groups = []
    index = {id(item.features): position for position, item in enumerate(cached.resampled)}
    for position, item in enumerate(cached.resampled):
        features = item.features.tocsr()
        used = np.unique(features.indices).astype(np.int64)  # the other columns sum to 0 in every resample
        tensors[f"{position}.data"] = _compact(features.data.astype(np.float64))
        tensors[f"{position}.indices"] = features.indices.astype(np.int64)
        tensors[f"{position}.indptr"] = features.indptr.astype(np.int64)
        tensors[f"{position}.used"] = used
        tensors[f"{position}.sums"] = _compact(np.ascontiguousarray(item.sums[:, used]))
        tensors[f"{position}.swapped"] = _compact(np.ascontiguousarray(item.swapped[:, used]))
        groups.append({"shape": list(features.shape), "resamples": int(item.sums.shape[0])})
    metrics = {}
    for name, statistic in cached.sufficient.items():
        if statistic.right is not None:
            tensors[f"right.{name}"] = _compact(np.asarray(statistic.right, dtype=np.float64))
        metrics[name] = {
            "group": index[id(statistic.features)],
            "kind": statistic.kind,
            "params": statistic.params,
            "layout": list(statistic.layout),
            "right": statistic.right is not None,
        }
    header = {"format": FORMAT, "test_hash": cached.test_hash, "groups": groups, "metrics": metrics}
    header["clusters"] = cached.clusters
    data = to_bytes({name: np.ascontiguousarray(value) for name, value in tensors.items()}, {"sft": json.dumps(header)})
    return atomic_write_bytes(_path(root, key), data, durable=False)


def load(root: Path, key: str) -> CachedRun | None:
    """The run's entry, or None when there is none or it does not load (then it is recomputed)."""
    path = _path(root, key)
    if not path.is_file():
        return None
    try:
        return _load(path)
    except Exception:  # a damaged or foreign entry costs a recomputation, never the report
        return None


def _load(path: Path) -> CachedRun:
    with safe_open(path, framework="numpy") as handle:
        header = json.loads(handle.metadata()["sft"])
        if header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format')}")
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    resampled = []
    for position, group in enumerate(header["groups"]):
        shape = tuple(group["shape"])
        features = sparse.csr_matrix(
            (tensors[f"{position}.data"].astype(np.float64), tensors[f"{position}.indices"],
             tensors[f"{position}.indptr"]),
            shape=shape,
        )  # fmt: skip
        used = tensors[f"{position}.used"]
        sums = np.zeros((group["resamples"], shape[1]))
        swapped = np.zeros((group["resamples"], shape[1]))
        sums[:, used] = tensors[f"{position}.sums"]
        swapped[:, used] = tensors[f"{position}.swapped"]
        resampled.append(Resampled(features, sums, swapped))
    sufficient = {}
    for name, entry in header["metrics"].items():
        if entry["kind"] not in FINISHERS:
            raise ValueError(f"unknown finisher {entry['kind']}")
        right = tensors[f"right.{name}"].astype(np.float64) if entry["right"] else None
        features = resampled[entry["group"]].features
        sufficient[name] = Sufficient(features, entry["kind"], entry["params"], right, tuple(entry["layout"]))
    return CachedRun(header["test_hash"], sufficient, resampled, header["clusters"])


def prune(root: Path, keep: set[str]) -> None:
    """Remove the entries whose key is not in `keep` (runs removed or changed since)."""
    folder = root / CACHE_FOLDER
    if not folder.is_dir():
        return
    for path in folder.glob(f"*{_SUFFIX}"):
        if path.name.removesuffix(_SUFFIX) not in keep:
            path.unlink(missing_ok=True)
