"""numnet in Keras' words, written once: the Keras config of each layer, optimizer and learning-rate
schedule (how Keras names layers is `numnet.layers.keras_names`; the frameworks Keras runs on are
`numnet.keras.KERAS_FRAMEWORKS`).

The Keras backends, the `.keras`/`.h5` reader and writer and the TensorFlow.js writer all speak
Keras through this module; what each layer *is* in Keras lives with the layer (`to_keras`,
`from_keras`). Nothing here imports Keras.
"""

from __future__ import annotations

from typing import Any

from numnet import schedules
from numnet.layers import Layer, keras_names

OPTIMIZER_CLASSES = {"adam": "Adam", "sgd": "SGD"}
# Where numnet's own Keras layers live, as Keras files name it.
LAYERS_MODULE = "numnet.keras.layers"


def layer_entries(layers: list[Layer]) -> list[dict[str, Any]]:
    """Each layer as Keras writes it in a model config: its name, Keras class and config (from the
    layer's own `to_keras`), with the numnet layer beside it."""
    names = keras_names([layer.type for layer in layers])
    return [
        {"name": name, "class_name": layer.keras_class, "layer": layer,
         "config": {"name": name, "trainable": True, "dtype": "float32", **layer.to_keras()}}
        for name, layer in zip(names, layers)
    ]  # fmt: skip


def optimizer_config(optimizer: dict[str, Any]) -> dict[str, Any]:
    """A validated spec's optimizer as Keras serializes one (a schedule nested as Keras nests it):
    what `keras.optimizers.deserialize` builds and what Keras files carry."""
    options = {key: value for key, value in optimizer.items() if key != "type"}
    if isinstance(options["learning_rate"], dict):
        schedule = schedules.keras_equivalent(options["learning_rate"])
        arguments = {key: value for key, value in schedule.items() if key != "type"}
        options["learning_rate"] = {
            "module": "keras.optimizers.schedules", "class_name": schedule["type"],
            "config": {**arguments, "name": schedule["type"]}, "registered_name": None,
        }  # fmt: skip
    return {"module": "keras.optimizers", "class_name": OPTIMIZER_CLASSES[optimizer["type"]],
            "config": {"name": optimizer["type"], **options}, "registered_name": None}  # fmt: skip
