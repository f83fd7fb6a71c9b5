"""numnet's layers: small classes with forward and backward side by side, and their Keras mapping.

`base` is what every layer is, `core` the classic layers, `augmentation` the random image layers
used in training. This module is the registry: a layer config in, a layer out, and the one check of a
whole spec's layers, so every backend, file reader and report refuses a bad spec with one message.
"""

from __future__ import annotations

import re
from typing import Any

from numnet import specs
from numnet.errors import SpecError
from numnet.layers.augmentation import AUGMENTATION_LAYERS
from numnet.layers.base import KerasMismatch, Layer, Shape
from numnet.layers.core import (
    CORE_LAYERS,
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
)

__all__ = ["Activation", "BatchNormalization", "Conv2D", "Dense", "Dropout", "Flatten", "KerasMismatch", "Layer",
           "MaxPooling2D", "LAYER_TYPES", "check_spec", "keras_names", "layer_from_config", "weight_shapes",
           "size"]  # fmt: skip

# A spec's size is checked before anything is allocated, so no spec (or model file, or run record
# holding one) can make numnet allocate without bound. Far above any digit network: the seed CNN has
# 95,818 weights and 131,968 activation values per sample.
MAX_WEIGHTS = 25_000_000  # all layers' weights together: 100 MB in float32, 300 MB with Adam's slots
MAX_ACTIVATIONS_PER_SAMPLE = 10_000_000  # every layer's output values for one sample: 40 MB in float32
LAYER_TYPES: dict[str, type[Layer]] = {cls.type: cls for cls in (*CORE_LAYERS, *AUGMENTATION_LAYERS)}
KERAS_CLASSES: dict[str, type[Layer]] = {  # Keras class or registered name -> layer
    name: cls for cls in LAYER_TYPES.values() for name in (cls.type, cls.keras_registered_name()) if name
}


def snake_case(name: str) -> str:
    """Keras' layer naming: MaxPooling2D -> max_pooling2d."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def keras_names(types: list[str]) -> list[str]:
    """The names Keras gives a Sequential's layers: dense, dense_1, conv2d, ..."""
    counts: dict[str, int] = {}
    names = []
    for layer_type in types:
        base = snake_case(layer_type)
        n = counts.get(base, 0)
        counts[base] = n + 1
        names.append(base if n == 0 else f"{base}_{n}")
    return names


def layer_from_config(config: dict[str, Any]) -> Layer:
    if not isinstance(config, dict) or "type" not in config:
        raise SpecError(f"a layer config must be an object with a 'type', got {config!r}")
    options = {key: value for key, value in config.items() if key != "type"}
    layer_type = config["type"]
    if not isinstance(layer_type, str) or layer_type not in LAYER_TYPES:
        raise SpecError(f"unknown layer type {layer_type!r}; numnet has {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[layer_type](**options)


def size(shape: Shape) -> int:
    """Elements in an array of this shape (Python integers: no overflow however hostile the spec)."""
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


def check_spec(spec: Any) -> tuple[specs.Spec, list[Layer]]:
    """The spec with its defaults filled in, and its layers, each with its `input_shape` and
    `output_shape`: everything checked, nothing allocated.

    Every backend, file reader and writer and the report check a spec through this one call, so a bad
    spec gets the same message everywhere and a spec too large to build is refused before any memory
    is taken.
    """
    spec = specs.validate(spec)
    layers = [layer_from_config(config) for config in spec["layers"]]
    shape = tuple(spec["input_shape"])
    weights, activations = 0, size(shape)
    for i, layer in enumerate(layers):
        input_shape, shape = shape, layer.compute_output_shape(shape)
        weights += sum(size(s) for s in layer.weight_shapes(input_shape).values())
        if any(dim < 1 for dim in shape):
            raise SpecError(f"layer {i + 1} ({layer.type}) shrinks its input to {shape}: nothing is left to compute")
        activations += size(shape)
        if weights > MAX_WEIGHTS or activations > MAX_ACTIVATIONS_PER_SAMPLE:
            raise SpecError(
                f"the network is too large to build: by layer {i + 1} ({layer.type}) it has {weights:,} weights "
                f"(numnet allows {MAX_WEIGHTS:,}) and {activations:,} activation values per sample "
                f"(numnet allows {MAX_ACTIVATIONS_PER_SAMPLE:,})"
            )
        layer.input_shape, layer.output_shape = input_shape, shape
    if len(shape) != 1 or shape[0] < 2:
        raise SpecError(
            f"the last layer must output one score per class (a flat output of 2 or more), not {shape}: "
            "end the spec with Dense(classes), with softmax for probabilities or without for logits"
        )
    return spec, layers


def outputs_logits(layers: list[Layer]) -> bool:
    """Whether a model of these layers ends without softmax: it outputs logits, as a Keras model
    trained with `from_logits=True` does, and its loss takes them as such."""
    last = layers[-1]
    return not (last.config.get("activation") == "softmax" or last.type == "Softmax")


def weight_shapes(layers: list[Layer], trainable_only: bool = False) -> list[Shape]:
    """Every weight's shape in Keras order (or only those training steps), from checked layers alone:
    a file's arrays are checked against these before they are read."""
    return [shape for layer in layers for name, shape in layer.weight_shapes(layer.input_shape).items()
            if not (trainable_only and name in layer.state_names)]  # fmt: skip
