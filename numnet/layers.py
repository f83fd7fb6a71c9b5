"""Layers: small classes holding parameters, with forward and backward side by side.

The arithmetic lives in a kernel module (see `numnet.backends.interface`), so every backend shares
these classes and differs only in kernels. Parameters are kept in Keras order and layout, so
`Model.get_weights()` fits a Keras model. Each layer also says what it is in Keras terms
(`keras_class`, `to_keras`, `from_keras`): the Keras backend builds from that and the Keras file
reader reads through it, so a layer's defaults are written once, in `options`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from numnet.augmentation import AUGMENTATION_LAYERS
from numnet.errors import SpecError
from numnet.layer_base import KerasMismatch, Layer, Shape, pair, require

# A spec's size is checked before anything is allocated, so no spec (or model file, or run record
# holding one) can make numnet allocate without bound. Far above any digit network: the seed CNN has
# 95,818 weights and 131,968 activation values per sample.
MAX_WEIGHTS = 25_000_000  # all layers' weights together: 100 MB in float32, 300 MB with Adam's slots
MAX_ACTIVATIONS_PER_SAMPLE = 10_000_000  # every layer's output values for one sample: 40 MB in float32
ACTIVATIONS = ("relu", "softmax", "linear")


def glorot_uniform(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


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


def keras_activation(value: Any) -> str:
    """A Keras activation (a name or a serialized object) as a numnet activation name."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("name") or value.get("class_name")
    value = "linear" if value is None else value
    if value not in ACTIVATIONS:
        raise KerasMismatch(f"activation {value!r}")
    return value


def keras_layer_activation(value: Any) -> str | None:
    """A Dense/Conv2D activation from Keras: numnet writes no activation as None, not 'linear'."""
    activation = keras_activation(value)
    return None if activation == "linear" else activation


class Activation(Layer):
    type = "Activation"
    options = {"activation": "relu"}

    def check_config(self):
        if self.config["activation"] not in ACTIVATIONS:
            raise SpecError(f"activation {self.config['activation']!r} is not supported; use one of {ACTIVATIONS}")
        self.name = self.config["activation"]

    def forward(self, x, training):
        k = self.kernels
        if self.name == "relu":
            self.y = k.relu_forward(x)
        elif self.name == "softmax":
            self.y = k.softmax(x)
        else:
            self.y = x
        return self.y

    def backward(self, dy):
        k = self.kernels
        if self.name == "relu":
            return k.relu_backward(self.y, dy)
        if self.name == "softmax":
            return k.softmax_backward(self.y, dy)
        return dy

    @classmethod
    def from_keras(cls, config):
        return {"type": cls.type, "activation": keras_activation(config.get("activation"))}


def _check_positive(layer: Layer, key: str) -> None:
    value = layer.config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{layer.type} {key} must be a positive integer, got {value!r}")


class Dense(Layer):
    type = "Dense"
    options = {"units": None, "activation": None}
    weight_names = ("kernel", "bias")

    def check_config(self):
        _check_positive(self, "units")
        if self.config["activation"] not in (None, *ACTIVATIONS):
            raise SpecError(f"activation {self.config['activation']!r} is not supported; use one of {ACTIVATIONS}")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise SpecError(f"Dense needs a flat input, got shape {input_shape}; put a Flatten before it")
        return (self.config["units"],)

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[0], self.config["units"]), "bias": (self.config["units"],)}

    def create_weights(self, input_shape, rng, dtype):
        fan_in, units = input_shape[0], self.config["units"]
        k = self.kernels
        self.params = {
            "kernel": k.asarray(glorot_uniform(rng, (fan_in, units), fan_in, units, dtype), dtype),
            "bias": k.zeros((units,), dtype),
        }

    def forward(self, x, training):
        self.x = x  # (N, in)
        return self.kernels.dense_forward(x, self.params["kernel"], self.params["bias"])

    def backward(self, dy):
        dx, self.grads["kernel"], self.grads["bias"] = self.kernels.dense_backward(
            self.x, self.params["kernel"], dy, self.needs_input_grad
        )
        return dx

    def to_keras(self, seed=None):
        return {"units": self.config["units"], "activation": self.config["activation"]}

    @classmethod
    def from_keras(cls, config):
        require(config.get("use_bias", True), "use_bias=False")
        return {"type": cls.type, "units": int(config["units"]),
                "activation": keras_layer_activation(config.get("activation"))}  # fmt: skip


