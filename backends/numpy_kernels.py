"""NumPy reference kernels: the readable definition every faster backend is checked against.

Every function takes and returns plain arrays. Layouts follow Keras: images are NHWC,
conv kernels are (kh, kw, cin, cout), dense kernels are (in, out).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from numnet.backends.interface import window
from numnet.threads import use_threads

NAME = "numpy"
THREADS = use_threads()  # BLAS: one thread per physical core, or NUMNET_NUM_THREADS


def dense_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    # x: (N, in) -> (N, out)
    return x @ kernel + bias


def dense_backward(
    x: np.ndarray, kernel: np.ndarray, dy: np.ndarray, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    return (dy @ kernel.T if need_dx else None), x.T @ dy, dy.sum(axis=0)


def pad_input(x: np.ndarray, kh: int, kw: int, padding: str, strides: int = 1) -> np.ndarray:
    """The images with the padding Keras adds around them for these windows (see interface.window)."""
    (_, top, bottom), (_, left, right) = (window(x.shape[axis], k, strides, padding) for axis, k in ((1, kh), (2, kw)))
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))) if top or bottom or left or right else x


def windows(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], padding: str, fill: float = 0.0):
    """Every window of NHWC images (see interface.window) as an (N, Ho, Wo, C, kh, kw) view of the
    padded images, and how much padding went before (top, left)."""
    (kh, kw), (sh, sw) = size, strides
    _, h, w, _ = x.shape
    (_, top, bottom), (_, left, right) = window(h, kh, sh, padding), window(w, kw, sw, padding)
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    return sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw], (top, left)


def unwindow(dwindows: np.ndarray, x_shape: tuple, strides: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    """The gradient of the images from their windows' (N, Ho, Wo, C, kh, kw): each window position
    sends its share back to the pixels it read (sums where windows overlap)."""
    n, ho, wo, c, kh, kw = dwindows.shape
    (sh, sw), (top, left) = strides, at
    _, h, w, _ = x_shape
    rows, columns = max(top + h, (ho - 1) * sh + kh), max(left + w, (wo - 1) * sw + kw)
    dx = np.zeros((n, rows, columns, c), dtype=dwindows.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += dwindows[..., i, j]
    return dx[:, top : top + h, left : left + w]


def im2col(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """(N, H, W, C) -> (N*Ho*Wo, kh*kw*C), rows ordered like a (kh, kw, cin) kernel."""
    return _columns(sliding_window_view(x, (kh, kw), axis=(1, 2)))


def _columns(windows: np.ndarray) -> np.ndarray:
    n, ho, wo, c, kh, kw = windows.shape
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * c)


def conv2d_forward(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, padding: str, strides: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the output and the im2col matrix, which the backward pass reuses."""
    kh, kw, cin, cout = kernel.shape
    view, _ = windows(x, (kh, kw), (strides, strides), padding)
    n, ho, wo = view.shape[:3]
    cols = _columns(view)
    y = cols @ kernel.reshape(kh * kw * cin, cout) + bias
    return y.reshape(n, ho, wo, cout), cols


def conv2d_backward(
    x: np.ndarray, kernel: np.ndarray, dy: np.ndarray, padding: str, cache: np.ndarray, need_dx: bool = True,
    strides: int = 1,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:  # fmt: skip
    """cache: the im2col matrix the forward pass returned; need_dx=False skips the input gradient
    (the first layer has no use for it)."""
    kh, kw, cin, cout = kernel.shape
    n, ho, wo, _ = dy.shape
    dy2 = dy.reshape(-1, cout)
    dkernel = (cache.T @ dy2).reshape(kernel.shape)
    dbias = dy2.sum(axis=0, dtype=np.float64).astype(dy.dtype)
    if not need_dx:
        return None, dkernel, dbias
    dcols = (dy2 @ kernel.reshape(-1, cout).T).reshape(n, ho, wo, kh, kw, cin).transpose(0, 1, 2, 5, 3, 4)
    (_, top, _), (_, left, _) = window(x.shape[1], kh, strides, padding), window(x.shape[2], kw, strides, padding)
    return unwindow(dcols, x.shape, (strides, strides), (top, left)), dkernel, dbias


def maxpool2d_forward(
    x: np.ndarray, pool_size: tuple = (2, 2), strides: tuple = (2, 2), padding: str = "valid"
) -> tuple[np.ndarray, np.ndarray]:
    """Each window's maximum and its place in the window (row-major); ties go to the first, as in
    TensorFlow. 'same' padding never wins: it is -inf."""
    view, _ = windows(x, pool_size, strides, padding, fill=-np.inf)
    flat = view.reshape(*view.shape[:4], -1)
    argmax = flat.argmax(axis=-1).astype(np.min_scalar_type(flat.shape[-1] - 1))
    return np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0], argmax


