"""Keras layers for the numnet layers Keras lacks, so every backend trains the same spec.

They are made when first asked for (numnet imports Keras only when a Keras model is built) and
registered under the `numnet` package: Keras reads a `.keras` file holding one after
`numnet.keras_layers.register()`, which numnet's own Keras backend calls.
"""

from __future__ import annotations

import functools
from typing import Any

from numnet import augmentation


@functools.cache
def register() -> dict[str, type]:
    """numnet's Keras layers by class name, registered with Keras (once per process; Keras keeps
    the backend it was first imported with)."""
    import keras

    @keras.saving.register_keras_serializable(package=augmentation.RandomStrokeWidth.keras_package)
    class RandomStrokeWidth(keras.layers.Layer):
        """numnet.augmentation.RandomStrokeWidth in Keras ops: max pooling with stride 1 is the
        grey-scale dilation over the 3x3 square, and erosion is the dilation of -x, negated."""

        def __init__(self, factor: Any, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.factor, self.seed = factor, seed
            self.low, self.high = augmentation.factor_range(self.__class__.__name__, "factor", factor, False)
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, inputs: Any, training: bool = True) -> Any:
            if not training:
                return inputs
            shape = (keras.ops.shape(inputs)[0], 1, 1, 1)
            amount = keras.random.uniform(shape, self.low, self.high, dtype=inputs.dtype, seed=self.seed_generator)
            return self.apply_amounts(inputs, amount)

        def apply_amounts(self, inputs: Any, amount: Any) -> Any:
            """Each image's strokes changed by its (N, 1, 1, 1) `amount`."""
            ops = keras.ops
            dilated = ops.max_pool(inputs, 3, strides=1, padding="same")
            eroded = -ops.max_pool(-inputs, 3, strides=1, padding="same")
            return inputs + ops.relu(amount) * (dilated - inputs) + ops.relu(-amount) * (eroded - inputs)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "factor": self.factor, "seed": self.seed}

    return {"RandomStrokeWidth": RandomStrokeWidth}


def layer_class(keras: Any, name: str) -> type:
    """The Keras class called `name`: Keras' own, else numnet's."""
    return getattr(keras.layers, name, None) or register()[name]
