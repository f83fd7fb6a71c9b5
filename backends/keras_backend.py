"""Keras backends (tensorflow, jax, torch): the same spec built as a Keras 3 model, behind numnet's
Model API.

Layer settings come from each numnet layer's Keras mapping, initialisers, optimizer and loss are
Keras' own, so these backends are the yardstick the numnet engine is checked against. The training
loop, checks, history and callbacks are numnet's (`numnet.engine.training`); each epoch runs Keras' own
`fit` underneath. Each runs on the GPU when its framework sees one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet import schedules, specs
from numnet.engine.summary import Summary
from numnet.engine.training import EpochProgress, ModelAPI
from numnet.errors import BackendUnavailable
from numnet.keras.bridge import import_keras, sequential
from numnet.layers import check_spec, outputs_logits


class KerasOptimizerState:
    """get_state/set_state over a Keras optimizer, in numnet's layout (iterations, m, v, ...)."""

    def __init__(self, optimizer, keras) -> None:
        self.optimizer, self.to_numpy = optimizer, keras.ops.convert_to_numpy

    def _slots(self) -> list:
        momentums = getattr(self.optimizer, "_momentums", [])
        velocities = getattr(self.optimizer, "_velocities", [])
        return [slot for pair in zip(momentums, velocities) for slot in pair]

    @property
    def iterations(self) -> int:
        return int(self.to_numpy(self.optimizer.iterations))

    def get_state(self) -> list[np.ndarray]:
        return [np.array(self.iterations, dtype=np.int64)] + [np.array(self.to_numpy(s)) for s in self._slots()]

    def set_state(self, state: list[np.ndarray]) -> None:
        slots = self._slots()
        if len(state) != 1 + len(slots):
            raise ValueError(f"expected {1 + len(slots)} optimizer arrays, got {len(state)}")
        self.optimizer.iterations.assign(int(state[0]))
        for slot, value in zip(slots, state[1:]):
            slot.assign(value)


def gpu_name(backend: str, framework: Any) -> str | None:
    """The GPU the framework computes on, or None on the CPU."""
    if backend == "tensorflow":
        gpus = framework.config.list_physical_devices("GPU")
        details = [framework.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        return ", ".join(details) or None
    if backend == "jax":
        gpus = [d for d in framework.devices() if d.platform == "gpu"]
        return ", ".join(d.device_kind for d in gpus) or None
    if framework.cuda.is_available():
        return framework.cuda.get_device_name(0)
    return None


class KerasModel(ModelAPI):
    """numnet's Model API over a Keras model built from the same spec, on one Keras backend."""

    def __init__(
        self, spec: specs.Spec, seed: int = 0, dtype=np.float32, strategy: str = "default", backend: str = "tensorflow"
    ) -> None:
        framework, keras = import_keras(backend)
        self.backend, self.keras = backend, keras
        if strategy != "default" and backend != "tensorflow":
            raise BackendUnavailable(f"strategy {strategy!r} is for the tensorflow backend only")
        self.spec, layers = check_spec(spec)
        self.outputs_logits = outputs_logits(layers)
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.input_shape = tuple(self.spec["input_shape"])
        keras.config.set_floatx(self.dtype.name)
        keras.config.set_dtype_policy(self.dtype.name)
        try:
            if strategy == "mirrored":
                self.strategy = framework.distribute.MirroredStrategy()
                with self.strategy.scope():
                    self.keras_model = sequential(self.spec, layers, seed, backend)
            elif strategy == "default":
                self.strategy = None
                self.keras_model = sequential(self.spec, layers, seed, backend)
            else:
                raise BackendUnavailable(f"unknown strategy {strategy!r}; use 'default' or 'mirrored'")
        finally:
            keras.config.set_floatx("float32")
            keras.config.set_dtype_policy("float32")
        self.optimizer = KerasOptimizerState(self.keras_model.optimizer, keras)
        self.num_classes = self.keras_model.output_shape[-1]
        self.epochs_done = 0
        gpu = gpu_name(backend, framework)
        # None on the CPU: the commands describe the CPU themselves.
        self.device = f"GPU: {gpu}" + (" (mirrored)" if self.strategy else "") if gpu else None

    # -- ModelAPI hooks ------------------------------------------------------------------------
    def _train_epoch(self, x, y, batch_size, shuffle, progress: EpochProgress):
        keras = self.keras

        class StepReport(keras.callbacks.Callback):
            """Keras' running epoch means, step by step, to numnet's progress (bar and NaN stop)."""

            def on_train_batch_begin(self, batch, logs=None):
                progress.begin_step(batch)

            def on_train_batch_end(self, batch, logs=None):
                logs = logs or {}
                progress.end_step(float(logs.get("loss", 0.0)), float(logs.get("accuracy", 0.0)))

        result = self.keras_model.fit(
            x, y, epochs=1, batch_size=batch_size, shuffle=shuffle, verbose=0, callbacks=[StepReport()]
        )
        return result.history["loss"][-1], result.history["accuracy"][-1]

    def _evaluate(self, x, y, batch_size):
        loss, accuracy = self.keras_model.evaluate(x, y, batch_size=batch_size, verbose=0)
        return loss, accuracy

    def _predict(self, x, batch_size):
        if x.shape[0] <= batch_size:  # Keras' advice: call the model directly for small inputs
            return self.keras.ops.convert_to_numpy(self.keras_model(x, training=False))
        return self.keras_model.predict(x, batch_size=batch_size, verbose=0)

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(w) for w in self.keras_model.get_weights()]

    def _assign_weights(self, weights: list[np.ndarray]) -> None:
        self.keras_model.set_weights(weights)

    @property
    def learning_rate(self) -> float:
        return float(self.keras.ops.convert_to_numpy(self.keras_model.optimizer.learning_rate))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        schedule = self.spec["optimizer"]["learning_rate"]
        rate = schedules.rate_to_set(schedule if isinstance(schedule, dict) else None, value)
        self.keras_model.optimizer.learning_rate.assign(rate)

    # -- description ---------------------------------------------------------------------------
    def count_params(self) -> int:
        return int(self.keras_model.count_params())

    def _summary(self) -> Summary:
        rows = []
        for layer in self.keras_model.layers:
            shape = "(" + ", ".join(str(d) for d in layer.output.shape) + ")"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}"))
        trainable = sum(int(np.prod(w.shape)) for w in self.keras_model.trainable_weights)
        title = f'Model: "{self.spec["name"]}" (numnet, Keras on {self.backend}, {self.device or "CPU"})'
        return Summary(title, rows, self.count_params(), trainable)


def build(
    spec: specs.Spec, seed: int = 0, dtype=np.float32, strategy: str = "default", backend: str = "tensorflow"
) -> KerasModel:
    return KerasModel(spec, seed=seed, dtype=dtype, strategy=strategy, backend=backend)
