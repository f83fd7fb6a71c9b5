"""Winograd F(4x4, 3x3): a 3x3 convolution with 4x fewer multiplies (Lavin & Gray, 2016).

A 6x6 input tile d and a 3x3 kernel g become V = Bt d B and U = G g Gt; their product at each of
the 36 positions, summed over input channels, is 36 matrix products (BLAS); At M A is the 4x4
output tile. Two of training's three convolutions run this way:

- forward: the input's tiles with the kernel;
- kernel gradient: dU = sum over tiles of V * (A dy At), then dg = Gt dU G (the adjoint of the
  forward's transforms), from the same input tiles.

The input gradient stays with im2col's products (numba_kernels): as a Winograd "full" correlation
of dy it pads 11x11 to 16x16 tiles and multiplies into only 64 output channels, and measured
slower than the direct method there.

Tiles are read with clamped indices times a 0/1 factor, so an image's edge (and 'same' padding)
needs no padded copy. The batch goes through in chunks of images whose transformed tiles fill at
most CHUNK_FLOATS, which keeps memory below the im2col matrix the direct method writes. Error
against float64: about 1e-6 of the output's scale in float32 (tests/test_kernels.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

CHUNK_FLOATS = 1 << 26  # 256 MiB of float32 per transformed-tile array
G = np.array([[6, 0, 0], [-4, -4, -4], [-4, 4, -4], [1, 2, 4], [1, -2, 4], [0, 0, 24]]) / 24


def kernel_tiles(kernel: np.ndarray) -> np.ndarray:
    """U = G g Gt for every (cin, cout): (3, 3, cin, cout) -> (36, cin, cout)."""
    u = np.einsum("ai,ijck,bj->abck", G, kernel.astype(np.float64), G)
    return np.ascontiguousarray(u.reshape(36, *kernel.shape[2:]), dtype=kernel.dtype)


# float32 constants: an integer literal would turn float32 arithmetic into float64
TWO, FOUR, FIVE, EIGHT = (np.float32(v) for v in (2, 4, 5, 8))


@njit(cache=True, inline="always")
def _bt(d0, d1, d2, d3, d4, d5):
    """Bt times a column of six."""
    return (
        FOUR * d0 - FIVE * d2 + d4,
        -FOUR * d1 - FOUR * d2 + d3 + d4,
        FOUR * d1 - FOUR * d2 - d3 + d4,
        -TWO * d1 - d2 + TWO * d3 + d4,
        TWO * d1 - d2 - TWO * d3 + d4,
        FOUR * d1 - FIVE * d3 + d5,
    )


@njit(cache=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5):
    """At times a column of six."""
    return (
        m0 + m1 + m2 + m3 + m4,
        m1 - m2 + TWO * m3 - TWO * m4,
        m1 + m2 + FOUR * m3 + FOUR * m4,
        m1 - m2 + EIGHT * m3 - EIGHT * m4 + m5,
    )


@njit(cache=True, inline="always")
def _a(g0, g1, g2, g3):
    """A (= At transposed) times a column of four."""
    return (
        g0,
        g0 + g1 + g2 + g3,
        g0 - g1 + g2 - g3,
        g0 + TWO * g1 + FOUR * g2 + EIGHT * g3,
        g0 - TWO * g1 + FOUR * g2 - EIGHT * g3,
        g3,
    )


@njit(cache=True, inline="always")
def _edges(start, size, count):
    """`count` indices from `start`, clamped into 0..size-1, and 1 where inside, 0 where not."""
    index = np.empty(count, np.int64)
    inside = np.empty(count, np.float32)
    for i in range(count):
        index[i] = min(max(start + i, 0), size - 1)
        inside[i] = 1.0 if 0 <= start + i < size else 0.0
    return index, inside


@njit(parallel=True, cache=True, nogil=True)
def input_tiles(x, first, images, th, tw, shift_y, shift_x, out):
    """out[p, t, c] = (Bt d B)[p], d the 6x6 tile at (4ty + shift_y, 4tx + shift_x) of x[first + ...]."""
    _, h, w, c = x.shape
    for row in prange(images * th):
        b, ty = first + row // th, row % th
        ys, fy = _edges(4 * ty + shift_y, h, 6)
        e = np.empty((6, 6, c), x.dtype)
        for tx in range(tw):
            xs, fx = _edges(4 * tx + shift_x, w, 6)
            t = row * tw + tx
            for j in range(6):  # e = Bt d, column by column, all channels at once
                xj, f = xs[j], fx[j]
                f0, f1, f2, f3, f4, f5 = fy[0] * f, fy[1] * f, fy[2] * f, fy[3] * f, fy[4] * f, fy[5] * f
                y0, y1, y2, y3, y4, y5 = ys[0], ys[1], ys[2], ys[3], ys[4], ys[5]
                for ch in range(c):
                    e[0, j, ch], e[1, j, ch], e[2, j, ch], e[3, j, ch], e[4, j, ch], e[5, j, ch] = _bt(
                        x[b, y0, xj, ch] * f0,
                        x[b, y1, xj, ch] * f1,
                        x[b, y2, xj, ch] * f2,
                        x[b, y3, xj, ch] * f3,
                        x[b, y4, xj, ch] * f4,
                        x[b, y5, xj, ch] * f5,
                    )
            for i in range(6):  # V = e B, row by row
                for ch in range(c):
                    v0, v1, v2, v3, v4, v5 = _bt(
                        e[i, 0, ch], e[i, 1, ch], e[i, 2, ch], e[i, 3, ch], e[i, 4, ch], e[i, 5, ch]
                    )
                    out[6 * i, t, ch], out[6 * i + 1, t, ch], out[6 * i + 2, t, ch] = v0, v1, v2
                    out[6 * i + 3, t, ch], out[6 * i + 4, t, ch], out[6 * i + 5, t, ch] = v3, v4, v5


@njit(parallel=True, cache=True, nogil=True)
def gradient_tiles(dy, first, images, th, tw, out):
    """out[p, t, k] = (A g At)[p], g the 4x4 block of dy at (4ty, 4tx), zero outside dy."""
    _, ho, wo, k = dy.shape
    for row in prange(images * th):
        b, ty = first + row // th, row % th
        ys, fy = _edges(4 * ty, ho, 4)
        s = np.empty((6, 4, k), dy.dtype)
        for tx in range(tw):
            xs, fx = _edges(4 * tx, wo, 4)
            t = row * tw + tx
            for j in range(4):  # s = A g, column by column, all channels at once
                xj, f = xs[j], fx[j]
                f0, f1, f2, f3 = fy[0] * f, fy[1] * f, fy[2] * f, fy[3] * f
                y0, y1, y2, y3 = ys[0], ys[1], ys[2], ys[3]
                for ch in range(k):
                    s[0, j, ch], s[1, j, ch], s[2, j, ch], s[3, j, ch], s[4, j, ch], s[5, j, ch] = _a(
                        dy[b, y0, xj, ch] * f0, dy[b, y1, xj, ch] * f1, dy[b, y2, xj, ch] * f2, dy[b, y3, xj, ch] * f3
                    )
            for i in range(6):  # z = s At, row by row
                for ch in range(k):
                    z0, z1, z2, z3, z4, z5 = _a(s[i, 0, ch], s[i, 1, ch], s[i, 2, ch], s[i, 3, ch])
                    out[6 * i, t, ch], out[6 * i + 1, t, ch], out[6 * i + 2, t, ch] = z0, z1, z2
                    out[6 * i + 3, t, ch], out[6 * i + 4, t, ch], out[6 * i + 5, t, ch] = z3, z4, z5


@njit(parallel=True, cache=True, nogil=True)
def output_tiles(m, first, images, th, tw, bias, y):
    """y[first + ..., 4ty + i, 4tx + j, k] = (At M A)[i, j] + bias[k], inside y only."""
    _, ho, wo, k = y.shape
    for row in prange(images * th):
        b, ty = first + row // th, row % th
        rows = min(4, ho - 4 * ty)
        r = np.empty((4, 6, k), m.dtype)
        o = np.empty((4, k), m.dtype)
        for tx in range(tw):
            t = row * tw + tx
            columns = min(4, wo - 4 * tx)
            for j in range(6):  # r = At M, column by column, all channels at once
                for ch in range(k):
                    r[0, j, ch], r[1, j, ch], r[2, j, ch], r[3, j, ch] = _at(
                        m[j, t, ch],
                        m[6 + j, t, ch],
                        m[12 + j, t, ch],
                        m[18 + j, t, ch],
                        m[24 + j, t, ch],
                        m[30 + j, t, ch],
                    )
            for i in range(rows):  # y = r A, row by row
                for ch in range(k):
                    o[0, ch], o[1, ch], o[2, ch], o[3, ch] = _at(
                        r[i, 0, ch], r[i, 1, ch], r[i, 2, ch], r[i, 3, ch], r[i, 4, ch], r[i, 5, ch]
                    )
                for j in range(columns):
                    for ch in range(k):
                        y[b, 4 * ty + i, 4 * tx + j, ch] = o[j, ch] + bias[ch]


def _tiles(ho: int, wo: int) -> tuple[int, int]:
    return -(-ho // 4), -(-wo // 4)


def _chunk(n: int, tiles_per_image: int, channels: int) -> int:
    return max(1, min(n, CHUNK_FLOATS // (36 * tiles_per_image * channels)))


def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, top: int, left: int, out_hw: tuple[int, int]):
    """A stride-1 3x3 convolution of x (N, H, W, C) with `top`/`left` rows/columns of zero padding
    before the image and an (ho, wo) output."""
    n, _, _, cin = x.shape
    u = kernel_tiles(kernel)
    cout = u.shape[2]
    th, tw = _tiles(*out_hw)
    y = np.empty((n, *out_hw, cout), dtype=x.dtype)
    step = _chunk(n, th * tw, max(cin, cout))
    for first in range(0, n, step):
        images = min(step, n - first)
        v = np.empty((36, images * th * tw, cin), dtype=x.dtype)
        input_tiles(x, first, images, th, tw, -top, -left, v)
        output_tiles(np.matmul(v, u), first, images, th, tw, bias, y)
    return y


def kernel_gradient(x: np.ndarray, dy: np.ndarray, top: int, left: int) -> np.ndarray:
    """dkernel of `forward` (dbias is a column sum of dy, left to the caller)."""
    n, _, _, cin = x.shape
    _, ho, wo, cout = dy.shape
    th, tw = _tiles(ho, wo)
    du = np.zeros((36, cin, cout), dtype=np.float64)
    step = _chunk(n, th * tw, max(cin, cout))
    for first in range(0, n, step):
        images = min(step, n - first)
        v = np.empty((36, images * th * tw, cin), dtype=x.dtype)
        z = np.empty((36, images * th * tw, cout), dtype=x.dtype)
        input_tiles(x, first, images, th, tw, -top, -left, v)
        gradient_tiles(dy, first, images, th, tw, z)
        du += np.matmul(v.transpose(0, 2, 1), z)
    dkernel = np.einsum("ai,abck,bj->ijck", G, du.reshape(6, 6, cin, cout), G)
    return dkernel.astype(x.dtype)
