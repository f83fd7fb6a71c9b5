"""TensorFlow.js Layers format, written without TensorFlow or the tensorflowjs package.

What `tensorflowjs.converters.save_keras_model` writes and `tf.loadLayersModel('.../model.json')`
reads: `model.json` (the Keras topology and a weights manifest) and `group1-shard1of1.bin` (every
weight as little-endian float32, in manifest order). Layer configs come from each layer's Keras
mapping; weight names are `<layer>/<weight>`, which is how TensorFlow.js matches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from numnet import specs
from numnet.errors import ModelFileError
from numnet.io import atomic_write, write_json
from numnet.layers import keras_names, layers_from_spec

WEIGHTS_FILE = "group1-shard1of1.bin"


def topology(spec: specs.Spec) -> tuple[dict[str, Any], list[tuple[str, tuple[int, ...]]]]:
    """The Keras 2 style Sequential config TensorFlow.js reads, and each weight's name and shape."""
    layers = layers_from_spec(spec)
    names = keras_names([layer.type for layer in layers])
    # TensorFlow.js has no augmentation layers; they are the identity in inference, so they go.
    kept = [(name, layer) for name, layer in zip(names, layers) if not layer.training_only]
    configs, manifest = [], []
    for i, (name, layer) in enumerate(kept):
        config = {"name": name, "trainable": True, "dtype": "float32", **layer.to_keras()}
        if "activation" in config and config["activation"] is None:
            config["activation"] = "linear"
        if i == 0:
            config["batch_input_shape"] = [None, *spec["input_shape"]]
        configs.append({"class_name": layer.keras_class, "config": config})
        manifest += [(f"{name}/{weight}", shape) for weight, shape in layer.weight_shapes(layer.input_shape).items()]
    model_config = {"class_name": "Sequential", "config": {"name": spec["name"], "layers": configs}}
    return model_config, manifest


def write_tfjs(spec: specs.Spec, weights: list[np.ndarray], folder: str | Path) -> Path:
    """Writes model.json and its weights file into `folder`; returns model.json's path."""
    spec = specs.validate(spec)
    folder = Path(folder)
    model_config, manifest = topology(spec)
    if [tuple(np.shape(w)) for w in weights] != [tuple(shape) for _, shape in manifest]:
        raise ModelFileError(f"the weights do not fit the spec {spec['name']!r}: expected {[s for _, s in manifest]}")
    with atomic_write(folder / WEIGHTS_FILE) as f:
        for array in weights:
            f.write(np.ascontiguousarray(array, dtype="<f4").tobytes())
    model_json = {
        "format": "layers-model",
        "generatedBy": "numnet",
        "convertedBy": "numnet (TensorFlow.js Layers format)",
        "modelTopology": {"keras_version": "2.15.0", "backend": "tensorflow", "model_config": model_config},
        "weightsManifest": [
            {"paths": [WEIGHTS_FILE],
             "weights": [{"name": name, "shape": list(shape), "dtype": "float32"} for name, shape in manifest]}
        ],
    }  # fmt: skip
    write_json(folder / "model.json", model_json)
    return folder / "model.json"
