"""Every kernel module implements the written interface and agrees with the NumPy reference,
kernel by kernel and for whole training steps (as tinygrad's helper_test_op checks every op
against one reference). A new kernel module is tested by its one line in KERNEL_MODULES.

Tolerances (float32): kernels that only move or select values must match exactly; sums and
products may differ by reordering, so they are compared at rtol 1e-5 / atol 1e-6 relative to the
data's scale (float32 has ~7 significant digits, and BLAS and Numba add in different orders).
"""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np
import pytest
from device_kernels import on_host

import numnet
from numnet.backends import KERNEL_MODULES
from numnet.backends import numpy_kernels as ref
from numnet.backends.interface import OPTIONAL, FusedKernels, Kernels, interface_functions, missing_functions

RTOL, ATOL = 1e-5, 1e-6
MODULES = {name: importlib.import_module(module) for name, (module, _) in KERNEL_MODULES.items()}
# Variants of one module to run every case on: numba compiles each kernel parallel and serial
# (chosen by array size), so both are tested.
VARIANTS = [(name, variant) for name, module in MODULES.items()
            for variant in (("parallel", "serial") if hasattr(module, "PARALLEL_MIN_ELEMENTS") else ("",))]  # fmt: skip
FAST = [name for name in MODULES if name != "numpy"]  # the modules checked against the reference
# Whole networks at full size, on every module that runs at a GPU's or CPU's speed (a simulated GPU
# module's parity on small networks is in tests/test_cuda.py).
FULL_SIZE = [name for name in FAST if not getattr(MODULES[name], "SIMULATED", False)]


def _variant(request, monkeypatch):
    name, variant = request.param
    module = MODULES[name]
    if variant:
        monkeypatch.setattr(module, "PARALLEL_MIN_ELEMENTS", 0 if variant == "parallel" else 2**62)
    return module


def _with_host_arrays(module):
    """The module as the tests call it, with NumPy arrays: a device module through an adapter."""
    return on_host(module) if hasattr(module, "SIMULATED") else module


def _ids(variant):
    return "-".join(filter(None, variant))


@pytest.fixture(params=[v for v in VARIANTS if v[0] in FAST], ids=_ids)
def kernels(request, monkeypatch):
    """A kernel module other than the reference, in each of its variants."""
    return _with_host_arrays(_variant(request, monkeypatch))


@pytest.fixture(params=VARIANTS, ids=_ids)
def any_kernels(request, monkeypatch):
    """Every kernel module, the reference included, for kernels checked against plain expectations."""
    return _variant(request, monkeypatch)


@pytest.fixture(params=[v for v in VARIANTS if hasattr(MODULES[v[0]], "scale_relu_maxpool")], ids=_ids)
def fused_kernels(request, monkeypatch):
    """Modules with the optional fused kernels (numnet.backends.interface.OPTIONAL)."""
    return _with_host_arrays(_variant(request, monkeypatch))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_fused_kernels_come_all_or_none_with_the_written_signatures(name):
    present = [function for function in OPTIONAL if hasattr(MODULES[name], function)]
    assert present in ([], list(OPTIONAL))
    for function in present:
        wanted = list(inspect.signature(getattr(FusedKernels, function)).parameters)[1:]
        assert list(inspect.signature(getattr(MODULES[name], function)).parameters) == wanted, function


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_implements_the_whole_interface(name):
    module = MODULES[name]
    assert missing_functions(module) == []
    assert module.NAME == name
    for function in interface_functions():
        wanted = list(inspect.signature(getattr(Kernels, function)).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(module, function)).parameters) == wanted, function


def test_numba_picks_serial_for_small_arrays_and_for_one_image(monkeypatch):
    """The parallel twin only where there is work to share: not below the size threshold, and not
    for one image, however large (a drawn digit would wait for the pool to wake)."""
    numba_kernels = MODULES["numba"]
    kernel = numba_kernels._relu
    calls = []
    monkeypatch.setattr(kernel, "serial", lambda x: calls.append("serial"))
    monkeypatch.setattr(kernel, "parallel", lambda x: calls.append("parallel"))
    big = numba_kernels.PARALLEL_MIN_ELEMENTS
    for shape in [(1, 26, 26, 64), (2, 26, 26, 64), (4, 8), (big,), (1, big)]:
        kernel(np.zeros(shape, np.float32))
    assert calls == ["serial", "parallel", "serial", "parallel", "serial"]


