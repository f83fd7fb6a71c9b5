"""Keras layers for the numnet layers Keras lacks or computes wrongly, so every backend trains
the same spec.

They are made when first asked for (numnet imports Keras only when a Keras model is built) and
registered under the `numnet` package: Keras reads a `.keras` file holding one after
`numnet.keras.layers.register()`, which numnet's own Keras backend calls.

`RandomElasticTransform` is Keras' own layer, and numnet's files name Keras' class; but Keras 3.15
computes it as its NumPy backend does only on NumPy: on TensorFlow and JAX both displacement fields
come from one seed (every pixel moves along the diagonal), and in a compiled TensorFlow function
(`model.fit`) the batch size is unknown, so every bent image of a batch becomes the first image,
bent. numnet's Keras backend trains with the subclass below, which computes it as the NumPy
backend does (and as numnet does), in Keras ops, on every backend.
"""

from __future__ import annotations

from typing import Any

import keras

from numnet.layers import augmentation

PACKAGE = augmentation.RandomStrokeWidth.keras_package  # numnet's Keras classes, one package


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomStrokeWidth(keras.layers.Layer):
    """numnet.layers.augmentation.RandomStrokeWidth in Keras ops: max pooling with stride 1 is the
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomElasticTransform(keras.layers.RandomElasticTransform):
    """Keras' layer, each image bent by its own two fields (see the module's docstring)."""

    def _transform_images(self, images: Any, transformation: Any, interpolation: str) -> Any:
        if transformation is None:
            return images
        ops = keras.ops
        shape = (ops.shape(images)[0], images.shape[1], images.shape[2], 2)
        alpha, sigma = self.get_elastic_transform_params(shape[1], shape[2], transformation["distortion_factor"])
        noise = keras.random.normal(shape, dtype=self.compute_dtype, seed=transformation["seed"]) * sigma
        most = self.get_elastic_transform_params(shape[1], shape[2], self.scale[1])[1]
        field = self.blur(noise, sigma, int(6 * most) | 1)
        bent = self.bend(images, alpha * field, interpolation)
        chosen = ops.reshape(transformation["apply_transform"], (-1, 1, 1, 1))
        images = ops.clip(ops.where(chosen, bent, images), self.value_range[0], self.value_range[1])
        return ops.cast(images, self.compute_dtype)

    @staticmethod
    def blur(noise: Any, sigma: Any, taps: int) -> Any:
        """Keras' gaussian_blur with its int(6 sigma) | 1 taps for a sigma known only when
        run: `taps` (odd) is the most it can need; taps beyond sigma's weigh nothing."""
        ops = keras.ops
        offsets = ops.cast(ops.arange(taps) - (taps - 1) // 2, noise.dtype)
        sigma = ops.maximum(ops.convert_to_tensor(sigma, noise.dtype), 1e-6)
        reach = ops.floor(ops.floor(6 * sigma) / 2)
        kernel = ops.where(ops.abs(offsets) <= reach, ops.exp(-0.5 * (offsets / sigma) ** 2), 0.0)
        kernel = kernel / ops.sum(kernel)
        down = ops.tile(ops.reshape(kernel, (taps, 1, 1, 1)), (1, 1, 2, 1))
        across = ops.tile(ops.reshape(kernel, (1, taps, 1, 1)), (1, 1, 2, 1))
        return ops.depthwise_conv(ops.depthwise_conv(noise, down, padding="same"), across, padding="same")

    def bend(self, images: Any, displacement: Any, interpolation: str) -> Any:
        """Each output pixel read at its own place plus its (N, H, W, 2) displacement (rows,
        columns), as Keras' map_coordinates reads (numnet's `warp` with a displacement)."""
        ops = keras.ops
        n, h, w = ops.shape(images)[0], images.shape[1], images.shape[2]
        rows = ops.cast(ops.reshape(ops.arange(h), (1, h, 1)), displacement.dtype) + displacement[..., 0]
        cols = ops.cast(ops.reshape(ops.arange(w), (1, 1, w)), displacement.dtype) + displacement[..., 1]
        if interpolation == "nearest":
            taps = [(ops.floor(rows + 0.5), ops.floor(cols + 0.5), ops.ones_like(rows))]
        else:
            r, c = ops.floor(rows), ops.floor(cols)
            fy, fx = rows - r, cols - c
            taps = [(r, c, (1 - fy) * (1 - fx)), (r, c + 1, (1 - fy) * fx), (r + 1, c, fy * (1 - fx)),
                    (r + 1, c + 1, fy * fx)]  # fmt: skip
        flat = ops.reshape(images, (-1, images.shape[3]))
        first = ops.reshape(ops.arange(n) * (h * w), (-1, 1, 1))
        total = 0.0
        for r, c, weight in taps:
            (r, inside_r), (c, inside_c) = self.fold(ops.cast(r, "int32"), h), self.fold(ops.cast(c, "int32"), w)
            values = ops.take(flat, ops.reshape(first + r * w + c, (-1,)), axis=0)
            values = ops.reshape(values, ops.shape(images))
            inside = ops.expand_dims(ops.logical_and(inside_r, inside_c), -1)
            total = total + ops.expand_dims(weight, -1) * ops.where(inside, values, self.fill_value)
        return total

    def fold(self, index: Any, size: int) -> tuple[Any, Any]:
        """The pixel an integer position reads under the fill mode, and whether it is inside."""
        ops = keras.ops
        if self.fill_mode == "nearest":
            return ops.clip(index, 0, size - 1), ops.ones_like(index, "bool")
        if self.fill_mode == "wrap":
            return ops.mod(index, size), ops.ones_like(index, "bool")
        if self.fill_mode == "reflect":
            period = ops.mod(index, 2 * size)
            return ops.where(period >= size, 2 * size - 1 - period, period), ops.ones_like(index, "bool")
        return ops.clip(index, 0, size - 1), ops.logical_and(index >= 0, index < size)


NUMNET_KERAS_LAYERS: dict[str, type] = {"RandomStrokeWidth": RandomStrokeWidth,
                                        "RandomElasticTransform": RandomElasticTransform}  # fmt: skip


def layer_class(name: str) -> type:
    """The Keras class that computes what numnet's layer `name` computes: numnet's where Keras lacks
    the layer or computes it wrongly, else Keras' own."""
    return NUMNET_KERAS_LAYERS.get(name) or getattr(keras.layers, name)
