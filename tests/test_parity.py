"""numnet agrees with real Keras (TensorFlow backend), layer by layer and step by step.

The Keras models here are written in plain Keras, the way the seed writes them, not through
numnet's own TensorFlow backend. Weights are copied from Keras into numnet (Keras order and layout
on both sides), so any difference is arithmetic or a bug.

Multi-step comparisons run in float64: a conv bias followed by batch norm has a gradient that is
exactly zero in exact arithmetic, so in float32 both frameworks compute rounding noise for it
(~1e-5), and Adam, which divides by the gradient's own magnitude, turns that noise into full-size
steps of random sign. In float64 the noise (~1e-17) sits far below Adam's epsilon and vanishes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("CI"):  # CI installs numnet[tf]: a missing TensorFlow there is a failure, not a skip
    import keras
    import tensorflow as tf
else:
    keras = pytest.importorskip("keras", reason="the parity tests need TensorFlow: pip install 'numnet[tf]'")
    tf = pytest.importorskip("tensorflow")

import numnet  # noqa: E402
from numnet.keras.bridge import keras_model  # noqa: E402


@contextlib.contextmanager
def keras_dtype(dtype: str):
    """Keras' global float type for the whole test: Keras builds parts of a model (the compiled
    loss) lazily, on first use, with whatever the global setting is then."""
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


@pytest.fixture
def float64():
    with keras_dtype("float64"):
        yield np.float64


def seed_keras_model(name: str, dropout: float = 0.1):
    """The seed networks in plain Keras."""
    L = keras.layers
    if name == "mlp":
        layers = [L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")]
    else:
        layers = []
        for filters in (64, 128):
            layers += [
                L.Conv2D(filters, (3, 3)), L.BatchNormalization(), L.Activation("relu"),
                L.MaxPooling2D((2, 2)), L.Dropout(dropout),
            ]  # fmt: skip
        layers += [L.Flatten(), L.Dense(10, activation="softmax")]
    model = keras.Sequential([keras.Input((28, 28, 1)), *layers])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def twin(name: str, backend: str, dtype=np.float32, dropout: float = 0.1):
    """A Keras model and a numnet model of the same spec holding the same weights."""
    reference = seed_keras_model(name, dropout)
    rng = np.random.default_rng(5)
    weights = reference.get_weights()
    if name == "cnn":  # non-trivial batch-norm parameters and moving statistics
        for i in (2, 3, 4, 8, 9, 10):
            weights[i] = rng.uniform(-0.5, 0.5, weights[i].shape).astype(dtype)
        for i in (5, 11):
            weights[i] = rng.uniform(0.5, 2.0, weights[i].shape).astype(dtype)
        reference.set_weights(weights)
    spec = numnet.specs.mlp() if name == "mlp" else numnet.specs.cnn(dropout=dropout)
    model = numnet.build(spec, backend=backend, dtype=dtype)
    model.set_weights(weights)
    return reference, model


def keras_gradients(model, x, y):
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    return float(loss), [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def max_relative(actual, expected) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


from conftest import ENGINE_BACKENDS as ENGINES  # noqa: E402


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_forward_probabilities_match_keras(name, backend, mnist_inputs):
    _, (x_test, _) = mnist_inputs
    reference, model = twin(name, backend)
    expected = reference(x_test[:512], training=False).numpy()
    assert np.abs(model.predict(x_test[:512]) - expected).max() <= 1e-5


def assert_gradients_close(name, ours, theirs, rtol):
    largest = max(np.abs(g).max() for g in theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if name == "cnn" and i in (1, 5):
            # conv biases before batch norm: exactly zero in exact arithmetic, rounding noise here
            assert np.abs(a).max() <= 1e-4 * largest and np.abs(b).max() <= 1e-4 * largest
            continue
        assert max_relative(a, b) <= rtol, f"parameter {i}: relative difference {max_relative(a, b):.2e}"


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_gradients_of_one_batch_match_keras(name, backend, mnist_inputs, float64):
    """Compared in float64, where a difference beyond rounding can only be a bug.

    (In float32, Keras' own batch-norm gradients were measured up to ~1e-2 off the float64 values
    on such a batch, so a float32 comparison could not tell a bug from Keras' rounding.)
    """
    (x_train, y_train), _ = mnist_inputs
    reference, model = twin(name, backend, dtype=np.float64, dropout=0.0)
    x, y = x_train[:128].astype(np.float64), y_train[:128]
    loss_keras, grads_keras = keras_gradients(reference, x, y)
    loss_numnet, grads_numnet = model.loss_and_gradients(x, y)
    assert loss_numnet == pytest.approx(loss_keras, rel=1e-10)
    assert_gradients_close(name, grads_numnet, grads_keras, rtol=1e-4)


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_one_adam_step_matches_keras(name, backend, mnist_inputs, float64):
    (x_train, y_train), _ = mnist_inputs
    reference, model = twin(name, backend, dtype=np.float64, dropout=0.0)
    x, y = x_train[:128].astype(np.float64), y_train[:128]
    reference.train_on_batch(x, y)
    model.train_step(x, y)
    for i, (ours, theirs) in enumerate(zip(model.get_weights(), reference.get_weights())):
        assert np.abs(ours - theirs).max() <= 1e-5, f"weight {i} after one step"


# The CNN's hundred float64 steps run on numba only (85 s on the numpy engine, whose kernels
# test_kernels checks against numba's, and whose CNN step test_one_adam_step_matches_keras checks).
@pytest.mark.parametrize(("name", "backend"), [("mlp", "numpy"), ("mlp", "numba"), ("cnn", "numba")])
def test_hundred_training_steps_track_keras(name, backend, mnist_inputs, float64):
    (x_train, y_train), (x_test, _) = mnist_inputs
    reference, model = twin(name, backend, dtype=np.float64, dropout=0.0)
    batch = 64
    for step in range(100):
        xb = x_train[step * batch : (step + 1) * batch].astype(np.float64)
        yb = y_train[step * batch : (step + 1) * batch]
        reference.train_on_batch(xb, yb)
        model.train_step(xb, yb)
    for i, (ours, theirs) in enumerate(zip(model.get_weights(), reference.get_weights())):
        if name == "cnn" and i in (1, 7):
            # conv biases before batch norm only ever see rounding noise: both stay ~0
            assert np.abs(ours).max() <= 1e-6 and np.abs(theirs).max() <= 1e-6
            continue
        assert max_relative(ours, theirs) <= 1e-3, f"weight {i} after 100 steps: {max_relative(ours, theirs):.2e}"
    # inference uses the moving statistics in both
    expected = reference(x_test[:256].astype(np.float64), training=False).numpy()
    assert np.abs(model.predict(x_test[:256]) - expected).max() <= 1e-5


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_tensorflow_backend_builds_the_seed_architecture(name):
    ours = keras_model(numnet.specs.resolve(name), seed=0)
    seed = seed_keras_model(name)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in seed.get_weights()]
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in seed.layers]
    for a, b in zip(ours.layers, seed.layers):
        config_a, config_b = a.get_config(), b.get_config()
        for key in ("units", "filters", "kernel_size", "padding", "activation", "momentum", "epsilon", "rate"):
            assert config_a.get(key) == config_b.get(key), (a.name, key)


def test_tensorflow_backend_trains_and_round_trips_through_a_numnet_file(tmp_path, mnist_inputs):
    (x_train, y_train), (x_test, y_test) = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), backend="tensorflow")
    history = model.fit(x_train[:6000], y_train[:6000], epochs=1, batch_size=100, verbose=0)
    assert len(history["loss"]) == len(history["seconds"]) == 1
    assert model.evaluate(x_test, y_test)["accuracy"] > 0.85
    path = tmp_path / "tf-mlp.npz"
    model.save(path)
    for backend in ("tensorflow", "numba"):
        loaded = numnet.load(path, backend=backend)
        np.testing.assert_allclose(loaded.predict(x_test[:100]), model.predict(x_test[:100]), atol=1e-5)
    assert numnet.load(path).backend == "tensorflow"


def test_mirrored_strategy_trains_on_the_local_devices(mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    from numnet.backends import get_backend

    model = get_backend("tensorflow").build(numnet.specs.mlp(), strategy="mirrored")
    history = model.fit(x_train[:2000], y_train[:2000], epochs=1, batch_size=100, verbose=0)
    assert np.isfinite(history["loss"][0]) and model.strategy.num_replicas_in_sync >= 1


def test_without_tensorflow_the_backend_says_how_to_install_it(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "import numnet\n"
        "print(numnet.build(numnet.specs.mlp(), backend='numba').count_params())\n"
        "numnet.build(numnet.specs.mlp(), backend='tensorflow')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "101770" in result.stdout  # numnet itself works
    assert "BackendUnavailable" in result.stderr and "pip install 'numnet[tf]'" in result.stderr


# -- every layer in the shared list, against the Keras layer its mapping names -----------------------
from keras_twins import KERAS_CASES, compare  # noqa: E402
from layer_cases import LAYER_CASES  # noqa: E402

from numnet.keras.layers import layer_class  # noqa: E402
from numnet.layers import layer_from_config  # noqa: E402


@pytest.mark.parametrize("config,input_shape,training", KERAS_CASES, ids=str)
def test_every_layer_matches_its_keras_layer_forward_and_backward(config, input_shape, training):
    compare(keras, config, input_shape, training)


def test_every_layer_matches_its_keras_layer_on_jax_too():
    """The same comparison on Keras' JAX backend, in its own process (Keras runs one per process)."""
    if not os.environ.get("CI"):
        pytest.importorskip("jax", reason="pip install 'numnet[jax]'")
    script = Path(__file__).with_name("keras_twins.py")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{len(KERAS_CASES)} of {len(KERAS_CASES)} cases agree on Keras' jax backend" in result.stdout


@pytest.mark.parametrize("config", [config for config, _ in LAYER_CASES], ids=str)
def test_keras_mapping_round_trips_through_a_keras_layer_config(config):
    layer = layer_from_config(config)
    keras_config = layer_class(layer.keras_class)(**layer.to_keras(seed=0), name="twin").get_config()
    back = type(layer).from_keras(keras_config)
    if layer.training_only:  # Keras writes a factor f as its range (-f, f): the same layer, another spelling
        again = layer_class(layer.keras_class)(**layer_from_config(back).to_keras(seed=0), name="twin")
        assert again.get_config() == keras_config
    else:
        assert back == layer.to_config()
