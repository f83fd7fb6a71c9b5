"""Callbacks behave as Keras' own: the same stop epoch, restored weights and learning rates for the
same sequence of logged values, on the numnet engine and on the Keras backend."""

from __future__ import annotations

import numpy as np
import pytest

import numnet
from numnet import callbacks
from numnet.formats.npz import read_header

keras = pytest.importorskip("keras")  # the tf extra, which CI installs: never skipped there


class FakeModel:
    """Just what a callback touches: weights, stop_training, and a learning rate (both spellings)."""

    def __init__(self) -> None:
        self.stop_training = False
        self.weights = [np.zeros(1)]
        self.learning_rate = 0.01
        self.optimizer = self  # Keras' callbacks read model.optimizer.learning_rate

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def replay(callback, model: FakeModel, values: list[float], monitor: str) -> tuple[int, float, list[float]]:
    """Feeds one logged value per epoch; returns the epochs run, the final weight and the learning rates."""
    callback.set_model(model)
    callback.on_train_begin()
    rates, epochs = [], 0
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        model.weights = [np.array([float(epoch)])]  # "the weights after epoch e" are e
        callback.on_epoch_end(epoch, {monitor: value})
        rates.append(float(model.learning_rate))
        epochs += 1
        if model.stop_training:
            break
    callback.on_train_end()
    return epochs, float(model.weights[0][0]), rates


SEQUENCES = [
    [1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.86, 0.87, 0.9],
    [0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3],
    [2.0, 1.0, 0.5, 0.25, 0.2, 0.19, 0.185, 0.184, 0.1839, 0.18389],
]


@pytest.mark.parametrize("values", SEQUENCES)
@pytest.mark.parametrize(
    "options",
    [
        {"patience": 0},
        {"patience": 2, "restore_best_weights": True},
        {"patience": 1, "min_delta": 0.02},
        {"patience": 2, "mode": "max", "monitor": "val_accuracy"},
        {"patience": 1, "baseline": 0.45},
        {"patience": 1, "start_from_epoch": 3, "restore_best_weights": True},
    ],
    ids=str,
)
def test_early_stopping_stops_where_keras_stops(values, options):
    monitor = options.get("monitor", "val_loss")
    ours = replay(callbacks.EarlyStopping(**options), FakeModel(), values, monitor)
    theirs = replay(keras.callbacks.EarlyStopping(**options), FakeModel(), values, monitor)
    assert ours[:2] == theirs[:2]


@pytest.mark.parametrize("values", SEQUENCES)
@pytest.mark.parametrize(
    "options",
    [{"patience": 1}, {"patience": 2, "factor": 0.5, "cooldown": 1},
     {"patience": 0, "min_lr": 0.004, "min_delta": 0.05}, {"patience": 1, "monitor": "val_accuracy", "mode": "max"}],
    ids=str,
)  # fmt: skip
def test_reduce_lr_on_plateau_lowers_the_rate_where_keras_does(values, options):
    monitor = options.get("monitor", "val_loss")
    ours = replay(callbacks.ReduceLROnPlateau(**options), FakeModel(), values, monitor)
    theirs = replay(keras.callbacks.ReduceLROnPlateau(**options), FakeModel(), values, monitor)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-6)


def test_reduce_lr_on_plateau_reduces_after_patience_epochs_without_improvement():
    _, _, rates = replay(callbacks.ReduceLROnPlateau(patience=1, factor=0.5), FakeModel(), SEQUENCES[1], "val_loss")
    assert rates == pytest.approx([0.01, 0.005, 0.0025, 0.0025, 0.00125, 0.000625, 0.0003125, 0.0003125,
                                   0.00015625, 7.8125e-05])  # fmt: skip


def test_learning_rate_scheduler_sets_the_rate_each_epoch_as_keras_does():
    def halve_after_two(epoch, lr):
        return lr if epoch < 2 else lr / 2

    ours = replay(callbacks.LearningRateScheduler(halve_after_two), FakeModel(), [1.0] * 5, "loss")
    theirs = replay(keras.callbacks.LearningRateScheduler(halve_after_two), FakeModel(), [1.0] * 5, "loss")
    np.testing.assert_allclose(ours[2], theirs[2])
    assert ours[2] == pytest.approx([0.01, 0.01, 0.005, 0.0025, 0.00125])


class FixedLoss(callbacks.Callback):
    """Replaces the logged loss with a fixed sequence, so every backend sees the same values."""

    def __init__(self, values):
        self.values = values
        self.weights_after: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        logs["loss"] = self.values[epoch]
        self.weights_after.append(self.model.get_weights())


@pytest.mark.parametrize("backend", ["numba", "tensorflow"])
def test_fit_stops_early_on_every_backend_and_restores_the_best_weights(backend, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    values = SEQUENCES[0]
    expected_epochs, best_epoch, _ = replay(
        keras.callbacks.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True),
        FakeModel(),
        values,
        "loss",
    )
    model = numnet.build(numnet.specs.mlp(), backend=backend, seed=0)
    fixed = FixedLoss(values)
    stop = callbacks.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    history = model.fit(x_train[:500], y_train[:500], epochs=10, batch_size=100, verbose=0, callbacks=[fixed, stop])
    assert len(history["loss"]) == expected_epochs < 10
    assert history["loss"] == values[:expected_epochs]
    for ours, best in zip(model.get_weights(), fixed.weights_after[int(best_epoch)]):
        np.testing.assert_array_equal(ours, best)


