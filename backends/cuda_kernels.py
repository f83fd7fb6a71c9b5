"""CUDA kernels: the same functions as `numpy_kernels`, on an NVIDIA GPU, written with numba-cuda.

Arrays live on the device from `asarray` to `to_numpy`; every kernel below reads and writes device
arrays only, so a training step never copies a tensor to the host (the loss and the count of
correct answers come back as one number each). The matrix products (dense layers, im2col
convolution) share one tiled product kernel that stages blocks of both operands in shared memory;
everything else is one pass over memory per kernel, each thread writing its own outputs, so results
do not depend on the launch shape or on thread timing (no atomics).

Without a GPU, numba-cuda's simulator (`NUMBA_ENABLE_CUDASIM=1`) runs the same kernels on the CPU
in Python: the tests run it on small shapes, with smaller tiles and launches (`SIMULATED`).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from collections import defaultdict

import numba
import numpy as np
from numba import cuda  # without numba-cuda: an ImportError, which names numnet[cuda]

from numnet.backends.interface import FILL_MODES, fold, window
from numnet.errors import BackendUnavailable

NAME = "cuda"


def _simulated() -> bool:
    """NUMBA_ENABLE_CUDASIM, as numba-cuda read it (older releases keep it in numba's own config)."""
    try:
        from numba.cuda import config
    except ImportError:
        config = numba.config
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


SIMULATED = _simulated()

if getattr(cuda, "implementation", "NVIDIA") == "Built-in":  # Numba's own, deprecated CUDA target
    raise ImportError("numba.cuda is Numba's built-in target, not numba-cuda")

if not cuda.is_available():
    raise BackendUnavailable(
        "backend 'cuda' needs an NVIDIA GPU with its driver, and numba-cuda found none "
        "(set NUMBA_ENABLE_CUDASIM=1 to run its kernels, slowly, in numba-cuda's simulator instead)"
    )


def _device_name() -> str:
    name = getattr(cuda.get_current_device(), "name", b"numba-cuda's simulator")
    return "GPU: " + (name.decode() if isinstance(name, bytes) else str(name))


DEVICE = _device_name()  # where this module computes, as a model's `device` says it

# Launch shapes. The simulator runs each thread as a Python thread, so there it uses few threads,
# each looping over many elements (every kernel is written with grid-stride loops for that), and a
# product block of one thread (tests/test_cuda.py also runs the product with 2 x 2 threads).
THREADS = 2 if SIMULATED else 256
MAX_BLOCKS = 2 if SIMULATED else 8192
TILE = 1 if SIMULATED else 16  # the product's thread block is TILE x TILE ...
PER_THREAD = 8 if SIMULATED else 4  # ... each thread computing PER_THREAD x PER_THREAD outputs
REDUCTION_CHUNKS = 4 if SIMULATED else 512  # fixed, so partial sums (and rounding) never vary
# Who computes the matrix products: numnet's own kernel below, or cuBLAS through CuPy ("cupy"),
# which shares device arrays with numba-cuda (benchmarks/gpu.py times both).
PRODUCTS = os.environ.get("NUMNET_CUDA_PRODUCTS", "numnet")
if PRODUCTS not in ("numnet", "cupy"):
    raise BackendUnavailable(f"NUMNET_CUDA_PRODUCTS must be 'numnet' or 'cupy', got {PRODUCTS!r}")
if PRODUCTS == "cupy":
    if SIMULATED:
        raise BackendUnavailable("NUMNET_CUDA_PRODUCTS=cupy needs a real GPU: CuPy does not run in the simulator")
    try:
        import cupy
    except ImportError as error:
        raise BackendUnavailable(f"NUMNET_CUDA_PRODUCTS=cupy needs CuPy ({error}); pip install cupy-cuda12x") from error


class BlockCache:
    """Freed device blocks kept by size for the next allocation of that size.

    A training step allocates the same activations every step; handing the same blocks back saves
    a cuMemAlloc and cuMemFree per array per step. Sizes are rounded up to a power of two above
    1 MiB (a multiple of 512 bytes below), so batches of slightly different sizes share blocks.
    """

    def __init__(self) -> None:
        self.free: dict[int, list] = defaultdict(list)

    @staticmethod
    def rounded(size: int) -> int:
        if size <= 1 << 20:
            return max(512, -(-size // 512) * 512)
        return 1 << (size - 1).bit_length()

    def take(self, size: int):
        """A cached block of this (rounded) size, or None."""
        blocks = self.free.get(size)
        return blocks.pop() if blocks else None

    def give(self, size: int, block) -> None:
        self.free[size].append(block)

    def drain(self) -> list:
        """Every cached block, removed from the cache (to be freed when memory runs out)."""
        blocks = [block for same_size in self.free.values() for block in same_size]
        self.free.clear()
        return blocks


def _install_caching_allocator() -> None:
    """numba-cuda's allocator with a BlockCache in front (numba-cuda's external memory plugin API)."""
    import weakref

    from numba.cuda.cudadrv import driver

    class CachingMemoryManager(driver.NumbaCUDAMemoryManager):
        def initialize(self) -> None:
            super().initialize()
            self.cache = BlockCache()

        def memalloc(self, size):
            size = BlockCache.rounded(size)
            pointer = self.cache.take(size)
            if pointer is None:
                pointer = self._attempt_allocation(lambda: self._allocate(size))
            cache = self.cache
            return driver.MemoryPointer(
                weakref.proxy(self.context), pointer, size, finalizer=lambda: cache.give(size, pointer)
            )

        def _allocate(self, size):
            try:
                return driver.driver.cuMemAlloc(size)
            except driver.CudaAPIError:  # out of memory: give the cached blocks back, then try again
                for pointer in self.cache.drain():
                    driver.driver.cuMemFree(pointer)
                return driver.driver.cuMemAlloc(size)

    cuda.set_memory_manager(CachingMemoryManager)


if not SIMULATED:
    _install_caching_allocator()


def _launch(kernel, count: int):
    """`kernel` configured for a grid-stride loop over `count` items."""
    return _configured(kernel, max(1, min(MAX_BLOCKS, -(-count // THREADS))), THREADS)


def _configured(kernel, blocks, threads):
    if not SIMULATED:
        return kernel[blocks, threads]
    return functools.partial(_simulate, kernel[blocks, threads])


def _simulate(configured, *args) -> None:
    """The simulator's threads hand over at `cuda.syncthreads()` only when Python switches threads:
    with Python's default interval each handover waits milliseconds, so switch far more often while
    a kernel runs."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with warnings.catch_warnings():  # its integers are NumPy's, which warn where a GPU's wrap (the masks' hash)
            warnings.filterwarnings("ignore", "overflow encountered in scalar", RuntimeWarning)
            configured(*args)
    finally:
        sys.setswitchinterval(interval)


def _is_device(x) -> bool:
    return hasattr(x, "copy_to_host")  # numba-cuda's device arrays (and the simulator's)


def _device(x, dtype=None):
    """A device array: host data (NumPy inputs such as augmentation draws) moved in once."""
    return asarray(x, dtype if dtype is not None else np.asarray(x).dtype) if not _is_device(x) else x


def _empty(shape, dtype):
    return cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def _flat(x):
    return x.reshape(x.size)


# -- arrays: creation and transfer -----------------------------------------------------------------
def asarray(x, dtype):
    dtype = np.dtype(dtype)
    if _is_device(x):
        if x.dtype == dtype:
            return x
        return cuda.to_device(np.ascontiguousarray(x.copy_to_host(), dtype))
    return cuda.to_device(np.ascontiguousarray(x, dtype))


def to_numpy(x) -> np.ndarray:
    return x.copy_to_host() if _is_device(x) else np.asarray(x)


@cuda.jit(cache=True)
def _fill(out, value):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = value


def _filled(shape, dtype, value):
    out = _empty(shape, dtype)
    if out.size:
        _launch(_fill, out.size)(_flat(out), value)
    return out


def zeros(shape, dtype):
    return _filled(shape, dtype, 0)


def ones(shape, dtype):
    return _filled(shape, dtype, 1)


def copy(x):
    out = _empty(x.shape, x.dtype)
    out.copy_to_device(x)
    return out


def assign(target, source) -> None:
    target.copy_to_device(source)


def reshape(x, shape):
    return x.reshape(tuple(int(s) for s in shape))


@cuda.jit(cache=True)
def _one_hot(labels, out):
    classes = out.shape[1]
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i // classes, i % classes] = 1 if labels[i // classes] == i % classes else 0


def one_hot(labels, classes, dtype):
    out = _empty((labels.shape[0], classes), dtype)
    _launch(_one_hot, out.size)(labels, out)
    return out


@cuda.jit(cache=True)
def _correct(scores, labels, flags):
    rows, classes = scores.shape
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        best = 0
        for j in range(1, classes):
            if scores[r, j] > scores[r, best]:
                best = j
        flags[r] = 1 if best == labels[r] else 0


def count_correct(scores, labels) -> int:
    flags = _empty((scores.shape[0],), np.int32)
    _launch(_correct, scores.shape[0])(scores, labels, flags)
    return int(flags.copy_to_host().sum())


# -- the product: C = op(A) @ op(B) (+ bias), op a transpose or not ---------------------------------
def _product_kernel(dtype, tile: int = TILE, per_thread: int = PER_THREAD):
    """One tiled product kernel per data type (the shared tiles' type is fixed when compiled): a
    block of tile x tile threads computes a (tile * per_thread)-square block of C, staging
    tile-deep slices of A and B in shared memory."""
    block = tile * per_thread
    dtype = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def product(a, b, bias, c, transpose_a, transpose_b, add_bias):
        m, n = c.shape
        k = a.shape[0] if transpose_a else a.shape[1]
        tile_a = cuda.shared.array((tile, block), dtype)  # [k, row]
        tile_b = cuda.shared.array((tile, block), dtype)  # [k, column]
        acc = cuda.local.array((per_thread, per_thread), dtype)
        left = cuda.local.array(per_thread, dtype)
        right = cuda.local.array(per_thread, dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        me, team = ty * tile + tx, tile * tile
        for row_block in range(cuda.blockIdx.y, (m + block - 1) // block, cuda.gridDim.y):
            for column_block in range(cuda.blockIdx.x, (n + block - 1) // block, cuda.gridDim.x):
                row0, column0 = row_block * block, column_block * block
                for i in range(per_thread):
                    for j in range(per_thread):
                        acc[i, j] = 0
                for k0 in range(0, k, tile):
                    for e in range(me, tile * block, team):  # neighbouring threads read neighbouring memory
                        if transpose_a:
                            kk, r = e // block, e % block
                        else:
                            r, kk = e // tile, e % tile
                        inside = row0 + r < m and k0 + kk < k
                        if transpose_a:
                            tile_a[kk, r] = a[k0 + kk, row0 + r] if inside else 0
                        else:
                            tile_a[kk, r] = a[row0 + r, k0 + kk] if inside else 0
                        if transpose_b:
                            q, kk = e // tile, e % tile
                        else:
                            kk, q = e // block, e % block
                        inside = column0 + q < n and k0 + kk < k
                        if transpose_b:
                            tile_b[kk, q] = b[column0 + q, k0 + kk] if inside else 0
                        else:
                            tile_b[kk, q] = b[k0 + kk, column0 + q] if inside else 0
                    cuda.syncthreads()
                    for kk in range(tile):
                        for i in range(per_thread):
                            left[i] = tile_a[kk, ty + i * tile]
                        for j in range(per_thread):
                            right[j] = tile_b[kk, tx + j * tile]
                        for i in range(per_thread):
                            for j in range(per_thread):
                                acc[i, j] += left[i] * right[j]
                    cuda.syncthreads()
                for i in range(per_thread):
                    r = row0 + ty + i * tile
                    for j in range(per_thread):
                        q = column0 + tx + j * tile
                        if r < m and q < n:
                            c[r, q] = acc[i, j] + bias[q] if add_bias else acc[i, j]

    return product


PRODUCT = {np.dtype(np.float32): _product_kernel(np.float32), np.dtype(np.float64): _product_kernel(np.float64)}


def _product(a, b, transpose_a=False, transpose_b=False, bias=None):
    if PRODUCTS == "cupy":
        return _cublas_product(a, b, transpose_a, transpose_b, bias)
    m = a.shape[1] if transpose_a else a.shape[0]
    n = b.shape[0] if transpose_b else b.shape[1]
    c = _empty((m, n), a.dtype)
    block = TILE * PER_THREAD
    blocks = (min(-(-n // block), MAX_BLOCKS), min(-(-m // block), 65535 if not SIMULATED else MAX_BLOCKS))
    with_bias = bias is not None
    _configured(PRODUCT[np.dtype(a.dtype)], blocks, (TILE, TILE))(
        a, b, bias if with_bias else c.reshape(c.size), c, transpose_a, transpose_b, with_bias
    )
    return c


def _cublas_product(a, b, transpose_a, transpose_b, bias):
    """The same product by cuBLAS, on the same (default) stream, so no synchronisation is needed."""
    left, right = cupy.asarray(a), cupy.asarray(b)
    c = (left.T if transpose_a else left) @ (right.T if transpose_b else right)
    if bias is not None:
        c += cupy.asarray(bias)
    return cuda.as_cuda_array(c, sync=False)


# -- sums over rows, per column (bias gradients, batch-norm statistics) ------------------------------
SUM, SQUARED_DEVIATION, PRODUCT_WITH_DEVIATION = 0, 1, 2


@cuda.jit(cache=True)
def _column_partials(a, b, mean, mode, partials):
    """partials[chunk, col]: a fixed share of the rows of (rows, columns) `a`, summed in float64."""
    rows, columns = a.shape
    chunks = partials.shape[0]
    per_chunk = (rows + chunks - 1) // chunks
    for t in range(cuda.grid(1), chunks * columns, cuda.gridsize(1)):
        chunk, col = t // columns, t % columns
        total = 0.0
        for r in range(chunk * per_chunk, min(rows, (chunk + 1) * per_chunk)):
            if mode == SUM:
                total += a[r, col]
            elif mode == SQUARED_DEVIATION:
                d = a[r, col] - mean[col]
                total += d * d
            else:
                total += a[r, col] * (b[r, col] - mean[col])
        partials[chunk, col] = total


@cuda.jit(cache=True)
def _sum_partials(partials, out):
    chunks, columns = partials.shape
    for col in range(cuda.grid(1), columns, cuda.gridsize(1)):
        total = 0.0
        for chunk in range(chunks):
            total += partials[chunk, col]
        out[col] = total


def _column_sums(a2, mode=SUM, b2=None, mean=None):
    """float64 (columns,) sums over the rows of a (rows, columns) device array."""
    rows, columns = a2.shape
    partials = _empty((max(1, min(rows, REDUCTION_CHUNKS)), columns), np.float64)
    out = _empty((columns,), np.float64)
    _launch(_column_partials, partials.size)(a2, a2 if b2 is None else b2, out if mean is None else mean, mode,
                                             partials)  # fmt: skip
    _launch(_sum_partials, columns)(partials, out)
    return out


@cuda.jit(cache=True)
def _cast(source, out, divisor):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = source[i] / divisor


def _cast_to(source, dtype, divisor=1.0):
    out = _empty(source.shape, dtype)
    _launch(_cast, out.size)(_flat(source), _flat(out), divisor)
    return out


def _rows(x):
    return x.reshape(x.size // x.shape[x.ndim - 1], x.shape[x.ndim - 1])


# -- dense and convolution -------------------------------------------------------------------------
def dense_forward(x, kernel, bias):
    return _product(x, kernel, bias=bias)


def dense_backward(x, kernel, dy, need_dx=True):
    dx = _product(dy, kernel, transpose_b=True) if need_dx else None
    return dx, _product(x, dy, transpose_a=True), _cast_to(_column_sums(dy), dy.dtype)


@cuda.jit(cache=True)
def _im2col(x, kh, kw, stride, top, left, ho, wo, cols):
    n, h, w, c = x.shape
    width = cols.shape[1]
    for e in range(cuda.grid(1), cols.size, cuda.gridsize(1)):
        r, q = e // width, e % width
        b, rest = r // (ho * wo), r % (ho * wo)
        i, j, ci = q // (kw * c), (q // c) % kw, q % c
        y, xx = (rest // wo) * stride + i - top, (rest % wo) * stride + j - left
        cols[r, q] = x[b, y, xx, ci] if 0 <= y < h and 0 <= xx < w else 0


@cuda.jit(device=True)
def _window_of(position, before, tap, stride, windows):
    """Along one axis: the window whose tap number `tap` reads `position` (with `before` padding), or
    -1 when none does. The gradients gather through it: each pixel from every window that read it."""
    start = position + before - tap
    if start < 0 or start % stride or start // stride >= windows:
        return -1
    return start // stride


@cuda.jit(cache=True)
def _col2im(dcols, kh, kw, stride, top, left, ho, wo, dx):
    """Each input pixel gathers what every window that read it sends back, windows in row-major order."""
    n, h, w, c = dx.shape
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        ci, xx, y, b = e % c, (e // c) % w, (e // (c * w)) % h, e // (c * w * h)
        total = 0.0  # float64: the windows' shares added without float32 rounding
        for i in range(kh):
            oy = _window_of(y, top, i, stride, ho)
            for j in range(kw):
                ox = _window_of(xx, left, j, stride, wo)
                if oy >= 0 and ox >= 0:
                    total += dcols[(b * ho + oy) * wo + ox, (i * kw + j) * c + ci]
        dx[b, y, xx, ci] = total


def _conv_geometry(x_shape, kernel_shape, padding, stride):
    kh, kw = kernel_shape[:2]
    (ho, top, _), (wo, left, _) = window(x_shape[1], kh, stride, padding), window(x_shape[2], kw, stride, padding)
    return kh, kw, ho, wo, top, left


def conv2d_forward(x, kernel, bias, padding, strides=1):
    """im2col, then the product: returns y and the columns, which the backward pass reuses."""
    kh, kw, ho, wo, top, left = _conv_geometry(x.shape, kernel.shape, padding, strides)
    cin, cout = kernel.shape[2:]
    cols = _empty((x.shape[0] * ho * wo, kh * kw * cin), x.dtype)
    _launch(_im2col, cols.size)(x, kh, kw, strides, top, left, ho, wo, cols)
    y = _product(cols, kernel.reshape(kh * kw * cin, cout), bias=bias)
    return y.reshape(x.shape[0], ho, wo, cout), cols


def conv2d_backward(x, kernel, dy, padding, cache, need_dx=True, strides=1):
    kh, kw, ho, wo, top, left = _conv_geometry(x.shape, kernel.shape, padding, strides)
    cout = kernel.shape[3]
    dy2 = _rows(dy)
    dkernel = _product(cache, dy2, transpose_a=True).reshape(kernel.shape)
    dbias = _cast_to(_column_sums(dy2), dy.dtype)
    if not need_dx:
        return None, dkernel, dbias
    dcols = _product(dy2, kernel.reshape(kernel.size // cout, cout), transpose_b=True)
    dx = _empty(x.shape, x.dtype)
    _launch(_col2im, dx.size)(dcols, kh, kw, strides, top, left, ho, wo, dx)
    return dx, dkernel, dbias


# -- pooling ---------------------------------------------------------------------------------------
def _pool_geometry(x_shape, pool_size, strides, padding):
    (ho, top, _), (wo, left, _) = (window(x_shape[axis], pool_size[axis - 1], strides[axis - 1], padding)
                                   for axis in (1, 2))  # fmt: skip
    return ho, wo, top, left


@cuda.jit(cache=True)
def _maxpool(x, ph, pw, sh, sw, top, left, y, argmax):
    n, h, w, c = x.shape
    _, ho, wo, _ = y.shape
    for e in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        k, ox, oy, b = e % c, (e // c) % wo, (e // (c * wo)) % ho, e // (c * wo * ho)
        best, where = -math.inf, 0
        for di in range(ph):
            r = oy * sh + di - top
            for dj in range(pw):
                col = ox * sw + dj - left
                if 0 <= r < h and 0 <= col < w and x[b, r, col, k] > best:  # strict: ties go to the first
                    best, where = x[b, r, col, k], di * pw + dj
        y[b, oy, ox, k] = best
        argmax[b, oy, ox, k] = where


@cuda.jit(cache=True)
def _maxpool_backward(dy, argmax, ph, pw, sh, sw, top, left, dx):
    n, h, w, c = dx.shape
    _, ho, wo, _ = dy.shape
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        k, col, r, b = e % c, (e // c) % w, (e // (c * w)) % h, e // (c * w * h)
        total = 0.0
        for di in range(ph):
            oy = _window_of(r, top, di, sh, ho)
            for dj in range(pw):
                ox = _window_of(col, left, dj, sw, wo)
                if oy >= 0 and ox >= 0 and argmax[b, oy, ox, k] == di * pw + dj:
                    total += dy[b, oy, ox, k]
        dx[b, r, col, k] = total


def maxpool2d_forward(x, pool_size=(2, 2), strides=(2, 2), padding="valid"):
    ho, wo, top, left = _pool_geometry(x.shape, pool_size, strides, padding)
    shape = (x.shape[0], ho, wo, x.shape[3])
    y, argmax = _empty(shape, x.dtype), _empty(shape, np.min_scalar_type(pool_size[0] * pool_size[1] - 1))
    _launch(_maxpool, y.size)(x, *pool_size, *strides, top, left, y, argmax)
    return y, argmax


def maxpool2d_backward(dy, argmax, x_shape, pool_size=(2, 2), strides=(2, 2), padding="valid"):
    _, _, top, left = _pool_geometry(x_shape, pool_size, strides, padding)
    dx = _empty(x_shape, dy.dtype)
    _launch(_maxpool_backward, dx.size)(dy, _device(argmax), *pool_size, *strides, top, left, dx)
    return dx


@cuda.jit(device=True)
def _inside(start, size, extent):
    """How many of the `size` positions from `start` lie within 0..extent-1."""
    return max(0, min(start + size, extent) - max(start, 0))


@cuda.jit(cache=True)
def _avgpool(x, ph, pw, sh, sw, top, left, y):
    n, h, w, c = x.shape
    _, ho, wo, _ = y.shape
    for e in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        k, ox, oy, b = e % c, (e // c) % wo, (e // (c * wo)) % ho, e // (c * wo * ho)
        total = 0.0
        for r in range(max(oy * sh - top, 0), min(oy * sh - top + ph, h)):
            for col in range(max(ox * sw - left, 0), min(ox * sw - left + pw, w)):
                total += x[b, r, col, k]
        y[b, oy, ox, k] = total / (_inside(oy * sh - top, ph, h) * _inside(ox * sw - left, pw, w))


@cuda.jit(cache=True)
def _avgpool_backward(dy, ph, pw, sh, sw, top, left, dx):
    n, h, w, c = dx.shape
    _, ho, wo, _ = dy.shape
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        k, col, r, b = e % c, (e // c) % w, (e // (c * w)) % h, e // (c * w * h)
        total = 0.0
        for di in range(ph):
            oy = _window_of(r, top, di, sh, ho)
            for dj in range(pw):
                ox = _window_of(col, left, dj, sw, wo)
                if oy >= 0 and ox >= 0:
                    count = _inside(oy * sh - top, ph, h) * _inside(ox * sw - left, pw, w)
                    total += dy[b, oy, ox, k] / count
        dx[b, r, col, k] = total


def avgpool2d_forward(x, pool_size, strides, padding):
    ho, wo, top, left = _pool_geometry(x.shape, pool_size, strides, padding)
    y = _empty((x.shape[0], ho, wo, x.shape[3]), x.dtype)
    _launch(_avgpool, y.size)(x, *pool_size, *strides, top, left, y)
    return y


def avgpool2d_backward(dy, x_shape, pool_size, strides, padding):
    _, _, top, left = _pool_geometry(x_shape, pool_size, strides, padding)
    dx = _empty(x_shape, dy.dtype)
    _launch(_avgpool_backward, dx.size)(dy, *pool_size, *strides, top, left, dx)
    return dx


@cuda.jit(cache=True)
def _image_means(x, out):
    """out[b, k]: image b's channel k averaged over its pixels, in float64."""
    n, h, w, c = x.shape
    for t in range(cuda.grid(1), n * c, cuda.gridsize(1)):
        b, k = t // c, t % c
        total = 0.0
        for r in range(h):
            for col in range(w):
                total += x[b, r, col, k]
        out[b, k] = total / (h * w)


def _means(x):
    out = _empty((x.shape[0], x.shape[3]), np.float64)
    _launch(_image_means, out.size)(x, out)
    return out


def global_average_pool(x):
    return _cast_to(_means(x), x.dtype)


@cuda.jit(cache=True)
def _broadcast_pixels(dy, divisor, dx):
    n, h, w, c = dx.shape
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        b, k = e // (h * w * c), e % c
        dx[b, (e // (c * w)) % h, (e // c) % w, k] = dy[b, k] / divisor


def global_average_pool_backward(dy, x_shape):
    dx = _empty(x_shape, dy.dtype)
    _launch(_broadcast_pixels, dx.size)(dy, dy.dtype.type(x_shape[1] * x_shape[2]), dx)
    return dx


# -- batch norm ------------------------------------------------------------------------------------
def channel_moments(x):
    """Two passes in float64: the mean, then the squared deviations from it."""
    x2 = _rows(x)
    m = x2.shape[0]
    mean = _column_sums(x2)
    _launch(_cast, mean.size)(mean, mean, float(m))
    var = _column_sums(x2, SQUARED_DEVIATION, mean=mean)
    return _cast_to(mean, x.dtype), _cast_to(var, x.dtype, float(m))


@cuda.jit(cache=True)
def _inverse_std(variance, epsilon, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = 1.0 / math.sqrt(float(variance[i]) + epsilon)


def inverse_std(variance, epsilon, dtype):
    out = _empty(variance.shape, dtype)
    _launch(_inverse_std, out.size)(variance, float(epsilon), out)
    return out


@cuda.jit(cache=True)
def _moving_average(moving, value, momentum, rest):
    for i in range(cuda.grid(1), moving.size, cuda.gridsize(1)):
        moving[i] = moving[i] * momentum + value[i] * rest


def moving_average(moving, value, momentum) -> None:
    dt = moving.dtype.type
    _launch(_moving_average, moving.size)(moving, value, dt(momentum), dt(1 - momentum))


@cuda.jit(cache=True)
def _batchnorm_scale_shift(gamma, beta, mean, inv_std, scale, shift):
    for i in range(cuda.grid(1), scale.size, cuda.gridsize(1)):
        scale[i] = gamma[i] * inv_std[i]
        shift[i] = beta[i] - mean[i] * scale[i]


def batchnorm_scale_shift(gamma, beta, mean, inv_std):
    scale, shift = _empty(gamma.shape, gamma.dtype), _empty(gamma.shape, gamma.dtype)
    _launch(_batchnorm_scale_shift, gamma.size)(gamma, beta, mean, inv_std, scale, shift)
    return scale, shift


@cuda.jit(cache=True)
def _scale_shift(x, scale, shift, y):
    c = scale.size
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i] * scale[i % c] + shift[i % c]


def scale_shift(x, scale, shift):
    y = _empty(x.shape, x.dtype)
    _launch(_scale_shift, x.size)(_flat(x), scale, shift, _flat(y))
    return y


@cuda.jit(cache=True)
def _batchnorm_dx(x, dy, gamma, mean, inv_std, dgamma, dbeta, m, batch_statistics, dx):
    c = gamma.size
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        k = i % c
        if batch_statistics:
            xhat = (x[i] - mean[k]) * inv_std[k]
            dx[i] = gamma[k] * inv_std[k] * (dy[i] - dbeta[k] / m - xhat * (dgamma[k] / m))
        else:
            dx[i] = dy[i] * (gamma[k] * inv_std[k])


def batchnorm_backward(x, dy, gamma, mean, inv_std, batch_statistics):
    x2, dy2 = _rows(x), _rows(dy)
    m = x2.shape[0]
    dbeta = _column_sums(dy2)
    dgamma = _column_sums(dy2, PRODUCT_WITH_DEVIATION, x2, mean)
    _launch(_scale_by, dgamma.size)(dgamma, inv_std)
    dx = _empty(x.shape, x.dtype)
    _launch(_batchnorm_dx, x.size)(_flat(x), _flat(dy), gamma, mean, inv_std, dgamma, dbeta, float(m),
                                   bool(batch_statistics), _flat(dx))  # fmt: skip
    return dx, _cast_to(dgamma, dy.dtype), _cast_to(dbeta, dy.dtype)


@cuda.jit(cache=True)
def _scale_by(values, factors):
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        values[i] *= factors[i]


# -- fused batch norm -> ReLU -> 2x2 max pool (numnet.engine.fusion) ----------------------------------
BLOCKED = 4  # argmax value for a window whose maximum ReLU blocked: no gradient flows back


@cuda.jit(cache=True)
def _scale_relu_maxpool(x, scale, shift, y, argmax):
    """numba_kernels._scale_maxpool with ReLU: one thread per pooled output."""
    n, h, w, c = x.shape
    _, ho, wo, _ = y.shape
    for e in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        k, ox, oy, b = e % c, (e // c) % wo, (e // (c * wo)) % ho, e // (c * wo * ho)
        best = x[b, 2 * oy, 2 * ox, k] * scale[k] + shift[k]
        at = 0
        for t in range(1, 4):  # row-major in the window; ties keep the first, as in TensorFlow
            v = x[b, 2 * oy + t // 2, 2 * ox + t % 2, k] * scale[k] + shift[k]
            if v > best:
                best, at = v, t
        if not best > 0:
            y[b, oy, ox, k] = 0
            argmax[b, oy, ox, k] = BLOCKED
        else:
            y[b, oy, ox, k] = best
            argmax[b, oy, ox, k] = at


def scale_relu_maxpool(x, scale, shift):
    n, h, w, c = x.shape
    y, argmax = _empty((n, h // 2, w // 2, c), x.dtype), _empty((n, h // 2, w // 2, c), np.uint8)
    _launch(_scale_relu_maxpool, y.size)(x, scale, shift, y, argmax)
    return y, argmax


@cuda.jit(cache=True)
def _pooled_partials(x, dy, argmax, mean, partials):
    """partials[chunk, 0, ch] and [chunk, 1, ch]: sum(g) and sum(g * (x - mean)) over a fixed share
    of the pooled positions, g the gradient reaching batch norm's output (dy at each winner)."""
    n, ho, wo, c = dy.shape
    chunks = partials.shape[0]
    rows = n * ho * wo
    per_chunk = (rows + chunks - 1) // chunks
    for t in range(cuda.grid(1), chunks * c, cuda.gridsize(1)):
        chunk, ch = t // c, t % c
        total, centred = 0.0, 0.0
        for r in range(chunk * per_chunk, min(rows, (chunk + 1) * per_chunk)):
            b, oy, ox = r // (ho * wo), (r // wo) % ho, r % wo
            k = argmax[b, oy, ox, ch]
            if k != BLOCKED:
                g = float(dy[b, oy, ox, ch])
                total += g
                centred += g * (x[b, 2 * oy + k // 2, 2 * ox + k % 2, ch] - mean[ch])
        partials[chunk, 0, ch] = total
        partials[chunk, 1, ch] = centred


@cuda.jit(cache=True)
def _pooled_coefficients(sums, gamma, inv_std, m, batch_statistics, dgamma, dbeta, a, bb, kk):
    """numba_kernels._batchnorm_coefficients: dx = a*g - bb - kk*(x - mean), per channel."""
    c = gamma.size
    for ch in range(cuda.grid(1), c, cuda.gridsize(1)):
        gamma_grad = sums[c + ch] * float(inv_std[ch])
        dgamma[ch], dbeta[ch] = gamma_grad, sums[ch]
        a[ch] = float(gamma[ch]) * float(inv_std[ch])
        bb[ch] = a[ch] * sums[ch] / m if batch_statistics else 0.0
        kk[ch] = a[ch] * float(inv_std[ch]) * gamma_grad / m if batch_statistics else 0.0


@cuda.jit(cache=True)
def _pooled_batchnorm_dx(x, dy, argmax, mean, a, bb, kk, dx):
    n, h, w, c = x.shape
    _, ho, wo, _ = dy.shape
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        ch, j, i, b = e % c, (e // c) % w, (e // (c * w)) % h, e // (c * w * h)
        value = -bb[ch] - kk[ch] * (x[b, i, j, ch] - mean[ch])
        if i // 2 < ho and j // 2 < wo and argmax[b, i // 2, j // 2, ch] == (i % 2) * 2 + j % 2:
            value += a[ch] * dy[b, i // 2, j // 2, ch]
        dx[b, i, j, ch] = value


def scale_relu_maxpool_backward(x, dy, argmax, gamma, mean, inv_std, batch_statistics):
    """Batch norm's gradients through ReLU and the pool in two passes over x: the sums, then dx."""
    c = x.shape[3]
    partials = _empty((max(1, min(dy.size // c, REDUCTION_CHUNKS)), 2, c), np.float64)
    argmax = _device(argmax)
    _launch(_pooled_partials, partials.shape[0] * c)(x, dy, argmax, mean, partials)
    sums = _empty((2 * c,), np.float64)
    _launch(_sum_partials, 2 * c)(partials.reshape(partials.shape[0], 2 * c), sums)
    dgamma, dbeta, a, bb, kk = (_empty((c,), np.float64) for _ in range(5))
    m = float(x.size // c)
    _launch(_pooled_coefficients, c)(sums, gamma, inv_std, m, bool(batch_statistics), dgamma, dbeta, a, bb, kk)
    dx = _empty(x.shape, x.dtype)
    _launch(_pooled_batchnorm_dx, x.size)(x, dy, argmax, mean, a, bb, kk, dx)
    return dx, _cast_to(dgamma, x.dtype), _cast_to(dbeta, x.dtype)


def conv_scale_relu_maxpool_backward(images, kernel_shape, padding, x, dy, argmax, gamma, mean, inv_std,
                                     batch_statistics):  # fmt: skip
    """The first conv block's gradients: batch norm's through ReLU and the pool, then the conv's
    kernel and bias from them (its input gradient is never needed). On a GPU the conv output's
    gradient is kept in memory, which is not short there: the same kernels as unfused, the same bits."""
    dx, dgamma, dbeta = scale_relu_maxpool_backward(x, dy, argmax, gamma, mean, inv_std, batch_statistics)
    kh, kw, ho, wo, top, left = _conv_geometry(images.shape, kernel_shape, padding, 1)
    cols = _empty((images.shape[0] * ho * wo, kh * kw * images.shape[3]), images.dtype)
    _launch(_im2col, cols.size)(images, kh, kw, 1, top, left, ho, wo, cols)
    dx2 = _rows(dx)
    dkernel = _product(cols, dx2, transpose_a=True).reshape(tuple(kernel_shape))
    return dkernel, _cast_to(_column_sums(dx2), dy.dtype), dgamma, dbeta


# -- activations -----------------------------------------------------------------------------------
@cuda.jit(cache=True)
def _relu(x, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i] if x[i] > 0 else 0


@cuda.jit(cache=True)
def _relu_backward(y, dy, dx):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        dx[i] = dy[i] if y[i] > 0 else 0


def _elementwise(kernel, first, *rest):
    out = _empty(first.shape, first.dtype)
    _launch(kernel, first.size)(_flat(first), *(_flat(a) if _is_device(a) else a for a in rest), _flat(out))
    return out


def relu_forward(x):
    return _elementwise(_relu, x)


def relu_backward(y, dy):
    return _elementwise(_relu_backward, y, dy)


ACTIVATIONS = ("sigmoid", "tanh", "elu", "leaky_relu", "softplus", "gelu")
LEAKY_SLOPE = float(np.float32(0.2))  # Keras' constants as numpy_kernels has them
INV_SQRT2 = float(np.float32(1 / math.sqrt(2)))


@cuda.jit(cache=True)
def _activation(x, code, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if code == 0:
            y[i] = 1 / (1 + math.exp(-v))
        elif code == 1:
            y[i] = math.tanh(v)
        elif code == 2:
            y[i] = v if v > 0 else math.expm1(v)
        elif code == 3:
            y[i] = v if v > 0 else v * LEAKY_SLOPE
        elif code == 4:
            y[i] = max(v, 0) + math.log1p(math.exp(-abs(v)))
        else:
            y[i] = 0.5 * v * (1 + math.erf(v * INV_SQRT2))


@cuda.jit(cache=True)
def _activation_backward(x, y, dy, code, dx):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if code == 0:
            dx[i] = dy[i] * y[i] * (1 - y[i])
        elif code == 1:
            dx[i] = dy[i] * (1 - y[i] * y[i])
        elif code == 2:
            dx[i] = dy[i] if v > 0 else dy[i] * (y[i] + 1)
        elif code == 3:
            dx[i] = dy[i] if v > 0 else dy[i] * LEAKY_SLOPE
        elif code == 4:
            dx[i] = dy[i] / (1 + math.exp(-v))
        else:
            cdf = 0.5 * (1 + math.erf(v * INV_SQRT2))
            dx[i] = dy[i] * (cdf + v * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi))


def _activation_code(name: str) -> int:
    if name not in ACTIVATIONS:
        raise ValueError(f"no activation {name!r}")
    return ACTIVATIONS.index(name)


def activation_forward(x, name):
    return _elementwise(_activation, x, _activation_code(name))


def activation_backward(x, y, dy, name):
    code = _activation_code(name)
    out = _empty(x.shape, x.dtype)
    _launch(_activation_backward, x.size)(_flat(x), _flat(y), _flat(dy), code, _flat(out))
    return out


@cuda.jit(cache=True)
def _softmax(logits, probs):
    rows, classes = logits.shape
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        top = logits[r, 0]
        for j in range(1, classes):
            top = max(top, logits[r, j])
        total = 0.0
        for j in range(classes):
            probs[r, j] = math.exp(logits[r, j] - top)
            total += probs[r, j]
        for j in range(classes):
            probs[r, j] /= total


def softmax(logits):
    probs = _empty(logits.shape, logits.dtype)
    _launch(_softmax, logits.shape[0])(logits, probs)
    return probs


@cuda.jit(cache=True)
def _softmax_backward(probs, dy, dx):
    rows, classes = probs.shape
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        inner = 0.0
        for j in range(classes):
            inner += dy[r, j] * probs[r, j]
        for j in range(classes):
            dx[r, j] = probs[r, j] * (dy[r, j] - inner)


def softmax_backward(probs, dy):
    dx = _empty(probs.shape, probs.dtype)
    _launch(_softmax_backward, probs.shape[0])(probs, dy, dx)
    return dx


@cuda.jit(cache=True)
def _softmax_cross_entropy(logits, targets, dlogits, losses):
    rows, classes = logits.shape
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        top = logits[r, 0]
        for j in range(1, classes):
            top = max(top, logits[r, j])
        total = 0.0
        for j in range(classes):
            total += math.exp(logits[r, j] - top)
        log_total = math.log(total)
        loss = 0.0
        for j in range(classes):
            log_prob = logits[r, j] - top - log_total
            loss -= targets[r, j] * log_prob
            dlogits[r, j] = (math.exp(log_prob) - targets[r, j]) / rows
        losses[r] = loss


def softmax_cross_entropy(logits, targets):
    """The rows' losses come back to the host (one small copy per step) and are added there."""
    dlogits = _empty(logits.shape, logits.dtype)
    losses = _empty((logits.shape[0],), np.float64)
    _launch(_softmax_cross_entropy, logits.shape[0])(logits, targets, dlogits, losses)
    return float(losses.copy_to_host().sum() / logits.shape[0]), dlogits


# -- dropout: numba_kernels' counter-based masks, the same bits from the same generator -------------
@cuda.jit(device=True)
def _splitmix64(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@cuda.jit(cache=True)
def _keep_mask(seed, threshold, keep):
    for i in range(cuda.grid(1), keep.size, cuda.gridsize(1)):
        keep[i] = (_splitmix64(seed + np.uint64(i)) >> np.uint64(40)) >= threshold


def dropout_mask(rng: np.random.Generator, shape: tuple, rate: float):
    seed = np.uint64(int(rng.integers(0, 2**63)))
    threshold = np.uint64(round(rate * (1 << 24)))  # compared with 24 random bits, as numba_kernels
    keep = _empty((int(np.prod(shape)),), np.bool_)
    _launch(_keep_mask, keep.size)(seed, threshold, keep)
    return keep.reshape(tuple(shape))


@cuda.jit(cache=True)
def _scale_by_mask(x, keep, scale, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i] * scale if keep[i] else 0


def dropout_forward(x, keep, rate):
    return _elementwise(_scale_by_mask, x, _device(keep), x.dtype.type(1.0 / (1.0 - rate)))


def dropout_backward(dy, keep, rate):
    return _elementwise(_scale_by_mask, dy, _device(keep), dy.dtype.type(1.0 / (1.0 - rate)))


# -- optimizers (in place) -------------------------------------------------------------------------
@cuda.jit(cache=True)
def _adam(param, grad, m, v, alpha, one_minus_b1, one_minus_b2, epsilon):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i]
        mi = m[i] + (g - m[i]) * one_minus_b1
        vi = v[i] + (g * g - v[i]) * one_minus_b2
        m[i] = mi
        v[i] = vi
        param[i] -= alpha * mi / (math.sqrt(vi) + epsilon)


def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon) -> None:
    """The whole update, one kernel per parameter; every operand in the weights' type, as Keras."""
    dt = param.dtype.type
    _launch(_adam, param.size)(_flat(param), _flat(grad), _flat(m), _flat(v), dt(alpha), dt(1 - beta_1),
                               dt(1 - beta_2), dt(epsilon))  # fmt: skip


@cuda.jit(cache=True)
def _sgd(param, grad, learning_rate):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        param[i] -= learning_rate * grad[i]


def sgd_update(param, grad, learning_rate) -> None:
    _launch(_sgd, param.size)(_flat(param), _flat(grad), param.dtype.type(learning_rate))


# -- geometric warps (the augmentation layers) -----------------------------------------------------
# The draws (transforms, displacements, amounts, factors) are made on the host by the layers'
# generators and moved in as they are; the images never leave the device.
FILL_CODES = {mode: code for code, mode in enumerate(FILL_MODES)}


_fold = cuda.jit(device=True)(fold)


@cuda.jit(device=True)
def _source(ys, xs, nearest):
    """Where a pixel reading at (ys, xs) reads: first row and column, taps per axis, fractions."""
    if nearest:
        return int(math.floor(ys + 0.5)), int(math.floor(xs + 0.5)), 1, 0.0, 0.0
    return int(math.floor(ys)), int(math.floor(xs)), 2, ys - math.floor(ys), xs - math.floor(xs)


@cuda.jit(device=True)
def _sample(x, b, k, ys, xs, mode, fill_value, nearest):
    """Image b's channel k read at (ys, xs), its taps added in float64 in the reference's order."""
    h, w = x.shape[1], x.shape[2]
    r0, c0, taps, fy, fx = _source(ys, xs, nearest)
    total = 0.0
    for dr in range(taps):
        rr = _fold(r0 + dr, h, mode)
        for dc in range(taps):
            cc = _fold(c0 + dc, w, mode)
            weight = ((fy if dr else 1.0 - fy) * (fx if dc else 1.0 - fx)) if taps == 2 else 1.0
            total += weight * (x[b, rr, cc, k] if rr >= 0 and cc >= 0 else fill_value)
    return total


@cuda.jit(device=True)
def _send_back(dy_value, dx, b, k, ys, xs, mode, nearest):
    h, w = dx.shape[1], dx.shape[2]
    r0, c0, taps, fy, fx = _source(ys, xs, nearest)
    for dr in range(taps):
        rr = _fold(r0 + dr, h, mode)
        for dc in range(taps):
            cc = _fold(c0 + dc, w, mode)
            if rr >= 0 and cc >= 0:
                weight = ((fy if dr else 1.0 - fy) * (fx if dc else 1.0 - fx)) if taps == 2 else 1.0
                dx[b, rr, cc, k] += weight * dy_value


@cuda.jit(device=True)
def _read_position(transforms, displacement, row, b, i, j):
    """Where output pixel (i, j) of image b reads: its transform (or none when `transforms` is
    empty) and its displacement row (or none when `row` < 0)."""
    if transforms.shape[0]:
        xs = transforms[b, 0] * j + transforms[b, 1] * i + transforms[b, 2]
        ys = transforms[b, 3] * j + transforms[b, 4] * i + transforms[b, 5]
    else:
        xs, ys = float(j), float(i)
    if row >= 0:
        ys, xs = ys + displacement[row, 0, i, j], xs + displacement[row, 1, i, j]
    return ys, xs


@cuda.jit(cache=True)
def _warp(x, transforms, displacement, rows, mode, fill_value, nearest, low, high, y, inside):
    """Every output pixel reads its source; `rows[b]` names image b's displacement (-1: none, and
    with no transforms either the image is kept), then everything is clipped to [low, high]."""
    n, h, w, c = x.shape
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        k, j, i, b = e % c, (e // c) % w, (e // (c * w)) % h, e // (c * w * h)
        if transforms.shape[0] or rows[b] >= 0:
            ys, xs = _read_position(transforms, displacement, rows[b], b, i, j)
            value = _sample(x, b, k, ys, xs, mode, fill_value, nearest)
        else:
            value = x[b, i, j, k]
        if inside.size:  # a plain warp clips nothing and keeps no record of it
            inside[b, i, j, k] = low <= value <= high
        y[b, i, j, k] = min(max(value, low), high)


@cuda.jit(cache=True)
def _warp_backward(dy, transforms, displacement, rows, inside, mode, nearest, dx):
    """One thread per image and channel sends that plane's gradient back pixel by pixel: no two
    threads write the same place, and the order is numba_kernels'."""
    n, h, w, c = dy.shape
    for t in range(cuda.grid(1), n * c, cuda.gridsize(1)):
        b, k = t // c, t % c
        for i in range(h):
            for j in range(w):
                value = dy[b, i, j, k] if inside.size == 0 or inside[b, i, j, k] else 0.0
                if transforms.shape[0] or rows[b] >= 0:
                    ys, xs = _read_position(transforms, displacement, rows[b], b, i, j)
                    _send_back(value, dx, b, k, ys, xs, mode, nearest)
                else:
                    dx[b, i, j, k] += value


NO_TRANSFORMS = np.zeros((0, 6))


def _draws(x, transforms, displacement, images):
    """The host draws on the device: transforms, displacements and each image's displacement row."""
    n = x.shape[0]
    rows = np.full(n, -1, np.int32)
    if displacement is not None:
        rows[np.arange(n) if images is None else np.asarray(images, np.intp)] = np.arange(len(displacement))
    field = np.zeros((1, 2, 1, 1)) if displacement is None or not len(displacement) else displacement
    return (_device(np.ascontiguousarray(transforms, np.float64)), _device(np.ascontiguousarray(field, np.float64)),
            _device(rows))  # fmt: skip


def _warped(x, transforms, displacement, images, fill_mode, fill_value, interpolation, low, high, clipped=True):
    y, inside = _empty(x.shape, x.dtype), _empty(x.shape if clipped else (0, 0, 0, 0), np.bool_)
    _launch(_warp, x.size)(x, *_draws(x, transforms, displacement, images), FILL_CODES[fill_mode], float(fill_value),
                           interpolation == "nearest", low, high, y, inside)  # fmt: skip
    return y, inside


def _warped_back(dy, transforms, displacement, images, fill_mode, interpolation, inside):
    dx = _filled(dy.shape, np.float64, 0)
    _launch(_warp_backward, dy.shape[0] * dy.shape[3])(
        dy, *_draws(dy, transforms, displacement, images), inside, FILL_CODES[fill_mode], interpolation == "nearest", dx
    )
    return _cast_to(dx, dy.dtype)


def warp(x, transforms, displacement, fill_mode, fill_value, interpolation):
    return _warped(x, transforms, displacement, None, fill_mode, fill_value, interpolation, -math.inf, math.inf,
                   clipped=False)[0]  # fmt: skip


def warp_backward(dy, transforms, displacement, fill_mode, interpolation):
    everywhere = _empty((0, 0, 0, 0), np.bool_)  # no clip: every pixel's gradient passes
    return _warped_back(dy, transforms, displacement, None, fill_mode, interpolation, everywhere)


def bend(x, images, displacement, fill_mode, fill_value, interpolation, low, high):
    return _warped(x, NO_TRANSFORMS, displacement, images, fill_mode, fill_value, interpolation, low, high)


def bend_backward(dy, images, displacement, fill_mode, interpolation, inside):
    return _warped_back(dy, NO_TRANSFORMS, displacement, images, fill_mode, interpolation, _device(inside))


# -- stroke width and contrast ---------------------------------------------------------------------
@cuda.jit(cache=True)
def _stroke_width(x, amounts, y, taps):
    n, h, w, c = x.shape
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        k, j, i, b = e % c, (e // c) % w, (e // (c * w)) % h, e // (c * w * h)
        a = amounts[b]
        sign = -1.0 if a < 0 else 1.0
        best, where = -math.inf, 4
        for tap in range(9):  # row-major; a strict > keeps the first of equal values
            r, col = i + tap // 3 - 1, j + tap % 3 - 1
            if 0 <= r < h and 0 <= col < w and sign * x[b, r, col, k] > best:
                best, where = sign * x[b, r, col, k], tap
        y[b, i, j, k] = x[b, i, j, k] + abs(a) * (sign * best - x[b, i, j, k])
        taps[b, i, j, k] = where


@cuda.jit(cache=True)
def _stroke_width_backward(dy, amounts, taps, dx):
    n, h, w, c = dy.shape
    for t in range(cuda.grid(1), n * c, cuda.gridsize(1)):  # one thread per plane, as `_warp_backward`
        b, k = t // c, t % c
        a = abs(amounts[b])
        for i in range(h):
            for j in range(w):
                tap = taps[b, i, j, k]
                dx[b, i, j, k] += (1.0 - a) * dy[b, i, j, k]
                dx[b, i + tap // 3 - 1, j + tap % 3 - 1, k] += a * dy[b, i, j, k]


def stroke_width(x, amounts):
    y, taps = _empty(x.shape, x.dtype), _empty(x.shape, np.int8)
    _launch(_stroke_width, x.size)(x, _device(amounts, np.float64), y, taps)
    return y, taps


def stroke_width_backward(dy, amounts, taps):
    dx = _filled(dy.shape, np.float64, 0)
    _launch(_stroke_width_backward, dy.shape[0] * dy.shape[3])(dy, _device(amounts, np.float64), _device(taps), dx)
    return _cast_to(dx, dy.dtype)


@cuda.jit(cache=True)
def _contrast(x, factors, means, low, high, y, inside):
    n, h, w, c = x.shape
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        k, b = e % c, e // (c * w * h)
        value = x[b, (e // (c * w)) % h, (e // c) % w, k]
        spread = (value - means[b, k]) * factors[b] + means[b, k]
        inside[b, (e // (c * w)) % h, (e // c) % w, k] = low <= spread <= high
        y[b, (e // (c * w)) % h, (e // c) % w, k] = min(max(spread, low), high)


def contrast(x, factors, low, high):
    y, inside = _empty(x.shape, x.dtype), _empty(x.shape, np.bool_)
    _launch(_contrast, x.size)(x, _device(factors, np.float64), _means(x), float(low), float(high), y, inside)
    return y, inside


@cuda.jit(cache=True)
def _masked(dy, inside, out):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        out[i] = dy[i] if inside[i] else 0.0


@cuda.jit(cache=True)
def _contrast_backward(passed, factors, means, dx):
    n, h, w, c = passed.shape
    for e in range(cuda.grid(1), passed.size, cuda.gridsize(1)):
        k, b = e % c, e // (c * w * h)
        i, j = (e // (c * w)) % h, (e // c) % w
        dx[b, i, j, k] = factors[b] * passed[b, i, j, k] + (1 - factors[b]) * means[b, k]


def contrast_backward(dy, factors, inside):
    passed = _empty(dy.shape, np.float64)
    _launch(_masked, dy.size)(_flat(dy), _flat(_device(inside)), _flat(passed))
    dx = _empty(dy.shape, dy.dtype)
    _launch(_contrast_backward, dy.size)(passed, _device(factors, np.float64), _means(passed), dx)
    return dx
