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
from numnet.keras.mapping import layer_entries
from numnet.layers import Layer, check_spec, outputs_logits

WEIGHTS_FILE = "group1-shard1of1.bin"
LEAKY_SLOPE = 0.2  # Keras' leaky_relu activation's negative slope


def topology(spec: specs.Spec, layers: list[Layer]) -> tuple[dict[str, Any], list[tuple[str, tuple[int, ...]]]]:
    """The Keras 2 style Sequential config TensorFlow.js reads, and each weight's name and shape."""
    # TensorFlow.js has no augmentation layers; they are the identity in inference, so they go.
    kept = [entry for entry in layer_entries(layers) if not entry["layer"].training_only]
    configs, manifest = [], []
    for i, entry in enumerate(kept):
        name, layer, config = entry["name"], entry["layer"], entry["config"]
        if "activation" in config and config["activation"] is None:
            config["activation"] = "linear"
        if i == 0:
            config["batch_input_shape"] = [None, *spec["input_shape"]]
        configs.append({"class_name": entry["class_name"], "config": config})
        if config.get("activation") == "leaky_relu":  # TensorFlow.js has the layer, not the activation
            config["activation"] = "linear"
            leaky = {"name": f"{name}_leaky_relu", "trainable": True, "dtype": "float32", "alpha": LEAKY_SLOPE}
            configs.append({"class_name": "LeakyReLU", "config": leaky})
        manifest += [(f"{name}/{weight}", shape) for weight, shape in layer.weight_shapes(layer.input_shape).items()]
    if outputs_logits(layers):  # the page shows probabilities: a model ending in logits gets its softmax here
        softmax = {"name": "probabilities", "trainable": True, "dtype": "float32", "activation": "softmax"}
        configs.append({"class_name": "Activation", "config": softmax})
    model_config = {"class_name": "Sequential", "config": {"name": spec["name"], "layers": configs}}
    return model_config, manifest


def tfjs_artifacts(spec: specs.Spec, weights: list[np.ndarray]) -> tuple[dict[str, Any], bytes]:
    """model.json's contents and the weights file's bytes, for a folder or for a page that holds them."""
    spec, layers = check_spec(spec)
    model_config, manifest = topology(spec, layers)
    if [tuple(np.shape(w)) for w in weights] != [tuple(shape) for _, shape in manifest]:
        raise ModelFileError(f"the weights do not fit the spec {spec['name']!r}: expected {[s for _, s in manifest]}")
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
    return model_json, b"".join(np.ascontiguousarray(array, dtype="<f4").tobytes() for array in weights)


def write_tfjs(spec: specs.Spec, weights: list[np.ndarray], folder: str | Path) -> Path:
    """Writes model.json and its weights file into `folder`; returns model.json's path."""
    folder = Path(folder)
    model_json, weight_bytes = tfjs_artifacts(spec, weights)
    with atomic_write(folder / WEIGHTS_FILE) as f:
        f.write(weight_bytes)
    write_json(folder / "model.json", model_json)
    return folder / "model.json"
