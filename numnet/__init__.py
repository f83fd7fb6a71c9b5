"""numnet: handwritten-digit networks from scratch in NumPy and Numba, checked against Keras.

import numnet
model = numnet.build(numnet.specs.mlp(), backend="numpy", seed=0)
(x_train, y_train), (x_test, y_test) = numnet.data.load_mnist()
model.fit(numnet.data.to_model_input(x_train), y_train, epochs=10, batch_size=100)
"""

from __future__ import annotations

# isort: off
from numnet import threads  # noqa: F401  (must run before NumPy is imported)
# isort: on

from pathlib import Path

import numpy as np

from numnet import callbacks, data, specs
from numnet.errors import ModelFileError, NumnetError
from numnet.settings import is_integer

__all__ = ["build", "load", "specs", "data", "callbacks", "plot", "notebook", "NumnetError"]
__version__ = "0.1.0"
LAZY = ("plot", "notebook")  # matplotlib and the notebook's pad load when first used


def __getattr__(name: str):
    if name in LAZY:
        import importlib

        return importlib.import_module(f"numnet.{name}")
    raise AttributeError(f"module 'numnet' has no attribute {name!r}")


def build(spec: specs.Spec, backend: str = "numpy", seed: int = 0, dtype=np.float32):
    """Builds `spec` on a backend (`numnet.backends.BACKENDS`): numnet's engine on "numpy" (the
    reference kernels), "numba" (fast CPU kernels) or "cuda" (an NVIDIA GPU), or the same spec as a Keras 3 model on
    "tensorflow", "jax" or "torch"."""
    from numnet.backends import get_backend

    return get_backend(backend).build(spec, seed=seed, dtype=dtype)


def load(path: str | Path, backend: str | None = None):
    """A saved model, built on `backend`: a numnet `.npz` (on the backend it was saved from, unless
    another is named, with its optimizer state and epoch count) or a Keras `.keras` / `.h5` file (on
    numpy unless another is named). The file readers return data; this builds it."""
    from numnet.backends import get_backend
    from numnet.formats.keras_files import is_keras_file, read_keras_file
    from numnet.formats.npz import ModelFile

    if is_keras_file(path):
        saved = read_keras_file(path)
        model = get_backend(backend or "numpy").build(saved.spec)
        try:
            model.set_weights(saved.weights)
            if saved.optimizer_state is not None:
                model.optimizer.set_state(saved.optimizer_state)
            # Keras keeps the rate as a float32 variable: a rate a callback changed differs from the spec's
            if saved.learning_rate is not None and np.float32(saved.learning_rate) != np.float32(model.learning_rate):
                model.learning_rate = saved.learning_rate
        except (NumnetError, ValueError) as error:
            raise ModelFileError(
                f"Keras file '{path}': its weights or optimizer state do not fit its architecture: {error}"
            ) from None
        return model
    with ModelFile(path) as saved:  # opened once: header and arrays from the same file
        header = saved.header
        try:
            model = get_backend(backend or header.get("backend", "numpy")).build(header.get("spec"))
        except NumnetError as error:
            raise ModelFileError(f"model file '{path}' holds an invalid spec: {error}") from None
        weight_shapes = [w.shape for w in model.get_weights()]
        optimizer_shapes = [s.shape for s in model.optimizer.get_state()]
        weights, optimizer_state = saved.arrays(weight_shapes, optimizer_shapes)
    epochs_done = header.get("epochs_done", 0)
    try:
        if not is_integer(epochs_done) or epochs_done < 0:
            raise ValueError(f"epochs_done must be a non-negative integer, got {epochs_done!r}")
        model.set_weights(weights)
        if optimizer_state is not None:
            model.optimizer.set_state(optimizer_state)
        if header.get("random_state") is not None:
            model.set_random_state(header["random_state"])
    except (NumnetError, ValueError) as error:
        raise ModelFileError(f"model file '{path}' is not usable: {error}") from None
    model.epochs_done = epochs_done
    return model
