"""Model specs: plain JSON-serialisable data describing a network, its loss and optimizer.

A spec is `{"name", "input_shape", "layers": [layer configs], "loss", "optimizer"}`; every backend
builds the same network from it.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

from numnet import schedules
from numnet.errors import SpecError
from numnet.io import read_text
from numnet.settings import is_number

Spec = dict[str, Any]

LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
OPTIMIZER_RANGES = {  # open intervals every option must lie in
    "learning_rate": (0.0, math.inf), "beta_1": (0.0, 1.0), "beta_2": (0.0, 1.0), "epsilon": (0.0, 1.0),
}  # fmt: skip
OPTIMIZERS = {
    "adam": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "sgd": {"learning_rate": 1e-2},
}


def mlp() -> Spec:
    """The seed MLP: Flatten -> Dense 128 relu -> Dense 10 softmax (101,770 parameters)."""
    return {
        "name": "mlp",
        "input_shape": [28, 28, 1],
        "layers": [
            {"type": "Flatten"},
            {"type": "Dense", "units": 128, "activation": "relu"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
        "loss": "sparse_categorical_crossentropy",
        "optimizer": {"type": "adam"},
    }


def cnn(dropout: float = 0.1) -> Spec:
    """The seed CNN: 2 x [Conv 3x3 (64, then 128) -> BN -> ReLU -> MaxPool 2 -> Dropout] -> Dense 10."""
    layers: list[dict[str, Any]] = []
    for filters in (64, 128):
        layers += [
            {"type": "Conv2D", "filters": filters, "kernel_size": 3, "padding": "valid"},
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Dropout", "rate": dropout},
        ]
    layers += [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]
    return {
        "name": "cnn",
        "input_shape": [28, 28, 1],
        "layers": layers,
        "loss": "sparse_categorical_crossentropy",
        "optimizer": {"type": "adam"},
    }


def conv_block(filters: int, momentum: float = 0.9) -> list[dict[str, Any]]:
    return [
        {"type": "Conv2D", "filters": filters, "kernel_size": 3, "padding": "valid"},
        {"type": "BatchNormalization", "momentum": momentum},
        {"type": "Activation", "activation": "relu"},
    ]


def augmentation(rotation: float = 0.025, shift: float = 0.08, zoom: float = 0.08,
                 strokes: tuple[float, float] = (-0.5, 1.0), elastic: float = 0.5) -> list[dict[str, Any]]:  # fmt: skip
    """How digits drawn by hand differ from MNIST's: pens thinner or (a mouse's) thicker, strokes
    that waver, a few degrees of slant (0.025 of a turn is 9 degrees), an off-centre position, a
    size a little off; the background outside is blank. The pen alone took a mouse-drawn set from
    98.1 to 99.2 % and other writers' digits (optdigits) from 93.2 to 96.7 %; bending `elastic` of
    the digits (Keras' RandomElasticTransform) lifted MNIST test and optdigits further (RESULTS.md)."""
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    return [{"type": "RandomStrokeWidth", "factor": list(strokes)},
            {"type": "RandomElasticTransform", "factor": elastic, "scale": 1.0, **fill, "value_range": [0, 1]},
            {"type": "RandomRotation", "factor": rotation, **fill},
            {"type": "RandomTranslation", "height_factor": shift, "width_factor": shift, **fill},
            {"type": "RandomZoom", "height_factor": zoom, **fill}]  # fmt: skip


BEST_EPOCHS, BEST_BATCH = 20, 128


def best(epochs: int = BEST_EPOCHS, batch_size: int = BEST_BATCH, peak_learning_rate: float = 3e-3,
         **augment: float) -> Spec:  # fmt: skip
    """numnet's best recipe: augmentation, conv 32 -> pool -> conv 64 -> conv 64 -> pool -> dense 128,
    batch norm with momentum 0.9 (its moving statistics settle within the first epoch, so inference
    works from epoch 1, unlike the seed CNN's 0.99), and a one-cycle learning rate over the run."""
    steps = epochs * math.ceil(60_000 / batch_size)
    layers = [*augmentation(**augment), *conv_block(32), {"type": "MaxPooling2D", "pool_size": 2},
              *conv_block(64), *conv_block(64), {"type": "MaxPooling2D", "pool_size": 2},
              {"type": "Dropout", "rate": 0.1}, {"type": "Flatten"},
              {"type": "Dense", "units": 128, "activation": "relu"}, {"type": "Dropout", "rate": 0.25},
              {"type": "Dense", "units": 10, "activation": "softmax"}]  # fmt: skip
    schedule = {"type": "OneCycle", "max_learning_rate": peak_learning_rate, "total_steps": steps}
    return {"name": "best", "input_shape": [28, 28, 1], "layers": layers, "loss": "sparse_categorical_crossentropy",
            "optimizer": {"type": "adam", "learning_rate": schedule}}  # fmt: skip


SEED_SPECS = {"mlp": mlp, "cnn": cnn}


def validate(spec: Any) -> Spec:
    """Checks the top-level structure and fills defaults; layer configs are checked when built."""
    if not isinstance(spec, dict):
        raise SpecError(f"a spec must be a JSON object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "input_shape", "layers", "loss", "optimizer"})
    if unknown:
        raise SpecError(f"spec has unknown keys {unknown}")
    spec = copy.deepcopy(spec)
    shape = spec.get("input_shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise SpecError(f"spec 'input_shape' must be a list of 1-3 positive integers, got {shape!r}")
    if not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise SpecError("spec 'layers' must be a non-empty list of layer configs")
    spec.setdefault("name", "model")
    name = spec["name"]
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise SpecError(
            f"spec 'name' must be 1-64 letters, digits, '_', '-' or '.', not starting with '.', since files are "
            f"named after it; got {name!r}"
        )
    spec.setdefault("loss", "sparse_categorical_crossentropy")
    if spec["loss"] not in LOSSES:
        raise SpecError(f"loss {spec['loss']!r} is not supported; use one of {LOSSES}")
    optimizer = spec.setdefault("optimizer", {"type": "adam"})
    if (
        not isinstance(optimizer, dict)
        or not isinstance(optimizer.get("type"), str)
        or optimizer["type"] not in OPTIMIZERS
    ):
        raise SpecError(f"optimizer must be {{'type': one of {sorted(OPTIMIZERS)}, ...}}, got {optimizer!r}")
    defaults = OPTIMIZERS[optimizer["type"]]
    unknown = sorted(set(optimizer) - {"type", *defaults})
    if unknown:
        raise SpecError(f"optimizer {optimizer['type']!r} does not take {unknown}")
    spec["optimizer"] = {"type": optimizer["type"], **defaults, **optimizer}
    if isinstance(spec["optimizer"]["learning_rate"], dict):
        spec["optimizer"]["learning_rate"] = schedules.validate(spec["optimizer"]["learning_rate"])
    for key, value in spec["optimizer"].items():
        if key == "type" or isinstance(value, dict):
            continue
        low, high = OPTIMIZER_RANGES[key]
        if not is_number(value) or not low < value < high:
            also = " or a learning-rate schedule" if key == "learning_rate" else ""
            raise SpecError(f"optimizer {key} must be a number in ({low}, {high}){also}, got {value!r}")
    return spec


def load_spec(path: str | Path) -> Spec:
    """Reads a user's spec from a JSON file."""
    path = Path(path)
    text = read_text(path, "spec file", SpecError)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"spec file '{path}' is not valid JSON: {error}") from error
    except RecursionError:
        raise SpecError(f"spec file '{path}' is nested too deeply to be a spec") from None
    return validate(spec)


def resolve(model: str, settings: dict[str, Any] | None = None) -> Spec:
    """'mlp', 'cnn', 'best' or a path to a JSON spec file. `best`'s one-cycle schedule spans the
    run, so it is built for the run's `settings` (epochs, batch_size) when given."""
    if model == "best":
        settings = settings or {}
        return best(settings.get("epochs", BEST_EPOCHS), settings.get("batch_size", BEST_BATCH))
    if model in SEED_SPECS:
        return SEED_SPECS[model]()
    return load_spec(model)
