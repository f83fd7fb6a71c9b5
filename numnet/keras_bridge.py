"""A numnet spec as a Keras 3 model on TensorFlow, JAX or PyTorch, through each layer's own mapping.

The layer classes say what they are in Keras (`keras_class`, `to_keras`); this module only puts
those layers in a `keras.Sequential` with the spec's optimizer and loss. Keras is imported when
a model is built, never at import time.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from numnet import schedules, specs
from numnet.errors import BackendUnavailable
from numnet.keras_layers import layer_class
from numnet.layers import layers_from_spec

KERAS_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD"}


KERAS_BACKENDS = {"tensorflow": ("tensorflow", "tf"), "jax": ("jax", "jax"), "torch": ("torch", "torch")}


def import_keras(backend: str = "tensorflow"):
    """Keras 3 on `backend` (tensorflow, jax or torch), imported quietly, whatever KERAS_BACKEND says.

    Keras fixes its backend when it is first imported, so one process runs one Keras backend: asking
    for a second is a BackendUnavailable naming both.
    """
    if backend not in KERAS_BACKENDS:
        raise BackendUnavailable(f"Keras has no backend {backend!r}; numnet offers {sorted(KERAS_BACKENDS)}")
    framework, extra = KERAS_BACKENDS[backend]
    if sys.modules.get("keras") is not None:
        running = sys.modules["keras"].backend.backend()
        if running != backend:
            raise BackendUnavailable(
                f"this process already runs Keras on {running}; Keras runs one backend per process, so use "
                f"{backend} in a new process (e.g. a second `python -m numnet.train --backend {backend}`)"
            )
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        module = importlib.import_module(framework)
        import keras
    except ImportError as error:
        raise BackendUnavailable(
            f"the {backend} backend needs Keras 3 on {framework} ({error}); install it with "
            f"`pip install 'numnet[{extra}]'`"
        ) from error
    return module, keras


def keras_model(spec: specs.Spec, seed: int = 0, backend: str = "tensorflow") -> Any:
    """A compiled keras.Sequential computing exactly what numnet builds from `spec`."""
    _, keras = import_keras(backend)
    spec = specs.validate(spec)
    layers = layers_from_spec(spec)  # numnet's checks and messages, for every backend
    keras.utils.set_random_seed(seed)
    keras_layers = [
        layer_class(keras, layer.keras_class)(**layer.to_keras(seed=seed + i)) for i, layer in enumerate(layers)
    ]
    model = keras.Sequential([keras.Input(tuple(spec["input_shape"])), *keras_layers], name=spec["name"])
    options = {key: value for key, value in spec["optimizer"].items() if key != "type"}
    if isinstance(options["learning_rate"], dict):
        schedule = schedules.keras_equivalent(options["learning_rate"])
        arguments = {key: value for key, value in schedule.items() if key != "type"}
        options["learning_rate"] = getattr(keras.optimizers.schedules, schedule["type"])(**arguments)
    optimizer = getattr(keras.optimizers, KERAS_OPTIMIZERS[spec["optimizer"]["type"]])(**options)
    model.compile(optimizer=optimizer, loss=spec["loss"], metrics=["accuracy"])
    optimizer.build(model.trainable_variables)
    return model
