"""Augmentation layers with Keras 3's names, arguments and semantics: `RandomTranslation`,
`RandomRotation`, `RandomZoom`; and `RandomStrokeWidth`, which Keras lacks (numnet.keras_layers
gives Keras the same layer).

In training each image gets its own random affine transform, drawn from the model's seeded
generator (so a seed repeats its batches), and is warped by the kernels' `affine_warp` exactly as
Keras' `affine_transform` does; in inference they are the identity. Factors are fractions, as in
Keras: a number f means [-f, f]; a pair means that range (of the height or width for translation,
of a full turn for rotation, of the size for zoom: positive zooms out).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numnet.backends.interface import FILL_MODES, INTERPOLATIONS
from numnet.errors import SpecError
from numnet.layer_base import Layer


def factor_range(layer: str, key: str, value: Any, above_minus_one: bool = True) -> tuple[float, float]:
    """Keras' reading of a factor: f -> (-|f|, |f|), [a, b] -> (min, max), each in (-1, 1] (translation,
    zoom) or [-1, 1] (rotation)."""
    numbers = value if isinstance(value, list | tuple) else [value]
    if len(numbers) not in (1, 2) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        raise SpecError(f"{layer} {key} must be a number or a pair of numbers, got {value!r}")
    if not all(-1 <= v <= 1 and not (above_minus_one and v == -1) for v in numbers):
        raise SpecError(f"{layer} {key} must lie in {'(' if above_minus_one else '['}-1, 1], got {value!r}")
    if len(numbers) == 1:
        return -abs(numbers[0]), abs(numbers[0])
    return min(numbers), max(numbers)


def rotation_transforms(degrees: np.ndarray, height: int, width: int) -> np.ndarray:
    """Keras' matrices for rotations by `degrees` about the image centre (N, 6)."""
    theta = np.radians(np.asarray(degrees, np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    return np.column_stack([cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos])


def translation_transforms(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Keras' matrices for shifts by (dx, dy) pixels (right and down)."""
    one, zero = np.ones_like(dx, np.float64), np.zeros_like(dx, np.float64)
    return np.column_stack([one, zero, -np.asarray(dx, np.float64), zero, one, -np.asarray(dy, np.float64)])


def zoom_transforms(zx: np.ndarray, zy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Keras' matrices for zooms about the centre: a factor z > 1 reads a larger area (zooms out)."""
    zx, zy = np.asarray(zx, np.float64), np.asarray(zy, np.float64)
    zero = np.zeros_like(zx)
    return np.column_stack([zx, zero, (width - 1) / 2 * (1 - zx), zero, zy, (height - 1) / 2 * (1 - zy)])


class ImageAugmentation(Layer):
    """What every augmentation layer shares: a draw per image from the model's augmentation
    generator in training, applied by a kernel and sent back through its gradient; the identity
    in inference."""

    random_stream = "augmentation"
    training_only = True

    def draw(self, rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
        """Each of `n` images' random parameters, drawn as Keras draws them."""
        raise NotImplementedError

    def apply(self, x: Any, drawn: np.ndarray) -> tuple[Any, Any]:
        """(augmented images, what the backward pass needs)."""
        raise NotImplementedError

    def apply_backward(self, dy: Any, drawn: np.ndarray, saved: Any) -> Any:
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise SpecError(f"{self.type} needs (height, width, channels) input, got shape {input_shape}")
        return input_shape

    def create_weights(self, input_shape, rng, dtype):
        self.rng = rng  # the model's augmentation generator

    def forward(self, x, training):
        self.drawn = None
        if not training:
            return x
        self.drawn = self.draw(self.rng, *x.shape[:3])
        y, self.saved = self.apply(x, self.drawn)
        return y

    def backward(self, dy):
        return dy if self.drawn is None else self.apply_backward(dy, self.drawn, self.saved)

    def to_keras(self, seed=None):
        return {**self.config, "seed": seed}


class RandomAffine(ImageAugmentation):
    """What the three warps share: the fill options; each draws one affine transform per image."""

    fill_options = {"fill_mode": "reflect", "interpolation": "bilinear", "fill_value": 0.0}

    def check_config(self) -> None:
        c = self.config
        if c["fill_mode"] not in FILL_MODES:
            raise SpecError(f"{self.type} fill_mode must be one of {FILL_MODES}, got {c['fill_mode']!r}")
        if c["interpolation"] not in INTERPOLATIONS:
            raise SpecError(f"{self.type} interpolation must be one of {INTERPOLATIONS}, got {c['interpolation']!r}")
        value = c["fill_value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SpecError(f"{self.type} fill_value must be a number, got {value!r}")
        self.check_factors()

    def check_factors(self) -> None:
        raise NotImplementedError

    def apply(self, x, transforms):
        c = self.config
        return self.kernels.affine_warp(x, transforms, c["fill_mode"], c["fill_value"], c["interpolation"]), None

    def apply_backward(self, dy, transforms, saved):
        return self.kernels.affine_warp_backward(dy, transforms, self.config["fill_mode"], self.config["interpolation"])


class RandomTranslation(RandomAffine):
    type = "RandomTranslation"
    options = {"height_factor": None, "width_factor": None, **RandomAffine.fill_options}

    def check_factors(self):
        self.height_range = factor_range(self.type, "height_factor", self.config["height_factor"])
        self.width_range = factor_range(self.type, "width_factor", self.config["width_factor"])

    def draw(self, rng, n, height, width):
        dy = rng.uniform(*self.height_range, size=n) * height
        dx = rng.uniform(*self.width_range, size=n) * width
        return translation_transforms(dx, dy)


class RandomRotation(RandomAffine):
    type = "RandomRotation"
    options = {"factor": None, **RandomAffine.fill_options}

    def check_factors(self):
        self.range = factor_range(self.type, "factor", self.config["factor"], above_minus_one=False)

    def draw(self, rng, n, height, width):
        return rotation_transforms(rng.uniform(*self.range, size=n) * 360.0, height, width)


class RandomZoom(RandomAffine):
    type = "RandomZoom"
    options = {"height_factor": None, "width_factor": None, **RandomAffine.fill_options}

    def check_factors(self):
        self.height_range = factor_range(self.type, "height_factor", self.config["height_factor"])
        width = self.config["width_factor"]
        self.width_range = None if width is None else factor_range(self.type, "width_factor", width)

    def draw(self, rng, n, height, width):
        zy = 1.0 + rng.uniform(*self.height_range, size=n)
        zx = zy if self.width_range is None else 1.0 + rng.uniform(*self.width_range, size=n)
        return zoom_transforms(zx, zy, height, width)


class RandomStrokeWidth(ImageAugmentation):
    """Pens differ: a mouse draws thicker strokes than MNIST's, a stylus thinner ones. Each image's
    strokes grow (a > 0) or shrink (a < 0) by |a| of one pixel on every side, `a` drawn uniformly from
    `factor` (read as Keras reads factors: f means [-f, f]; 1 is a full 3x3 dilation)."""

    type = "RandomStrokeWidth"
    options = {"factor": None}
    keras_package = "numnet"  # numnet.keras_layers registers its Keras twin under this package

    def check_config(self) -> None:
        self.range = factor_range(self.type, "factor", self.config["factor"], above_minus_one=False)

    def draw(self, rng, n, height, width):
        return rng.uniform(*self.range, size=n)

    def apply(self, x, amounts):
        return self.kernels.stroke_width(x, amounts)

    def apply_backward(self, dy, amounts, taps):
        return self.kernels.stroke_width_backward(dy, amounts, taps)


class RandomContrast(ImageAugmentation):
    """Keras' RandomContrast: each image's channels spread about their mean by a factor drawn from
    [1 - lower, 1 + upper] (a number f means [1, 1 + f]), clipped to `value_range`. A factor above
    1 pushes a digit's grey edges to full ink, as a canvas pen draws them."""

    type = "RandomContrast"
    options = {"factor": None, "value_range": [0, 255]}

    def check_config(self) -> None:
        factor, value_range = self.config["factor"], self.config["value_range"]
        numbers = factor if isinstance(factor, list | tuple) else [factor]
        if len(numbers) not in (1, 2) or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
                                                 for v in numbers):  # fmt: skip
            raise SpecError(f"{self.type} factor must be a number or a pair of numbers in [0, 1], got {factor!r}")
        lower, upper = (0.0, numbers[0]) if len(numbers) == 1 else sorted(numbers)
        self.range = (1.0 - lower, 1.0 + upper)
        pair = (
            isinstance(value_range, list | tuple)
            and len(value_range) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value_range)
        )
        if not pair or value_range[0] >= value_range[1]:
            raise SpecError(f"{self.type} value_range must be [low, high] with low < high, got {value_range!r}")

    def draw(self, rng, n, height, width):
        return rng.uniform(*self.range, size=n)

    def apply(self, x, factors):
        return self.kernels.contrast(x, factors, *self.config["value_range"])

    def apply_backward(self, dy, factors, inside):
        return self.kernels.contrast_backward(dy, factors, inside)


AUGMENTATION_LAYERS = (RandomTranslation, RandomRotation, RandomZoom, RandomStrokeWidth, RandomContrast)
