"""TensorFlow backend: the same spec built as a Keras model, behind numnet's Model API.

Layer settings, initialisers, optimizer and loss are Keras' own, so this backend is the yardstick
the numnet engine is checked against. It runs on the GPU when TensorFlow sees one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from numnet import specs
from numnet.errors import BackendUnavailable, InputError, SpecError, TrainingDiverged

History = dict[str, list[float]]


def import_keras():
    """Imports TensorFlow's Keras quietly, or explains how to install it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as error:
        raise BackendUnavailable(
            f"the tensorflow backend needs TensorFlow ({error}); install it with `pip install 'numnet[tf]'`"
        ) from error
    return tf, keras


def keras_layer(keras, config: dict[str, Any], seed: int):
    """One Keras layer with exactly the settings numnet's layer of the same config uses."""
    options = {key: value for key, value in config.items() if key != "type"}
    kind = config["type"]
    if kind == "Dense":
        return keras.layers.Dense(options["units"], activation=options.get("activation"))
    if kind == "Conv2D":
        return keras.layers.Conv2D(
            options["filters"],
            options.get("kernel_size", 3),
            padding=options.get("padding", "valid"),
            activation=options.get("activation"),
        )
    if kind == "BatchNormalization":
        return keras.layers.BatchNormalization(
            momentum=options.get("momentum", 0.99), epsilon=options.get("epsilon", 1e-3)
        )
    if kind == "MaxPooling2D":
        return keras.layers.MaxPooling2D(options.get("pool_size", 2))
    if kind == "Dropout":
        return keras.layers.Dropout(options.get("rate", 0.5), seed=seed)
    if kind == "Flatten":
        return keras.layers.Flatten()
    if kind == "Activation":
        return keras.layers.Activation(options.get("activation", "relu"))
    raise SpecError(f"unknown layer type {kind!r}")


def keras_model(spec: specs.Spec, seed: int = 0):
    """A compiled keras.Sequential built from a numnet spec."""
    _, keras = import_keras()
    spec = specs.validate(spec)
    # Builds through numnet first: the same validation and error messages for every backend.
    from numnet.backends import get_backend

    get_backend("numpy").build(spec, seed=seed)
    keras.utils.set_random_seed(seed)
    layers = [keras_layer(keras, config, seed + i) for i, config in enumerate(spec["layers"])]
    model = keras.Sequential([keras.Input(tuple(spec["input_shape"])), *layers], name=spec["name"])
    opt = spec["optimizer"]
    options = {key: value for key, value in opt.items() if key != "type"}
    optimizer = keras.optimizers.Adam(**options) if opt["type"] == "adam" else keras.optimizers.SGD(**options)
    model.compile(optimizer=optimizer, loss=spec["loss"], metrics=["accuracy"])
    optimizer.build(model.trainable_variables)
    return model


