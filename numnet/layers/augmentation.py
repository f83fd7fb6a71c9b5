"""Augmentation layers with Keras 3's names, arguments and semantics: `RandomTranslation`,
`RandomRotation`, `RandomZoom`, `RandomElasticTransform`, `RandomContrast`; and `RandomStrokeWidth`,
which Keras lacks (numnet.keras.layers gives Keras the same layer).

In training each image gets its own random transform, drawn from the model's seeded generator (so
a seed repeats its batches); the warps say where each output pixel reads (an affine transform, plus
a displacement per pixel for the elastic one) and the kernels' `warp` reads there exactly as Keras'
`affine_transform` and `map_coordinates` do; in inference they are the identity. Factors are fractions, as in
Keras: a number f means [-f, f]; a pair means that range (of the height or width for translation,
of a full turn for rotation, of the size for zoom: positive zooms out).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet.backends.interface import FILL_MODES, INTERPOLATIONS
from numnet.errors import SpecError
from numnet.layers.base import Layer
from numnet.settings import is_finite_number, is_number


def factor_range(layer: str, key: str, value: Any, above_minus_one: bool = True) -> tuple[float, float]:
    """Keras' reading of a factor: f -> (-|f|, |f|), [a, b] -> (min, max), each in (-1, 1] (translation,
    zoom) or [-1, 1] (rotation)."""
    numbers = value if isinstance(value, list | tuple) else [value]
    if len(numbers) not in (1, 2) or not all(map(is_number, numbers)):
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


def gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """Keras' gaussian_blur along one axis of `size` pixels as a (size, size) matrix: its kernel of
    int(6 sigma) | 1 taps, normalised, over a zero-padded edge."""
    taps = int(6 * sigma) | 1
    offsets = np.arange(taps) - (taps - 1) / 2
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    distance = np.arange(size)[None, :] - np.arange(size)[:, None] + (taps - 1) // 2
    return np.where((distance >= 0) & (distance < taps), kernel[np.clip(distance, 0, taps - 1)], 0.0)


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


class RandomWarp(ImageAugmentation):
    """What the warps share: the fill options, and reading each output pixel where `transforms` says."""

    fill_options = {"fill_mode": "reflect", "interpolation": "bilinear", "fill_value": 0.0}

    def check_config(self) -> None:
        c = self.config
        if c["fill_mode"] not in FILL_MODES:
            raise SpecError(f"{self.type} fill_mode must be one of {FILL_MODES}, got {c['fill_mode']!r}")
        if c["interpolation"] not in INTERPOLATIONS:
            raise SpecError(f"{self.type} interpolation must be one of {INTERPOLATIONS}, got {c['interpolation']!r}")
        value = c["fill_value"]
        if not is_finite_number(value):
            raise SpecError(f"{self.type} fill_value must be a number, got {value!r}")
        self.check_factors()

    def check_factors(self) -> None:
        raise NotImplementedError

    def transforms(self, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The kernels' (affine transforms, displacement) for what `draw` drew: an affine layer draws
        the transforms."""
        return drawn, None

    def apply(self, x, drawn):
        c = self.config
        return self.kernels.warp(x, *self.transforms(drawn), c["fill_mode"], c["fill_value"], c["interpolation"]), None

    def apply_backward(self, dy, drawn, saved):
        return self.kernels.warp_backward(dy, *self.transforms(drawn), self.config["fill_mode"],
                                          self.config["interpolation"])  # fmt: skip


class RandomTranslation(RandomWarp):
    type = "RandomTranslation"
    options = {"height_factor": None, "width_factor": None, **RandomWarp.fill_options}

    def check_factors(self):
        self.height_range = factor_range(self.type, "height_factor", self.config["height_factor"])
        self.width_range = factor_range(self.type, "width_factor", self.config["width_factor"])

    def draw(self, rng, n, height, width):
        dy = rng.uniform(*self.height_range, size=n) * height
        dx = rng.uniform(*self.width_range, size=n) * width
        return translation_transforms(dx, dy)


class RandomRotation(RandomWarp):
    type = "RandomRotation"
    options = {"factor": None, **RandomWarp.fill_options}

    def check_factors(self):
        self.range = factor_range(self.type, "factor", self.config["factor"], above_minus_one=False)

    def draw(self, rng, n, height, width):
        return rotation_transforms(rng.uniform(*self.range, size=n) * 360.0, height, width)