@pytest.mark.parametrize("backend", ["numba", "tensorflow"])
def test_learning_rate_callbacks_reach_the_optimizer(backend, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), backend=backend, seed=0)
    schedule = callbacks.LearningRateScheduler(lambda epoch, lr: 1e-3 * 0.5**epoch)
    history = model.fit(x_train[:300], y_train[:300], epochs=3, batch_size=100, verbose=0, callbacks=[schedule])
    assert history["learning_rate"] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert model.learning_rate == pytest.approx(2.5e-4)


def test_model_checkpoint_saves_only_improvements_atomically(tmp_path, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), backend="numba", seed=0)

    class FixedValidationLoss(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [3.0, 2.0, 2.5, 1.0][epoch]

    pattern = str(tmp_path / "model-{epoch}.npz")
    best = callbacks.ModelCheckpoint(pattern, monitor="val_loss", save_best_only=True)
    model.fit(x_train[:300], y_train[:300], epochs=4, batch_size=100, verbose=0,
              callbacks=[FixedValidationLoss(), best])  # fmt: skip
    saved = sorted(path.name for path in tmp_path.iterdir())
    assert saved == ["model-1.npz", "model-2.npz", "model-4.npz"]  # no temp files left behind
    assert read_header(tmp_path / "model-4.npz")["epochs_done"] == 4


def test_bad_callback_settings_are_refused_by_name():
    with pytest.raises(numnet.NumnetError, match="patience"):
        callbacks.EarlyStopping(patience=-1)
    with pytest.raises(numnet.NumnetError, match="mode='min' or mode='max'"):
        callbacks.EarlyStopping(monitor="val_f1")
    with pytest.raises(numnet.NumnetError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=2.0)


def read_events(folder) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every scalar under `folder`'s train/ and validation/ runs, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    runs = {}
    for part in ("train", "validation"):
        events = EventAccumulator(str(folder / part))
        events.Reload()
        tags = events.Tags()
        scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags["scalars"]}
        # Keras on TensorFlow writes its scalars as float tensors (and the model's config as text).
        numeric = [tag for tag in tags["tensors"] if events.Tensors(tag)[0].tensor_proto.dtype in (1, 2)]
        tensors = {
            tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in numeric
        }
        runs[part] = {**scalars, **tensors}
    return runs


@pytest.mark.parametrize("backend", ["numba", "tensorflow"])
def test_tensorboard_logs_every_epoch_where_tensorboard_reads_it_and_a_resumed_fit_continues(
    backend, mnist_inputs, tmp_path
):
    (x_train, y_train), _ = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), backend=backend, seed=0)
    fit = dict(batch_size=100, verbose=0, validation_split=0.2)
    first = model.fit(x_train[:500], y_train[:500], epochs=2, callbacks=[callbacks.TensorBoard(tmp_path)], **fit)
    again = model.fit(x_train[:500], y_train[:500], epochs=1, callbacks=[callbacks.TensorBoard(tmp_path)], **fit)
    logged = read_events(tmp_path)
    for part, prefix in (("train", ""), ("validation", "val_")):
        for tag in ("loss", "accuracy"):
            values = first[prefix + tag] + again[prefix + tag]
            assert logged[part][f"epoch_{tag}"] == [(step, pytest.approx(v)) for step, v in enumerate(values)]
    assert logged["train"]["epoch_learning_rate"] == [(step, pytest.approx(1e-3)) for step in range(3)]


def test_tensorboard_writes_the_runs_and_tags_keras_writes(mnist_inputs, tmp_path):
    (x_train, y_train), _ = mnist_inputs
    theirs = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    theirs.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    theirs.fit(x_train[:300], y_train[:300], epochs=2, validation_split=0.2, verbose=0,
               callbacks=[keras.callbacks.TensorBoard(tmp_path / "keras")])  # fmt: skip
    ours = numnet.build(numnet.specs.mlp(), seed=0)
    ours.fit(x_train[:300], y_train[:300], epochs=2, validation_split=0.2, verbose=0,
             callbacks=[callbacks.TensorBoard(tmp_path / "numnet")])  # fmt: skip
    keras_runs, numnet_runs = read_events(tmp_path / "keras"), read_events(tmp_path / "numnet")
    assert {part: sorted(tags) for part, tags in numnet_runs.items()} == {
        part: sorted(tags) for part, tags in keras_runs.items()
    }
    assert [step for step, _ in numnet_runs["validation"]["epoch_loss"]] == [0, 1]


@pytest.mark.parametrize("option", [{"histogram_freq": 1}, {"update_freq": "batch"}, {"write_images": True}])
def test_tensorboard_options_numnet_does_not_log_are_refused_by_name(option):
    with pytest.raises(numnet.errors.InputError, match=f"TensorBoard {next(iter(option))}=.* is not supported"):
        callbacks.TensorBoard("logs", **option)


@pytest.mark.parametrize("command", ["train", "experiments"])
def test_tensorboard_without_its_package_names_the_install_line_before_training(command, tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorboard'] = None; import numnet." + command + " as c; "
            "sys.exit(c.main(['--tensorboard', 'logs', '--out', 'out']))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "pip install 'numnet[tensorboard]'" in result.stderr and not (tmp_path / "out").exists()
