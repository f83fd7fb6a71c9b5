"""Saving a model of any backend: numnet's own format, or a Keras file for .keras / .h5 names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from numnet.formats.keras_files import is_keras_file, write_keras_file
from numnet.formats.npz import write_model


def save_model(model: Any, path: str | Path, run: dict[str, Any] | None = None) -> None:
    """Writes `model` atomically; `run` (a run's settings and history) rides in a numnet file's header."""
    if is_keras_file(path):
        return write_keras_file(model.spec, model.get_weights(), path, model.optimizer.get_state(), model.learning_rate)
    write_model(
        path,
        spec=model.spec,
        backend=model.backend,
        epochs_done=model.epochs_done,
        weights=model.get_weights(),
        optimizer_state=model.optimizer.get_state(),
        run=run,
        random_state=model.random_state(),
    )
