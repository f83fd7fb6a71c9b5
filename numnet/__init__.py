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
from numnet.errors import NumnetError

__all__ = ["build", "load", "specs", "data", "callbacks", "NumnetError"]
__version__ = "0.1.0"


def build(spec: specs.Spec, backend: str = "numpy", seed: int = 0, dtype=np.float32):
    """Builds `spec` on a backend: "numpy" (reference), "numba" (fast CPU) or "tensorflow"."""
    from numnet.backends import get_backend

    return get_backend(backend).build(spec, seed=seed, dtype=dtype)


def load(path: str | Path, backend: str | None = None):
    """Loads a model file saved by `Model.save` (backend defaults to the one it was saved from)."""
    from numnet.loading import load_model

    return load_model(path, backend=backend)
