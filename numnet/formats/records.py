"""Run records: the JSON a finished run writes beside its model, and its test-set probabilities.

A record edited by hand or by another program is refused by name here, never deep inside a plot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from numnet.errors import RunError, preview
from numnet.io import read_text, require_readable
from numnet.settings import SETTINGS, is_integer, is_number


def _number(value: Any, low: float = 0.0, high: float = float("inf")) -> bool:
    return is_number(value) and low <= value <= high


def _history(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("loss"), list):
        return False
    lists = value.values()
    return all(isinstance(v, list) and len(v) == len(value["loss"]) and all(map(is_number, v)) for v in lists)


def _settings(value: Any) -> bool:
    return isinstance(value, dict) and all(value.get(key) is None or SETTINGS[key].valid(value[key])
                                           for key in SETTINGS)  # fmt: skip


def _confusion(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 10
            and all(isinstance(row, list) and len(row) == 10 and all(is_integer(c) and c >= 0 for c in row)
                    for row in value))  # fmt: skip


# What the report reads from a record, and what each must be: a record edited by hand or by another
# program is refused by name instead of failing somewhere inside the plotting.
RECORD_FIELDS = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "settings": (_settings, "an object of run settings, each within its range"),
    "backend": (lambda v: isinstance(v, str), "a string"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "history": (_history, "an object of equally long lists of numbers, 'loss' among them"),
    "train_seconds": (_number, "a number >= 0"),
    "test_samples": (lambda v: is_integer(v) and v >= 0, "an integer >= 0"),
    "test_accuracy": (lambda v: _number(v, 0, 1), "a number in [0, 1]"),
    "per_digit_accuracy": (
        lambda v: isinstance(v, dict) and all(_number(v.get(str(d)), 0, 1) for d in range(10)),
        "an object of ten accuracies in [0, 1], keys '0' to '9'",
    ),
    "confusion": (_confusion, "a 10x10 list of counts"),
}


def read_record(path: str | Path) -> dict[str, Any]:
    """A finished run's record; RunError names the file when it is missing or damaged."""
    path = Path(path)
    text = read_text(path, "run record", RunError, fix="the run did not finish; run it again to complete it")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise RunError(
            f"'{path}' is corrupt ({type(error).__name__}: {error}); delete the run's files and run it again"
        ) from None
    if not isinstance(record, dict) or not RECORD_FIELDS.keys() <= record.keys():
        missing = sorted(RECORD_FIELDS.keys() - record.keys()) if isinstance(record, dict) else sorted(RECORD_FIELDS)
        raise RunError(f"'{path}' lacks {missing}; delete the run's files and run it again")
    for key, (valid, what) in RECORD_FIELDS.items():
        if not valid(record[key]):
            raise RunError(f"'{path}': {key!r} must be {what}, got {preview(record[key])}; "
                           "delete the run's files and run it again")  # fmt: skip
    return record


MAX_CLASSES = 1000  # far above any digit model's 10


def read_probabilities(record_path: Path, record: dict[str, Any]) -> np.ndarray:
    """The test-set probabilities saved beside a record, checked against its test-set size."""
    path = record_path.parent / Path(str(record.get("probabilities_file", "test_probabilities.npy"))).name
    n_test = record.get("test_samples")
    require_readable(path, "test-set probabilities file", RunError, "delete the run's files and run it again")
    try:
        # Mapped, not read: its declared shape is checked before a byte of it is loaded.
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise RunError(f"'{path}' is corrupt ({error}); delete the run's files and run it again") from None
    if mapped.ndim != 2 or mapped.shape[0] != n_test or not 2 <= mapped.shape[1] <= MAX_CLASSES:
        raise RunError(f"'{path}' holds shape {mapped.shape}; expected ({n_test}, classes)")
    if mapped.dtype.kind != "f":
        raise RunError(f"'{path}' holds {mapped.dtype} values; expected probabilities (floats)")
    return np.array(mapped)
