"""Numba kernels: the same functions as `numpy_kernels`, made fast on the CPU.

Where the work is a large matrix product (dense layers, im2col convolution) it goes to BLAS, which
runs near the machine's matmul peak. Everything around it — im2col/col2im, batch-norm statistics
and normalisation, ReLU, pooling, dropout, the Adam update — is a parallel Numba loop that makes one
pass over memory and no temporaries. Kernels are compiled with `cache=True`, so a second process
loads them from disk instead of compiling again.

Threads: Numba and OpenBLAS each use one thread per physical core (`numnet.threads`), and never at
the same time (a kernel finishes before the next BLAS call starts), so there are never more busy
threads than cores.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys
import types

import numpy as np
from numba import njit, prange

from numnet.backends import numpy_kernels
from numnet.backends.interface import FILL_MODES, fold, window
from numnet.machine import core_count
from numnet.threads import numba_threads_here, use_threads

NAME = "numba"
THREADS = use_threads(numba_pool=True)


def keep_freed_memory_for_reuse() -> bool:
    """Stops glibc from returning large freed blocks to the OS.

    A training step allocates and frees the same few 10-200 MB activations every step. By default
    glibc maps each one fresh and unmaps it on free, so every step pays page faults and the
    kernel's zeroing of every page, which costs more than the arithmetic of a ReLU.
    Raising the mmap and trim thresholds lets malloc hand the same memory back step after step.
    Freed memory then stays with the malloc arena that freed it, so the arenas are capped at one per
    core: otherwise each thread of a server (the web page's decoding threads) keeps its own large
    blocks, and concurrent uploads would hold far more memory than they need.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        return bool(
            libc.mallopt(m_mmap_threshold, 1 << 30)
            and libc.mallopt(m_trim_threshold, 2**31 - 1)
            and libc.mallopt(m_arena_max, max(core_count(), 2))
        )
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        return False


MEMORY_REUSE = keep_freed_memory_for_reuse()

# Small or rarely-called pieces gain nothing from compilation: share the reference versions.
from numnet.backends.numpy_kernels import (  # noqa: E402, F401  (part of this module's interface)
    activation_backward,
    activation_forward,
    asarray,
    assign,
    batchnorm_scale_shift,
    contrast,
    contrast_backward,
    copy,
    count_correct,
    global_average_pool,
    global_average_pool_backward,
    inverse_std,
    moving_average,
    one_hot,
    ones,
    reshape,
    sgd_update,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
    to_numpy,
    zeros,
)

PARALLEL_MIN_ELEMENTS = 1 << 15  # below this, waking the thread pool costs more than it saves


class jit:
    """A kernel compiled twice, parallel and serial; each call picks by the size of its first
    argument (an array, or an element count). Small arrays, as in the MLP at batch 100, would
    otherwise spend more time waking threads than computing. One image (an array whose leading
    axis is 1) runs serially whatever its size: most kernels share their work out by image, and
    a drawn digit's largest array (the seed CNN's 26x26x64) costs less than waking the pool."""

    def __init__(self, kernel) -> None:
        serial = types.FunctionType(kernel.__code__, kernel.__globals__, kernel.__name__ + "_serial")
        serial.__qualname__ = kernel.__qualname__ + "_serial"  # its own on-disk cache entry
        self.parallel = njit(parallel=True, cache=True, nogil=True)(kernel)
        self.serial = njit(cache=True, nogil=True)(serial)
        self.__doc__ = kernel.__doc__

    def __call__(self, *args):
        first = args[0]
        if isinstance(first, np.ndarray):
            size = first.size if first.ndim == 1 or first.shape[0] > 1 else 0
        else:
            size = first
        if size < PARALLEL_MIN_ELEMENTS:
            return self.serial(*args)
        numba_threads_here()
        return self.parallel(*args)


REDUCTION_CHUNKS = 64


def _chunks(total: int) -> int:
    """How many pieces a parallel reduction splits `total` rows into.

    A fixed number, not one per thread: the partial sums, and so the rounding, are then the same
    for any thread count (up to 64 threads share a reduction's work).
    """
    return max(1, min(total, REDUCTION_CHUNKS))


# -- dense ----------------------------------------------------------------------------------------
@jit
def _add_bias(y, bias):
    rows, cols = y.shape
    for i in prange(rows):
        for j in range(cols):
            y[i, j] += bias[j]


@jit
def _column_sums(a, chunks):
    rows, cols = a.shape
    partial = np.zeros((chunks, cols), dtype=np.float64)
    for t in prange(chunks):
        for i in range(t * rows // chunks, (t + 1) * rows // chunks):
            for j in range(cols):
                partial[t, j] += a[i, j]
    return partial.sum(axis=0)


def dense_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    y = x @ kernel
    _add_bias(y, bias)
    return y


def dense_backward(x, kernel, dy, need_dx=True):
    db = _column_sums(dy, _chunks(dy.shape[0])).astype(dy.dtype)
    return (dy @ kernel.T if need_dx else None), x.T @ dy, db


# -- convolution ----------------------------------------------------------------------------------
@jit
def _im2col(x, kh, kw, ho, wo, stride):
    """Rows (n, y, x), columns (i, j, c) for a 'valid' window; x: (N, H, W, C).

    For each output pixel and kernel row i, the kw*C inputs it needs are contiguous in NHWC,
    so each row of the matrix is kh straight copies.
    """
    n, h, w, c = x.shape
    run = kw * c
    flat = x.reshape(n, h, w * c)
    cols = np.empty((n * ho * wo, kh * run), dtype=x.dtype)
    for b in prange(n):
        for oy in range(ho):
            for ox in range(wo):
                row = (b * ho + oy) * wo + ox
                at = ox * stride * c
                for i in range(kh):
                    cols[row, i * run : (i + 1) * run] = flat[b, oy * stride + i, at : at + run]
    return cols


@jit
def _col2im(dcols, n, h, w, c, kh, kw, top, left, ho, wo, stride):
    dx = np.zeros((n, h, w, c), dtype=dcols.dtype)
    for b in prange(n):  # each sample is independent, so no two threads write the same element
        for oy in range(ho):
            for ox in range(wo):
                row = (b * ho + oy) * wo + ox
                for i in range(kh):
                    iy = oy * stride + i - top
                    if iy < 0 or iy >= h:
                        continue
                    for j in range(kw):
                        ix = ox * stride + j - left
                        if ix < 0 or ix >= w:
                            continue
                        base = (i * kw + j) * c
                        for ch in range(c):
                            dx[b, iy, ix, ch] += dcols[row, base + ch]
    return dx


def _geometry(x_shape, kernel_shape, padding, stride):
    """(top, left, ho, wo) of a convolution's windows."""
    (ho, top, _), (wo, left, _) = (window(size, k, stride, padding) for size, k in zip(x_shape[1:3], kernel_shape[:2]))
    return top, left, ho, wo


@jit
def _conv_single_channel(x, kernel, bias, ho, wo):
    """Direct 'valid' convolution of a 1-channel image: im2col would make a 9-column matrix
    that BLAS multiplies slowly, while here each output pixel is kh*kw vector FMAs over cout.
    A 3x3 kernel (the seed CNN's and best's) is written out, so the sums stay in registers (same
    bits as the loop)."""
    n = x.shape[0]
    kh, kw, _, cout = kernel.shape
    y = np.empty((n, ho, wo, cout), dtype=x.dtype)
    k = kernel.reshape(kh * kw, cout)
    for b in prange(n):
        acc = np.empty(cout, dtype=x.dtype)
        for oy in range(ho):
            for ox in range(wo):
                if kh == 3 and kw == 3:
                    v0, v1, v2 = x[b, oy, ox, 0], x[b, oy, ox + 1, 0], x[b, oy, ox + 2, 0]
                    v3, v4, v5 = x[b, oy + 1, ox, 0], x[b, oy + 1, ox + 1, 0], x[b, oy + 1, ox + 2, 0]
                    v6, v7, v8 = x[b, oy + 2, ox, 0], x[b, oy + 2, ox + 1, 0], x[b, oy + 2, ox + 2, 0]
                    for co in range(cout):
                        y[b, oy, ox, co] = (bias[co] + v0 * k[0, co] + v1 * k[1, co] + v2 * k[2, co]
                                            + v3 * k[3, co] + v4 * k[4, co] + v5 * k[5, co]
                                            + v6 * k[6, co] + v7 * k[7, co] + v8 * k[8, co])  # fmt: skip
                    continue
                for co in range(cout):
                    acc[co] = bias[co]
                for i in range(kh):
                    for j in range(kw):
                        v = x[b, oy + i, ox + j, 0]
                        for co in range(cout):
                            acc[co] += v * k[i * kw + j, co]
                for co in range(cout):
                    y[b, oy, ox, co] = acc[co]
    return y


@njit(cache=True, inline="always")
def _add_kernel_grads(x, b, g, kw, acc, bias_sums):
    """Image b's kernel gradient summed into `acc` (kh * kw, cout), in the data's type, and its bias
    gradient into the float64 `bias_sums`, from g (ho, wo, cout), the gradient of its output.
    A 3x3 kernel is written out: its nine sums then share each load of g."""
    ho, wo, cout = g.shape
    taps = acc.shape[0]
    if kw == 3:
        a0, a1, a2, a3, a4 = acc[0], acc[1], acc[2], acc[3], acc[4]
        a5, a6, a7, a8 = acc[5], acc[6], acc[7], acc[8]
        for oy in range(ho):
            for ox in range(wo):
                v0, v1, v2 = x[b, oy, ox, 0], x[b, oy, ox + 1, 0], x[b, oy, ox + 2, 0]
                v3, v4, v5 = x[b, oy + 1, ox, 0], x[b, oy + 1, ox + 1, 0], x[b, oy + 1, ox + 2, 0]
                v6, v7, v8 = x[b, oy + 2, ox, 0], x[b, oy + 2, ox + 1, 0], x[b, oy + 2, ox + 2, 0]
                d = g[oy, ox]
                for co in range(cout):
                    e = d[co]
                    a0[co] += v0 * e
                    a1[co] += v1 * e
                    a2[co] += v2 * e
                    a3[co] += v3 * e
                    a4[co] += v4 * e
                    a5[co] += v5 * e
                    a6[co] += v6 * e
                    a7[co] += v7 * e
                    a8[co] += v8 * e
                for co in range(cout):
                    bias_sums[co] += d[co]
        return
    for oy in range(ho):
        for ox in range(wo):
            d = g[oy, ox]
            for r in range(taps):
                v = x[b, oy + r // kw, ox + r % kw, 0]
                for co in range(cout):
                    acc[r, co] += v * d[co]
            for co in range(cout):
                bias_sums[co] += d[co]


@jit
def _conv_single_channel_grads(x, dy, kh, kw, chunks):
    """dkernel (kh, kw, 1, cout) and dbias in one pass over dy.

    Each image sums the kernel's gradient in the data's type (SIMD-wide, unlike float64 sums), then
    adds it into
    per-chunk float64 totals. The bias's stays float64 throughout: in front of batch norm it is
    zero but for rounding, and Adam turns float32's larger rounding into steps of the full rate
    (numba and numpy then drift apart within 5 steps)."""
    n, ho, wo, cout = dy.shape
    partial = np.zeros((chunks, kh * kw + 1, cout), dtype=np.float64)
    for t in prange(chunks):
        for b in range(t * n // chunks, (t + 1) * n // chunks):
            acc = np.zeros((kh * kw, cout), dtype=dy.dtype)  # the kernel rows; the bias row sums in partial
            _add_kernel_grads(x, b, dy[b], kw, acc, partial[t, kh * kw])
            partial[t, : kh * kw] += acc
    return partial.sum(axis=0)


def _split_kernel_and_bias(grads, kernel_shape, dtype):
    """The float64 (kh * kw + 1, cout) totals of the one-channel gradient kernels as (dkernel, dbias)."""
    return grads[:-1].reshape(kernel_shape).astype(dtype), grads[-1].astype(dtype)


def conv2d_forward(x, kernel, bias, padding, strides=1):
    """Returns y and what the backward pass needs: the im2col matrix, or None for the direct path."""
    kh, kw, cin, cout = kernel.shape
    _, _, ho, wo = _geometry(x.shape, kernel.shape, padding, strides)
    x = np.ascontiguousarray(numpy_kernels.pad_input(x, kh, kw, padding, strides))
    if cin == 1 and strides == 1:
        return _conv_single_channel(x, kernel, bias, ho, wo), None
    cols = _im2col(x, kh, kw, ho, wo, strides)
    y = cols @ kernel.reshape(kh * kw * cin, cout)
    _add_bias(y, bias)
    return y.reshape(x.shape[0], ho, wo, cout), cols


def conv2d_backward(x, kernel, dy, padding, cache, need_dx=True, strides=1):
    """cache: the im2col matrix from the forward pass, or None after the direct single-channel path."""
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    top, left, ho, wo = _geometry(x.shape, kernel.shape, padding, strides)
    dy2 = dy.reshape(-1, cout)
    if cache is None:  # the direct single-channel path
        xp = np.ascontiguousarray(numpy_kernels.pad_input(x, kh, kw, padding))
        grads = _conv_single_channel_grads(xp, np.ascontiguousarray(dy), kh, kw, _chunks(n))
        dkernel, dbias = _split_kernel_and_bias(grads, kernel.shape, dy.dtype)
    else:
        dkernel = (cache.T @ dy2).reshape(kernel.shape)
        dbias = _column_sums(dy2, _chunks(dy2.shape[0])).astype(dy.dtype)
    if not need_dx:
        return None, dkernel, dbias
    # A C-ordered copy of the (small) transposed kernel: BLAS runs ~1.2x faster on it here.
    dcols = dy2 @ np.ascontiguousarray(kernel.reshape(-1, cout).T)
    return _col2im(dcols, n, h, w, cin, kh, kw, top, left, ho, wo, strides), dkernel, dbias


# -- pooling ----------------------------------------------------------------------------------------
@jit
def _maxpool_backward(dy, argmax, h, w):
    n, ho, wo, c = dy.shape
    dx = np.zeros((n, h, w, c), dtype=dy.dtype)
    for b in prange(n):
        for oy in range(ho):
            for ox in range(wo):
                for ch in range(c):
                    k = argmax[b, oy, ox, ch]
                    dx[b, 2 * oy + k // 2, 2 * ox + k % 2, ch] = dy[b, oy, ox, ch]
    return dx


@jit
def _maxpool(x, ph, pw, sh, sw, top, left, ho, wo):
    """Any pool, stride and padding: the padding is left out of each window."""
    n, h, w, c = x.shape
    y = np.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = np.zeros((n, ho, wo, c), dtype=np.int32)
    for b in prange(n):
        for oy in range(ho):
            for ox in range(wo):
                for ch in range(c):
                    best = -np.inf
                    for k in range(ph * pw):  # row-major; ties keep the first
                        iy, ix = oy * sh + k // pw - top, ox * sw + k % pw - left
                        if 0 <= iy < h and 0 <= ix < w and (x[b, iy, ix, ch] > best or k == 0):
                            best, argmax[b, oy, ox, ch] = x[b, iy, ix, ch], k
                    y[b, oy, ox, ch] = best
    return y, argmax


@jit
def _maxpool_backward_any(dy, argmax, h, w, pw, sh, sw, top, left):
    n, ho, wo, c = dy.shape
    dx = np.zeros((n, h, w, c), dtype=dy.dtype)
    for b in prange(n):  # overlapping windows add up within one image only
        for oy in range(ho):
            for ox in range(wo):
                for ch in range(c):
                    k = argmax[b, oy, ox, ch]
                    dx[b, oy * sh + k // pw - top, ox * sw + k % pw - left, ch] += dy[b, oy, ox, ch]
    return dx


def _is_two_by_two(pool_size, strides, padding):
    return tuple(pool_size) == (2, 2) and tuple(strides) == (2, 2) and padding == "valid"


def _pool_geometry(x_shape, pool_size, strides, padding):
    """(top, left, ho, wo) of a pool's windows."""
    (ho, top, _), (wo, left, _) = (window(size, k, s, padding) for size, k, s in zip(x_shape[1:3], pool_size, strides))
    return top, left, ho, wo


def maxpool2d_forward(x, pool_size=(2, 2), strides=(2, 2), padding="valid"):
    if _is_two_by_two(pool_size, strides, padding):
        c = x.shape[-1]
        return _scale_maxpool(x, np.ones(c, x.dtype), np.zeros(c, x.dtype), False)
    geometry = _pool_geometry(x.shape, pool_size, strides, padding)
    return _maxpool(np.ascontiguousarray(x), *pool_size, *strides, *geometry)


def maxpool2d_backward(dy, argmax, x_shape, pool_size=(2, 2), strides=(2, 2), padding="valid"):
    if _is_two_by_two(pool_size, strides, padding):
        return _maxpool_backward(dy, argmax, x_shape[1], x_shape[2])
    top, left, _, _ = _pool_geometry(x_shape, pool_size, strides, padding)
    dy = np.ascontiguousarray(dy)
    return _maxpool_backward_any(dy, argmax, x_shape[1], x_shape[2], pool_size[1], *strides, top, left)


@jit
def _avgpool(x, ph, pw, sh, sw, top, left, ho, wo):
    """Each window's mean over the pixels inside the image, summed in float64."""
    n, h, w, c = x.shape
    y = np.empty((n, ho, wo, c), dtype=x.dtype)
    for b in prange(n):
        acc = np.empty(c, dtype=np.float64)
        for oy in range(ho):
            for ox in range(wo):
                acc[:] = 0
                count = 0
                for iy in range(max(oy * sh - top, 0), min(oy * sh - top + ph, h)):
                    for ix in range(max(ox * sw - left, 0), min(ox * sw - left + pw, w)):
                        count += 1
                        for ch in range(c):
                            acc[ch] += x[b, iy, ix, ch]
                for ch in range(c):
                    y[b, oy, ox, ch] = acc[ch] / count
    return y


@jit
def _avgpool_backward(dy, h, w, ph, pw, sh, sw, top, left):
    n, ho, wo, c = dy.shape
    dx = np.zeros((n, h, w, c), dtype=dy.dtype)
    for b in prange(n):
        for oy in range(ho):
            for ox in range(wo):
                rows = range(max(oy * sh - top, 0), min(oy * sh - top + ph, h))
                columns = range(max(ox * sw - left, 0), min(ox * sw - left + pw, w))
                count = len(rows) * len(columns)
                for iy in rows:
                    for ix in columns:
                        for ch in range(c):
                            dx[b, iy, ix, ch] += dy[b, oy, ox, ch] / count
    return dx


def avgpool2d_forward(x, pool_size, strides, padding):
    geometry = _pool_geometry(x.shape, pool_size, strides, padding)
    return _avgpool(np.ascontiguousarray(x), *pool_size, *strides, *geometry)


def avgpool2d_backward(dy, x_shape, pool_size, strides, padding):
    top, left, _, _ = _pool_geometry(x_shape, pool_size, strides, padding)
    return _avgpool_backward(np.ascontiguousarray(dy), x_shape[1], x_shape[2], *pool_size, *strides, top, left)


# -- batch normalisation ----------------------------------------------------------------------------
@jit
def _channel_sums(a2, b2, offset, chunks):
    """Per channel, sum(a) and sum(a * (b - offset)), accumulated in float64 (a2, b2: (rows, C)).

    Batch norm needs two such pairs: (x, x - 0) for the moments, (dy, x - mean) for the gradient.
    """
    rows, c = a2.shape
    partial = np.zeros((chunks, 2, c), dtype=np.float64)
    for t in prange(chunks):
        sums = partial[t]  # this chunk's own row: no other thread writes it
        for i in range(t * rows // chunks, (t + 1) * rows // chunks):
            for ch in range(c):
                v = np.float64(a2[i, ch])
                sums[0, ch] += v
                sums[1, ch] += v * (b2[i, ch] - offset[ch])
    return partial.sum(axis=0)


@jit
def _scale_shift(x2, scale, shift):
    rows, c = x2.shape
    y = np.empty_like(x2)
    for i in prange(rows):
        for ch in range(c):
            y[i, ch] = x2[i, ch] * scale[ch] + shift[ch]
    return y


@jit
def _batchnorm_dx(x2, dy2, mean, a, b, k):
    """dx = a*dy - b - k*(x - mean), per channel: the batch-norm backward in one pass."""
    rows, c = x2.shape
    dx = np.empty_like(dy2)
    for i in prange(rows):
        for ch in range(c):
            dx[i, ch] = a[ch] * dy2[i, ch] - b[ch] - k[ch] * (x2[i, ch] - mean[ch])
    return dx


def channel_moments(x):
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    total, total_squares = _channel_sums(x2, x2, np.zeros(c, np.float64), _chunks(x2.shape[0]))
    mean = total / x2.shape[0]
    var = np.maximum(total_squares / x2.shape[0] - mean * mean, 0.0)
    return mean.astype(x.dtype), var.astype(x.dtype)


def scale_shift(x, scale, shift):
    c = x.shape[-1]
    return _scale_shift(x.reshape(-1, c), scale.astype(x.dtype), shift.astype(x.dtype)).reshape(x.shape)


def _batchnorm_coefficients(sums, gamma, inv_std, m, batch_statistics, dtype):
    """From sum(dy) and sum(dy * (x - mean)): dgamma, dbeta and dx = a*dy - b - k*(x - mean)."""
    sum_dy, sum_dy_xc = sums
    inv_std64, gamma64 = inv_std.astype(np.float64), gamma.astype(np.float64)
    dgamma = sum_dy_xc * inv_std64
    a = gamma64 * inv_std64
    if batch_statistics:  # the batch mean and variance move with x as well
        b, k = a * sum_dy / m, a * inv_std64 * dgamma / m
    else:
        b, k = np.zeros_like(a), np.zeros_like(a)
    return dgamma.astype(dtype), sum_dy.astype(dtype), (v.astype(dtype) for v in (a, b, k))


def batchnorm_backward(x, dy, gamma, mean, inv_std, batch_statistics):
    c = x.shape[-1]
    x2, dy2 = x.reshape(-1, c), dy.reshape(-1, c)
    m = x2.shape[0]
    sums = _channel_sums(dy2, x2, mean.astype(np.float64), _chunks(m))
    dgamma, dbeta, (a, b, k) = _batchnorm_coefficients(sums, gamma, inv_std, m, batch_statistics, x.dtype)
    return _batchnorm_dx(x2, dy2, mean, a, b, k).reshape(x.shape), dgamma, dbeta


# -- fused batch norm -> ReLU -> 2x2 max pool ------------------------------------------------------
# In the seed CNN these three run on the largest activations (1024 x 26 x 26 x 64 per step).
# Separately they read or write the full tensor about ten times per step; fused, four.
BLOCKED = 4  # argmax value for a window whose maximum ReLU blocked: no gradient flows back


@jit
def _scale_maxpool(x, scale, shift, relu):
    """maxpool(x * scale + shift), then ReLU if asked: a window whose maximum ReLU stops is BLOCKED."""
    n, h, w, c = x.shape
    ho, wo = h // 2, w // 2
    y = np.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = np.empty((n, ho, wo, c), dtype=np.uint8)
    for b in prange(n):
        for oy in range(ho):
            for ox in range(wo):
                for ch in range(c):
                    best = x[b, 2 * oy, 2 * ox, ch] * scale[ch] + shift[ch]
                    at = 0
                    for k in range(1, 4):  # row-major in the window; ties keep the first, as in TensorFlow
                        v = x[b, 2 * oy + k // 2, 2 * ox + k % 2, ch] * scale[ch] + shift[ch]
                        if v > best:
                            best = v
                            at = k
                    if relu and not best > 0:
                        y[b, oy, ox, ch] = 0
                        argmax[b, oy, ox, ch] = BLOCKED
                    else:
                        y[b, oy, ox, ch] = best
                        argmax[b, oy, ox, ch] = at
    return y, argmax


@jit
def _pooled_grad_sums(x, dy, argmax, mean, chunks):
    """sum(g) and sum(g * (x - mean)) per channel, where g is the gradient that reaches batch norm's
    output: dy at each window's winning position, zero elsewhere."""
    n, ho, wo, c = dy.shape
    partial = np.zeros((chunks, 2, c), dtype=np.float64)
    for t in prange(chunks):
        sums = partial[t]  # this chunk's own row: no other thread writes it
        for b in range(t * n // chunks, (t + 1) * n // chunks):
            for oy in range(ho):
                for ox in range(wo):
                    for ch in range(c):
                        k = argmax[b, oy, ox, ch]
                        if k != BLOCKED:
                            g = np.float64(dy[b, oy, ox, ch])
                            sums[0, ch] += g
                            sums[1, ch] += g * (x[b, 2 * oy + k // 2, 2 * ox + k % 2, ch] - mean[ch])
    return partial.sum(axis=0)


@njit(cache=True, inline="always")
def _image_pooled_batchnorm_dx(x, dy, argmax, mean, a, bb, kk, b, dx):
    """dx (h, w, c) of image b: a*g - bb - kk*(x - mean) with g routed from dy through the pool's argmax."""
    h, w, c = dx.shape
    ho, wo = dy.shape[1], dy.shape[2]
    for iy in range(h):
        for ix in range(w):
            for ch in range(c):
                dx[iy, ix, ch] = -bb[ch] - kk[ch] * (x[b, iy, ix, ch] - mean[ch])
    for oy in range(ho):
        for ox in range(wo):
            for ch in range(c):
                k = argmax[b, oy, ox, ch]
                if k != BLOCKED:
                    dx[2 * oy + k // 2, 2 * ox + k % 2, ch] += a[ch] * dy[b, oy, ox, ch]


@jit
def _pooled_batchnorm_dx(x, dy, argmax, mean, a, bb, kk):
    dx = np.empty_like(x)
    for b in prange(x.shape[0]):
        _image_pooled_batchnorm_dx(x, dy, argmax, mean, a, bb, kk, b, dx[b])
    return dx


@jit
def _conv_block_grads(images, x, dy, argmax, mean, a, bb, kk, kh, kw, chunks):
    """A one-channel conv's kernel and bias gradients straight from the batch norm after it: each
    image's gradient of the conv output lives only in a per-thread buffer (26 x 26 x 64 floats in the
    seed CNN, in L2), never in memory as the whole batch's (177 MB at batch 1,024). The same sums in
    the same order as `_pooled_batchnorm_dx` then `_conv_single_channel_grads`: the same bits."""
    n, h, w, c = x.shape
    partial = np.zeros((chunks, kh * kw + 1, c), dtype=np.float64)
    for t in prange(chunks):
        g = np.empty((h, w, c), dtype=x.dtype)
        for b in range(t * n // chunks, (t + 1) * n // chunks):
            _image_pooled_batchnorm_dx(x, dy, argmax, mean, a, bb, kk, b, g)
            acc = np.zeros((kh * kw, c), dtype=x.dtype)
            _add_kernel_grads(images, b, g, kw, acc, partial[t, kh * kw])
            partial[t, : kh * kw] += acc
    return partial.sum(axis=0)


def scale_relu_maxpool(x, scale, shift):
    """maxpool(relu(x * scale + shift)) and each window's winner (BLOCKED if ReLU stopped it)."""
    return _scale_maxpool(x, scale.astype(x.dtype), shift.astype(x.dtype), True)


def _pooled_batchnorm_coefficients(x, dy, argmax, gamma, mean, inv_std, batch_statistics):
    m = x.size // x.shape[-1]
    sums = _pooled_grad_sums(x, dy, argmax, mean.astype(np.float64), _chunks(x.shape[0]))
    return _batchnorm_coefficients(sums, gamma, inv_std, m, batch_statistics, x.dtype)


def scale_relu_maxpool_backward(x, dy, argmax, gamma, mean, inv_std, batch_statistics):
    """Batch-norm gradients through ReLU and max pool, without materialising either gradient."""
    dgamma, dbeta, (a, b, k) = _pooled_batchnorm_coefficients(x, dy, argmax, gamma, mean, inv_std, batch_statistics)
    return _pooled_batchnorm_dx(x, dy, argmax, mean, a, b, k), dgamma, dbeta


def conv_scale_relu_maxpool_backward(images, kernel_shape, padding, x, dy, argmax, gamma, mean, inv_std,
                                     batch_statistics):  # fmt: skip
    """A one-channel convolution's kernel and bias gradients (it needs no input gradient) and its
    batch norm's gamma and beta gradients, through ReLU and max pool, without the gradient of the
    convolution's output ever in memory."""
    kh, kw = kernel_shape[:2]
    dgamma, dbeta, (a, b, k) = _pooled_batchnorm_coefficients(x, dy, argmax, gamma, mean, inv_std, batch_statistics)
    padded = np.ascontiguousarray(numpy_kernels.pad_input(images, kh, kw, padding))
    grads = _conv_block_grads(padded, x, dy, argmax, mean, a, b, k, kh, kw, _chunks(x.shape[0]))
    return (*_split_kernel_and_bias(grads, kernel_shape, x.dtype), dgamma, dbeta)


# -- activations and dropout ----------------------------------------------------------------------
@jit
def _relu(x):
    flat = x.reshape(-1)
    y = np.empty_like(flat)
    for i in prange(flat.size):
        y[i] = flat[i] if flat[i] > 0 else 0
    return y.reshape(x.shape)


@jit
def _relu_backward(y, dy):
    fy = y.reshape(-1)
    fdy = dy.reshape(-1)
    dx = np.empty_like(fdy)
    for i in prange(fdy.size):
        dx[i] = fdy[i] if fy[i] > 0 else 0
    return dx.reshape(dy.shape)


def relu_forward(x):
    return _relu(np.ascontiguousarray(x))


def relu_backward(y, dy):
    return _relu_backward(np.ascontiguousarray(y), np.ascontiguousarray(dy))


@jit
def _scale_by_mask(x, keep, scale):
    fx = x.reshape(-1)
    fk = keep.reshape(-1)
    y = np.empty_like(fx)
    for i in prange(fx.size):
        y[i] = fx[i] * scale if fk[i] else 0
    return y.reshape(x.shape)


@njit(cache=True, inline="always")
def _splitmix64(z):
    z = (z + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    return z ^ (z >> np.uint64(31))


@jit
def _keep_mask(size, seed, threshold):
    """keep[i] = hash(seed, i) >= threshold: the same mask for any number of threads."""
    keep = np.empty(size, dtype=np.bool_)
    for i in prange(size):
        keep[i] = (_splitmix64(np.uint64(seed) + np.uint64(i)) >> np.uint64(40)) >= threshold
    return keep


def dropout_mask(rng: np.random.Generator, shape: tuple, rate: float) -> np.ndarray:
    """Counter-based: one seed from the model's generator, then every unit hashed in parallel."""
    seed = int(rng.integers(0, 2**63))
    threshold = np.uint64(round(rate * (1 << 24)))  # compared with 24 random bits
    return _keep_mask(int(np.prod(shape)), seed, threshold).reshape(shape)


def dropout_forward(x, keep, rate):
    return _scale_by_mask(np.ascontiguousarray(x), keep, x.dtype.type(1.0 / (1.0 - rate)))


def dropout_backward(dy, keep, rate):
    return _scale_by_mask(np.ascontiguousarray(dy), keep, dy.dtype.type(1.0 / (1.0 - rate)))


# -- optimizer --------------------------------------------------------------------------------------
@jit
def _adam(param, grad, m, v, alpha, one_minus_b1, one_minus_b2, epsilon):
    # One reshape per line: Numba's parallel mode copies reshapes unpacked from a tuple.
    p = param.reshape(-1)
    g = grad.reshape(-1)
    fm = m.reshape(-1)
    fv = v.reshape(-1)
    for i in prange(p.size):
        gi = g[i]
        mi = fm[i] + (gi - fm[i]) * one_minus_b1
        vi = fv[i] + (gi * gi - fv[i]) * one_minus_b2
        fm[i] = mi
        fv[i] = vi
        p[i] -= alpha * mi / (np.sqrt(vi) + epsilon)


def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
    """In place, one pass over each parameter (m, v and the weight updated together). Every
    operand has the weights' type, as in Keras: a Python `1 - beta_1` inside the kernel would be
    float64 and make the whole update float64 and scalar, which vectorises far worse."""
    dt = param.dtype.type
    _adam(param, np.ascontiguousarray(grad), m, v, dt(alpha), dt(1 - beta_1), dt(1 - beta_2), dt(epsilon))


# -- geometric warps (the augmentation layers) -----------------------------------------------------
FILL_CODES = {mode: code for code, mode in enumerate(FILL_MODES)}


_fold = njit(cache=True, inline="always")(fold)


@njit(cache=True, inline="always")
def _source(transforms, displacement, b, i, j, nearest):
    """Where output pixel (i, j) of image b reads: first row and column, taps per axis, fractions."""
    xs = transforms[b, 0] * j + transforms[b, 1] * i + transforms[b, 2]
    ys = transforms[b, 3] * j + transforms[b, 4] * i + transforms[b, 5]
    if displacement.shape[0]:  # an elastic warp: each pixel's own displacement on top
        ys, xs = ys + displacement[b, 0, i, j], xs + displacement[b, 1, i, j]
    if nearest:
        return int(math.floor(ys + 0.5)), int(math.floor(xs + 0.5)), 1, 0.0, 0.0
    return int(math.floor(ys)), int(math.floor(xs)), 2, ys - math.floor(ys), xs - math.floor(xs)


@jit
def _warp(x, transforms, displacement, channels, mode, fill_value, nearest, out):
    """x and out are (images x channels, height, width) planes: no channel loop inside the pixel
    loop, whose taps are then written out."""
    planes, h, w = x.shape
    for q in prange(planes):
        b = q // channels
        for i in range(h):
            for j in range(w):
                r0, c0, taps, fy, fx = _source(transforms, displacement, b, i, j, nearest)
                ra, ca = _fold(r0, h, mode), _fold(c0, w, mode)
                total = 0.0  # float64, the taps added in the reference's order, written once
                if taps == 1:
                    total += x[q, ra, ca] if ra >= 0 and ca >= 0 else fill_value
                else:
                    rb, cb = _fold(r0 + 1, h, mode), _fold(c0 + 1, w, mode)
                    total += (1.0 - fy) * (1.0 - fx) * (x[q, ra, ca] if ra >= 0 and ca >= 0 else fill_value)
                    total += (1.0 - fy) * fx * (x[q, ra, cb] if ra >= 0 and cb >= 0 else fill_value)
                    total += fy * (1.0 - fx) * (x[q, rb, ca] if rb >= 0 and ca >= 0 else fill_value)
                    total += fy * fx * (x[q, rb, cb] if rb >= 0 and cb >= 0 else fill_value)
                out[q, i, j] = total


@jit
def _warp_backward(dy, transforms, displacement, mode, nearest, dx):
    n, h, w, c = dy.shape
    for b in prange(n):  # each image scatters into its own gradient only: no two threads collide
        for i in range(h):
            for j in range(w):
                r0, c0, taps, fy, fx = _source(transforms, displacement, b, i, j, nearest)
                for dr in range(taps):
                    rr = _fold(r0 + dr, h, mode)
                    for dc in range(taps):
                        cc = _fold(c0 + dc, w, mode)
                        if rr >= 0 and cc >= 0:
                            weight = (fy if dr else 1.0 - fy) * (fx if dc else 1.0 - fx)
                            for k in range(c):
                                dx[b, rr, cc, k] += weight * dy[b, i, j, k]


NO_DISPLACEMENT = np.zeros((0, 2, 1, 1))


def _arrays(transforms, displacement):
    field = NO_DISPLACEMENT if displacement is None else np.ascontiguousarray(displacement, np.float64)
    return np.ascontiguousarray(transforms, np.float64), field


def _planes(x):
    """(n, h, w, c) as (n x c, h, w) planes: a view for one channel."""
    n, h, w, c = x.shape
    return np.ascontiguousarray(np.moveaxis(x, 3, 1)).reshape(n * c, h, w)


def _unplanes(planes, shape):
    n, h, w, c = shape
    return np.ascontiguousarray(np.moveaxis(planes.reshape(n, c, h, w), 1, 3))


def warp(x, transforms, displacement, fill_mode, fill_value, interpolation):
    """One parallel pass over the batch's planes; each output value's taps are summed in float64."""
    planes = _planes(x)
    out = np.empty_like(planes)
    _warp(planes, *_arrays(transforms, displacement), x.shape[3], FILL_CODES[fill_mode], float(fill_value),
          interpolation == "nearest", out)  # fmt: skip
    return _unplanes(out, x.shape)


def warp_backward(dy, transforms, displacement, fill_mode, interpolation):
    dx = np.zeros(dy.shape, np.float64)
    _warp_backward(np.ascontiguousarray(dy), *_arrays(transforms, displacement), FILL_CODES[fill_mode],
                   interpolation == "nearest", dx)  # fmt: skip
    return dx.astype(dy.dtype)


def bend(x, images, displacement, fill_mode, fill_value, interpolation, low, high):
    return numpy_kernels.bend_with(warp, x, images, displacement, fill_mode, fill_value, interpolation, low, high)


def bend_backward(dy, images, displacement, fill_mode, interpolation, inside):
    return numpy_kernels.bend_backward_with(warp_backward, dy, images, displacement, fill_mode, interpolation, inside)


# -- stroke width (the RandomStrokeWidth layer) ----------------------------------------------------
@jit
def _stroke_width(x, amounts, channels, out, taps):
    """On (images x channels, height, width) planes, as `_warp`."""
    planes, h, w = x.shape
    for q in prange(planes):
        a = amounts[q // channels]
        sign = -1.0 if a < 0 else 1.0
        for i in range(h):
            for j in range(w):
                best, where = -np.inf, 4
                for tap in range(9):  # row-major; a strict > keeps the first of equal values
                    r, col = i + tap // 3 - 1, j + tap % 3 - 1
                    if 0 <= r < h and 0 <= col < w and sign * x[q, r, col] > best:
                        best, where = sign * x[q, r, col], tap
                out[q, i, j] = x[q, i, j] + abs(a) * (sign * best - x[q, i, j])
                taps[q, i, j] = where


@jit
def _stroke_width_backward(dy, amounts, channels, taps, dx):
    planes, h, w = dy.shape
    for q in prange(planes):  # each plane scatters into its own gradient only
        a = abs(amounts[q // channels])
        for i in range(h):
            for j in range(w):
                tap = taps[q, i, j]
                dx[q, i, j] += (1.0 - a) * dy[q, i, j]
                dx[q, i + tap // 3 - 1, j + tap % 3 - 1] += a * dy[q, i, j]


def stroke_width(x, amounts):
    planes = _planes(x)
    out, taps = np.empty_like(planes), np.empty(planes.shape, np.int8)
    _stroke_width(planes, np.ascontiguousarray(amounts, np.float64), x.shape[3], out, taps)
    return _unplanes(out, x.shape), _unplanes(taps, x.shape)  # taps laid out as the reference's


def stroke_width_backward(dy, amounts, taps):
    planes = _planes(dy)
    dx = np.zeros(planes.shape, np.float64)
    _stroke_width_backward(planes, np.ascontiguousarray(amounts, np.float64), dy.shape[3], _planes(taps), dx)
    return _unplanes(dx, dy.shape).astype(dy.dtype)