class RandomZoom(RandomWarp):
    type = "RandomZoom"
    options = {"height_factor": None, "width_factor": None, **RandomWarp.fill_options}

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
    keras_package = "numnet"  # numnet.keras.layers registers its Keras twin under this package

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
        lower, upper = unit_range(self.type, "factor", self.config["factor"])
        self.range = (1.0 - lower, 1.0 + upper)
        value_range(self.type, self.config["value_range"])

    def draw(self, rng, n, height, width):
        return rng.uniform(*self.range, size=n)

    def apply(self, x, factors):
        return self.kernels.contrast(x, factors, *self.config["value_range"])

    def apply_backward(self, dy, factors, inside):
        return self.kernels.contrast_backward(dy, factors, inside)


class RandomElasticTransform(RandomWarp):
    """Keras' RandomElasticTransform: each image, with a probability drawn from `factor`, is bent by a
    smooth random displacement field (Gaussian noise blurred by a Gaussian of sigma = 0.05 s of the
    shorter side, scaled by alpha = 0.1 s of the longer), s drawn from `scale` once per batch; then
    clipped to `value_range`. Hands waver: the same digit, never quite the same strokes."""

    type = "RandomElasticTransform"
    options = {"factor": 1.0, "scale": 1.0, **RandomWarp.fill_options, "value_range": [0, 255]}

    def check_factors(self):
        self.factor_range = unit_range(self.type, "factor", self.config["factor"])
        self.scale_range = unit_range(self.type, "scale", self.config["scale"])
        self.value_range = value_range(self.type, self.config["value_range"])

    def draw(self, rng, n, height, width):
        """Keras' draws: a probability and a threshold per image, one scale per batch, then the noise;
        returns the bent images' indices and their pixels' (row, column) displacements, (k, 2, H, W):
        the others are left as they are, not warped by a zero field (half the batch at factor 0.5)."""
        probability = rng.uniform(*self.factor_range, size=n)
        bent = np.flatnonzero(rng.uniform(0.0, 1.0, size=n) < probability)
        s = rng.uniform(*self.scale_range)
        alpha, sigma = max(height, width) * 0.1 * s, min(height, width) * 0.05 * s
        if sigma <= 0 or not len(bent):
            return bent[:0], np.zeros((0, 2, height, width))
        # The noise is drawn as (height, field, width), each field a (height, width) plane: both blurs
        # are then one BLAS product each over every field (rows, then columns).
        noise = rng.standard_normal((height, 2 * len(bent) * width))  # a row and a column field per image
        down = gaussian_blur_matrix(height, sigma) @ noise
        both = down.reshape(-1, width) @ gaussian_blur_matrix(width, sigma).T
        return bent, (alpha * sigma) * both.reshape(height, -1, 2, width).transpose(1, 2, 0, 3)

    def apply(self, x, drawn):
        c = self.config
        return self.kernels.bend(x, *drawn, c["fill_mode"], c["fill_value"], c["interpolation"], *self.value_range)

    def apply_backward(self, dy, drawn, inside):
        return self.kernels.bend_backward(dy, *drawn, self.config["fill_mode"], self.config["interpolation"], inside)


def unit_range(layer: str, key: str, value: Any) -> tuple[float, float]:
    """Keras' reading of a factor in [0, 1]: f -> (0, f), [a, b] -> (min, max)."""
    numbers = value if isinstance(value, list | tuple) else [value]
    if len(numbers) not in (1, 2) or not all(is_number(v) and 0 <= v <= 1
                                             for v in numbers):  # fmt: skip
        raise SpecError(f"{layer} {key} must be a number or a pair of numbers in [0, 1], got {value!r}")
    return (0.0, float(numbers[0])) if len(numbers) == 1 else (float(min(numbers)), float(max(numbers)))


def value_range(layer: str, value: Any) -> tuple[float, float]:
    pair = isinstance(value, list | tuple) and len(value) == 2 and all(map(is_finite_number, value))
    if not pair or value[0] >= value[1]:
        raise SpecError(f"{layer} value_range must be [low, high] with low < high, got {value!r}")
    return float(value[0]), float(value[1])


AUGMENTATION_LAYERS = (RandomTranslation, RandomRotation, RandomZoom, RandomElasticTransform, RandomStrokeWidth,
                       RandomContrast)  # fmt: skip
