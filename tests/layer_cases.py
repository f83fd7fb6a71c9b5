"""The shared layer-test list: one line per layer configuration.

Every case is checked by finite differences on every engine backend, in training and inference
(test_gradients.py), against the Keras layer its mapping names, forward and backward in float64,
with its Keras mapping round-tripping through a Keras config (test_parity.py), and on a kernel
module whose arrays are opaque (test_kernel_contract.py). Adding a layer means adding its cases here.
"""

from __future__ import annotations

import numpy as np

from numnet.layers import layer_from_config

ELASTIC = {"type": "RandomElasticTransform", "factor": 1.0, "scale": 1.0, "fill_mode": "constant"}

LAYER_CASES = [
    ({"type": "Dense", "units": 5}, (4, 7)),
    ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "valid"}, (2, 6, 5, 2)),
    ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "same"}, (2, 5, 6, 2)),
    ({"type": "Conv2D", "filters": 2, "kernel_size": 2, "padding": "same"}, (2, 5, 5, 3)),
    ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "strides": 2, "padding": "valid"}, (2, 7, 6, 2)),
    ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, (2, 6, 5, 2)),
    ({"type": "Conv2D", "filters": 2, "kernel_size": 2, "strides": 3, "padding": "same", "use_bias": False},
     (2, 7, 7, 1)),
    ({"type": "Conv2D", "filters": 2, "kernel_size": 3, "use_bias": False}, (2, 5, 5, 1)),
    ({"type": "Dense", "units": 5, "use_bias": False}, (4, 7)),
    ({"type": "BatchNormalization"}, (3, 4, 5, 3)),
    ({"type": "BatchNormalization"}, (6, 4)),
    ({"type": "MaxPooling2D", "pool_size": 2}, (2, 5, 7, 3)),
    ({"type": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"}, (2, 7, 6, 3)),
    ({"type": "MaxPooling2D", "pool_size": [2, 3], "strides": 1}, (2, 5, 6, 2)),
    ({"type": "MaxPooling2D", "pool_size": 4}, (2, 9, 8, 2)),
    ({"type": "AveragePooling2D", "pool_size": 2}, (2, 5, 7, 3)),
    ({"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "padding": "same"}, (2, 7, 6, 3)),
    ({"type": "AveragePooling2D", "pool_size": [2, 3], "strides": [1, 2], "padding": "same"}, (2, 5, 6, 2)),
    ({"type": "Dropout", "rate": 0.3}, (4, 6)),
    ({"type": "Flatten"}, (2, 3, 3, 2)),
    ({"type": "Activation", "activation": "relu"}, (4, 6)),
    ({"type": "Activation", "activation": "softmax"}, (4, 6)),
    *[({"type": "Activation", "activation": name}, (4, 6))
      for name in ("sigmoid", "tanh", "elu", "leaky_relu", "softplus", "gelu")],
    ({"type": "ReLU"}, (2, 3, 3, 2)),
    ({"type": "Reshape", "target_shape": [3, -1]}, (2, 3, 4, 2)),
    ({"type": "GlobalAveragePooling2D"}, (2, 4, 5, 3)),
    ({"type": "Softmax"}, (4, 6)),
    ({"type": "RandomRotation", "factor": 0.1, "fill_mode": "constant"}, (3, 9, 8, 2)),
    ({"type": "RandomRotation", "factor": 0.2, "fill_mode": "reflect"}, (3, 9, 8, 2)),
    ({"type": "RandomTranslation", "height_factor": 0.2, "width_factor": [-0.1, 0.3], "fill_mode": "constant"},
     (3, 9, 8, 2)),
    ({"type": "RandomTranslation", "height_factor": 0.3, "width_factor": 0.3, "fill_mode": "wrap",
      "interpolation": "nearest"}, (3, 9, 8, 2)),
    ({"type": "RandomZoom", "height_factor": [-0.3, 0.2], "fill_mode": "constant"}, (3, 9, 8, 2)),
    ({"type": "RandomZoom", "height_factor": 0.2, "width_factor": 0.1, "fill_mode": "constant"}, (3, 9, 8, 2)),
    ({"type": "RandomStrokeWidth", "factor": [-0.5, 1.0]}, (3, 9, 8, 2)),
    ({"type": "RandomContrast", "factor": [0.2, 1.0], "value_range": [0, 1]}, (3, 9, 8, 2)),
    ({**ELASTIC, "value_range": [-1.5, 1.5]}, (3, 9, 8, 2)),
    ({**ELASTIC, "factor": [0.5, 1.0], "fill_mode": "reflect", "interpolation": "nearest", "value_range": [-9, 9]},
     (3, 9, 8, 2)),
]  # fmt: skip


def build_layer(config, input_shape, kernels, rng):
    """The layer built on a kernel module in float64, with non-trivial parameters and statistics, so
    every term of the gradient matters."""
    layer = layer_from_config(config)
    layer.build(input_shape[1:], np.random.default_rng(0), np.float64, kernels)
    for array in [*layer.params.values(), *layer.state.values()]:
        kernels.assign(array, kernels.asarray(rng.uniform(0.5, 1.5, array.shape), np.float64))
    return layer


def same_draws(layer):
    """What to call before each forward pass so a random layer draws the same masks and transforms
    every time (finite differences evaluate the layer many times)."""
    if layer.random_stream is None:
        return None
    return lambda: setattr(layer, "rng", np.random.default_rng(7))