def test_every_interface_function_has_a_reference_test():
    assert set(interface_functions()) <= COVERED


COVERED = {"dense_forward", "dense_backward", "conv2d_forward", "conv2d_backward", "maxpool2d_forward",
           "avgpool2d_forward", "avgpool2d_backward",
           "maxpool2d_backward", "channel_moments", "scale_shift", "batchnorm_backward", "relu_forward",
           "relu_backward", "dropout_forward", "dropout_backward", "adam_update", "sgd_update", "asarray",
           "to_numpy", "zeros", "ones", "one_hot", "count_correct", "inverse_std", "moving_average", "softmax",
           "softmax_backward", "softmax_cross_entropy", "dropout_mask", "warp",
           "warp_backward", "stroke_width", "stroke_width_backward", "contrast",
           "contrast_backward", "bend", "bend_backward", "batchnorm_scale_shift", "copy", "assign",
           "reshape", "activation_forward", "activation_backward", "global_average_pool",
           "global_average_pool_backward"}  # fmt: skip


def close(actual, expected, rtol=RTOL, atol=ATOL):
    for a, e in zip(
        actual if isinstance(actual, tuple) else (actual,),
        expected if isinstance(expected, tuple) else (expected,),
    ):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * max(1.0, float(np.abs(e).max())))


@pytest.fixture
def x4(rng):
    return rng.standard_normal((6, 9, 7, 5)).astype(np.float32)


def test_dense(kernels, rng):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((16, 30), (30, 7), (7,)))
    close(kernels.dense_forward(x, w, b), ref.dense_forward(x, w, b))
    dy = rng.standard_normal((16, 7)).astype(np.float32)
    close(kernels.dense_backward(x, w, dy), ref.dense_backward(x, w, dy))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("k", [2, 3])