class Conv2D(Layer):
    """Stride-1 NHWC convolution with a square kernel."""

    type = "Conv2D"
    options = {"filters": None, "kernel_size": 3, "padding": "valid", "activation": None}
    weight_names = ("kernel", "bias")

    def check_config(self):
        k = self.config["kernel_size"]
        if isinstance(k, list | tuple):
            if len(set(k)) != 1:
                raise SpecError(f"Conv2D kernel_size must be square, got {k}")
            self.config["kernel_size"] = int(k[0])
        _check_positive(self, "filters")
        _check_positive(self, "kernel_size")
        if self.config["padding"] not in ("valid", "same"):
            raise SpecError(f"Conv2D padding must be 'valid' or 'same', got {self.config['padding']!r}")
        if self.config["activation"] not in (None, *ACTIVATIONS):
            raise SpecError(f"activation {self.config['activation']!r} is not supported; use one of {ACTIVATIONS}")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise SpecError(f"Conv2D needs (height, width, channels) input, got shape {input_shape}")
        h, w, _ = input_shape
        k = self.config["kernel_size"]
        if self.config["padding"] == "valid":
            h, w = h - k + 1, w - k + 1
        if h < 1 or w < 1:
            raise SpecError(f"Conv2D {k}x{k} 'valid' does not fit input {input_shape}")
        return (h, w, self.config["filters"])

    def weight_shapes(self, input_shape):
        k, filters = self.config["kernel_size"], self.config["filters"]
        return {"kernel": (k, k, input_shape[2], filters), "bias": (filters,)}

    def create_weights(self, input_shape, rng, dtype):
        shapes = self.weight_shapes(input_shape)
        k, cin, filters = self.config["kernel_size"], input_shape[2], self.config["filters"]
        kernel = glorot_uniform(rng, shapes["kernel"], k * k * cin, k * k * filters, dtype)
        self.params = {"kernel": self.kernels.asarray(kernel, dtype), "bias": self.kernels.zeros((filters,), dtype)}

    def forward(self, x, training):
        self.x = x  # (N, H, W, Cin)
        y, self.cache = self.kernels.conv2d_forward(
            x, self.params["kernel"], self.params["bias"], self.config["padding"]
        )
        return y

    def backward(self, dy):
        dx, self.grads["kernel"], self.grads["bias"] = self.kernels.conv2d_backward(
            self.x, self.params["kernel"], dy, self.config["padding"], self.cache, self.needs_input_grad
        )
        self.cache = None
        return dx

    def to_keras(self, seed=None):
        c = self.config
        return {"filters": c["filters"], "kernel_size": c["kernel_size"], "padding": c["padding"],
                "activation": c["activation"]}  # fmt: skip

    @classmethod
    def from_keras(cls, config):
        kernel = pair(config.get("kernel_size", 3))
        require(len(set(kernel)) == 1, f"a non-square kernel {kernel}")
        require(pair(config.get("strides", 1)) == [1, 1], "strides other than 1")
        require(pair(config.get("dilation_rate", 1)) == [1, 1], "dilation")
        require(config.get("groups", 1) == 1, "grouped convolution")
        require(config.get("use_bias", True), "use_bias=False")
        require(config.get("data_format", "channels_last") in (None, "channels_last"), "channels_first")
        return {"type": cls.type, "filters": int(config["filters"]), "kernel_size": int(kernel[0]),
                "padding": config.get("padding", "valid"),
                "activation": keras_layer_activation(config.get("activation"))}  # fmt: skip


