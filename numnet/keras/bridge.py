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

from numnet import specs
from numnet.errors import BackendUnavailable
from numnet.keras import KERAS_FRAMEWORKS
from numnet.keras.mapping import loss_config, optimizer_config
from numnet.layers import Layer, check_spec, outputs_logits


def import_keras(backend: str = "tensorflow"):
    """Keras 3 on `backend` (tensorflow, jax or torch), imported quietly, whatever KERAS_BACKEND says.

    Keras fixes its backend when it is first imported, so one process runs one Keras backend: asking
    for a second is a BackendUnavailable naming both.
    """
    if backend not in KERAS_FRAMEWORKS:
        raise BackendUnavailable(f"Keras has no backend {backend!r}; numnet offers {sorted(KERAS_FRAMEWORKS)}")
    framework, extra = KERAS_FRAMEWORKS[backend]
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
    return sequential(*check_spec(spec), seed=seed, backend=backend)


def sequential(spec: specs.Spec, layers: list[Layer], seed: int = 0, backend: str = "tensorflow") -> Any:
    """`keras_model` for a spec already checked, with its layers (`numnet.layers.check_spec`)."""
    from numnet.keras.layers import layer_class

    _, keras = import_keras(backend)
    keras.utils.set_random_seed(seed)
    keras_layers = [layer_class(layer.keras_class)(**layer.to_keras(seed=seed + i))
                    for i, layer in enumerate(layers)]  # fmt: skip
    model = keras.Sequential([keras.Input(tuple(spec["input_shape"])), *keras_layers], name=spec["name"])
    optimizer = keras.optimizers.deserialize(optimizer_config(spec["optimizer"]))
    loss = loss_config(spec["loss"], outputs_logits(layers))
    model.compile(optimizer=optimizer, loss=loss if isinstance(loss, str) else keras.losses.deserialize(loss),
                  metrics=["accuracy"])  # fmt: skip
    optimizer.build(model.trainable_variables)
    return model
