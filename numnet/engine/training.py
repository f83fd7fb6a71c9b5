"""The Model API every backend shares: one training loop, one set of input checks, callbacks.

A backend subclasses `ModelAPI` and supplies how to run one epoch, evaluate, predict and read or
write its weights; everything the user sees — argument checks and their messages, the progress
bar, history, the NaN/inf stop, validation, callbacks, set_weights checks and saving — is written
here once.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from numnet import specs
from numnet.callbacks import Callback
from numnet.engine.summary import Summary, show
from numnet.errors import InputError, NumericalError, TrainingDiverged
from numnet.formats.save import save_model
from numnet.settings import SETTINGS, is_integer

History = dict[str, list[float]]
NOT_FINITE = "the weights or the inputs are too large to compute with; check them (inputs in [0, 1])"


class EpochProgress:
    """What an epoch runner reports step by step: the loop draws the bar and stops on NaN/inf."""

    def __init__(self, epoch: int, steps: int, verbose: int) -> None:
        self.epoch, self.steps, self.step = epoch, steps, 0
        self.bar = tqdm(total=steps, desc=f"epoch {epoch}", unit="step", disable=verbose == 0, dynamic_ncols=True)

    def begin_step(self, step: int) -> None:
        self.step = step

    def end_step(self, running_loss: float, running_accuracy: float) -> None:
        """Running means over the epoch so far, as Keras logs them."""
        if not math.isfinite(running_loss):
            raise TrainingDiverged(f"loss became {running_loss}")
        self.bar.update(1)
        if self.step % 10 == 0 or self.step == self.steps - 1:
            self.bar.set_postfix(loss=f"{running_loss:.4f}", accuracy=f"{running_accuracy:.4f}")

    def diverged(self, error: TrainingDiverged) -> TrainingDiverged:
        return TrainingDiverged(
            f"{error} at epoch {self.epoch}, step {self.step + 1} of {self.steps}; "
            "lower the learning rate or check the data"
        )


class ModelAPI:
    """fit / evaluate / predict / get_weights / set_weights / save, as a Keras user expects them.

    Subclasses set `spec`, `input_shape`, `num_classes`, `dtype`, `backend`, `seed`, `optimizer`
    and `epochs_done`, and implement the hooks below.
    """

    spec: specs.Spec
    input_shape: tuple[int, ...]
    num_classes: int
    dtype: np.dtype
    backend: str
    epochs_done: int
    stop_training: bool = False
    outputs_logits: bool = False  # a spec ending without softmax: predict gives logits, as Keras does
    history: History | None = None
    learning_rate: float  # a property on each backend: callbacks read and set it

    def random_state(self) -> dict[str, Any] | None:
        """Where the backend's seeded generators stand, for checkpoints (None: it keeps its own)."""
        return None

    def set_random_state(self, state: Any) -> None: ...

    # -- what a backend supplies ---------------------------------------------------------------
    def _train_epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, progress: EpochProgress):
        """One pass over (x, y); returns the epoch's mean loss and accuracy."""
        raise NotImplementedError

    def _evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
        raise NotImplementedError

    def _predict(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def _assign_weights(self, weights: list[np.ndarray]) -> None:
        raise NotImplementedError

    def get_weights(self) -> list[np.ndarray]:
        """Copies, in Keras order and layout."""
        raise NotImplementedError

    # -- input checks --------------------------------------------------------------------------
    def _check_x(self, x: Any, name: str = "x") -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise InputError(f"{name} must be a NumPy array, got {type(x).__name__}")
        if x.ndim == len(self.input_shape) and self.input_shape[-1] == 1:
            x = x[..., None]  # (N, 28, 28) -> (N, 28, 28, 1)
        if x.shape[1:] != self.input_shape:
            raise InputError(
                f"{name} has shape {x.shape}; this model takes (N, {', '.join(map(str, self.input_shape))})"
            )
        if x.shape[0] == 0:
            raise InputError(f"{name} is empty")
        if not np.issubdtype(x.dtype, np.floating):
            raise InputError(
                f"{name} has dtype {x.dtype}; pass floats in [0, 1] "
                "(numnet.data.to_model_input converts uint8 MNIST images)"
            )
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(x.shape[0], -1).any(axis=1).sum())
            raise InputError(f"{name} contains NaN or infinite values in {bad} sample(s)")
        if x.min() >= 0 and x.max() > 2:  # pixel levels 0-255, never scaled
            warnings.warn(
                f"{name} holds values up to {x.max():g}, like pixel levels 0-255; numnet's networks read images "
                "scaled to [0, 1] (numnet.data.to_model_input); a model trained on raw levels may want them",
                UserWarning, stacklevel=3,
            )  # fmt: skip
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _check_y(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        try:
            y = np.asarray(y)
        except ValueError:  # NumPy refuses ragged lists
            raise InputError(f"{name} is ragged: its rows differ in length") from None
        if y.ndim == 2 and self.spec["loss"] == "categorical_crossentropy":
            if y.shape != (n, self.num_classes):
                raise InputError(f"{name} has shape {y.shape}; expected ({n}, {self.num_classes}) one-hot")
            if y.dtype.kind not in "iuf":
                raise InputError(f"{name} has dtype {y.dtype}; one-hot targets are numbers")
            if not (np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()) or \
                    not np.allclose(y.sum(axis=1), 1.0, atol=1e-3):  # fmt: skip
                raise InputError(f"{name} is not one-hot: each row must hold values in [0, 1] that sum to 1")
            return y
        if y.ndim != 1 or y.shape[0] != n:
            raise InputError(f"{name} has shape {y.shape}; expected ({n},) integer class ids")
        if not np.issubdtype(y.dtype, np.integer):
            raise InputError(f"{name} has dtype {y.dtype}; labels must be integer class ids")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise InputError(f"{name} has labels outside 0..{self.num_classes - 1}")
        return y.astype(np.intp)

    # -- the one training loop -----------------------------------------------------------------
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
        callbacks: list[Callback] | None = None,
    ) -> History:
        """Trains like Keras: validation_split takes the *last* fraction of x before shuffling.

        Returns per-epoch lists: loss, accuracy, (val_loss, val_accuracy,) seconds, and whatever
        the callbacks add to the logs (learning_rate). Also kept as `model.history`.
        """
        # Keras' fit trains no epoch for epochs=0 (a finished run resumed); a run itself needs one.
        epochs = 0 if is_integer(epochs) and epochs == 0 else SETTINGS["epochs"].check(epochs)
        batch_size = SETTINGS["batch_size"].check(batch_size)
        validation_split = SETTINGS["validation_split"].check(validation_split)
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        if validation_split and validation_data is None:
            n_train = int(x.shape[0] * (1 - validation_split))
            if n_train == 0 or n_train == x.shape[0]:
                raise InputError(f"validation_split {validation_split} leaves no training or validation data")
            validation_data = (x[n_train:], y[n_train:])
            x, y = x[:n_train], y[:n_train]
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise InputError("validation_data must be a pair (x, y)")
            val_x = self._check_x(validation_data[0], "validation x")
            val_y = self._check_y(validation_data[1], val_x.shape[0], "validation y")

        history: History = {"loss": [], "accuracy": []}
        if validation_data is not None:
            history.update(val_loss=[], val_accuracy=[])
        history["seconds"] = []
        self.history, self.stop_training = history, False
        callbacks = list(callbacks or [])
        for callback in callbacks:
            callback.set_model(self)
            callback.on_train_begin()
        steps = -(-x.shape[0] // batch_size)
        for epoch in range(epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            start = time.perf_counter()
            progress = EpochProgress(self.epochs_done + 1, steps, verbose)
            with progress.bar:
                try:
                    loss, accuracy = self._train_epoch(x, y, batch_size, shuffle, progress)
                except TrainingDiverged as error:
                    raise progress.diverged(error) from None
                logs = {"loss": float(loss), "accuracy": float(accuracy)}
                if validation_data is not None:
                    val_loss, val_accuracy = self._evaluate(val_x, val_y, 1000)
                    logs.update(val_loss=float(val_loss), val_accuracy=float(val_accuracy))
                progress.bar.set_postfix({key: f"{value:.4f}" for key, value in logs.items()})
            recorded = set(logs)
            for key, value in logs.items():
                history[key].append(value)
            history["seconds"].append(time.perf_counter() - start)
            self.epochs_done += 1
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            for key, value in logs.items():  # as Keras' History, keep what the callbacks logged
                if key in recorded:
                    history[key][-1] = value
                else:
                    history.setdefault(key, []).append(value)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end()
        return history

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000, verbose: int = 1) -> dict[str, float]:
        """Mean loss and accuracy in inference mode (BN moving statistics, no dropout); a progress bar
        over the images unless verbose=0, as Keras shows."""
        batch_size = SETTINGS["batch_size"].check(batch_size)
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        total_loss, correct = 0.0, 0
        with tqdm(total=x.shape[0], desc="evaluate", unit="image", disable=verbose == 0, dynamic_ncols=True) as bar:
            for start in range(0, x.shape[0], batch_size):  # batch by batch for the bar: the same means
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                batch_loss, batch_accuracy = self._evaluate(xb, yb, len(xb))
                total_loss, correct = total_loss + batch_loss * len(xb), correct + round(batch_accuracy * len(xb))
                bar.update(len(xb))
        loss, accuracy = total_loss / x.shape[0], correct / x.shape[0]
        if not math.isfinite(loss):
            raise NumericalError(f"the loss is {loss}: {NOT_FINITE}")
        return {"loss": float(loss), "accuracy": float(accuracy)}

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities, (N, classes) float32, in inference mode."""
        batch_size = SETTINGS["batch_size"].check(batch_size)
        outputs = np.asarray(self._predict(self._check_x(x), batch_size), dtype=np.float32)
        bad = ~np.isfinite(outputs).all(axis=1)
        if bad.any():
            raise NumericalError(f"the output of {int(bad.sum())} sample(s) holds NaN or infinite values: {NOT_FINITE}")
        return outputs

    def probabilities(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities whatever the model outputs: `predict`, with softmax applied to logits."""
        outputs = self.predict(x, batch_size)
        if not self.outputs_logits:
            return outputs
        exp = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Weights in Keras order and layout (as get_weights returns them), checked before any is set."""
        own = self.get_weights()
        if len(weights) != len(own):
            raise InputError(f"set_weights got {len(weights)} arrays; this model has {len(own)}")
        arrays = []
        for i, (target, new) in enumerate(zip(own, weights)):
            try:
                array = np.asarray(new)
            except ValueError:
                raise InputError(f"weight {i} is ragged, not an array") from None
            if array.shape != target.shape:
                raise InputError(f"weight {i} has shape {array.shape}; expected {target.shape}")
            if array.dtype.kind not in "iuf":
                raise InputError(f"weight {i} has dtype {array.dtype}; weights are real numbers")
            if not np.isfinite(array).all():
                raise InputError(f"weight {i} contains NaN or infinite values")
            with np.errstate(over="ignore"):
                arrays.append(array.astype(target.dtype))
            if not np.isfinite(arrays[-1]).all():
                raise InputError(
                    f"weight {i} holds values beyond {target.dtype}'s range (up to {np.abs(array).max():.3g})"
                )
        self._assign_weights(arrays)

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        """Keras' table of layers, output shapes and parameter counts: printed (a table in a notebook)
        and returned as text."""
        return show(self._summary(), print_fn)

    def _repr_html_(self) -> str:
        return self._summary().html()

    def _summary(self) -> Summary:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """One file with spec, weights and optimizer state (a Keras file for .keras/.h5), atomically."""
        save_model(self, path)
