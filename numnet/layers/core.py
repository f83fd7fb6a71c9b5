"""Layers: small classes holding parameters, with forward and backward side by side.

The arithmetic lives in a kernel module (see `numnet.backends.interface`), so every backend shares
these classes and differs only in kernels. Parameters are kept in Keras order and layout, so
`Model.get_weights()` fits a Keras model. Each layer also says what it is in Keras terms
(`keras_class`, `to_keras`, `from_keras`): the Keras backend builds from that and the Keras file
reader reads through it, so a layer's defaults are written once, in `options`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet.backends.interface import window
from numnet.errors import SpecError
from numnet.layers.base import KerasMismatch, Layer, Shape, pair, require
from numnet.settings import is_finite_number, is_integer, is_number

ACTIVATIONS = ("relu", "softmax", "linear", "sigmoid", "tanh", "elu", "leaky_relu", "softplus", "gelu")


def glorot_uniform(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def check_activation(value: Any, optional: bool = False) -> None:
    """An activation option: one of ACTIVATIONS (or, for a layer's own `optional` one, None)."""
    if value not in ((None, *ACTIVATIONS) if optional else ACTIVATIONS):
        raise SpecError(f"activation {value!r} is not supported; use one of {ACTIVATIONS}")


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
        check_activation(self.config["activation"])
        self.name = self.config["activation"]

    def forward(self, x, training):
        k = self.kernels
        if self.name == "relu":
            self.y = k.relu_forward(x)
        elif self.name == "softmax":
            self.y = k.softmax(x)
        elif self.name == "linear":
            self.y = x
        else:
            self.x, self.y = x, k.activation_forward(x, self.name)  # their gradients read the input too
        return self.y

    def backward(self, dy):
        k = self.kernels
        if self.name == "relu":
            return k.relu_backward(self.y, dy)
        if self.name == "softmax":
            return k.softmax_backward(self.y, dy)
        if self.name == "linear":
            return dy
        return k.activation_backward(self.x, self.y, dy, self.name)

    @classmethod
    def from_keras(cls, config):
        return {"type": cls.type, "activation": keras_activation(config.get("activation"))}


class ReLU(Activation):
    """Keras' ReLU layer at its defaults (no cap, no slope, no threshold): the relu activation."""

    type = "ReLU"
    options = {}
    keras_keys = ("max_value", "negative_slope", "threshold")

    def check_config(self):
        self.name = "relu"

    def to_keras(self, seed=None):
        return {}

    @classmethod
    def from_keras(cls, config):
        require(config.get("max_value") is None, f"max_value={config.get('max_value')!r}")
        require(config.get("negative_slope", 0.0) == 0 and config.get("threshold", 0.0) == 0,
                "a ReLU with a negative slope or a threshold")  # fmt: skip
        return {"type": cls.type}


class Softmax(Activation):
    """Keras' Softmax layer over the last axis: the softmax activation."""

    type = "Softmax"
    options = {"axis": -1}

    def check_config(self):
        if self.config["axis"] != -1:
            raise SpecError(f"Softmax takes the last axis only (-1), got {self.config['axis']!r}")
        self.name = "softmax"

    @classmethod
    def from_keras(cls, config):
        axis = config.get("axis", -1)
        require(axis in (-1, [-1]), f"axis={axis!r}")
        return {"type": cls.type, "axis": -1}


def _check_positive(layer: Layer, key: str) -> None:
    value = layer.config[key]
    if not is_integer(value) or value < 1:
        raise SpecError(f"{layer.type} {key} must be a positive integer, got {value!r}")


class Biased(Layer):
    """A layer with a kernel and, unless `use_bias` is false, a bias: without one it adds zeros that
    are neither trained nor saved, so its weights are Keras' (the kernel alone)."""

    weight_names = ("kernel", "bias")

    def check_bias(self) -> None:
        if not isinstance(self.config["use_bias"], bool):
            raise SpecError(f"{self.type} use_bias must be true or false, got {self.config['use_bias']!r}")
        if not self.config["use_bias"]:
            self.weight_names = ("kernel",)

    def biased(self, shapes: dict[str, Shape]) -> dict[str, Shape]:
        return shapes if self.config["use_bias"] else {"kernel": shapes["kernel"]}

    def create_kernel(self, kernel: np.ndarray, units: int, dtype) -> None:
        k = self.kernels
        self.params = {"kernel": k.asarray(kernel, dtype), "bias": k.zeros((units,), dtype)}
        if not self.config["use_bias"]:
            self.zero_bias = self.params.pop("bias")

    @property
    def bias(self) -> Any:
        return self.params["bias"] if self.config["use_bias"] else self.zero_bias

    def keep_grads(self, dkernel: Any, dbias: Any) -> None:
        self.grads["kernel"] = dkernel
        if self.config["use_bias"]:
            self.grads["bias"] = dbias


class Dense(Biased):
    type = "Dense"
    options = {"units": None, "activation": None, "use_bias": True}

    def check_config(self):
        _check_positive(self, "units")
        check_activation(self.config["activation"], optional=True)
        self.check_bias()

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise SpecError(f"Dense needs a flat input, got shape {input_shape}; put a Flatten before it")
        return (self.config["units"],)

    def weight_shapes(self, input_shape):
        return self.biased({"kernel": (input_shape[0], self.config["units"]), "bias": (self.config["units"],)})

    def create_weights(self, input_shape, rng, dtype):
        fan_in, units = input_shape[0], self.config["units"]
        self.create_kernel(glorot_uniform(rng, (fan_in, units), fan_in, units, dtype), units, dtype)

    def forward(self, x, training):
        self.x = x  # (N, in)
        return self.kernels.dense_forward(x, self.params["kernel"], self.bias)

    def backward(self, dy):
        dx, *grads = self.kernels.dense_backward(self.x, self.params["kernel"], dy, self.needs_input_grad)
        self.keep_grads(*grads)
        return dx

    def to_keras(self, seed=None):
        c = self.config
        return {"units": c["units"], "activation": c["activation"], "use_bias": c["use_bias"]}

    @classmethod
    def from_keras(cls, config):
        return {"type": cls.type, "units": int(config["units"]),
                "activation": keras_layer_activation(config.get("activation")),
                "use_bias": config.get("use_bias", True)}  # fmt: skip


def _square(layer: Layer, key: str) -> None:
    """An option Keras writes as one number or a (rows, columns) pair, numnet's layer only square."""
    value = layer.config[key]
    if isinstance(value, list | tuple):
        if len(value) not in (1, 2) or any(side != value[0] for side in value):
            raise SpecError(f"{layer.type} {key} must be square (one number or a pair of equal ones), got {value}")
        layer.config[key] = value = value[0]
    _check_positive(layer, key)


def _check_padding(layer: Layer) -> None:
    if layer.config["padding"] not in ("valid", "same"):
        raise SpecError(f"{layer.type} padding must be 'valid' or 'same', got {layer.config['padding']!r}")


def _windows_output(layer: Layer, input_shape: Shape, size: tuple, strides: tuple, channels: int) -> Shape:
    if len(input_shape) != 3:
        raise SpecError(f"{layer.type} needs (height, width, channels) input, got shape {input_shape}")
    h, w = (window(n, k, s, layer.config["padding"])[0] for n, k, s in zip(input_shape[:2], size, strides))
    return (max(h, 0), max(w, 0), channels)  # check_spec refuses a layer that leaves nothing


class Conv2D(Biased):
    """NHWC convolution with a square kernel and the same stride both ways."""

    type = "Conv2D"
    options = {"filters": None, "kernel_size": 3, "strides": 1, "padding": "valid", "activation": None,
               "use_bias": True}  # fmt: skip
    keras_keys = ("dilation_rate", "groups")

    def check_config(self):
        _check_positive(self, "filters")
        _square(self, "kernel_size")
        _square(self, "strides")
        _check_padding(self)
        check_activation(self.config["activation"], optional=True)
        self.check_bias()

    def compute_output_shape(self, input_shape):
        k, s = self.config["kernel_size"], self.config["strides"]
        return _windows_output(self, input_shape, (k, k), (s, s), self.config["filters"])

    def weight_shapes(self, input_shape):
        k, filters = self.config["kernel_size"], self.config["filters"]
        return self.biased({"kernel": (k, k, input_shape[2], filters), "bias": (filters,)})

    def create_weights(self, input_shape, rng, dtype):
        k, cin, filters = self.config["kernel_size"], input_shape[2], self.config["filters"]
        kernel = glorot_uniform(rng, (k, k, cin, filters), k * k * cin, k * k * filters, dtype)
        self.create_kernel(kernel, filters, dtype)

    def forward(self, x, training):
        self.x = x  # (N, H, W, Cin)
        c = self.config
        y, self.cache = self.kernels.conv2d_forward(x, self.params["kernel"], self.bias, c["padding"], c["strides"])
        return y

    def backward(self, dy):
        c = self.config
        dx, *grads = self.kernels.conv2d_backward(
            self.x, self.params["kernel"], dy, c["padding"], self.cache, self.needs_input_grad, c["strides"]
        )
        self.keep_grads(*grads)
        self.cache = None
        return dx

    def to_keras(self, seed=None):
        keys = ("filters", "kernel_size", "strides", "padding", "activation", "use_bias")
        return {key: self.config[key] for key in keys}

    @classmethod
    def from_keras(cls, config):
        kernel, strides = pair(config.get("kernel_size", 3)), pair(config.get("strides", 1))
        require(bool(kernel) and all(side == kernel[0] for side in kernel), f"a non-square kernel {kernel}")
        require(bool(strides) and all(side == strides[0] for side in strides), f"strides={strides}")
        require(pair(config.get("dilation_rate", 1)) == [1, 1], "dilation")
        require(config.get("groups", 1) == 1, "grouped convolution")
        return {"type": cls.type, "filters": int(config["filters"]), "kernel_size": int(kernel[0]),
                "strides": int(strides[0]), "padding": config.get("padding", "valid"),
                "activation": keras_layer_activation(config.get("activation")),
                "use_bias": config.get("use_bias", True)}  # fmt: skip


class BatchNormalization(Layer):
    """Keras semantics: batch statistics (biased variance) in training, moving ones in inference."""

    type = "BatchNormalization"
    options = {"momentum": 0.99, "epsilon": 1e-3, "axis": -1}
    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    state_names = ("moving_mean", "moving_variance")
    keras_keys = ("center", "scale")

    def check_config(self):
        for key in ("momentum", "epsilon"):
            value = self.config[key]
            if not is_finite_number(value):
                raise SpecError(f"BatchNormalization {key} must be a finite number, got {value!r}")
        if not 0 <= self.config["momentum"] <= 1 or not self.config["epsilon"] > 0:
            raise SpecError("BatchNormalization needs 0 <= momentum <= 1 and epsilon > 0")
        if not is_integer(self.config["axis"]):
            raise SpecError(f"BatchNormalization axis must be an integer, got {self.config['axis']!r}")

    def compute_output_shape(self, input_shape):
        # Keras counts the batch axis: the last axis of an (H, W, C) input is 3, or -1.
        if self.config["axis"] not in (-1, len(input_shape)):
            raise SpecError(f"BatchNormalization normalises the last axis only (-1 or {len(input_shape)} for input "
                            f"{input_shape}), not axis {self.config['axis']}")  # fmt: skip
        return input_shape

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
            mean, var = k.copy(self.state["moving_mean"]), self.state["moving_variance"]
        return mean, k.inverse_std(var, self.config["epsilon"], x.dtype)

    def scale_and_shift(self) -> tuple[Any, Any]:
        return self.kernels.batchnorm_scale_shift(self.params["gamma"], self.params["beta"], self.mean, self.inv_std)

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
        require(config.get("center", True) and config.get("scale", True), "center/scale off")
        return {"type": cls.type, "momentum": float(config.get("momentum", cls.options["momentum"])),
                "epsilon": float(config.get("epsilon", cls.options["epsilon"])), "axis": axis}  # fmt: skip


class Pooling2D(Layer):
    """Keras' pooling options: `pool_size` and `strides` (None: the pool size) as one number or a
    (rows, columns) pair, `padding` 'valid' or 'same'."""

    options = {"pool_size": 2, "strides": None, "padding": "valid"}

    def check_config(self):
        self.pool = self.pair_option("pool_size")
        self.strides = self.pool if self.config["strides"] is None else self.pair_option("strides")
        if self.strides == self.pool:
            self.config["strides"] = None  # one spelling of Keras' default
        _check_padding(self)

    def pair_option(self, key: str) -> tuple[int, int]:
        value = self.config[key]
        sides = list(value) if isinstance(value, list | tuple) else [value]
        if len(sides) not in (1, 2) or not all(is_integer(side) and side >= 1 for side in sides):
            raise SpecError(f"{self.type} {key} must be a positive integer or a pair of them, got {value!r}")
        self.config[key] = sides[0] if len(set(sides)) == 1 else sides
        return (sides[0], sides[-1])

    def compute_output_shape(self, input_shape):
        return _windows_output(self, input_shape, self.pool, self.strides, input_shape[-1])

    def to_keras(self, seed=None):
        return {"pool_size": list(self.pool), "strides": list(self.strides), "padding": self.config["padding"]}

    @classmethod
    def from_keras(cls, config):
        layer = cls(pool_size=config.get("pool_size", 2), strides=config.get("strides"),
                    padding=config.get("padding", "valid"))  # fmt: skip
        return layer.to_config()


class MaxPooling2D(Pooling2D):
    type = "MaxPooling2D"

    def forward(self, x, training):
        self.x_shape = x.shape
        y, self.argmax = self.kernels.maxpool2d_forward(x, self.pool, self.strides, self.config["padding"])
        return y

    def backward(self, dy):
        return self.kernels.maxpool2d_backward(dy, self.argmax, self.x_shape, self.pool, self.strides,
                                               self.config["padding"])  # fmt: skip


class AveragePooling2D(Pooling2D):
    """Each window's mean; at 'same' edges the mean of the pixels inside the image, as Keras."""

    type = "AveragePooling2D"

    def forward(self, x, training):
        self.x_shape = x.shape
        return self.kernels.avgpool2d_forward(x, self.pool, self.strides, self.config["padding"])

    def backward(self, dy):
        return self.kernels.avgpool2d_backward(dy, self.x_shape, self.pool, self.strides, self.config["padding"])


class Dropout(Layer):
    """Inverted dropout; the mask comes from the model's seeded generator, so runs repeat."""

    type = "Dropout"
    options = {"rate": 0.5}
    random_stream = "dropout"

    def check_config(self):
        rate = self.config["rate"]
        if not is_number(rate) or not 0 <= rate < 1:
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
        return self.kernels.reshape(x, (x.shape[0], -1))

    def backward(self, dy):
        return self.kernels.reshape(dy, self.x_shape)


class Reshape(Layer):
    """Keras' Reshape: each sample's values in `target_shape` (one entry may be -1: whatever is left)."""

    type = "Reshape"
    options = {"target_shape": None}

    def check_config(self):
        target = self.config["target_shape"]
        if (not isinstance(target, list | tuple) or not target or not all(is_integer(d) and (d > 0 or d == -1)
                                                                           for d in target)
                or list(target).count(-1) > 1):  # fmt: skip
            raise SpecError(f"Reshape target_shape must be a list of positive integers (one may be -1), got {target!r}")
        self.config["target_shape"] = [int(d) for d in target]

    def compute_output_shape(self, input_shape):
        total, target = int(np.prod(input_shape)), self.config["target_shape"]
        known = int(np.prod([d for d in target if d != -1]))
        shape = tuple(total // known if d == -1 else d for d in target)
        if int(np.prod(shape)) != total:
            raise SpecError(f"Reshape cannot make {input_shape} ({total} values) into {tuple(target)}")
        return shape

    def forward(self, x, training):
        self.x_shape = x.shape
        return self.kernels.reshape(x, (x.shape[0], *self.output_shape))

    def backward(self, dy):
        return self.kernels.reshape(dy, self.x_shape)

    @classmethod
    def from_keras(cls, config):
        return {"type": cls.type, "target_shape": list(config["target_shape"])}


class GlobalAveragePooling2D(Layer):
    """Keras' GlobalAveragePooling2D: each channel's mean over the image, (H, W, C) -> (C,)."""

    type = "GlobalAveragePooling2D"
    options = {}
    keras_keys = ("keepdims",)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise SpecError(f"GlobalAveragePooling2D needs (height, width, channels) input, got {input_shape}")
        return (input_shape[2],)

    def forward(self, x, training):
        self.x_shape = x.shape
        return self.kernels.global_average_pool(x)

    def backward(self, dy):
        return self.kernels.global_average_pool_backward(dy, self.x_shape)

    @classmethod
    def from_keras(cls, config):
        require(not config.get("keepdims", False), "keepdims=True")
        return {"type": cls.type}


CORE_LAYERS = (Dense, Conv2D, BatchNormalization, MaxPooling2D, AveragePooling2D, Dropout, Flatten, Activation, ReLU,
               Softmax, Reshape, GlobalAveragePooling2D)  # fmt: skip