def maxpool2d_backward(
    dy: np.ndarray, argmax: np.ndarray, x_shape: tuple, pool_size: tuple = (2, 2), strides: tuple = (2, 2),
    padding: str = "valid",
) -> np.ndarray:  # fmt: skip
    places = np.arange(pool_size[0] * pool_size[1]).reshape(pool_size)
    dwindows = np.where(argmax[..., None, None] == places, dy[..., None, None], dy.dtype.type(0))
    return unwindow(dwindows, x_shape, strides, _before(x_shape, pool_size, strides, padding))


def _before(x_shape: tuple, size: tuple, strides: tuple, padding: str) -> tuple[int, int]:
    return window(x_shape[1], size[0], strides[0], padding)[1], window(x_shape[2], size[1], strides[1], padding)[1]


def window_counts(x_shape: tuple, pool_size: tuple, strides: tuple, padding: str) -> np.ndarray:
    """How many pixels of the image each window holds, (Ho, Wo, 1): fewer than the pool at 'same' edges."""
    ones = np.ones((1, *x_shape[1:3], 1))
    return windows(ones, pool_size, strides, padding)[0].sum(axis=(-2, -1))[0]


def avgpool2d_forward(x: np.ndarray, pool_size: tuple, strides: tuple, padding: str) -> np.ndarray:
    view, _ = windows(x, pool_size, strides, padding)
    counts = window_counts(x.shape, pool_size, strides, padding)
    return (view.sum(axis=(-2, -1), dtype=np.float64) / counts).astype(x.dtype)


def avgpool2d_backward(dy: np.ndarray, x_shape: tuple, pool_size: tuple, strides: tuple, padding: str) -> np.ndarray:
    share = (dy / window_counts(x_shape, pool_size, strides, padding)).astype(dy.dtype)
    dwindows = np.broadcast_to(share[..., None, None], (*dy.shape, *pool_size))
    return unwindow(dwindows, x_shape, strides, _before(x_shape, pool_size, strides, padding))


def channel_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance per channel (last axis), accumulated in float64.

    NumPy sums over non-contiguous axes one by one; in float32 that loses digits on a 700k-row batch.
    """
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype=np.float64)
    var = x.var(axis=axes, dtype=np.float64)
    return mean.astype(x.dtype), var.astype(x.dtype)


def scale_shift(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Batch norm's affine map per channel: y = x * scale + shift."""
    return x * scale + shift


