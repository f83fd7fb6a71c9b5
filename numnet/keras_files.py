"""Keras model files in and out: `.keras` (Keras 3) and legacy `.h5`, read without TensorFlow.

Reading needs only JSON and h5py: the architecture comes from the file's config (nested
Sequential blocks are flattened) through each numnet layer's `from_keras`, the weights from its
HDF5 datasets in Keras order, and a layer or option numnet does not have is refused by name.
Readers return data (spec, weights); `numnet.load` builds. Writing goes through Keras itself, so
whatever `keras.models.load_model` expects is what it gets.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from numnet import specs
from numnet.errors import ModelFileError, NumnetError
from numnet.io import atomic_path
from numnet.layers import KERAS_CLASSES, KerasMismatch, snake_case

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_keras_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in KERAS_SUFFIXES


class _Reader:
    """Turns one Keras config tree into numnet layer configs, naming the file in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str) -> ModelFileError:
        return ModelFileError(f"Keras file '{self.path}': {message}")

    def layer(self, entry: dict) -> dict:
        """numnet config for one Keras layer entry, through the numnet layer's own mapping."""
        kind, config = entry.get("class_name"), entry.get("config", {})
        name = config.get("name", kind)
        if kind not in KERAS_CLASSES:
            raise self.fail(f"layer '{name}' is a {kind}, which numnet does not have")
        try:
            return KERAS_CLASSES[kind].from_keras(config)
        except KerasMismatch as mismatch:
            raise self.fail(f"layer '{name}' uses {mismatch}, which numnet does not support") from None
        except (KeyError, TypeError, ValueError) as error:
            raise self.fail(f"layer '{name}' has an unreadable config ({error})") from None

    def flatten(self, model_config: dict, h5_prefix: str = "layers") -> tuple[list, list, list | None]:
        """(numnet layer configs, h5 paths of each weighted layer in .keras files, input shape)."""
        if model_config.get("class_name") not in ("Sequential",):
            raise self.fail(f"the model is a {model_config.get('class_name')}; numnet reads Sequential models")
        config = model_config.get("config", {})
        layers, weight_paths, input_shape = [], [], None
        counts: dict[str, int] = {}
        for entry in config.get("layers", []):
            kind = entry.get("class_name")
            inner = entry.get("config", {})
            shape = inner.get("batch_shape") or inner.get("batch_input_shape")
            if input_shape is None and shape:
                input_shape = list(shape[1:])
            if kind == "InputLayer":
                continue
            base = snake_case(kind)
            n = counts.get(base, 0)
            counts[base] = n + 1
            h5_name = f"{h5_prefix}/{base if n == 0 else f'{base}_{n}'}"
            if kind == "Sequential":
                inner_layers, inner_paths, inner_shape = self.flatten(entry, f"{h5_name}/layers")
                layers += inner_layers
                weight_paths += inner_paths
                input_shape = input_shape or inner_shape
                continue
            layers.append(self.layer(entry))
            if KERAS_CLASSES[kind].weight_names:
                weight_paths.append(h5_name)
        if input_shape is None:
            build = config.get("build_input_shape") or model_config.get("build_config", {}).get("input_shape")
            input_shape = list(build[1:]) if build else None
        return layers, weight_paths, input_shape

    def spec(self, model_config: dict, compile_config: dict | None) -> tuple[specs.Spec, list[str]]:
        layers, weight_paths, input_shape = self.flatten(model_config)
        if not input_shape or any(not isinstance(d, int) for d in input_shape):
            raise self.fail(f"cannot tell the model's input shape (found {input_shape})")
        if len(input_shape) == 2:  # a (28, 28) image input: numnet keeps the channel axis explicit
            input_shape = [*input_shape, 1]
        loss = (compile_config or {}).get("loss")
        spec = {
            "name": model_config.get("config", {}).get("name", "keras_model"),
            "input_shape": input_shape,
            "layers": layers,
            "loss": loss if loss in specs.LOSSES else "sparse_categorical_crossentropy",
            "optimizer": {"type": "adam"},
        }
        try:
            return specs.validate(spec), weight_paths
        except NumnetError as error:
            raise self.fail(str(error)) from None


def _h5py():
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - h5py is a dependency
        raise ModelFileError("reading Keras files needs h5py: pip install h5py") from error
    return h5py


def _json(text: Any, path: Path, what: str) -> dict:
    try:
        value = json.loads(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"Keras file '{path}' has a corrupt {what}: {error}") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"Keras file '{path}' has a corrupt {what}")
    return value


def _dataset(h5: Any, name: str, path: Path) -> np.ndarray:
    h5py = _h5py()
    item = h5.get(name)
    if not isinstance(item, h5py.Dataset):
        raise ModelFileError(f"Keras file '{path}' is missing weight '{name}'")
    if item.dtype.kind != "f":
        raise ModelFileError(f"Keras file '{path}': weight '{name}' has dtype {item.dtype}")
    return np.asarray(item[()])


def read_keras_file(path: str | Path) -> tuple[specs.Spec, list[np.ndarray]]:
    """The numnet spec and the weights (Keras order) of a `.keras` or `.h5` file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Keras file '{path}' does not exist")
    reader = _Reader(path)
    h5py = _h5py()
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = _json(archive.read("config.json"), path, "config.json")
                weights_bytes = archive.read("model.weights.h5")
            spec, weight_paths = reader.spec(config, config.get("compile_config"))
            weights = []
            with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
                for layer_path in weight_paths:
                    count = len(h5.get(f"{layer_path}/vars", {}))
                    if count == 0:
                        raise reader.fail(f"no weights stored for layer '{layer_path}'")
                    weights += [_dataset(h5, f"{layer_path}/vars/{i}", path) for i in range(count)]
            return spec, weights
        with h5py.File(path, "r") as h5:
            if "model_config" not in h5.attrs:
                raise reader.fail("it holds weights only (no model_config); save the whole model")
            config = _json(h5.attrs["model_config"], path, "model_config")
            training = h5.attrs.get("training_config")
            compile_config = _json(training, path, "training_config") if training is not None else None
            spec, _ = reader.spec(config, compile_config)
            group = h5["model_weights"] if "model_weights" in h5 else h5
            weights = []
            for layer_name in group.attrs.get("layer_names", []):
                layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
                for weight_name in group[layer_name].attrs.get("weight_names", []):
                    weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                    weights.append(_dataset(group[layer_name], weight_name, path))
            return spec, weights
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise ModelFileError(f"Keras file '{path}' is truncated or corrupt ({error})") from None


def write_keras_file(spec: specs.Spec, weights: list[np.ndarray], path: str | Path) -> None:
    """Writes a Keras file of `spec` with `weights` through Keras itself (needs TensorFlow), atomically."""
    from numnet.keras_bridge import keras_model

    model = keras_model(spec, seed=0)
    model.set_weights(weights)
    with atomic_path(path) as tmp:
        model.save(tmp)
