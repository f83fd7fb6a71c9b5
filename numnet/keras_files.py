"""Keras model files in and out: `.keras` (Keras 3) and legacy `.h5`, read without TensorFlow.

Reading needs only JSON and h5py: the architecture comes from the file's config (nested
Sequential blocks are flattened), the weights from its HDF5 datasets in Keras order, and a layer
or option numnet does not have is refused by name. Writing goes through Keras itself (the
tensorflow backend), so whatever `keras.models.load_model` expects is what it gets.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from numnet import specs
from numnet.errors import ModelFileError, NumnetError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SUPPORTED_ACTIVATIONS = ("relu", "softmax", "linear")


def is_keras_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in KERAS_SUFFIXES


def _snake_case(name: str) -> str:
    from numnet.model import snake_case

    return snake_case(name)


class _Reader:
    """Turns one Keras config tree into numnet layer configs, naming the file in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str) -> ModelFileError:
        return ModelFileError(f"Keras file '{self.path}': {message}")

    def activation(self, where: str, name: Any) -> str | None:
        if isinstance(name, dict):  # serialized activation object
            name = name.get("config", {}).get("name") or name.get("class_name")
        if name in (None, "linear"):
            return None
        if name not in SUPPORTED_ACTIVATIONS:
            raise self.fail(f"layer '{where}' uses activation {name!r}, which numnet does not have")
        return name

    def require(self, where: str, condition: bool, what: str) -> None:
        if not condition:
            raise self.fail(f"layer '{where}' uses {what}, which numnet does not support")

    def layer(self, entry: dict) -> dict | None:
        """numnet config for one Keras layer entry (None for an InputLayer)."""
        kind, config = entry.get("class_name"), entry.get("config", {})
        name = config.get("name", kind)
        if kind == "InputLayer":
            return None
        if kind == "Dense":
            self.require(name, config.get("use_bias", True), "use_bias=False")
            return {"type": "Dense", "units": int(config["units"]),
                    "activation": self.activation(name, config.get("activation"))}  # fmt: skip
        if kind == "Conv2D":
            kernel = list(config.get("kernel_size", [3, 3]))
            self.require(name, len(set(kernel)) == 1, f"a non-square kernel {kernel}")
            self.require(name, list(config.get("strides", [1, 1])) == [1, 1], "strides other than 1")
            self.require(name, list(config.get("dilation_rate", [1, 1])) == [1, 1], "dilation")
            self.require(name, config.get("groups", 1) == 1, "grouped convolution")
            self.require(name, config.get("use_bias", True), "use_bias=False")
            self.require(name, config.get("data_format", "channels_last") in (None, "channels_last"), "channels_first")
            return {"type": "Conv2D", "filters": int(config["filters"]), "kernel_size": int(kernel[0]),
                    "padding": config.get("padding", "valid"),
                    "activation": self.activation(name, config.get("activation"))}  # fmt: skip
        if kind == "BatchNormalization":
            axis = config.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            self.require(name, axis in (-1, 3, 1), f"axis {axis}")
            self.require(name, config.get("center", True) and config.get("scale", True), "center/scale off")
            return {"type": "BatchNormalization", "momentum": float(config.get("momentum", 0.99)),
                    "epsilon": float(config.get("epsilon", 1e-3))}  # fmt: skip
        if kind == "MaxPooling2D":
            pool = config.get("pool_size", [2, 2])
            strides = config.get("strides") or pool
            self.require(name, list(pool) == [2, 2] and list(strides) == [2, 2], f"pool {pool} stride {strides}")
            self.require(name, config.get("padding", "valid") == "valid", "'same' pooling")
            return {"type": "MaxPooling2D", "pool_size": 2}
        if kind == "Dropout":
            return {"type": "Dropout", "rate": float(config.get("rate", 0.5))}
        if kind == "Flatten":
            return {"type": "Flatten"}
        if kind == "Activation":
            activation = self.activation(name, config.get("activation"))
            return {"type": "Activation", "activation": activation or "linear"}
        raise self.fail(f"layer '{name}' is a {kind}, which numnet does not have")

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
            base = _snake_case(kind)
            n = counts.get(base, 0)
            counts[base] = n + 1
            h5_name = f"{h5_prefix}/{base if n == 0 else f'{base}_{n}'}"
            if kind == "Sequential":
                inner_layers, inner_paths, inner_shape = self.flatten(entry, f"{h5_name}/layers")
                layers += inner_layers
                weight_paths += inner_paths
                input_shape = input_shape or inner_shape
                continue
            layer = self.layer(entry)
            layers.append(layer)
            if layer["type"] in ("Dense", "Conv2D", "BatchNormalization"):
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


def load_keras_file(path: str | Path, backend: str = "numpy"):
    from numnet import build

    spec, weights = read_keras_file(path)
    model = build(spec, backend=backend)
    try:
        model.set_weights(weights)
    except NumnetError as error:
        raise ModelFileError(f"Keras file '{path}': its weights do not fit its architecture: {error}") from None
    return model


def save_keras_file(model, path: str | Path) -> None:
    """Writes `model` as a Keras file through Keras itself (needs TensorFlow), atomically."""
    from numnet.backends.tensorflow_backend import keras_model

    path = Path(path)
    keras = getattr(model, "keras_model", None)
    if keras is None:
        keras = keras_model(model.spec, seed=0)
        keras.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        keras.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
