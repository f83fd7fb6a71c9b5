"""The Numba kernels agree with the NumPy reference, kernel by kernel and for whole training steps.

Tolerances (float32): kernels that only move or select values must match exactly; sums and
products may differ by reordering, so they are compared at rtol 1e-5 / atol 1e-6 relative to the
data's scale (float32 has ~7 significant digits, and BLAS and Numba add in different orders).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import numnet
from numnet.backends import numba_kernels as nb
from numnet.backends import numpy_kernels as ref

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(autouse=True, params=["parallel", "serial"])
def kernel_variant(request, monkeypatch):
    """Every kernel is compiled parallel and serial (chosen by array size): test both on every case."""
    monkeypatch.setattr(nb, "PARALLEL_MIN_ELEMENTS", 0 if request.param == "parallel" else 2**62)
    return request.param


def close(actual, expected, rtol=RTOL, atol=ATOL):
    for a, e in zip(
        actual if isinstance(actual, tuple) else (actual,),
        expected if isinstance(expected, tuple) else (expected,),
    ):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * max(1.0, float(np.abs(e).max())))


@pytest.fixture
def x4(rng):
    return rng.standard_normal((6, 9, 7, 5)).astype(np.float32)


def test_dense(rng):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((16, 30), (30, 7), (7,)))
    close(nb.dense_forward(x, w, b), ref.dense_forward(x, w, b))
    dy = rng.standard_normal((16, 7)).astype(np.float32)
    close(nb.dense_backward(x, w, dy), ref.dense_backward(x, w, dy))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("k", [2, 3])
def test_conv2d(x4, rng, padding, k):
    w = rng.standard_normal((k, k, 5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y, cols = nb.conv2d_forward(x4, w, b, padding)
    y_ref, cols_ref = ref.conv2d_forward(x4, w, b, padding)
    np.testing.assert_array_equal(cols, cols_ref)  # im2col only moves values
    close(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(nb.conv2d_backward(x4, w, dy, padding, cols), ref.conv2d_backward(x4, w, dy, padding, cols_ref))


def test_maxpool_matches_exactly_including_ties(x4):
    x = np.round(x4, 0)  # many ties: the first maximum must win in both
    y, argmax = nb.maxpool2d_forward(x)
    y_ref, argmax_ref = ref.maxpool2d_forward(x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    np.testing.assert_array_equal(nb.maxpool2d_backward(y, argmax, x.shape), ref.maxpool2d_backward(y, argmax, x.shape))


@pytest.mark.parametrize("batch_statistics", [True, False])
def test_batchnorm(x4, rng, batch_statistics):
    x = x4 * 3 + 2
    close(nb.channel_moments(x), ref.channel_moments(x))
    mean, var = ref.channel_moments(x)
    gamma = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    inv_std = (1 / np.sqrt(var + 1e-3)).astype(np.float32)
    scale, shift = gamma * inv_std, rng.standard_normal(5).astype(np.float32)
    close(nb.scale_shift(x, scale, shift), ref.scale_shift(x, scale, shift))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    close(
        nb.batchnorm_backward(x, dy, gamma, mean, inv_std, batch_statistics),
        ref.batchnorm_backward(x, dy, gamma, mean, inv_std, batch_statistics),
    )


@pytest.mark.parametrize("batch_statistics", [True, False])
@pytest.mark.parametrize("shape", [(6, 9, 7, 5), (4, 8, 8, 3)])
def test_fused_batchnorm_relu_maxpool_matches_the_three_kernels(rng, shape, batch_statistics):
    x = rng.standard_normal(shape).astype(np.float32)
    mean, var = ref.channel_moments(x)
    gamma = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
    inv_std = (1 / np.sqrt(var + 1e-3)).astype(np.float32)
    scale, shift = gamma * inv_std, rng.standard_normal(shape[-1]).astype(np.float32)

    normalised = ref.scale_shift(x, scale, shift)
    activated = ref.relu_forward(normalised)
    pooled, argmax = ref.maxpool2d_forward(activated)
    fused, fused_argmax = nb.scale_relu_maxpool(x, scale, shift)
    close(fused, pooled)
    open_windows = fused_argmax != nb.BLOCKED
    np.testing.assert_array_equal(fused_argmax[open_windows], argmax[open_windows])
    np.testing.assert_array_equal(fused[~open_windows], 0)

    dy = rng.standard_normal(pooled.shape).astype(np.float32)
    d_activated = ref.maxpool2d_backward(dy, argmax, x.shape)
    d_normalised = ref.relu_backward(activated, d_activated)
    expected = ref.batchnorm_backward(x, d_normalised, gamma, mean, inv_std, batch_statistics)
    fused_grads = nb.scale_relu_maxpool_backward(x, dy, fused_argmax, gamma, mean, inv_std, batch_statistics)
    close(fused_grads, expected)


def test_relu_and_dropout_match_exactly(x4, rng):
    y = nb.relu_forward(x4)
    np.testing.assert_array_equal(y, ref.relu_forward(x4))
    np.testing.assert_array_equal(nb.relu_backward(y, x4), ref.relu_backward(y, x4))
    keep = rng.random(x4.shape) >= 0.3
    close(nb.dropout_forward(x4, keep, 0.3), ref.dropout_forward(x4, keep, 0.3), rtol=1e-7)
    close(nb.dropout_backward(x4, keep, 0.3), ref.dropout_backward(x4, keep, 0.3), rtol=1e-7)


def test_adam_update_in_place(rng):
    states = []
    for kernels in (nb, ref):
        p, g = rng.standard_normal((2, 8, 3)).astype(np.float32)
        rng = np.random.default_rng(1234)  # same values for both
        m, v = np.zeros_like(p), np.zeros_like(p)
        p0 = p.copy()
        for t in (1, 2, 3):
            kernels.adam_update(p, g * t, m, v, 1e-3 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t), 0.9, 0.999, 1e-7)
        assert not np.array_equal(p, p0)
        states.append((p, m, v))
    close(states[0], states[1])


def all_gradients(model, x, y):
    logits = model._logits(x, training=True)
    loss, dlogits = model.kernels.softmax_cross_entropy(logits, model._targets(y))
    model._backward(dlogits)
    return loss, model._gradients()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_whole_network_gradients_agree_in_float64(name, mnist_inputs):
    """In float64 the two backends differ only by rounding, so every gradient must agree closely.

    (In float32, rounding can flip which pixel of a 2x2 window is the maximum when two are within
    an ulp, which moves that gradient to a neighbour: a real but harmless difference.)
    """
    (x_train, y_train), _ = mnist_inputs
    spec = without_dropout(numnet.specs.resolve(name))
    reference, fast = (numnet.build(spec, backend=b, seed=0, dtype=np.float64) for b in ("numpy", "numba"))
    x, y = x_train[:256].astype(np.float64), y_train[:256]
    (loss_ref, grads_ref), (loss_fast, grads_fast) = all_gradients(reference, x, y), all_gradients(fast, x, y)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-12)
    scale = max(float(np.abs(g).max()) for g in grads_ref)
    for g_fast, g_ref in zip(grads_fast, grads_ref):
        np.testing.assert_allclose(g_fast, g_ref, rtol=1e-7, atol=1e-9 * scale)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_float32_training_steps_agree(name, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    spec = without_dropout(numnet.specs.resolve(name))
    reference, fast = (numnet.build(spec, backend=b, seed=0) for b in ("numpy", "numba"))
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