class KerasOptimizerState:
    """get_state/set_state over a Keras optimizer, in numnet's layout (iterations, m, v, ...)."""

    def __init__(self, optimizer) -> None:
        self.optimizer = optimizer

    def _slots(self) -> list:
        momentums = getattr(self.optimizer, "_momentums", [])
        velocities = getattr(self.optimizer, "_velocities", [])
        return [slot for pair in zip(momentums, velocities) for slot in pair]

    @property
    def iterations(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def get_state(self) -> list[np.ndarray]:
        return [np.array(self.iterations, dtype=np.int64)] + [np.array(s.numpy()) for s in self._slots()]

    def set_state(self, state: list[np.ndarray]) -> None:
        slots = self._slots()
        if len(state) != 1 + len(slots):
            raise ValueError(f"expected {1 + len(slots)} optimizer arrays, got {len(state)}")
        self.optimizer.iterations.assign(int(state[0]))
        for slot, value in zip(slots, state[1:]):
            slot.assign(value)


class TensorFlowModel:
    """numnet's Model API over a Keras model built from the same spec."""

    backend = "tensorflow"

    def __init__(self, spec: specs.Spec, seed: int = 0, dtype=np.float32, strategy: str = "default") -> None:
        tf, keras = import_keras()
        self.tf, self.keras = tf, keras
        self.spec = specs.validate(spec)
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.input_shape = tuple(self.spec["input_shape"])
        keras.config.set_floatx(self.dtype.name)
        keras.config.set_dtype_policy(self.dtype.name)
        try:
            if strategy == "mirrored":
                self.strategy = tf.distribute.MirroredStrategy()
                with self.strategy.scope():
                    self.keras_model = keras_model(self.spec, seed)
            elif strategy == "default":
                self.strategy = None
                self.keras_model = keras_model(self.spec, seed)
            else:
                raise BackendUnavailable(f"unknown strategy {strategy!r}; use 'default' or 'mirrored'")
        finally:
            keras.config.set_floatx("float32")
            keras.config.set_dtype_policy("float32")
        self.optimizer = KerasOptimizerState(self.keras_model.optimizer)
        self.num_classes = self.keras_model.output_shape[-1]
        self.epochs_done = 0
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
            self.device = f"GPU: {', '.join(names)}" + (" (mirrored)" if self.strategy else "")
        else:
            self.device = None  # the CLI describes the CPU

    # Input checks are numnet's own, so both backends reject the same inputs the same way.
    def _checker(self):
        from numnet.backends import get_backend

        checker = getattr(self, "_input_checker", None)
        if checker is None:
            checker = self._input_checker = get_backend("numpy").build(self.spec, seed=self.seed)
        return checker

    def _check(self, x, y=None):
        checker = self._checker()
        x = checker._check_x(x).astype(self.dtype, copy=False)
        return (x, None) if y is None else (x, checker._check_y(y, x.shape[0]))

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int = 1,
        batch_size: int = 32,
        validation_split: float = 0.0,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        shuffle: bool = True,
        verbose: int = 1,
        on_epoch_end: Callable[[Any, History], None] | None = None,
    ) -> History:
        x, y = self._check(x, y)
        if validation_data is not None:
            validation_data = self._check(*validation_data)
        history: History = {"loss": [], "accuracy": []}
        if validation_split or validation_data is not None:
            history.update(val_loss=[], val_accuracy=[])
        history["seconds"] = []
        n_train = int(x.shape[0] * (1 - validation_split)) if validation_split else x.shape[0]
        steps = -(-n_train // batch_size)
        callback = _progress_callback(self, steps, history, verbose, on_epoch_end)
        self.keras_model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            verbose=0,
            callbacks=[callback],
        )
        return history

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> dict[str, float]:
        x, y = self._check(x, y)
        loss, accuracy = self.keras_model.evaluate(x, y, batch_size=batch_size, verbose=0)
        return {"loss": float(loss), "accuracy": float(accuracy)}

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        x, _ = self._check(x)
        if x.shape[0] <= batch_size:  # Keras' advice: call the model directly for small inputs
            return np.asarray(self.keras_model(x, training=False), dtype=np.float32)
        return self.keras_model.predict(x, batch_size=batch_size, verbose=0).astype(np.float32)

    def count_params(self) -> int:
        return int(self.keras_model.count_params())

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        lines: list[str] = []
        self.keras_model.summary(print_fn=lambda line, **_: lines.append(line))
        text = f"(numnet, tensorflow backend on {self.device or 'CPU'})\n" + "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(w) for w in self.keras_model.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        own = self.keras_model.get_weights()
        if len(weights) != len(own):
            raise InputError(f"set_weights got {len(weights)} arrays; this model has {len(own)}")
        for i, (target, new) in enumerate(zip(own, weights)):
            if np.shape(new) != target.shape:
                raise InputError(f"weight {i} has shape {np.shape(new)}; expected {target.shape}")
        self.keras_model.set_weights([np.asarray(w, dtype=t.dtype) for w, t in zip(weights, own)])

    def save(self, path: str | Path) -> None:
        from numnet.files import save_model

        save_model(self, path)


def _progress_callback(owner, steps: int, history: History, verbose: int, on_epoch_end):
    """numnet's progress bar, history, NaN check and per-epoch hook, as a Keras callback."""
    _, keras = import_keras()

    class ProgressCallback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()
            self.bar = tqdm(
                total=steps, desc=f"epoch {owner.epochs_done + 1}", unit="step",
                disable=verbose == 0, dynamic_ncols=True,
            )  # fmt: skip

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            loss = float(logs.get("loss", 0.0))
            if not np.isfinite(loss):
                self.bar.close()
                raise TrainingDiverged(
                    f"loss became {loss} at epoch {owner.epochs_done + 1}, step {batch + 1} of {steps}; "
                    "lower the learning rate or check the data"
                )
            self.bar.update(1)
            if batch % 10 == 0 or batch == steps - 1:
                self.bar.set_postfix(loss=f"{loss:.4f}", accuracy=f"{float(logs.get('accuracy', 0)):.4f}")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                if key in history and key in logs:
                    history[key].append(float(logs[key]))
            self.bar.set_postfix({key: f"{float(value):.4f}" for key, value in logs.items()})
            self.bar.close()
            history["seconds"].append(time.perf_counter() - self.start)
            owner.epochs_done += 1
            if on_epoch_end is not None:
                on_epoch_end(owner, history)

    return ProgressCallback()


def build(spec: specs.Spec, seed: int = 0, dtype=np.float32, strategy: str = "default") -> TensorFlowModel:
    return TensorFlowModel(spec, seed=seed, dtype=dtype, strategy=strategy)
