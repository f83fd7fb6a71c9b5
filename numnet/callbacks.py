"""Callbacks with Keras' names, arguments and semantics, run by numnet's one training loop.

`model.fit(..., callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])` behaves as in
Keras on every backend: the loop calls `on_train_begin`, `on_epoch_begin(epoch)`,
`on_epoch_end(epoch, logs)` and `on_train_end`, with `epoch` counted from 0 in this `fit` call and
`logs` holding loss, accuracy and (with validation) val_loss, val_accuracy. A callback may set
`model.stop_training`, read and set `model.learning_rate`, and get, set or save the weights.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from numnet.errors import InputError
from numnet.settings import is_finite_number, is_integer

Logs = dict[str, float]


class Callback:
    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: Logs | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...

    def on_train_end(self, logs: Logs | None = None) -> None: ...


class LambdaCallback(Callback):
    """A callback from plain functions, as keras.callbacks.LambdaCallback."""

    def __init__(
        self,
        on_epoch_begin: Callable[[int, Logs], None] | None = None,
        on_epoch_end: Callable[[int, Logs], None] | None = None,
        on_train_begin: Callable[[Logs], None] | None = None,
        on_train_end: Callable[[Logs], None] | None = None,
    ) -> None:
        none2 = lambda *_: None  # noqa: E731
        self.on_epoch_begin = on_epoch_begin or none2
        self.on_epoch_end = on_epoch_end or none2
        self.on_train_begin = on_train_begin or none2
        self.on_train_end = on_train_end or none2


def _monitor_direction(monitor: str, mode: str, who: str) -> str:
    """'min' or 'max' for a monitored quantity; 'auto' reads it from the name as Keras does."""
    if mode not in ("auto", "min", "max"):
        raise InputError(f"{who} mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    if name in ("accuracy", "acc"):
        return "max"
    raise InputError(f"{who} cannot tell whether {monitor!r} should go up or down; pass mode='min' or mode='max'")


def _monitored(logs: Logs | None, monitor: str, who: str) -> float | None:
    value = (logs or {}).get(monitor)
    if value is None:
        print(f"warning: {who} monitors {monitor!r}, which is not in this epoch's logs "
              f"(available: {sorted(logs or {})})", file=sys.stderr)  # fmt: skip
    return value


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:  # fmt: skip
        if not is_integer(patience) or patience < 0:
            raise InputError(f"EarlyStopping patience must be a non-negative integer, got {patience!r}")
        self.monitor, self.patience, self.verbose, self.baseline = monitor, patience, verbose, baseline
        self.direction = _monitor_direction(monitor, mode, "EarlyStopping")
        self.min_delta = abs(min_delta)
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.on_train_begin()

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self.direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model after each epoch (atomically), or only when `monitor` improves.

    `filepath` may hold `{epoch}` and log keys, e.g. "model-{epoch:02d}-{val_loss:.3f}.npz".
    """

    def __init__(
        self,
        filepath: str | Path,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        mode: str = "auto",
        initial_value_threshold: float | None = None,
    ) -> None:
        self.filepath, self.monitor, self.verbose, self.save_best_only = str(filepath), monitor, verbose, save_best_only
        self.direction = _monitor_direction(monitor, mode, "ModelCheckpoint") if save_best_only else "min"
        default = math.inf if self.direction == "min" else -math.inf
        self.best = default if initial_value_threshold is None else initial_value_threshold

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as missing:
            raise InputError(
                f"ModelCheckpoint's filepath {self.filepath!r} names {missing}, which is not in this "
                f"epoch's logs (available: epoch, {', '.join(sorted(logs))})"
            ) from None
        except (IndexError, ValueError) as error:
            raise InputError(
                f"ModelCheckpoint's filepath {self.filepath!r} is not a format numnet can fill: {error}"
            ) from None
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if current is None:
                return
            better = current < self.best if self.direction == "min" else current > self.best
            if not better:
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}; saving")
            self.best = current
        self.model.save(path)


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch's start to `schedule(epoch, lr)` (or `schedule(epoch)`)."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.model.learning_rate)
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:  # a one-argument schedule, as Keras allows
            lr = self.schedule(epoch)
        if not is_finite_number(lr):
            raise InputError(f"the learning-rate schedule must return a finite number, got {lr!r}")
        self.model.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` when `monitor` has not improved for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0) -> None:  # fmt: skip
        if factor >= 1.0:
            raise InputError(f"ReduceLROnPlateau does not support a factor >= 1.0, got {factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        # Keras' own rule for 'auto' here: maximise anything with "acc" in its name.
        self.direction = mode if mode in ("min", "max") else ("max" if "acc" in monitor else "min")
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.direction == "min" else -math.inf
        self.cooldown_counter, self.wait = 0, 0

    def _improved(self, current: float) -> bool:
        if self.direction == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.learning_rate)
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(self.model.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.learning_rate = new
                    if self.verbose > 0:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


def require_tensorboard() -> Any:
    """The `tensorboard` package's event writer, or an error naming the install line."""
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise InputError("TensorBoard logs need the tensorboard package: pip install 'numnet[tensorboard]'") from None
    return EventFileWriter


class EventLog:
    """One run's TensorBoard event files, as Keras' callback writes them: `log_dir/train` and
    `log_dir/validation`, tags `epoch_loss`, `epoch_accuracy`, `epoch_learning_rate` at the epoch,
    and validation's `evaluation_*_vs_iterations` at the optimizer's step count. Written with the
    `tensorboard` package's own event writer, flushed every epoch (an interrupted run keeps them)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir, self.open_writer = Path(log_dir), require_tensorboard()
        self.writers: dict[str, Any] = {}

    def epoch(self, epoch: int, logs: Logs, learning_rate: float, iterations: int) -> None:
        """Logs epoch `epoch` (from 0, counted over the whole run, so a resumed run continues its curves)."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        train = {"loss": logs.get("loss"), "accuracy": logs.get("accuracy"), "learning_rate": float(learning_rate)}
        validation = {"loss": logs.get("val_loss"), "accuracy": logs.get("val_accuracy")}
        by_step = {f"evaluation_{tag}_vs_iterations": value for tag, value in validation.items()}
        events = [("train", "epoch_", train, epoch), ("validation", "epoch_", validation, epoch),
                  ("validation", "", by_step, int(iterations))]  # fmt: skip
        for part, prefix, scalars, step in events:
            summary = Summary(value=[Summary.Value(tag=prefix + tag, simple_value=float(value))
                                     for tag, value in scalars.items() if value is not None])  # fmt: skip
            if not summary.value:
                continue
            if part not in self.writers:
                self.writers[part] = self.open_writer(str(self.log_dir / part))
            self.writers[part].add_event(Event(wall_time=time.time(), step=step, summary=summary))
            self.writers[part].flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


class TensorBoard(Callback):
    """Keras' TensorBoard callback, per epoch (see EventLog for what it writes; `pip install
    'numnet[tensorboard]'`). numnet has no graph to draw, so `write_graph` changes nothing."""

    def __init__(self, log_dir: str | Path = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False,
                 update_freq: str | int = "epoch") -> None:  # fmt: skip
        unsupported = {"histogram_freq": (histogram_freq, 0), "write_images": (write_images, False),
                       "write_steps_per_second": (write_steps_per_second, False),
                       "update_freq": (update_freq, "epoch")}  # fmt: skip
        for name, (value, default) in unsupported.items():
            if value != default:
                raise InputError(f"TensorBoard {name}={value!r} is not supported by numnet; it logs per epoch only")
        require_tensorboard()
        self.log_dir = Path(log_dir)
        self.log: EventLog | None = None

    def on_train_begin(self, logs=None):
        self.log = EventLog(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        self.log.epoch(model.epochs_done - 1, logs or {}, model.learning_rate, model.optimizer.iterations)

    def on_train_end(self, logs=None):
        self.log.close()
