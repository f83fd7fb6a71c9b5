"""`numnet.load`: a model file's data (from the file readers) built into a model on a backend."""

from __future__ import annotations

from pathlib import Path

from numnet.backends import get_backend
from numnet.errors import ModelFileError, NumnetError
from numnet.files import read_arrays, read_header
from numnet.keras_files import is_keras_file, read_keras_file


def load_model(path: str | Path, backend: str | None = None):
    """Builds the saved spec on `backend` (default: the one it was saved from) and loads its state."""
    if is_keras_file(path):
        spec, weights = read_keras_file(path)
        model = get_backend(backend or "numpy").build(spec)
        try:
            model.set_weights(weights)
        except NumnetError as error:
            raise ModelFileError(f"Keras file '{path}': its weights do not fit its architecture: {error}") from None
        return model
    header = read_header(path)
    try:
        model = get_backend(backend or header.get("backend", "numpy")).build(header.get("spec"))
    except NumnetError as error:
        raise ModelFileError(f"model file '{path}' holds an invalid spec: {error}") from None
    weight_shapes = [w.shape for w in model.get_weights()]
    optimizer_shapes = [s.shape for s in model.optimizer.get_state()]
    weights, optimizer_state = read_arrays(path, weight_shapes, optimizer_shapes)
    epochs_done = header.get("epochs_done", 0)
    try:
        if isinstance(epochs_done, bool) or not isinstance(epochs_done, int) or epochs_done < 0:
            raise ValueError(f"epochs_done must be a non-negative integer, got {epochs_done!r}")
        model.set_weights(weights)
        if optimizer_state is not None:
            model.optimizer.set_state(optimizer_state)
    except (NumnetError, ValueError) as error:
        raise ModelFileError(f"model file '{path}' is not usable: {error}") from None
    model.epochs_done = epochs_done
    return model
