"""What every layer is: parameters, forward and backward, and its Keras mapping (see numnet.layers)."""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet.errors import SpecError

Shape = tuple[int, ...]  # per-sample shape, without the batch axis


class KerasMismatch(SpecError):
    """A Keras layer config uses something numnet's layer does not have."""


def require(condition: bool, what: str) -> None:
    if not condition:
        raise KerasMismatch(what)


def pair(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value, value]


# Keras config keys that change nothing numnet computes from a file: names, dtypes, seeds, shapes
# Keras records, and initialisers (the file's weights replace what they would draw).
KERAS_HARMLESS_KEYS = frozenset({
    "name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_shape", "input_dim", "seed",
    "autocast", "dtype_policy", "kernel_initializer", "bias_initializer", "beta_initializer", "gamma_initializer",
    "moving_mean_initializer", "moving_variance_initializer", "fused", "renorm_momentum", "lora_alpha",
})  # fmt: skip
# Keys numnet reads only at the values that compute nothing more than numnet does (Keras' defaults).
KERAS_OFF_VALUES: dict[str, tuple] = {
    **{key: (None,) for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                                "bias_constraint", "beta_regularizer", "gamma_regularizer", "beta_constraint",
                                "gamma_constraint", "lora_rank", "quantization_config", "noise_shape",
                                "renorm_clipping", "virtual_batch_size", "adjustment")},
    "synchronized": (False,), "renorm": (False,), "data_format": ("channels_last", None),
}  # fmt: skip


class Layer:
    """Base: `params` (trainable) and `state` (not trainable) in Keras weight order."""

    type: str = ""
    options: dict[str, Any] = {}  # config keys this layer accepts, with their defaults
    weight_names: tuple[str, ...] = ()  # parameters, then state, in Keras order
    state_names: tuple[str, ...] = ()  # the weights training does not step (batch norm's moving statistics)
    random_stream: str | None = None  # which of the model's seeded generators it draws from in training
    training_only = False  # the identity in inference, without weights: inference exports may leave it out
    keras_package: str | None = None  # Keras' own layer; else numnet.keras.layers registers one under this package
    keras_keys: tuple[str, ...] = ()  # Keras config keys `from_keras` reads besides `options`

    def __init__(self, /, **config: Any) -> None:  # `self` as an option is refused, not a TypeError
        unknown = sorted(set(config) - set(self.options))
        if unknown:
            raise SpecError(
                f"{self.type} does not take {', '.join(map(repr, unknown))}; "
                f"it takes {sorted(self.options) or 'no options'}"
            )
        self.config = {**self.options, **config}
        self.check_config()
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.kernels: Any = None
        self.needs_input_grad = True  # the model turns this off for its first layer

    def check_config(self) -> None:
        """Raises SpecError for option values this layer cannot run (shape-independent checks)."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for this input shape; SpecError if the input does not fit."""
        return input_shape

    def weight_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """Every weight (parameters, then state) with its shape, in Keras order, without allocating."""
        return {}

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype, kernels: Any) -> Shape:
        """Creates the weights for this input shape on `kernels` and returns the output shape."""
        self.kernels = kernels
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        self.create_weights(input_shape, rng, dtype)
        return self.output_shape

    def create_weights(self, input_shape: Shape, rng: np.random.Generator, dtype) -> None:
        """Fills `params` and `state`; layers without weights have nothing to do."""

    def weights(self) -> list[Any]:
        return [*self.params.values(), *self.state.values()]

    def forward(self, x: Any, training: bool) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, **self.config}

    # -- Keras mapping ---------------------------------------------------------------------------
    @property
    def keras_class(self) -> str:
        """The Keras layer class this layer is (the same name for every numnet layer so far)."""
        return self.type

    @classmethod
    def keras_registered_name(cls) -> str | None:
        """How Keras names a layer class it does not ship (None for its own)."""
        return f"{cls.keras_package}>{cls.type}" if cls.keras_package else None

    def to_keras(self, seed: int | None = None) -> dict[str, Any]:
        """Arguments for the Keras layer class that computes exactly what this layer computes."""
        return dict(self.config)

    @classmethod
    def check_keras_keys(cls, config: dict[str, Any]) -> None:
        """KerasMismatch naming the first key (and its value) of a Keras config this layer does not
        compute: an option numnet lacks is refused, never ignored."""
        read = {*cls.options, *cls.keras_keys}
        for key, value in config.items():
            if key in read or key in KERAS_HARMLESS_KEYS:
                continue
            if key in KERAS_OFF_VALUES and any(value == off for off in KERAS_OFF_VALUES[key]):
                continue
            raise KerasMismatch(f"{key}={value!r}")

    @classmethod
    def from_keras(cls, config: dict[str, Any]) -> dict[str, Any]:
        """numnet config from a Keras layer config; KerasMismatch names what numnet lacks."""
        return {"type": cls.type, **{key: config.get(key, default) for key, default in cls.options.items()}}