def batchnorm_backward(
    x: np.ndarray,
    dy: np.ndarray,
    gamma: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    batch_statistics: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = gamma * (x - mean) * inv_std + beta.

    With batch statistics (training) mean and inv_std depend on x too; with moving statistics
    (inference) they are constants.
    """
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    xhat = (x - mean) * inv_std
    dbeta = dy.sum(axis=axes, dtype=np.float64)
    dgamma = (dy * xhat).sum(axis=axes, dtype=np.float64)
    if batch_statistics:
        # Subtract the means, not m-times-scaled sums: m*dy - sum(dy) loses float32 digits.
        dx = (gamma * inv_std) * (dy - (dbeta / m).astype(dy.dtype) - xhat * (dgamma / m).astype(dy.dtype))
    else:
        dx = dy * (gamma * inv_std)
    return dx, dgamma.astype(dy.dtype), dbeta.astype(dy.dtype)


def relu_forward(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def relu_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # y is the ReLU output: positive exactly where the input was.
    return dy * (y > 0)


_erf = np.frompyfunc(math.erf, 1, 1)
# Keras' constants as Keras computes with them, float32 even for float64 data (as it does Adam's betas).
LEAKY_SLOPE = float(np.float32(0.2))
INV_SQRT2 = float(np.float32(1 / math.sqrt(2)))


def activation_forward(x: np.ndarray, name: str) -> np.ndarray:
    """Keras' sigmoid, tanh, elu (alpha 1), leaky_relu (negative slope 0.2), softplus and gelu (exact)."""
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if name == "leaky_relu":
        return np.where(x > 0, x, x * x.dtype.type(LEAKY_SLOPE))
    if name == "softplus":
        return np.logaddexp(x.dtype.type(0), x)
    if name == "gelu":
        return (0.5 * x * (1 + _erf(x * INV_SQRT2).astype(x.dtype))).astype(x.dtype)
    raise ValueError(f"no activation {name!r}")


def activation_backward(x: np.ndarray, y: np.ndarray, dy: np.ndarray, name: str) -> np.ndarray:
    """The gradient of `activation_forward` with respect to x, from its input x and output y."""
    if name == "sigmoid":
        return dy * y * (1 - y)
    if name == "tanh":
        return dy * (1 - y * y)
    if name == "elu":
        return dy * np.where(x > 0, 1, y + 1)
    if name == "leaky_relu":
        return dy * np.where(x > 0, x.dtype.type(1), x.dtype.type(LEAKY_SLOPE))
    if name == "softplus":
        return dy / (1 + np.exp(-x))
    if name == "gelu":
        cdf = 0.5 * (1 + _erf(x * INV_SQRT2).astype(x.dtype))
        return dy * (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
    raise ValueError(f"no activation {name!r}")


def global_average_pool(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(1, 2), dtype=np.float64).astype(x.dtype)


def global_average_pool_backward(dy: np.ndarray, x_shape: tuple) -> np.ndarray:
    n, h, w, c = x_shape
    return np.broadcast_to((dy / (h * w))[:, None, None, :], x_shape).astype(dy.dtype)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(probs: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return probs * (dy - (dy * probs).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy from logits and its gradient, (softmax - targets) / N.

    targets: (N, classes) probabilities (one-hot for class labels).
    """
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    n = logits.shape[0]
    loss = float(-(targets * log_probs).sum() / n)
    dlogits = (np.exp(log_probs) - targets) / n
    return loss, dlogits.astype(logits.dtype, copy=False)


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    alpha: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
) -> None:
    """In place, Keras' form: alpha already holds lr * sqrt(1 - b2^t) / (1 - b1^t)."""
    m += (grad - m) * (1 - beta_1)
    v += (grad * grad - v) * (1 - beta_2)
    param -= alpha * m / (np.sqrt(v) + epsilon)


def dropout_mask(rng: np.random.Generator, shape: tuple, rate: float) -> np.ndarray:
    """Which units survive: each independently with probability 1 - rate."""
    return rng.random(shape, dtype=np.float32) >= rate


def dropout_forward(x: np.ndarray, keep: np.ndarray, rate: float) -> np.ndarray:
    # keep: boolean mask of the units that survive; survivors are scaled so the mean is unchanged.
    return x * keep * np.asarray(1.0 / (1.0 - rate), dtype=x.dtype)


def dropout_backward(dy: np.ndarray, keep: np.ndarray, rate: float) -> np.ndarray:
    return dy * keep * np.asarray(1.0 / (1.0 - rate), dtype=dy.dtype)


def sgd_update(param: np.ndarray, grad: np.ndarray, learning_rate: float) -> None:
    param -= np.asarray(learning_rate, param.dtype) * grad


# -- arrays: creation, transfer and small reductions ----------------------------------------------
def asarray(x, dtype) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=dtype)


def to_numpy(x) -> np.ndarray:
    return np.asarray(x)


def zeros(shape: tuple, dtype) -> np.ndarray:
    return np.zeros(shape, dtype)


def ones(shape: tuple, dtype) -> np.ndarray:
    return np.ones(shape, dtype)


def one_hot(labels: np.ndarray, classes: int, dtype) -> np.ndarray:
    targets = np.zeros((labels.shape[0], classes), dtype)
    targets[np.arange(labels.shape[0]), labels] = 1
    return targets


def count_correct(scores: np.ndarray, labels: np.ndarray) -> int:
    return int((scores.argmax(axis=1) == labels).sum())


def inverse_std(variance: np.ndarray, epsilon: float, dtype) -> np.ndarray:
    return (1.0 / np.sqrt(variance.astype(np.float64) + epsilon)).astype(dtype)


def moving_average(moving: np.ndarray, value: np.ndarray, momentum: float) -> None:
    moving *= momentum
    moving += value * moving.dtype.type(1 - momentum)


def batchnorm_scale_shift(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, inv_std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    scale = gamma * inv_std
    return scale, beta - mean * scale


def copy(x: np.ndarray) -> np.ndarray:
    return x.copy()


def assign(target: np.ndarray, source: np.ndarray) -> None:
    target[...] = source


def reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return x.reshape(shape)


# -- geometric warps (the augmentation layers) ---------------------------------------------------
# Keras' `affine_transform`: output pixel (row i, column j) reads the input at column
# a0*j + a1*i + a2, row b0*j + b1*i + b2, for each image's (a0, a1, a2, b0, b1, b2), plus, for an
# elastic warp, that pixel's displacement (as Keras' `map_coordinates` reads). Pixels outside the
# image read as the fill mode says: 'constant' (fill_value), 'nearest' (the edge), 'reflect'
# (d c b a | a b c d | d c b a) or 'wrap' (a b c d | a b c d); see interface.FILL_MODES.


def _fold(index: np.ndarray, size: int, fill_mode: str) -> np.ndarray:
    """The pixel an integer position reads under `fill_mode`; -1 where it reads the fill value."""
    if fill_mode == "nearest":
        return np.clip(index, 0, size - 1)
    if fill_mode == "wrap":
        return np.mod(index, size)
    if fill_mode == "reflect":
        period = np.mod(index, 2 * size)
        return np.where(period >= size, 2 * size - 1 - period, period)
    return np.where((index >= 0) & (index < size), index, -1)


def _taps(transforms: np.ndarray, displacement: np.ndarray | None, h: int, w: int, interpolation: str) -> list:
    """For each output pixel of each image: the input (row, column) positions it reads, with weights."""
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    a0, a1, a2, b0, b1, b2 = (t[:, None, None] for t in np.asarray(transforms, np.float64).T)
    x, y = a0 * cols + a1 * rows + a2, b0 * cols + b1 * rows + b2
    if displacement is not None:
        y, x = y + displacement[:, 0], x + displacement[:, 1]
    if interpolation == "nearest":
        return [(np.floor(y + 0.5).astype(np.int64), np.floor(x + 0.5).astype(np.int64), np.ones_like(x))]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    r, c = y0.astype(np.int64), x0.astype(np.int64)
    return [(r, c, (1 - fy) * (1 - fx)), (r, c + 1, (1 - fy) * fx), (r + 1, c, fy * (1 - fx)), (r + 1, c + 1, fy * fx)]


def warp(x: np.ndarray, transforms: np.ndarray, displacement: np.ndarray | None, fill_mode: str, fill_value: float,
         interpolation: str) -> np.ndarray:  # fmt: skip
    n, h, w, _ = x.shape
    out = np.zeros(x.shape, np.float64)
    batch = np.arange(n)[:, None, None]
    for rows, cols, weight in _taps(transforms, displacement, h, w, interpolation):
        r, c = _fold(rows, h, fill_mode), _fold(cols, w, fill_mode)
        inside = (r >= 0) & (c >= 0)
        values = np.where(inside[..., None], x[batch, np.maximum(r, 0), np.maximum(c, 0)], fill_value)
        out += weight[..., None] * values
    return out.astype(x.dtype)


def warp_backward(dy: np.ndarray, transforms: np.ndarray, displacement: np.ndarray | None, fill_mode: str,
                  interpolation: str) -> np.ndarray:  # fmt: skip
    """The gradient of `warp` with respect to its input: each tap's weight, sent back."""
    n, h, w, _ = dy.shape
    dx = np.zeros(dy.shape, np.float64)
    batch = np.broadcast_to(np.arange(n)[:, None, None], (n, h, w))
    for rows, cols, weight in _taps(transforms, displacement, h, w, interpolation):
        r, c = _fold(rows, h, fill_mode), _fold(cols, w, fill_mode)
        inside = (r >= 0) & (c >= 0)
        np.add.at(dx, (batch[inside], r[inside], c[inside]), (weight[..., None] * dy)[inside])
    return dx.astype(dy.dtype)


def bend_with(warp, x, images, displacement, fill_mode, fill_value, interpolation, low, high):
    """`bend` on a module's own `warp`, so every kernel module shares these lines."""
    y = x.copy()
    if len(images):
        y[images] = warp(x[images], identity_transforms(len(images)), displacement, fill_mode, fill_value,
                         interpolation)  # fmt: skip
    inside = (y >= low) & (y <= high)
    return np.clip(y, low, high, out=y), inside  # y is a copy of its own


def bend_backward_with(warp_backward, dy, images, displacement, fill_mode, interpolation, inside):
    dx = dy * inside
    if len(images):
        dx[images] = warp_backward(dx[images], identity_transforms(len(images)), displacement, fill_mode,
                                   interpolation)  # fmt: skip
    return dx


def identity_transforms(n: int) -> np.ndarray:
    return np.broadcast_to(np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), (n, 6))


def bend(x, images, displacement, fill_mode, fill_value, interpolation, low, high):
    return bend_with(warp, x, images, displacement, fill_mode, fill_value, interpolation, low, high)


def bend_backward(dy, images, displacement, fill_mode, interpolation, inside):
    return bend_backward_with(warp_backward, dy, images, displacement, fill_mode, interpolation, inside)


def stroke_width(x: np.ndarray, amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dilation is the max over the 9 shifted copies of a -inf-padded image; erosion is -dilation(-x)."""
    n, h, w, _ = x.shape
    amount = np.asarray(amounts, np.float64).reshape(n, 1, 1, 1)
    sign = np.where(amount < 0, -1.0, 1.0)
    padded = np.pad(sign * x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    shifted = np.stack([padded[:, di : di + h, dj : dj + w] for di in range(3) for dj in range(3)])
    taps = shifted.argmax(axis=0)
    extreme = sign * np.take_along_axis(shifted, taps[None], axis=0)[0]
    return (x + np.abs(amount) * (extreme - x)).astype(x.dtype), taps.astype(np.int8)


def stroke_width_backward(dy: np.ndarray, amounts: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Each output's gradient goes to the input itself (1 - |a|) and to its extreme's neighbour (|a|)."""
    n, h, w, _ = dy.shape
    amount = np.abs(np.asarray(amounts, np.float64)).reshape(n, 1, 1, 1)
    dx = np.zeros((n, h + 2, w + 2, dy.shape[3]), np.float64)
    dx[:, 1 : h + 1, 1 : w + 1] = (1 - amount) * dy
    for tap in range(9):
        di, dj = divmod(tap, 3)
        dx[:, di : di + h, dj : dj + w] += np.where(taps == tap, amount * dy, 0.0)
    return dx[:, 1 : h + 1, 1 : w + 1].astype(dy.dtype)


def contrast(x: np.ndarray, factors: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Keras' RandomContrast: (x - mean) * factor + mean per image and channel, clipped to [low, high]."""
    factor = np.asarray(factors, np.float64).reshape(-1, 1, 1, 1)
    mean = x.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    spread = (x - mean) * factor + mean
    inside = (spread >= low) & (spread <= high)  # where the clip passes the gradient, as TensorFlow's does
    return np.clip(spread, low, high).astype(x.dtype), inside


def contrast_backward(dy: np.ndarray, factors: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Each pixel moves by the factor itself and, through the mean, by (1 - factor) / pixels."""
    factor = np.asarray(factors, np.float64).reshape(-1, 1, 1, 1)
    passed = np.where(inside, dy, 0.0)
    return (factor * passed + (1 - factor) * passed.mean(axis=(1, 2), keepdims=True)).astype(dy.dtype)
