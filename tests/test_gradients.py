"""Every layer's backward pass, the fused loss and a whole network, checked by finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ENGINE_KERNELS
from gradcheck import assert_close_gradients, check_layer, numerical_gradient, sample_indices
from layer_cases import LAYER_CASES, build_layer, same_draws

import numnet
from numnet.backends import get_backend


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("config,input_shape", LAYER_CASES, ids=lambda c: str(c))
def test_layer_backward_matches_finite_differences(config, input_shape, training, backend, rng):
    layer = build_layer(config, input_shape, ENGINE_KERNELS[backend], rng)
    x = rng.standard_normal(input_shape)
    check_layer(layer, x, training, rng, before_forward=same_draws(layer))


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_fused_batchnorm_relu_maxpool_backward(training, rng):
    from numnet.engine.fusion import BatchNormReluMaxPool, fuse

    bn, relu, pool = (
        build_layer(config, (3, 6, 5, 4), ENGINE_KERNELS["numba"], rng)
        for config in (
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"},
            {"type": "MaxPooling2D"},
        )
    )
    (op,) = fuse([bn, relu, pool])
    assert isinstance(op, BatchNormReluMaxPool)
    check_layer(op, rng.standard_normal((3, 6, 5, 4)), training, rng)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_fused_first_conv_block_backward(training, padding, rng):
    """A one-channel Conv2D first, then BatchNormReluMaxPool: one backward kernel sets all four
    parameter gradients (and no input gradient, which nothing before it wants)."""
    from numnet.engine.fusion import ConvBatchNormReluMaxPool, fuse

    conv_config = {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": padding}
    conv = build_layer(conv_config, (3, 9, 8, 1), ENGINE_KERNELS["numba"], rng)
    after = conv.output_shape
    bn, relu, pool = (build_layer(config, (3, *after), ENGINE_KERNELS["numba"], rng)
                      for config in ({"type": "BatchNormalization"}, {"type": "Activation", "activation": "relu"},
                                     {"type": "MaxPooling2D"}))  # fmt: skip
    (op,) = fuse([conv, bn, relu, pool])
    assert isinstance(op, ConvBatchNormReluMaxPool)
    x = rng.standard_normal((3, 9, 8, 1))
    r = rng.standard_normal((3, *pool.output_shape))

    def loss() -> float:
        return float((r * op.forward(x, training)).sum())

    op.forward(x, training)
    assert op.backward(r) is None
    for layer in (conv, bn):
        for name, param in layer.params.items():
            idx = sample_indices(param.size, rng)
            numeric = numerical_gradient(loss, param, idx)
            assert_close_gradients(layer.grads[name].reshape(-1)[idx], numeric, f"{layer.type} {name}")


def test_only_a_first_one_channel_conv_joins_its_batchnorm_block():
    from numnet.engine.fusion import BatchNormReluMaxPool, ConvBatchNormReluMaxPool

    seed_cnn = numnet.build(numnet.specs.cnn(), backend="numba")
    assert [type(op) for op in seed_cnn.ops[:2]] == [ConvBatchNormReluMaxPool, numnet.layers.Dropout]
    assert isinstance(seed_cnn.ops[3], BatchNormReluMaxPool)  # the 64-channel conv needs its input gradient
    assert seed_cnn.ops[2].type == "Conv2D"
    assert numnet.build(numnet.specs.cnn(), backend="numpy").ops[0].type == "Conv2D"  # the reference fuses nothing


def test_fused_softmax_cross_entropy_gradient(backend, rng):
    kernels = get_backend(backend).kernels()
    logits = rng.standard_normal((5, 10)) * 3
    targets = np.eye(10)[rng.integers(0, 10, 5)]
    loss, dlogits = kernels.softmax_cross_entropy(logits, targets)
    idx = sample_indices(logits.size, rng)
    numeric = numerical_gradient(lambda: kernels.softmax_cross_entropy(logits, targets)[0], logits, idx)
    assert_close_gradients(dlogits.reshape(-1)[idx], numeric, "softmax cross-entropy")
    expected = -np.mean(np.log(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[targets == 1])
    assert loss == pytest.approx(expected, rel=1e-12)


def test_fused_loss_is_finite_for_extreme_logits(backend):
    kernels = get_backend(backend).kernels()
    logits = np.array([[1000.0, -1000.0, 0.0]], dtype=np.float32)
    loss, dlogits = kernels.softmax_cross_entropy(logits, np.array([[0.0, 1.0, 0.0]], np.float32))
    assert loss == pytest.approx(2000.0)
    np.testing.assert_allclose(dlogits, [[1.0, -1.0, 0.0]], atol=1e-6)


TINY_CNN = {
    "input_shape": [8, 8, 1],
    "layers": [
        {"type": "Conv2D", "filters": 3, "kernel_size": 3},
        {"type": "BatchNormalization"},
        {"type": "Activation", "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Dropout", "rate": 0.2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 6, "activation": "relu"},
        {"type": "Dense", "units": 4, "activation": "softmax"},
    ],
}


def test_whole_network_gradients(backend, rng):
    model = numnet.build(TINY_CNN, backend=backend, seed=3, dtype=np.float64)
    x = rng.uniform(0, 1, (5, 8, 8, 1))
    labels = rng.integers(0, 4, 5)
    dropout = next(layer for layer in model.layers if layer.type == "Dropout")

    def loss_and_gradients():
        dropout.rng = np.random.default_rng(11)
        return model.loss_and_gradients(x, labels)

    loss_and_gradients()
    _, grads = loss_and_gradients()
    named = [(layer, name) for layer in model.layers for name in layer.params]
    assert len(named) == len(grads)
    for (layer, name), grad in zip(named, grads):
        idx = sample_indices(grad.size, rng, count=15)
        numeric = numerical_gradient(lambda: loss_and_gradients()[0], layer.params[name], idx)
        assert_close_gradients(grad.reshape(-1)[idx], numeric, f"{layer.type} {name}")
