"""A numnet spec as a Keras model, through each layer's own Keras mapping.

The layer classes say what they are in Keras (`keras_class`, `to_keras`); this module only puts
those layers in a `keras.Sequential` with the spec's optimizer and loss. Keras is imported when
a model is built, never at import time.
"""

from __future__ import annotations

import os
from typing import Any

from numnet import specs
from numnet.errors import BackendUnavailable
from numnet.layers import layers_from_spec

KERAS_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD"}


def import_keras():
    """Imports TensorFlow's Keras quietly, or explains how to install it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as error:
        raise BackendUnavailable(
            f"the tensorflow backend needs TensorFlow ({error}); install it with `pip install 'numnet[tf]'`"
        ) from error
    return tf, keras


def keras_model(spec: specs.Spec, seed: int = 0) -> Any:
    """A compiled keras.Sequential computing exactly what numnet builds from `spec`."""
    _, keras = import_keras()
    spec = specs.validate(spec)
    layers, _ = layers_from_spec(spec)  # numnet's checks and messages, for every backend
    keras.utils.set_random_seed(seed)
    keras_layers = [
        getattr(keras.layers, layer.keras_class)(**layer.to_keras(seed=seed + i)) for i, layer in enumerate(layers)
    ]
    model = keras.Sequential([keras.Input(tuple(spec["input_shape"])), *keras_layers], name=spec["name"])
    options = {key: value for key, value in spec["optimizer"].items() if key != "type"}
    optimizer = getattr(keras.optimizers, KERAS_OPTIMIZERS[spec["optimizer"]["type"]])(**options)
    model.compile(optimizer=optimizer, loss=spec["loss"], metrics=["accuracy"])
    optimizer.build(model.trainable_variables)
    return model
