"""Learning-rate schedules: Keras' formulas step by step, training that follows them on both
backends, Keras files that carry them, and clear errors for bad ones."""

from __future__ import annotations

import math
import os
import re

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import numnet  # noqa: E402
from numnet import schedules  # noqa: E402
from numnet.callbacks import LearningRateScheduler  # noqa: E402
from numnet.errors import InputError, SpecError  # noqa: E402

keras = pytest.importorskip("keras")

SCHEDULE_CASES = [
    {"type": "ExponentialDecay", "initial_learning_rate": 0.01, "decay_steps": 7, "decay_rate": 0.5},
    {"type": "ExponentialDecay", "initial_learning_rate": 0.01, "decay_steps": 7, "decay_rate": 0.5, "staircase": True},
    {"type": "CosineDecay", "initial_learning_rate": 0.003, "decay_steps": 40},
    {"type": "CosineDecay", "initial_learning_rate": 0.003, "decay_steps": 40, "alpha": 0.1, "warmup_target": 0.01,
     "warmup_steps": 10},
    {"type": "PiecewiseConstantDecay", "boundaries": [5, 20], "values": [0.1, 0.01, 0.001]},
]  # fmt: skip
STEPS = [0, 1, 4, 5, 6, 9, 10, 11, 20, 21, 39, 40, 49, 50, 51, 200]


@pytest.mark.parametrize("schedule", SCHEDULE_CASES, ids=lambda s: s["type"] + ("-options" if len(s) > 4 else ""))
def test_each_schedule_gives_keras_learning_rates_step_by_step(schedule):
    config = schedules.validate(schedule)
    arguments = {key: value for key, value in schedule.items() if key != "type"}
    theirs = getattr(keras.optimizers.schedules, schedule["type"])(**arguments)
    for step in STEPS:
        expected = float(keras.ops.convert_to_numpy(theirs(step)))
        # Keras computes in float32: near a cosine's end only the absolute error stays small
        assert schedules.learning_rate_at(config, step) == pytest.approx(expected, rel=1e-6, abs=1e-9), f"step {step}"


def test_one_cycle_warms_up_linearly_then_anneals_to_its_floor():
    cycle = schedules.validate({"type": "OneCycle", "max_learning_rate": 0.01, "total_steps": 100})
    rates = [schedules.learning_rate_at(cycle, step) for step in range(121)]
    assert rates[0] == pytest.approx(0.01 / 25) and rates[30] == pytest.approx(0.01)
    assert rates[15] == pytest.approx((0.01 / 25 + 0.01) / 2)  # linear warm-up
    assert all(a < b for a, b in zip(rates[:30], rates[1:31])) and all(a > b for a, b in zip(rates[30:100], rates[31:]))
    assert rates[100] == pytest.approx(0.01 / 1e4) and rates[120] == rates[100]  # stays at the floor
    equivalent = schedules.keras_equivalent(cycle)  # and Keras' CosineDecay computes the same numbers
    keras_cycle = keras.optimizers.schedules.CosineDecay(**{k: v for k, v in equivalent.items() if k != "type"})
    for step in (0, 15, 29, 30, 31, 64, 99, 100, 120):
        assert rates[step] == pytest.approx(float(keras.ops.convert_to_numpy(keras_cycle(step))), rel=1e-6, abs=1e-9)


def scheduled_mlp(schedule, backend="numba", optimizer="adam", dtype=np.float32):
    spec = {**numnet.specs.mlp(), "optimizer": {"type": optimizer, "learning_rate": schedule}}
    return numnet.build(spec, backend=backend, seed=3, dtype=dtype)