class BatchNormalization(Layer):
    """Keras semantics: batch statistics (biased variance) in training, moving ones in inference."""

    type = "BatchNormalization"
    options = {"momentum": 0.99, "epsilon": 1e-3}
    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")

    def check_config(self):
        for key in ("momentum", "epsilon"):
            value = self.config[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(f"BatchNormalization {key} must be a number, got {value!r}")
        if not 0 <= self.config["momentum"] <= 1 or not self.config["epsilon"] > 0:
            raise SpecError("BatchNormalization needs 0 <= momentum <= 1 and epsilon > 0")

    def weight_shapes(self, input_shape):
        c = (input_shape[-1],)
        return {"gamma": c, "beta": c, "moving_mean": c, "moving_variance": c}

    def create_weights(self, input_shape, rng, dtype):
        k, c = self.kernels, (input_shape[-1],)
        self.params = {"gamma": k.ones(c, dtype), "beta": k.zeros(c, dtype)}
        self.state = {"moving_mean": k.zeros(c, dtype), "moving_variance": k.ones(c, dtype)}

    def statistics(self, x, training: bool) -> tuple[Any, Any]:
        """(mean, 1/sqrt(var + eps)) to normalise with; in training also updates the moving ones."""
        k = self.kernels
        if training:
            mean, var = k.channel_moments(x)
            k.moving_average(self.state["moving_mean"], mean, self.config["momentum"])
            k.moving_average(self.state["moving_variance"], var, self.config["momentum"])
        else:
            mean, var = self.state["moving_mean"].copy(), self.state["moving_variance"]
        return mean, k.inverse_std(var, self.config["epsilon"], x.dtype)

    def scale_and_shift(self) -> tuple[Any, Any]:
        scale = self.params["gamma"] * self.inv_std
        return scale, self.params["beta"] - self.mean * scale

    def forward(self, x, training):
        self.x, self.training = x, training
        self.mean, self.inv_std = self.statistics(x, training)
        return self.kernels.scale_shift(x, *self.scale_and_shift())

    def backward(self, dy):
        dx, self.grads["gamma"], self.grads["beta"] = self.kernels.batchnorm_backward(
            self.x, dy, self.params["gamma"], self.mean, self.inv_std, self.training
        )
        return dx

    @classmethod
    def from_keras(cls, config):
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        require(axis in (-1, 3, 1), f"axis {axis}")
        require(config.get("center", True) and config.get("scale", True), "center/scale off")
        return {"type": cls.type, "momentum": float(config.get("momentum", cls.options["momentum"])),
                "epsilon": float(config.get("epsilon", cls.options["epsilon"]))}  # fmt: skip


class MaxPooling2D(Layer):
    type = "MaxPooling2D"
    options = {"pool_size": 2}

    def check_config(self):
        if self.config["pool_size"] not in (2, [2, 2], (2, 2)):
            raise SpecError(f"MaxPooling2D supports pool_size 2 (stride 2) only, got {self.config['pool_size']!r}")
        self.config["pool_size"] = 2

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise SpecError(f"MaxPooling2D needs (height, width, channels) input, got {input_shape}")
        h, w, c = input_shape
        return (h // 2, w // 2, c)

    def forward(self, x, training):
        self.x_shape = x.shape
        y, self.argmax = self.kernels.maxpool2d_forward(x)
        return y

    def backward(self, dy):
        return self.kernels.maxpool2d_backward(dy, self.argmax, self.x_shape)

    @classmethod
    def from_keras(cls, config):
        pool = pair(config.get("pool_size", 2))
        strides = pair(config.get("strides") or pool)
        require(pool == [2, 2] and strides == [2, 2], f"pool {pool} stride {strides}")
        require(config.get("padding", "valid") == "valid", "'same' pooling")
        return {"type": cls.type, "pool_size": 2}


class Dropout(Layer):
    """Inverted dropout; the mask comes from the model's seeded generator, so runs repeat."""

    type = "Dropout"
    options = {"rate": 0.5}
    random_stream = "dropout"

    def check_config(self):
        rate = self.config["rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise SpecError(f"Dropout rate must be in [0, 1), got {rate!r}")

    def create_weights(self, input_shape, rng, dtype):
        self.rng = rng  # the model passes its dropout generator here

    def forward(self, x, training):
        rate = self.config["rate"]
        self.keep = None
        if not training or rate == 0:
            return x
        self.keep = self.kernels.dropout_mask(self.rng, x.shape, rate)
        return self.kernels.dropout_forward(x, self.keep, rate)

    def backward(self, dy):
        if self.keep is None:
            return dy
        return self.kernels.dropout_backward(dy, self.keep, self.config["rate"])

    def to_keras(self, seed=None):
        return {"rate": self.config["rate"], "seed": seed}

    @classmethod
    def from_keras(cls, config):
        return {"type": cls.type, "rate": float(config.get("rate", cls.options["rate"]))}


class Flatten(Layer):
    type = "Flatten"
    options = {}

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.x_shape)


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type: cls
    for cls in (Dense, Conv2D, BatchNormalization, MaxPooling2D, Dropout, Flatten, Activation, *AUGMENTATION_LAYERS)
}
KERAS_CLASSES: dict[str, type[Layer]] = {  # Keras class or registered name -> layer
    name: cls for cls in LAYER_TYPES.values() for name in (cls.type, cls.keras_registered_name()) if name
}


def layer_from_config(config: dict[str, Any]) -> Layer:
    if not isinstance(config, dict) or "type" not in config:
        raise SpecError(f"a layer config must be an object with a 'type', got {config!r}")
    options = {key: value for key, value in config.items() if key != "type"}
    layer_type = config["type"]
    if layer_type not in LAYER_TYPES:
        raise SpecError(f"unknown layer type {layer_type!r}; numnet has {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[layer_type](**options)


def size(shape: Shape) -> int:
    """Elements in an array of this shape (Python integers: no overflow however hostile the spec)."""
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


def layers_from_spec(spec: dict[str, Any]) -> list[Layer]:
    """The spec's layers, each with its `input_shape` and `output_shape`, checked without allocating.

    Every backend, file reader and report validates through this, so a bad spec gets the same
    message everywhere and a spec too large to build is refused before any memory is taken.
    """
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
    last = layers[-1]
    ends_in_softmax = last.config.get("activation") == "softmax"
    if not ends_in_softmax or len(shape) != 1:
        raise SpecError("the last layer must output class probabilities: end the spec with softmax")
    return layers


def weight_shapes(spec: dict[str, Any]) -> list[Shape]:
    """Every weight's shape in Keras order, from the spec alone (for checking a file before reading it)."""
    return [shape for layer in layers_from_spec(spec) for shape in layer.weight_shapes(layer.input_shape).values()]
