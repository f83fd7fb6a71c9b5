"""Only kernels touch kernel arrays: every layer, the optimizers and whole training steps run on a
kernel module whose arrays refuse NumPy's operators, ufuncs, indexing and conversion, and give the
NumPy reference's results bit for bit. A GPU kernel module's arrays then just work."""

from __future__ import annotations

import numpy as np
import pytest
from layer_cases import LAYER_CASES, build_layer, same_draws
from opaque_kernels import Opaque, OpaqueArrayError, module

import numnet
from numnet.backends import numpy_kernels
from numnet.engine.model import Model

OPAQUE = module()


def test_opaque_arrays_refuse_arithmetic_indexing_and_conversion():
    a = OPAQUE.asarray(np.ones((2, 3)), np.float32)
    assert isinstance(a, Opaque) and a.shape == (2, 3) and a.dtype == np.float32
    for misuse in (lambda: a + 1, lambda: 2 * a, lambda: np.ones(3) * a, lambda: a[0], lambda: a == a,
                   lambda: np.asarray(a), lambda: np.clip(a, 0, 1), lambda: bool(a)):  # fmt: skip
        with pytest.raises(TypeError):
            misuse()
    with pytest.raises(OpaqueArrayError):
        a[0] = 1
    with pytest.raises(AttributeError):
        a.reshape(6)


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("config,input_shape", LAYER_CASES, ids=lambda c: str(c))
def test_every_layer_runs_on_opaque_arrays_as_on_the_reference(config, input_shape, training):
    results = []
    for kernels in (OPAQUE, numpy_kernels):
        rng = np.random.default_rng(5)
        layer = build_layer(config, input_shape, kernels, rng)
        reseed = same_draws(layer) or (lambda: None)
        reseed()
        y = layer.forward(kernels.asarray(rng.standard_normal(input_shape), np.float64), training)
        dx = layer.backward(kernels.asarray(rng.standard_normal(y.shape), np.float64))
        grads = [kernels.to_numpy(layer.grads[name]) for name in layer.params] if training else []
        state = [kernels.to_numpy(w) for w in layer.weights()]
        results.append([kernels.to_numpy(y), kernels.to_numpy(dx), *grads, *state])
    opaque, reference = results
    assert len(opaque) == len(reference)
    for ours, theirs in zip(opaque, reference):
        np.testing.assert_array_equal(ours, theirs)


SGD_MLP = {**numnet.specs.mlp(), "optimizer": {"type": "sgd", "learning_rate": 0.05}}


@pytest.mark.parametrize("spec", [numnet.specs.cnn(), numnet.specs.best(), SGD_MLP], ids=["cnn", "best", "sgd-mlp"])
def test_training_steps_run_on_opaque_arrays_as_on_the_reference(spec, mnist_inputs):
    """Three optimizer steps (Adam, or SGD), then predict, evaluate, get and set the weights."""
    (x_train, y_train), _ = mnist_inputs
    x, y = x_train[:96], y_train[:96]
    trained = []
    for kernels in (OPAQUE, numpy_kernels):
        model = Model(spec, kernels, seed=3)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        model.set_weights(model.get_weights())
        model.optimizer.set_state(model.optimizer.get_state())
        trained.append([*model.get_weights(), *model.optimizer.get_state(), model.predict(x[:16]),
                        np.array(list(model.evaluate(x[:16], y[:16]).values()))])  # fmt: skip
    for ours, theirs in zip(*trained):
        np.testing.assert_array_equal(ours, theirs)