def test_sgd_steps_by_exactly_the_scheduled_rate(mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    schedule = {"type": "PiecewiseConstantDecay", "boundaries": [1, 2], "values": [0.5, 0.05, 0.005]}
    model = scheduled_mlp(schedule, optimizer="sgd", dtype=np.float64)
    x, y = x_train[:32].astype(np.float64), y_train[:32]
    for rate in (0.5, 0.5, 0.05, 0.005):  # step 0 and 1 <= boundary 1, step 2 <= 2, then the last value
        assert model.learning_rate == rate
        before = model.get_weights()
        _, gradients = model.loss_and_gradients(x, y)
        model.train_step(x, y)
        for old, new, gradient in zip(before, model.get_weights(), gradients):
            np.testing.assert_allclose(old - new, rate * gradient, rtol=1e-9, atol=1e-15)


def test_training_with_a_schedule_tracks_keras(mnist_inputs):
    """The same spec, weights and batches on numnet and on Keras: the weights stay together."""
    from numnet.keras.bridge import keras_model

    (x_train, y_train), _ = mnist_inputs
    schedule = {"type": "OneCycle", "max_learning_rate": 0.01, "total_steps": 20}
    ours = scheduled_mlp(schedule, dtype=np.float64)
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        theirs = keras_model(ours.spec, seed=3)
        theirs.set_weights(ours.get_weights())
        for step in range(25):
            xb, yb = x_train[step * 64 : (step + 1) * 64].astype(np.float64), y_train[step * 64 : (step + 1) * 64]
            theirs.train_on_batch(xb, yb)
            ours.train_step(xb, yb)
        their_rate = float(keras.ops.convert_to_numpy(theirs.optimizer.learning_rate))
        their_weights = theirs.get_weights()
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")
    assert ours.learning_rate == pytest.approx(their_rate, rel=1e-9)
    for i, (a, b) in enumerate(zip(ours.get_weights(), their_weights)):
        assert np.abs(a - b).max() <= 1e-6 * max(np.abs(b).max(), 1.0), f"weight {i}"


@pytest.mark.parametrize("backend", ["numba", "tensorflow"])
def test_a_scheduled_rate_cannot_also_be_set_by_a_callback(backend, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    model = scheduled_mlp({"type": "CosineDecay", "initial_learning_rate": 0.001, "decay_steps": 10}, backend)
    with pytest.raises(InputError, match="follows the spec's CosineDecay schedule"):
        model.fit(x_train[:200], y_train[:200], epochs=1, batch_size=100, verbose=0,
                  callbacks=[LearningRateScheduler(lambda epoch, rate: rate / 2)])  # fmt: skip


@pytest.mark.parametrize("backend", ["numba", "tensorflow"])
def test_the_keras_backend_and_numnet_report_the_same_current_rate(backend, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    schedule = {"type": "ExponentialDecay", "initial_learning_rate": 0.01, "decay_steps": 2, "decay_rate": 0.5}
    model = scheduled_mlp(schedule, backend)
    history = model.fit(x_train[:600], y_train[:600], epochs=1, batch_size=100, verbose=0)
    assert np.isfinite(history["loss"][0])
    assert model.learning_rate == pytest.approx(0.01 * 0.5 ** (6 / 2), rel=1e-6)  # after 6 steps


def test_a_keras_file_carries_the_schedule_and_its_step_count(tmp_path, mnist_inputs):
    (x_train, y_train), (x_test, _) = mnist_inputs
    schedule = {"type": "CosineDecay", "initial_learning_rate": 0.002, "decay_steps": 50, "alpha": 0.05}
    model = scheduled_mlp(schedule)
    model.fit(x_train[:1000], y_train[:1000], epochs=1, batch_size=100, verbose=0)
    path = tmp_path / "scheduled.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # real Keras reads the file numnet wrote
    rate = loaded.optimizer._learning_rate
    assert isinstance(rate, keras.optimizers.schedules.CosineDecay) and rate.alpha == 0.05
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 10
    assert float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate)) == pytest.approx(model.learning_rate)
    assert np.abs(loaded.predict(x_test[:50], verbose=0) - model.predict(x_test[:50])).max() <= 1e-5


@pytest.mark.parametrize(
    ("schedule", "message"),
    [({"type": "CyclicLR"}, "a learning-rate schedule must be {'type': one of"),
     ({"type": "CosineDecay", "initial_learning_rate": 0.1}, "CosineDecay needs ['decay_steps']"),
     ({"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "power": 2}, "does not take ['power']"),
     ({"type": "CosineDecay", "initial_learning_rate": -0.1, "decay_steps": 10}, "initial_learning_rate must be a "
      "number > 0, got -0.1"),
     ({"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 2.5}, "decay_steps must be an integer >= 1"),
     ({"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "alpha": 2}, "alpha must be a number "
      "in [0, 1]"),
     ({"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": "0.9"},
      "decay_rate must be a number > 0, got '0.9'"),
     ({"type": "PiecewiseConstantDecay", "boundaries": [10, 5], "values": [1, 2, 3]}, "boundaries must be an "
      "increasing list"),
     ({"type": "PiecewiseConstantDecay", "boundaries": [10], "values": [0.1]}, "values must be a list of 2"),
     ({"type": "OneCycle", "max_learning_rate": 0.01, "total_steps": 100, "warmup_fraction": 1.5},
      "warmup_fraction must be a number in (0, 1)")],
)  # fmt: skip
def test_bad_schedules_are_refused_by_name(schedule, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        scheduled_mlp(schedule)


def test_schedules_are_functions_of_the_step_not_the_epoch():
    decay = schedules.validate({"type": "ExponentialDecay", "initial_learning_rate": 1.0, "decay_steps": 10,
                                "decay_rate": 0.1})  # fmt: skip
    assert schedules.learning_rate_at(decay, 10) == pytest.approx(0.1)
    assert schedules.learning_rate_at(decay, 5) == pytest.approx(math.sqrt(0.1))
