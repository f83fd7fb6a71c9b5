"""Layer and optimizer semantics that must match Keras (shared/KERAS_NUMERICS.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import numnet
from numnet.backends import get_backend
from numnet.layers import layer_from_config


def built(config, input_shape, backend, dtype=np.float32, seed=0):
    layer = layer_from_config(config)
    layer.build(input_shape, np.random.default_rng(seed), dtype, get_backend(backend).kernels())
    return layer


def test_seed_specs_have_the_seed_parameter_counts(backend):
    assert numnet.build(numnet.specs.mlp(), backend=backend).count_params() == 101_770
    assert numnet.build(numnet.specs.cnn(), backend=backend).count_params() == 107_274


def test_spec_round_trips_through_json(tmp_path):
    spec = numnet.specs.cnn(dropout=0.25)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    loaded = numnet.specs.load_spec(path)
    assert loaded == numnet.specs.validate(spec)
    a, b = numnet.build(spec, seed=5), numnet.build(loaded, seed=5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_summary_lists_layers_shapes_and_params():
    text = numnet.build(numnet.specs.cnn()).summary(print_fn=None)
    assert "conv2d_1 (Conv2D)" in text and "(None, 11, 11, 128)" in text and "73,856" in text
    assert "max_pooling2d_1 (MaxPooling2D)" in text and "(None, 5, 5, 128)" in text
    assert "Total params: 107,274" in text and "Non-trainable params: 384" in text


def test_batchnorm_training_uses_batch_statistics_and_updates_moving_ones(backend, rng):
    layer = built({"type": "BatchNormalization"}, (4, 4, 3), backend, np.float64)
    x = rng.normal(2.0, 3.0, (8, 4, 4, 3))
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    biased_var = x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), biased_var / (biased_var + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(layer.state["moving_mean"], 0.01 * x.mean(axis=(0, 1, 2)), rtol=1e-10)
    np.testing.assert_allclose(layer.state["moving_variance"], 0.99 + 0.01 * biased_var, rtol=1e-10)


def test_batchnorm_inference_uses_moving_statistics(backend, rng):
    layer = built({"type": "BatchNormalization"}, (3,), backend, np.float64)
    layer.state["moving_mean"][...] = [1.0, 2.0, 3.0]
    layer.state["moving_variance"][...] = [4.0, 9.0, 16.0]
    layer.params["gamma"][...] = 2.0
    x = rng.normal(size=(5, 3))
    y = layer.forward(x, training=False)
    expected = 2.0 * (x - [1, 2, 3]) / np.sqrt(np.array([4.0, 9.0, 16.0]) + 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_array_equal(layer.state["moving_mean"], [1.0, 2.0, 3.0])  # untouched


def test_dropout_scales_kept_units_and_is_identity_in_inference(backend):
    layer = built({"type": "Dropout", "rate": 0.25}, (1000,), backend)
    x = np.ones((20, 1000), np.float32)
    y = layer.forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert abs(1 - kept.mean() - 0.25) < 0.01
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_dropout_masks_repeat_with_the_seed_and_differ_across_seeds(backend, mnist_inputs):
    (x, _), _ = mnist_inputs
    spec = numnet.specs.cnn(dropout=0.5)

    def first_mask(seed):
        model = numnet.build(spec, backend=backend, seed=seed)
        model._logits(x[:8], training=True)
        return next(layer for layer in model.layers if layer.type == "Dropout").keep

    np.testing.assert_array_equal(first_mask(1), first_mask(1))
    assert (first_mask(1) != first_mask(2)).any()


def test_adam_matches_a_hand_computation(backend):
    spec = {
        "input_shape": [2],
        "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}],
        "optimizer": {"type": "adam", "learning_rate": 0.1},
    }
    model = numnet.build(spec, backend=backend, dtype=np.float64)
    w = model.get_weights()[0].copy()
    m = v = np.zeros_like(w)
    for t, grad in enumerate([np.array([[0.5, -1.0], [2.0, 0.1]]), np.array([[-0.3, 0.2], [1.0, -4.0]])], 1):
        model.optimizer.step([grad, np.zeros(2)])
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        b1, b2 = float(np.float32(0.9)), float(np.float32(0.999))  # Keras rounds these to float32
        alpha = 0.1 * math.sqrt(1 - b2**t) / (1 - b1**t)
        w = w - alpha * m / (np.sqrt(v) + 1e-7)
        np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-12)
    assert model.optimizer.iterations == 2


def test_glorot_uniform_bounds_and_zero_biases():
    model = numnet.build(numnet.specs.cnn(), seed=0)
    kernel, bias = model.get_weights()[:2]  # conv2d: (3, 3, 1, 64)
    limit = math.sqrt(6 / (9 * 1 + 9 * 64))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert abs(kernel.mean()) < 0.1 * limit
    np.testing.assert_array_equal(bias, 0)
    dense_kernel = model.get_weights()[-2]  # (3200, 10)
    assert np.abs(dense_kernel).max() <= math.sqrt(6 / 3210)


def test_weights_come_in_keras_order_and_layout():
    shapes = [w.shape for w in numnet.build(numnet.specs.cnn()).get_weights()]
    assert shapes == [
        (3, 3, 1, 64), (64,), (64,), (64,), (64,), (64,),
        (3, 3, 64, 128), (128,), (128,), (128,), (128,), (128,),
        (3200, 10), (10,),
    ]  # fmt: skip
    bn = numnet.build(numnet.specs.cnn()).get_weights()[2:6]  # gamma, beta, moving mean, moving variance
    assert [float(w[0]) for w in bn] == [1.0, 0.0, 0.0, 1.0]


def test_maxpool_floors_odd_sizes_and_routes_gradient_to_the_max(backend):
    layer = built({"type": "MaxPooling2D", "pool_size": 2}, (11, 11, 1), backend)
    x = np.arange(121, dtype=np.float32).reshape(1, 11, 11, 1)
    y = layer.forward(x, training=True)
    assert y.shape == (1, 5, 5, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], x[0, 1:10:2, 1:10:2, 0])
    dx = layer.backward(np.ones_like(y))
    assert dx.sum() == 25 and dx[0, 10, :, 0].sum() == 0 and dx[0, 1, 1, 0] == 1


def test_same_padding_keeps_spatial_size(backend):
    layer = built({"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"}, (7, 9, 2), backend)
    assert layer.forward(np.zeros((1, 7, 9, 2), np.float32), training=False).shape == (1, 7, 9, 4)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_predict_returns_float32_probabilities(name, backend, mnist_inputs):
    _, (x_test, _) = mnist_inputs
    probabilities = numnet.build(numnet.specs.resolve(name), backend=backend).predict(x_test[:50])
    assert probabilities.dtype == np.float32 and probabilities.shape == (50, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_categorical_crossentropy_takes_one_hot_labels_and_matches_sparse(mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    sparse_spec = numnet.specs.mlp()
    onehot_spec = {**numnet.specs.mlp(), "loss": "categorical_crossentropy"}
    sparse, onehot = numnet.build(sparse_spec, seed=4), numnet.build(onehot_spec, seed=4)
    x, y = x_train[:300], y_train[:300]
    sparse.fit(x, y, epochs=1, batch_size=100, shuffle=False, verbose=0)
    onehot.fit(x, np.eye(10, dtype=np.float32)[y], epochs=1, batch_size=100, shuffle=False, verbose=0)
    for a, b in zip(sparse.get_weights(), onehot.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert onehot.evaluate(x, np.eye(10)[y])["loss"] == pytest.approx(sparse.evaluate(x, y)["loss"], rel=1e-6)
