"""A fingerprint of the test examples a run scored, so the report compares two runs only when they
scored the same examples in the same order.

The experiment writes it into results.json (`test_hash`); the report computes the same hash from
predictions.jsonl for results written before the field existed. Both read the prediction rows: the
input columns and the reference, which every task writes into each row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any


def hash_test_inputs(rows: Iterable[dict[str, Any]], input_columns: Sequence[str]) -> str:
    """sha256 over every row's input columns and reference, in order (key order and JSON spacing fixed)."""
    digest = hashlib.sha256()
    for row in rows:
        item = [[row.get(column) for column in input_columns], row.get("reference")]
        digest.update(json.dumps(item, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
