"""The shared layer-test list: one line per layer configuration.

Every case is checked by finite differences (test_gradients.py) on every engine backend and
against the Keras layer its mapping names (test_parity.py), forward and backward, and its Keras
mapping must round-trip. Adding a layer means adding its cases here.
"""

from __future__ import annotations

import numpy as np

from numnet.backends import get_backend
from numnet.layers import layer_from_config

LAYER_CASES = [
    ({"type": "Dense", "units": 5}, (4, 7)),
    ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "valid"}, (2, 6, 5, 2)),
    ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "same"}, (2, 5, 6, 2)),
    ({"type": "Conv2D", "filters": 2, "kernel_size": 2, "padding": "same"}, (2, 5, 5, 3)),
    ({"type": "BatchNormalization"}, (3, 4, 5, 3)),
    ({"type": "BatchNormalization"}, (6, 4)),
    ({"type": "MaxPooling2D", "pool_size": 2}, (2, 5, 7, 3)),
    ({"type": "Dropout", "rate": 0.3}, (4, 6)),
    ({"type": "Flatten"}, (2, 3, 3, 2)),
    ({"type": "Activation", "activation": "relu"}, (4, 6)),
    ({"type": "Activation", "activation": "softmax"}, (4, 6)),
]


def build_layer(config, input_shape, backend, rng):
    layer = layer_from_config(config)
    kernels = get_backend(backend).kernels()
    layer.build(input_shape[1:], np.random.default_rng(0), np.float64, kernels)
    # Non-trivial parameters and statistics, so every term of the gradient matters.
    for array in [*layer.params.values(), *layer.state.values()]:
        array[...] = rng.uniform(0.5, 1.5, array.shape)
    return layer
