"""The kernel interface: every function a kernel module provides, in one place.

numnet's layers, optimizers and Model do their arithmetic only through these functions, so a new
kernel module (a GPU one, say) is one file that implements this Protocol, one line in
`numnet.backends.KERNEL_MODULES`, and it is tested by the shared suite in tests/test_kernels.py.
Arrays are the module's own (NumPy arrays for numpy and numba); `asarray` and `to_numpy` move data
in and out. Layouts follow Keras: images NHWC, conv kernels (kh, kw, cin, cout), dense (in, out).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

Array = Any  # the kernel module's array type
# What `warp` takes: fill modes (in the order a compiled module may number them) and interpolations.
FILL_MODES = ("constant", "nearest", "reflect", "wrap")
INTERPOLATIONS = ("bilinear", "nearest")


def window(size: int, k: int, stride: int, padding: str) -> tuple[int, int, int]:
    """Keras' sliding windows along one axis (convolution and pooling alike): the output size and
    the padding before and after. 'same' gives ceil(size / stride) outputs, the odd extra row or
    column of padding after, not before."""
    if padding == "valid":
        return (size - k) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def fold(index: int, size: int, mode: int) -> int:
    """The pixel an integer position reads under fill mode FILL_MODES[mode] (0 constant, 1 nearest,
    2 reflect, 3 wrap); -1 where it reads the fill value. Plain Python that the compiled modules
    compile as they need (numba's njit, numba-cuda's device functions)."""
    if mode == 1:
        return min(max(index, 0), size - 1)
    if mode == 3:
        return index % size
    if mode == 2:
        period = index % (2 * size)
        return 2 * size - 1 - period if period >= size else period
    return index if 0 <= index < size else -1


@runtime_checkable
class Kernels(Protocol):
    NAME: str

    # -- arrays: creation and transfer --------------------------------------------------------
    def asarray(self, x: Any, dtype: Any) -> Array:
        """A C-contiguous array of this module holding `x` (no copy when it already is one)."""

    def to_numpy(self, x: Array) -> np.ndarray:
        """A NumPy array holding `x` (no copy on a CPU module)."""

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array: ...

    def ones(self, shape: tuple[int, ...], dtype: Any) -> Array: ...

    def copy(self, x: Array) -> Array: ...

    def assign(self, target: Array, source: Array) -> None:
        """In place: target's values become source's (same shape; the optimizer holds target)."""

    def reshape(self, x: Array, shape: tuple[int, ...]) -> Array:
        """The same values in another shape (a view where the module can)."""

    def one_hot(self, labels: Array, classes: int, dtype: Any) -> Array:
        """(N,) integer class ids -> (N, classes) targets."""

    def count_correct(self, scores: Array, labels: Array) -> int:
        """How many rows of (N, classes) scores have their maximum at the label ((N,) ids)."""

    # -- dense and convolution ----------------------------------------------------------------
    def dense_forward(self, x: Array, kernel: Array, bias: Array) -> Array: ...

    def dense_backward(self, x: Array, kernel: Array, dy: Array, need_dx: bool = True) -> tuple: ...

    def conv2d_forward(self, x: Array, kernel: Array, bias: Array, padding: str, strides: int = 1) -> tuple[Array, Any]:
        """'valid' or 'same' (see `window`), the same stride both ways; returns y and a cache the
        backward pass takes back."""

    def conv2d_backward(
        self, x: Array, kernel: Array, dy: Array, padding: str, cache: Any, need_dx: bool = True, strides: int = 1
    ) -> tuple: ...

    # -- pooling, batch norm, activations, dropout --------------------------------------------
    def maxpool2d_forward(
        self, x: Array, pool_size: tuple[int, int] = (2, 2), strides: tuple[int, int] = (2, 2), padding: str = "valid"
    ) -> tuple[Array, Array]:
        """y and each window's winner (its place in the window, row-major, ties to the first);
        'same' windows leave the padding out."""

    def maxpool2d_backward(
        self, dy: Array, argmax: Array, x_shape: tuple, pool_size: tuple[int, int] = (2, 2),
        strides: tuple[int, int] = (2, 2), padding: str = "valid",
    ) -> Array: ...  # fmt: skip

    def avgpool2d_forward(self, x: Array, pool_size: tuple[int, int], strides: tuple[int, int], padding: str) -> Array:
        """Each window's mean; a 'same' window divides by the pixels inside the image only, as Keras."""

    def avgpool2d_backward(
        self, dy: Array, x_shape: tuple, pool_size: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> Array: ...

    def global_average_pool(self, x: Array) -> Array:
        """(N, H, W, C) -> (N, C): each channel's mean over the image (summed in float64)."""

    def global_average_pool_backward(self, dy: Array, x_shape: tuple) -> Array: ...

    def channel_moments(self, x: Array) -> tuple[Array, Array]:
        """Mean and biased variance over every axis but the last."""

    def inverse_std(self, variance: Array, epsilon: float, dtype: Any) -> Array:
        """1 / sqrt(variance + epsilon), computed in float64."""

    def moving_average(self, moving: Array, value: Array, momentum: float) -> None:
        """In place: moving = moving * momentum + value * (1 - momentum)."""

    def batchnorm_scale_shift(self, gamma: Array, beta: Array, mean: Array, inv_std: Array) -> tuple[Array, Array]:
        """Batch norm as a per-channel affine map: (gamma * inv_std, beta - mean * gamma * inv_std)."""

    def scale_shift(self, x: Array, scale: Array, shift: Array) -> Array: ...

    def batchnorm_backward(
        self, x: Array, dy: Array, gamma: Array, mean: Array, inv_std: Array, batch_statistics: bool
    ) -> tuple[Array, Array, Array]: ...

    def relu_forward(self, x: Array) -> Array: ...

    def relu_backward(self, y: Array, dy: Array) -> Array: ...

    def activation_forward(self, x: Array, name: str) -> Array:
        """Keras' activation `name`: sigmoid, tanh, elu, leaky_relu, softplus or gelu."""

    def activation_backward(self, x: Array, y: Array, dy: Array, name: str) -> Array:
        """Its gradient, from the input x and the output y."""

    def softmax(self, logits: Array) -> Array: ...

    def softmax_backward(self, probs: Array, dy: Array) -> Array: ...

    def softmax_cross_entropy(self, logits: Array, targets: Array) -> tuple[float, Array]:
        """Mean loss and its gradient (softmax - targets) / N."""

    def dropout_mask(self, rng: np.random.Generator, shape: tuple, rate: float) -> Array: ...

    def dropout_forward(self, x: Array, keep: Array, rate: float) -> Array: ...

    def dropout_backward(self, dy: Array, keep: Array, rate: float) -> Array: ...

    # -- geometric warps (augmentation) -------------------------------------------------------
    def warp(
        self, x: Array, transforms: Any, displacement: Any, fill_mode: str, fill_value: float, interpolation: str
    ) -> Array:
        """Keras' `affine_transform` (and, with a displacement, its `map_coordinates`) of each NHWC
        image: output pixel (i, j) of image b reads the input at column a0*j + a1*i + a2 (+ d[b, 1, i,
        j]), row b0*j + b1*i + b2 (+ d[b, 0, i, j]), for its row (a0, a1, a2, b0, b1, b2) of the
        (N, 6) `transforms` and `displacement` d, (N, 2, H, W) or None (both NumPy float64);
        fill_mode 'constant', 'nearest', 'reflect' or 'wrap'; interpolation 'bilinear' or 'nearest'."""

    def warp_backward(self, dy: Array, transforms: Any, displacement: Any, fill_mode: str, interpolation: str) -> Array:
        """The gradient of `warp` with respect to its input images."""

    def bend(
        self, x: Array, images: Any, displacement: Any, fill_mode: str, fill_value: float, interpolation: str,
        low: float, high: float,
    ) -> tuple[Array, Array]:  # fmt: skip
        """Keras' RandomElasticTransform applied: the images at the NumPy indices `images` read where
        their (len(images), 2, H, W) `displacement` says (`warp` with identity transforms), the others
        kept, then every value clipped to [low, high]. Returns (y, inside): where it lay within."""

    def bend_backward(
        self, dy: Array, images: Any, displacement: Any, fill_mode: str, interpolation: str, inside: Array
    ) -> Array:
        """The gradient of `bend` with respect to its input images."""

    def stroke_width(self, x: Array, amounts: Any) -> tuple[Array, Array]:
        """Each NHWC image's strokes made thicker or thinner: x + |a| * (m(x) - x) with `a` its entry of
        the (N,) NumPy float64 `amounts` in [-1, 1] and m the grey-scale dilation (a >= 0) or erosion
        (a < 0) over the 3x3 square, pixels outside the image left out. Returns (y, taps): taps (int8)
        says which of the 9 neighbours (row-major, the first on ties) each output's extreme came from."""

    def stroke_width_backward(self, dy: Array, amounts: Any, taps: Array) -> Array:
        """The gradient of `stroke_width` with respect to its input images."""

    def contrast(self, x: Array, factors: Any, low: float, high: float) -> tuple[Array, Array]:
        """Keras' RandomContrast on NHWC images: (x - mean) * f + mean, the mean per image and channel,
        `f` the image's entry of the (N,) NumPy float64 `factors`, clipped to [low, high]. Returns (y,
        inside): where the unclipped value lay within [low, high]."""

    def contrast_backward(self, dy: Array, factors: Any, inside: Array) -> Array:
        """The gradient of `contrast` with respect to its input images."""

    # -- optimizers (in place) ----------------------------------------------------------------
    def adam_update(
        self, param: Array, grad: Array, m: Array, v: Array, alpha: float, beta_1: float, beta_2: float, epsilon: float
    ) -> None: ...

    def sgd_update(self, param: Array, grad: Array, learning_rate: float) -> None: ...


class FusedKernels(Protocol):
    """Kernels for runs of layers (numnet.engine.fusion) that a module may add, all or none: the model
    then runs each run as one op. The same results as the separate kernels."""

    def scale_relu_maxpool(self, x: Array, scale: Array, shift: Array) -> tuple[Array, Array]:
        """maxpool(relu(x * scale + shift)), 2x2, and each window's winner (0..3, or BLOCKED where
        ReLU stopped the window's maximum): batch norm in inference form, ReLU and pool in one pass."""

    def scale_relu_maxpool_backward(
        self, x: Array, dy: Array, argmax: Array, gamma: Array, mean: Array, inv_std: Array, batch_statistics: bool
    ) -> tuple[Array, Array, Array]:
        """Batch norm's (dx, dgamma, dbeta) through ReLU and the pool, from the pooled gradient dy."""

    def conv_scale_relu_maxpool_backward(
        self, images: Array, kernel_shape: tuple, padding: str, x: Array, dy: Array, argmax: Array, gamma: Array,
        mean: Array, inv_std: Array, batch_statistics: bool,
    ) -> tuple[Array, Array, Array, Array]:  # fmt: skip
        """(dkernel, dbias, dgamma, dbeta) of a one-channel conv on `images` whose output x runs
        through batch norm, ReLU and the pool: a first layer, so no input gradient."""


OPTIONAL = tuple(name for name in vars(FusedKernels) if not name.startswith("_"))


def interface_functions() -> list[str]:
    """The names every kernel module must define."""
    return sorted(name for name in vars(Kernels) if not name.startswith("_") and callable(vars(Kernels)[name]))


def missing_functions(module: Any) -> list[str]:
    """What `module` lacks of the interface (empty when it implements all of it)."""
    missing = [name for name in interface_functions() if not callable(getattr(module, name, None))]
    return missing + ([] if isinstance(getattr(module, "NAME", None), str) else ["NAME"])
