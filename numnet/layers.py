"""Layers: small classes holding parameters, with forward and backward side by side.

The arithmetic lives in a backend's kernel module (`numnet.backends.numpy_kernels` or
`numba_kernels`), so both backends share these classes and differ only in kernels.
Parameters are kept in Keras order and layout, so `Model.get_weights()` fits a Keras model.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from numnet.errors import SpecError

Shape = tuple[int, ...]  # per-sample shape, without the batch axis
MAX_LAYER_PARAMS = 100_000_000  # far above any MNIST network; stops a hostile spec exhausting memory


def glorot_uniform(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.float64))
    if size > MAX_LAYER_PARAMS:
        raise SpecError(f"a kernel of shape {shape} has {size:,} parameters; numnet allows {MAX_LAYER_PARAMS:,}")
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


class Layer:
    """Base: `params` (trainable) and `state` (not trainable) in Keras weight order."""

    type: str = ""
    options: dict[str, Any] = {}  # config keys this layer accepts, with their defaults

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(self.options))
        if unknown:
            raise SpecError(
                f"{self.type} does not take {', '.join(map(repr, unknown))}; "
                f"it takes {sorted(self.options) or 'no options'}"
            )
        self.config = {**self.options, **config}
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self.kernels: ModuleType | None = None
        self.needs_input_grad = True  # the model turns this off for its first layer

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype, kernels: ModuleType) -> Shape:
        """Creates the parameters for this input shape and returns the output shape."""
        self.kernels = kernels
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def weights(self) -> list[np.ndarray]:
        return [*self.params.values(), *self.state.values()]

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, **self.config}


class Activation(Layer):
    type = "Activation"
    options = {"activation": "relu"}
    supported = ("relu", "softmax", "linear")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["activation"] not in self.supported:
            raise SpecError(f"activation {self.config['activation']!r} is not supported; use one of {self.supported}")
        self.name = self.config["activation"]

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        k = self.kernels
        if self.name == "relu":
            self.y = k.relu_forward(x)
        elif self.name == "softmax":
            self.y = k.softmax(x)
        else:
            self.y = x
        return self.y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        k = self.kernels
        if self.name == "relu":
            return k.relu_backward(self.y, dy)
        if self.name == "softmax":
            return k.softmax_backward(self.y, dy)
        return dy


class Dense(Layer):
    type = "Dense"
    options = {"units": None, "activation": None}

    def build(self, input_shape, rng, dtype, kernels):
        if len(input_shape) != 1:
            raise SpecError(f"Dense needs a flat input, got shape {input_shape}; put a Flatten before it")
        units = self.config["units"]
        if not isinstance(units, int) or units < 1:
            raise SpecError(f"Dense units must be a positive integer, got {units!r}")
        fan_in = input_shape[0]
        self.params = {
            "kernel": glorot_uniform(rng, (fan_in, units), fan_in, units, dtype),
            "bias": np.zeros(units, dtype),
        }
        return super().build(input_shape, rng, dtype, kernels)

    def compute_output_shape(self, input_shape):
        return (self.config["units"],)

    def forward(self, x, training):
        self.x = x  # (N, in)
        return self.kernels.dense_forward(x, self.params["kernel"], self.params["bias"])

    def backward(self, dy):
        dx, self.grads["kernel"], self.grads["bias"] = self.kernels.dense_backward(
            self.x, self.params["kernel"], dy, self.needs_input_grad
        )
        return dx


class Conv2D(Layer):
    """Stride-1 NHWC convolution with a square kernel."""

    type = "Conv2D"
    options = {"filters": None, "kernel_size": 3, "padding": "valid", "activation": None}

    def build(self, input_shape, rng, dtype, kernels):
        if len(input_shape) != 3:
            raise SpecError(f"Conv2D needs (height, width, channels) input, got shape {input_shape}")
        filters, k = self.config["filters"], self.config["kernel_size"]
        if isinstance(k, (list, tuple)):
            if len(set(k)) != 1:
                raise SpecError(f"Conv2D kernel_size must be square, got {k}")
            k = self.config["kernel_size"] = int(k[0])
        if not isinstance(filters, int) or filters < 1:
            raise SpecError(f"Conv2D filters must be a positive integer, got {filters!r}")
        if self.config["padding"] not in ("valid", "same"):
            raise SpecError(f"Conv2D padding must be 'valid' or 'same', got {self.config['padding']!r}")
        cin = input_shape[2]
        self.params = {
            "kernel": glorot_uniform(rng, (k, k, cin, filters), k * k * cin, k * k * filters, dtype),
            "bias": np.zeros(filters, dtype),
        }
        return super().build(input_shape, rng, dtype, kernels)

    def compute_output_shape(self, input_shape):
        h, w, _ = input_shape
        k = self.config["kernel_size"]
        if self.config["padding"] == "valid":
            h, w = h - k + 1, w - k + 1
        if h < 1 or w < 1:
            raise SpecError(f"Conv2D {k}x{k} 'valid' does not fit input {input_shape}")
        return (h, w, self.config["filters"])

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


class BatchNormalization(Layer):
    """Keras semantics: batch statistics (biased variance) in training, moving ones in inference."""

    type = "BatchNormalization"
    options = {"momentum": 0.99, "epsilon": 1e-3}

    def build(self, input_shape, rng, dtype, kernels):
        c = input_shape[-1]
        self.params = {"gamma": np.ones(c, dtype), "beta": np.zeros(c, dtype)}
        self.state = {"moving_mean": np.zeros(c, dtype), "moving_variance": np.ones(c, dtype)}
        return super().build(input_shape, rng, dtype, kernels)

    def statistics(self, x: np.ndarray, training: bool) -> tuple[np.ndarray, np.ndarray]:
        """(mean, 1/sqrt(var + eps)) to normalise with; in training also updates the moving ones."""
        if training:
            mean, var = self.kernels.channel_moments(x)
            momentum = self.config["momentum"]
            for name, batch_stat in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.state[name]
                moving *= momentum
                moving += batch_stat * moving.dtype.type(1 - momentum)
        else:
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
        inv_std = (1.0 / np.sqrt(var.astype(np.float64) + self.config["epsilon"])).astype(x.dtype)
        return mean.copy(), inv_std

    def scale_and_shift(self) -> tuple[np.ndarray, np.ndarray]:
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


class MaxPooling2D(Layer):
    type = "MaxPooling2D"
    options = {"pool_size": 2}

    def build(self, input_shape, rng, dtype, kernels):
        pool = self.config["pool_size"]
        if pool not in (2, [2, 2], (2, 2)):
            raise SpecError(f"MaxPooling2D supports pool_size 2 (stride 2) only, got {pool!r}")
        self.config["pool_size"] = 2
        if len(input_shape) != 3:
            raise SpecError(f"MaxPooling2D needs (height, width, channels) input, got {input_shape}")
        return super().build(input_shape, rng, dtype, kernels)

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        return (h // 2, w // 2, c)

    def forward(self, x, training):
        self.x_shape = x.shape
        y, self.argmax = self.kernels.maxpool2d_forward(x)
        return y

    def backward(self, dy):
        return self.kernels.maxpool2d_backward(dy, self.argmax, self.x_shape)


class Dropout(Layer):
    """Inverted dropout; the mask comes from the model's seeded generator, so runs repeat."""

    type = "Dropout"
    options = {"rate": 0.5}

    def build(self, input_shape, rng, dtype, kernels):
        rate = self.config["rate"]
        if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise SpecError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rng = rng
        return super().build(input_shape, rng, dtype, kernels)

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
    cls.type: cls for cls in (Dense, Conv2D, BatchNormalization, MaxPooling2D, Dropout, Flatten, Activation)
}


def layer_from_config(config: dict[str, Any]) -> Layer:
    if not isinstance(config, dict) or "type" not in config:
        raise SpecError(f"a layer config must be an object with a 'type', got {config!r}")
    options = {key: value for key, value in config.items() if key != "type"}
    layer_type = config["type"]
    if layer_type not in LAYER_TYPES:
        raise SpecError(f"unknown layer type {layer_type!r}; numnet has {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[layer_type](**options)
