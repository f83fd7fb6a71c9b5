"""numnet in Keras' words, written once: the Keras config of each layer, optimizer and learning-rate
schedule (how Keras names layers is `numnet.layers.keras_names`; the frameworks Keras runs on are
`numnet.keras.KERAS_FRAMEWORKS`).

The Keras backends, the `.keras`/`.h5` reader and writer and the TensorFlow.js writer all speak
Keras through this module; what each layer *is* in Keras lives with the layer (`to_keras`,
`from_keras`). Nothing here imports Keras.
"""

from __future__ import annotations

from typing import Any

from numnet import schedules, specs
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


def loss_config(loss: str, from_logits: bool) -> str | dict[str, Any]:
    """A spec's loss as Keras compiles and serializes it: its name, or for a model ending in logits
    the loss class with `from_logits=True` (what `keras.losses.deserialize` builds)."""
    if not from_logits:
        return loss
    class_name = "".join(part.capitalize() for part in loss.split("_"))  # SparseCategoricalCrossentropy
    return {"module": "keras.losses", "class_name": class_name, "registered_name": None,
            "config": {"name": loss, "reduction": "sum_over_batch_size", "from_logits": True}}  # fmt: skip


def loss_from_keras(config: Any) -> str | None:
    """A Keras file's loss (a name, or a serialized loss class) as a spec's loss name, or None."""
    if isinstance(config, str):
        return config if config in specs.LOSSES else None
    if isinstance(config, dict) and isinstance(config.get("class_name"), str):
        return next((loss for loss in specs.LOSSES if loss_config(loss, True)["class_name"] == config["class_name"]),
                    None)  # fmt: skip
    return None


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


# What a Keras optimizer config may also hold: names and settings that change nothing numnet computes,
# and options numnet reads only when they are off (as Keras writes them by default).
HARMLESS_OPTIMIZER_KEYS = {"name", "ema_momentum", "ema_overwrite_frequency", "is_legacy_optimizer", "jit_compile"}
OFF_OPTIMIZER_OPTIONS = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                         "use_ema": False, "loss_scale_factor": None, "gradient_accumulation_steps": None,
                         "decay": 0.0, "amsgrad": False, "momentum": 0.0, "nesterov": False}  # fmt: skip


def optimizer_from_keras(config: Any) -> dict[str, Any] | None:
    """A Keras file's optimizer (`compile_config["optimizer"]`, or a legacy file's `optimizer_config`)
    as a spec's optimizer section, or None where numnet has no such optimizer or option (the model
    then loads for inference with numnet's default Adam)."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        return None
    class_name = config.get("class_name")
    kind = next((numnet for numnet, name in OPTIMIZER_CLASSES.items() if name == class_name), None)
    if kind is None:
        return None
    options = {key: value for key, value in config["config"].items() if key in specs.OPTIMIZERS[kind]}
    for key, value in config["config"].items():
        if key in options or key in HARMLESS_OPTIMIZER_KEYS:
            continue
        if key in OFF_OPTIMIZER_OPTIONS and value in (OFF_OPTIMIZER_OPTIONS[key], None):
            continue
        return None  # an option numnet does not compute: never trained with silently
    rate = options.get("learning_rate")
    if isinstance(rate, dict):
        options["learning_rate"] = schedule_from_keras(rate)
        if options["learning_rate"] is None:
            return None
    return {"type": kind, **options}


def schedule_from_keras(config: dict[str, Any]) -> dict[str, Any] | None:
    """A serialized `keras.optimizers.schedules` object as a spec's schedule (None if numnet lacks it)."""
    kind, options = config.get("class_name"), config.get("config")
    if kind not in schedules.SCHEDULES or kind == "OneCycle" or not isinstance(options, dict):
        return None
    return {"type": kind, **{key: value for key, value in options.items() if key in schedules.SCHEDULES[kind]}}