def test_conv2d(kernels, x4, rng, padding, k):
    w = rng.standard_normal((k, k, 5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y, cols = kernels.conv2d_forward(x4, w, b, padding)
    y_ref, cols_ref = ref.conv2d_forward(x4, w, b, padding)
    np.testing.assert_array_equal(cols, cols_ref)  # im2col only moves values
    close(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(kernels.conv2d_backward(x4, w, dy, padding, cols), ref.conv2d_backward(x4, w, dy, padding, cols_ref))


@pytest.mark.parametrize("cin", [1, 5])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("need_dx", [True, False])
def test_conv2d_one_input_channel_and_no_input_gradient(kernels, rng, cin, k, need_dx):
    """One input channel takes numba's direct path (3x3 written out, other sizes looped); the
    first layer asks for no input gradient."""
    x = rng.standard_normal((5, 9, 7, cin)).astype(np.float32)
    w, b = rng.standard_normal((k, k, cin, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    y, cache = kernels.conv2d_forward(x, w, b, "valid")
    y_ref, cache_ref = ref.conv2d_forward(x, w, b, "valid")
    close(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = kernels.conv2d_backward(x, w, dy, "valid", cache, need_dx)
    want = ref.conv2d_backward(x, w, dy, "valid", cache_ref, need_dx)
    assert (got[0] is None) == (not need_dx)
    close(got if need_dx else got[1:], want if need_dx else want[1:])


def test_maxpool_matches_exactly_including_ties(kernels, x4):
    x = np.round(x4, 0)  # many ties: the first maximum must win in both
    y, argmax = kernels.maxpool2d_forward(x)
    y_ref, argmax_ref = ref.maxpool2d_forward(x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    np.testing.assert_array_equal(
        kernels.maxpool2d_backward(y, argmax, x.shape), ref.maxpool2d_backward(y, argmax, x.shape)
    )


POOLS = [((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "valid"), ((4, 4), (4, 4), "valid"), ((2, 2), (2, 2), "same"),
         ((3, 2), (1, 1), "same")]  # fmt: skip


@pytest.mark.parametrize("pool_size, strides, padding", POOLS)
def test_any_maxpool_matches_exactly_including_ties(kernels, x4, pool_size, strides, padding):
    x = np.round(x4, 0)  # overlapping windows with ties: the first maximum must win in both
    y, argmax = kernels.maxpool2d_forward(x, pool_size, strides, padding)
    y_ref, argmax_ref = ref.maxpool2d_forward(x, pool_size, strides, padding)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    close(kernels.maxpool2d_backward(y, argmax, x.shape, pool_size, strides, padding),
          ref.maxpool2d_backward(y, argmax_ref, x.shape, pool_size, strides, padding))  # fmt: skip


@pytest.mark.parametrize("pool_size, strides, padding", POOLS)
def test_avgpool(kernels, x4, rng, pool_size, strides, padding):
    y = kernels.avgpool2d_forward(x4, pool_size, strides, padding)
    close(y, ref.avgpool2d_forward(x4, pool_size, strides, padding))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(kernels.avgpool2d_backward(dy, x4.shape, pool_size, strides, padding),
          ref.avgpool2d_backward(dy, x4.shape, pool_size, strides, padding))  # fmt: skip


def test_same_average_pool_divides_by_the_pixels_inside():
    x = np.ones((1, 3, 3, 1), np.float32)
    y = ref.avgpool2d_forward(x, (2, 2), (2, 2), "same")  # windows at the edge hold 2 or 1 pixels
    np.testing.assert_array_equal(y, np.ones((1, 2, 2, 1), np.float32))


@pytest.mark.parametrize("cin", [1, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [2, 3])
def test_strided_conv2d(kernels, x4, rng, cin, padding, strides):
    x = np.ascontiguousarray(x4[..., :cin])
    w = rng.standard_normal((3, 3, cin, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y, cols = kernels.conv2d_forward(x, w, b, padding, strides)
    y_ref, cols_ref = ref.conv2d_forward(x, w, b, padding, strides)
    close(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(kernels.conv2d_backward(x, w, dy, padding, cols, True, strides),
          ref.conv2d_backward(x, w, dy, padding, cols_ref, True, strides))  # fmt: skip


@pytest.mark.parametrize("batch_statistics", [True, False])
def test_batchnorm(kernels, x4, rng, batch_statistics):
    x = x4 * 3 + 2
    close(kernels.channel_moments(x), ref.channel_moments(x))
    mean, var = ref.channel_moments(x)
    gamma = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    inv_std = (1 / np.sqrt(var + 1e-3)).astype(np.float32)
    scale, shift = gamma * inv_std, rng.standard_normal(5).astype(np.float32)
    close(kernels.scale_shift(x, scale, shift), ref.scale_shift(x, scale, shift))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    close(
        kernels.batchnorm_backward(x, dy, gamma, mean, inv_std, batch_statistics),
        ref.batchnorm_backward(x, dy, gamma, mean, inv_std, batch_statistics),
    )


@pytest.mark.parametrize("batch_statistics", [True, False])
@pytest.mark.parametrize("shape", [(6, 9, 7, 5), (4, 8, 8, 3)])
def test_fused_batchnorm_relu_maxpool_matches_the_three_kernels(fused_kernels, rng, shape, batch_statistics):
    kernels = fused_kernels
    x = rng.standard_normal(shape).astype(np.float32)
    mean, var = ref.channel_moments(x)
    gamma = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
    inv_std = (1 / np.sqrt(var + 1e-3)).astype(np.float32)
    scale, shift = gamma * inv_std, rng.standard_normal(shape[-1]).astype(np.float32)

    normalised = ref.scale_shift(x, scale, shift)
    activated = ref.relu_forward(normalised)
    pooled, argmax = ref.maxpool2d_forward(activated)
    fused, fused_argmax = kernels.scale_relu_maxpool(x, scale, shift)
    close(fused, pooled)
    open_windows = fused_argmax != kernels.BLOCKED
    np.testing.assert_array_equal(fused_argmax[open_windows], argmax[open_windows])
    np.testing.assert_array_equal(fused[~open_windows], 0)

    dy = rng.standard_normal(pooled.shape).astype(np.float32)
    d_activated = ref.maxpool2d_backward(dy, argmax, x.shape)
    d_normalised = ref.relu_backward(activated, d_activated)
    expected = ref.batchnorm_backward(x, d_normalised, gamma, mean, inv_std, batch_statistics)
    fused_grads = kernels.scale_relu_maxpool_backward(x, dy, fused_argmax, gamma, mean, inv_std, batch_statistics)
    close(fused_grads, expected)


@pytest.mark.parametrize("batch_statistics", [True, False])
@pytest.mark.parametrize("k,padding", [(3, "valid"), (3, "same"), (2, "valid")])
def test_fused_first_conv_block_backward_equals_the_unfused_kernels(fused_kernels, rng, k, padding, batch_statistics):
    """The same sums in the same order: the same bits as batch norm's backward, then the conv's."""
    kernels = fused_kernels
    images = rng.random((5, 10, 9, 1)).astype(np.float32)
    kernel = rng.standard_normal((k, k, 1, 6)).astype(np.float32)
    x, cache = kernels.conv2d_forward(images, kernel, np.zeros(6, np.float32), padding)
    mean, var = ref.channel_moments(x)
    gamma = rng.uniform(0.5, 1.5, 6).astype(np.float32)
    inv_std = (1 / np.sqrt(var + 1e-3)).astype(np.float32)
    _, argmax = kernels.scale_relu_maxpool(x, gamma * inv_std, rng.standard_normal(6).astype(np.float32))
    dy = rng.standard_normal(argmax.shape).astype(np.float32)

    dx, dgamma, dbeta = kernels.scale_relu_maxpool_backward(x, dy, argmax, gamma, mean, inv_std, batch_statistics)
    _, dkernel, dbias = kernels.conv2d_backward(images, kernel, dx, padding, cache, need_dx=False)
    fused = kernels.conv_scale_relu_maxpool_backward(
        images, kernel.shape, padding, x, dy, argmax, gamma, mean, inv_std, batch_statistics
    )
    for got, expected in zip(fused, (dkernel, dbias, dgamma, dbeta)):
        np.testing.assert_array_equal(got, expected)


def test_relu_and_dropout_match_exactly(kernels, x4, rng):
    y = kernels.relu_forward(x4)
    np.testing.assert_array_equal(y, ref.relu_forward(x4))
    np.testing.assert_array_equal(kernels.relu_backward(y, x4), ref.relu_backward(y, x4))
    keep = rng.random(x4.shape) >= 0.3
    close(kernels.dropout_forward(x4, keep, 0.3), ref.dropout_forward(x4, keep, 0.3), rtol=1e-7)
    close(kernels.dropout_backward(x4, keep, 0.3), ref.dropout_backward(x4, keep, 0.3), rtol=1e-7)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_warp_and_its_gradient(kernels, x4, rng, fill_mode, interpolation):
    # Rotations, shears, shifts and zooms large enough to read far outside the image, alone and
    # with a displacement per pixel.
    n, h, w, _ = x4.shape
    transforms = np.column_stack([rng.normal(1, 0.4, n), rng.normal(0, 0.4, n), rng.normal(0, 4, n),
                                  rng.normal(0, 0.4, n), rng.normal(1, 0.4, n), rng.normal(0, 4, n)])  # fmt: skip
    for displacement in (None, rng.normal(0, max(h, w) / 2, (n, 2, h, w))):
        close(kernels.warp(x4, transforms, displacement, fill_mode, 0.25, interpolation),
              ref.warp(x4, transforms, displacement, fill_mode, 0.25, interpolation))  # fmt: skip
        close(kernels.warp_backward(x4, transforms, displacement, fill_mode, interpolation),
              ref.warp_backward(x4, transforms, displacement, fill_mode, interpolation))  # fmt: skip


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_bend_and_its_gradient(kernels, x4, rng, interpolation):
    """Some images bent by their own field, the others kept, all clipped; and back."""
    n, h, w, _ = x4.shape
    images = np.array([1, 4])
    displacement = rng.normal(0, 2, (len(images), 2, h, w))
    y, inside = kernels.bend(x4, images, displacement, "reflect", 0.0, interpolation, -1.0, 1.5)
    expected_y, expected_inside = ref.bend(x4, images, displacement, "reflect", 0.0, interpolation, -1.0, 1.5)
    np.testing.assert_array_equal(kernels.to_numpy(inside), expected_inside)
    assert 0 < expected_inside.mean() < 1  # some values clipped, some not
    close(kernels.to_numpy(y), expected_y)
    kept = [i for i in range(n) if i not in images]
    np.testing.assert_array_equal(expected_y[kept], np.clip(x4[kept], -1.0, 1.5))
    assert not np.allclose(expected_y[images], np.clip(x4[images], -1.0, 1.5))
    close(kernels.bend_backward(x4, images, displacement, "reflect", interpolation, inside),
          ref.bend_backward(x4, images, displacement, "reflect", interpolation, expected_inside))  # fmt: skip


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "leaky_relu", "softplus", "gelu"])
def test_activations_and_their_gradients(kernels, x4, name):
    y = kernels.activation_forward(x4, name)
    close(y, ref.activation_forward(x4, name))
    close(kernels.activation_backward(x4, y, x4, name), ref.activation_backward(x4, y, x4, name))


def test_global_average_pool_and_its_gradient(kernels, x4):
    close(kernels.global_average_pool(x4), x4.mean(axis=(1, 2)))
    dy = x4[:, 0, 0, :]
    close(kernels.global_average_pool_backward(dy, x4.shape), ref.global_average_pool_backward(dy, x4.shape))


def test_stroke_width_and_its_gradient_match_exactly_including_ties(kernels, x4, rng):
    x = np.where(rng.random(x4.shape) < 0.5, 0.0, x4).astype(np.float32)  # blank pixels tie, as in digits
    amounts = np.array([1.0, -1.0, 0.3, -0.6, 0.0, 0.8])
    y, taps = kernels.stroke_width(x, amounts)
    expected_y, expected_taps = ref.stroke_width(x, amounts)
    np.testing.assert_array_equal(taps, expected_taps)
    close(y, expected_y, rtol=1e-7)
    close(kernels.stroke_width_backward(x4, amounts, taps), ref.stroke_width_backward(x4, amounts, expected_taps))


def test_contrast_and_its_gradient(kernels, x4, rng):
    factors = np.array([1.0, 2.0, 0.5, 1.5, 1.2, 0.0])
    y, inside = kernels.contrast(x4, factors, -0.5, 1.0)
    expected_y, expected_inside = ref.contrast(x4, factors, -0.5, 1.0)
    np.testing.assert_array_equal(inside, expected_inside)
    assert 0 < expected_inside.mean() < 1  # some values clipped, some not
    close(y, expected_y)
    close(kernels.contrast_backward(x4, factors, inside), ref.contrast_backward(x4, factors, expected_inside))


@pytest.mark.parametrize("shape", [(8, 3), (784, 128)])  # serial and parallel in the numba module
def test_adam_update_in_place_matches_exactly(kernels, rng, shape):
    """Every operand in the weights' type, in Keras' order: the same float32 bits as the reference."""
    p, g = rng.standard_normal((2, *shape)).astype(np.float32)
    states = []
    for module in (kernels, ref):
        param, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
        for t in (1, 2, 3):
            module.adam_update(param, g * t, m, v, 1e-3 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t), 0.9, 0.999, 1e-7)
        assert not np.array_equal(param, p)
        states.append((param, m, v))
    for ours, theirs in zip(*states):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("backend", FULL_SIZE)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_whole_network_gradients_agree_in_float64(name, backend, mnist_inputs):
    """In float64 the two backends differ only by rounding, so every gradient must agree closely.

    (In float32, rounding can flip which pixel of a 2x2 window is the maximum when two are within
    an ulp, which moves that gradient to a neighbour: a real but harmless difference.)
    """
    (x_train, y_train), _ = mnist_inputs
    spec = without_dropout(numnet.specs.resolve(name))
    reference, fast = (numnet.build(spec, backend=b, seed=0, dtype=np.float64) for b in ("numpy", backend))
    x, y = x_train[:256].astype(np.float64), y_train[:256]
    (loss_ref, grads_ref), (loss_fast, grads_fast) = reference.loss_and_gradients(x, y), fast.loss_and_gradients(x, y)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-12)
    scale = max(float(np.abs(g).max()) for g in grads_ref)
    for g_fast, g_ref in zip(grads_fast, grads_ref):
        np.testing.assert_allclose(g_fast, g_ref, rtol=1e-7, atol=1e-9 * scale)


@pytest.mark.parametrize("backend", FULL_SIZE)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_float32_training_steps_agree(name, backend, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    spec = without_dropout(numnet.specs.resolve(name))
    reference, fast = (numnet.build(spec, backend=b, seed=0) for b in ("numpy", backend))
    for step in range(5):
        batch = slice(step * 128, (step + 1) * 128)
        losses = [m.train_step(x_train[batch], y_train[batch])[0] for m in (reference, fast)]
        assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    np.testing.assert_allclose(fast.predict(x_train[:256]), reference.predict(x_train[:256]), atol=1e-4)


def without_dropout(spec):
    for layer in spec["layers"]:
        if layer["type"] == "Dropout":
            layer["rate"] = 0.0  # identical data flow, so only arithmetic can differ
    return spec


def test_sgd_update_in_place(kernels, rng):
    p, g = rng.standard_normal((2, 5, 3)).astype(np.float32)
    expected = p - np.float32(0.1) * g
    kernels.sgd_update(p, g, 0.1)
    close(p, expected, rtol=1e-7)


def test_softmax_and_fused_loss(kernels, rng):
    logits = (rng.standard_normal((7, 10)) * 5).astype(np.float32)
    close(kernels.softmax(logits), ref.softmax(logits))
    dy = rng.standard_normal((7, 10)).astype(np.float32)
    close(kernels.softmax_backward(ref.softmax(logits), dy), ref.softmax_backward(ref.softmax(logits), dy))
    targets = ref.one_hot(np.arange(7) % 10, 10, np.float32)
    loss, dlogits = kernels.softmax_cross_entropy(logits, targets)
    loss_ref, dlogits_ref = ref.softmax_cross_entropy(logits, targets)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    close(dlogits, dlogits_ref)


def test_array_creation_and_transfer(any_kernels):
    k = any_kernels
    for dtype in (np.float32, np.float64):
        assert k.to_numpy(k.zeros((2, 3), dtype)).tolist() == [[0, 0, 0]] * 2
        assert k.to_numpy(k.ones((4,), dtype)).dtype == dtype and k.to_numpy(k.ones((4,), dtype)).sum() == 4
    strided = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]
    moved = k.asarray(strided, np.float32)
    back = k.to_numpy(moved)
    assert back.dtype == np.float32 and back.flags.c_contiguous
    np.testing.assert_array_equal(back, strided.astype(np.float32))


def test_copy_assign_and_reshape_leave_the_source_alone(any_kernels):
    k = any_kernels
    source = k.asarray(np.arange(6.0).reshape(2, 3), np.float32)
    copied = k.copy(source)
    target = k.zeros((2, 3), np.float32)
    k.assign(target, k.asarray(np.ones((2, 3)), np.float32))
    k.assign(source, target)  # the copy keeps the old values
    np.testing.assert_array_equal(k.to_numpy(copied), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(k.to_numpy(source), np.ones((2, 3)))
    np.testing.assert_array_equal(k.to_numpy(k.reshape(copied, (3, 2))), np.arange(6.0).reshape(3, 2))


def test_batchnorm_scale_and_shift(any_kernels, rng):
    k = any_kernels
    gamma, beta, mean, inv_std = (rng.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(4))
    scale, shift = k.batchnorm_scale_shift(*(k.asarray(a, np.float32) for a in (gamma, beta, mean, inv_std)))
    np.testing.assert_allclose(k.to_numpy(scale), gamma * inv_std, rtol=1e-6)
    np.testing.assert_allclose(k.to_numpy(shift), beta - mean * gamma * inv_std, rtol=1e-6)


def test_one_hot_and_count_correct(any_kernels):
    k = any_kernels
    labels = k.asarray(np.array([2, 0, 1, 2]), np.intp)
    targets = k.to_numpy(k.one_hot(labels, 3, np.float32))
    np.testing.assert_array_equal(targets, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    scores = k.asarray(np.array([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4], [0, 0, 1]]), np.float32)
    assert k.count_correct(scores, labels) == 3


def test_batchnorm_statistics_helpers(any_kernels):
    k = any_kernels
    variance = k.asarray(np.array([0.0, 1.0, 3.0]), np.float32)
    np.testing.assert_allclose(k.to_numpy(k.inverse_std(variance, 1e-3, np.float32)),
                               1 / np.sqrt(np.array([0.0, 1.0, 3.0]) + 1e-3), rtol=1e-6)  # fmt: skip
    moving = k.asarray(np.array([1.0, 2.0]), np.float32)
    k.moving_average(moving, k.asarray(np.array([3.0, 0.0]), np.float32), 0.9)
    np.testing.assert_allclose(k.to_numpy(moving), [1.2, 1.8], rtol=1e-6)


def test_dropout_mask_keeps_the_right_fraction_and_repeats_with_the_generator(any_kernels):
    k = any_kernels
    masks = [k.to_numpy(k.dropout_mask(np.random.default_rng(5), (200, 300), 0.3)) for _ in range(2)]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert masks[0].shape == (200, 300) and abs(masks[0].mean() - 0.7) < 0.01
    other = k.to_numpy(k.dropout_mask(np.random.default_rng(6), (200, 300), 0.3))
    assert (other != masks[0]).any()
