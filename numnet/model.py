"""The numnet Model: a spec built into layers on one kernel backend, with a Keras-like API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from numnet import specs
from numnet.errors import InputError, SpecError, TrainingDiverged
from numnet.fusion import fuse
from numnet.layers import Activation, Layer, layer_from_config
from numnet.optimizers import make_optimizer

History = dict[str, list[float]]


def snake_case(name: str) -> str:
    """Keras' layer naming: MaxPooling2D -> max_pooling2d."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


class Model:
    """Layers built from a spec on a kernel module (numpy or numba); see `numnet.build`."""

    def __init__(self, spec: specs.Spec, kernels: ModuleType, seed: int = 0, dtype=np.float32) -> None:
        self.spec = specs.validate(spec)
        self.kernels = kernels
        self.backend = kernels.NAME
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.input_shape = tuple(self.spec["input_shape"])
        init_rng = np.random.default_rng(seed)
        self.dropout_rng = np.random.default_rng([seed, 1])
        self.shuffle_rng = np.random.default_rng([seed, 2])

        self.layers: list[Layer] = [layer_from_config(config) for config in self.spec["layers"]]
        self.layer_names = self._keras_names()
        shape = self.input_shape
        self.ops: list[Layer] = []  # the flat chain forward/backward run: layers plus their activations
        for layer in self.layers:
            rng = self.dropout_rng if layer.type == "Dropout" else init_rng
            shape = layer.build(shape, rng, self.dtype, kernels)
            self.ops.append(layer)
            activation = layer.config.get("activation") if layer.type != "Activation" else None
            if activation not in (None, "linear"):
                act = Activation(activation=activation)
                act.build(shape, rng, self.dtype, kernels)
                self.ops.append(act)
        self.output_shape = shape
        self.ops = fuse(self.ops)
        # Backward stops at the first layer with parameters: nothing before it wants a gradient.
        first = next((i for i, op in enumerate(self.ops) if op.params), 0)
        self.ops[first].needs_input_grad = False
        self.backward_ops = self.ops[first:-1][::-1]
        last = self.ops[-1]
        if not (isinstance(last, Activation) and last.name == "softmax") or len(shape) != 1:
            raise SpecError("the last layer must output class probabilities: end the spec with softmax")
        self.num_classes = shape[0]
        self.optimizer = make_optimizer(self.spec["optimizer"], self.trainable_weights(), kernels)
        self.epochs_done = 0

    def _keras_names(self) -> list[str]:
        counts: dict[str, int] = {}
        names = []
        for layer in self.layers:
            base = snake_case(layer.type)
            n = counts.get(base, 0)
            counts[base] = n + 1
            names.append(base if n == 0 else f"{base}_{n}")
        return names

    # -- forward / backward -------------------------------------------------------------------
    def _logits(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Runs every op but the final softmax: the fused loss wants logits."""
        for op in self.ops[:-1]:
            x = op.forward(x, training)
        return x

    def _backward(self, dlogits: np.ndarray) -> None:
        dy = dlogits
        for op in self.backward_ops:
            dy = op.backward(dy)

    def trainable_weights(self) -> list[np.ndarray]:
        return [p for layer in self.layers for p in layer.params.values()]

    def _gradients(self) -> list[np.ndarray]:
        return [layer.grads[name] for layer in self.layers for name in layer.params]

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if y.ndim == 2:
            return y.astype(self.dtype, copy=False)
        onehot = np.zeros((y.shape[0], self.num_classes), self.dtype)
        onehot[np.arange(y.shape[0]), y] = 1
        return onehot

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One optimizer step on a batch; returns the batch loss and the number classified right."""
        logits = self._logits(x, training=True)
        loss, dlogits = self.kernels.softmax_cross_entropy(logits, self._targets(y))
        if not np.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss}")
        self._backward(dlogits)
        self.optimizer.step(self._gradients())
        return loss, int((logits.argmax(axis=1) == _class_ids(y)).sum())

    # -- input checking ------------------------------------------------------------------------
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
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _check_y(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        y = np.asarray(y)
        if y.ndim == 2 and self.spec["loss"] == "categorical_crossentropy":
            if y.shape != (n, self.num_classes):
                raise InputError(f"{name} has shape {y.shape}; expected ({n}, {self.num_classes}) one-hot")
            return y
        if y.ndim != 1 or y.shape[0] != n:
            raise InputError(f"{name} has shape {y.shape}; expected ({n},) integer class ids")
        if not np.issubdtype(y.dtype, np.integer):
            raise InputError(f"{name} has dtype {y.dtype}; labels must be integer class ids")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise InputError(f"{name} has labels outside 0..{self.num_classes - 1}")
        return y.astype(np.intp)

    # -- public API ----------------------------------------------------------------------------
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
        on_epoch_end: Callable[[Model, History], None] | None = None,
    ) -> History:
        """Trains like Keras: validation_split takes the *last* fraction of x before shuffling.

        Returns per-epoch lists: loss, accuracy, (val_loss, val_accuracy,) seconds.
        `on_epoch_end(model, history)` runs after each epoch (the CLI saves checkpoints there).
        """
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        if not 0 <= validation_split < 1:
            raise InputError(f"validation_split must be in [0, 1), got {validation_split}")
        if validation_split and validation_data is None:
            n_train = int(x.shape[0] * (1 - validation_split))
            if n_train == 0 or n_train == x.shape[0]:
                raise InputError(f"validation_split {validation_split} leaves no training or validation data")
            validation_data = (x[n_train:], y[n_train:])
            x, y = x[:n_train], y[:n_train]
        if validation_data is not None:
            val_x = self._check_x(validation_data[0], "validation x")
            val_y = self._check_y(validation_data[1], val_x.shape[0], "validation y")
        if batch_size < 1:
            raise InputError(f"batch_size must be positive, got {batch_size}")

        history: History = {"loss": [], "accuracy": []}
        if validation_data is not None:
            history.update(val_loss=[], val_accuracy=[])
        history["seconds"] = []
        n = x.shape[0]
        steps = -(-n // batch_size)
        for _ in range(epochs):
            start = time.perf_counter()
            order = self.shuffle_rng.permutation(n) if shuffle else np.arange(n)
            total_loss, correct, seen = 0.0, 0, 0
            bar = tqdm(
                total=steps,
                desc=f"epoch {self.epochs_done + 1}",
                unit="step",
                disable=verbose == 0,
                leave=True,
                dynamic_ncols=True,
            )
            with bar:
                for step in range(steps):
                    batch = order[step * batch_size : (step + 1) * batch_size]
                    try:
                        loss, right = self.train_step(x[batch], y[batch])
                    except TrainingDiverged as error:
                        raise TrainingDiverged(
                            f"{error} at epoch {self.epochs_done + 1}, step {step + 1} of {steps}; "
                            "lower the learning rate or check the data"
                        ) from None
                    total_loss += loss * len(batch)
                    correct += right
                    seen += len(batch)
                    bar.update(1)
                    if step % 10 == 0 or step == steps - 1:
                        bar.set_postfix(loss=f"{total_loss / seen:.4f}", accuracy=f"{correct / seen:.4f}")
                history["loss"].append(total_loss / seen)
                history["accuracy"].append(correct / seen)
                if validation_data is not None:
                    result = self.evaluate(val_x, val_y)
                    history["val_loss"].append(result["loss"])
                    history["val_accuracy"].append(result["accuracy"])
                    bar.set_postfix(
                        loss=f"{history['loss'][-1]:.4f}",
                        accuracy=f"{history['accuracy'][-1]:.4f}",
                        val_loss=f"{result['loss']:.4f}",
                        val_accuracy=f"{result['accuracy']:.4f}",
                    )
            history["seconds"].append(time.perf_counter() - start)
            self.epochs_done += 1
            if on_epoch_end is not None:
                on_epoch_end(self, history)
        return history

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> dict[str, float]:
        """Mean loss and accuracy in inference mode (BN moving statistics, no dropout)."""
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        total_loss, correct = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            logits = self._logits(xb, training=False)
            loss, _ = self.kernels.softmax_cross_entropy(logits, self._targets(yb))
            total_loss += loss * xb.shape[0]
            correct += int((logits.argmax(axis=1) == _class_ids(yb)).sum())
        return {"loss": total_loss / x.shape[0], "accuracy": correct / x.shape[0]}

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities, (N, classes) float32, in inference mode."""
        x = self._check_x(x)
        out = np.empty((x.shape[0], self.num_classes), np.float32)
        for start in range(0, x.shape[0], batch_size):
            h = x[start : start + batch_size]
            for op in self.ops:
                h = op.forward(h, training=False)
            out[start : start + batch_size] = h
        return out

    def count_params(self) -> int:
        return sum(w.size for layer in self.layers for w in layer.weights())

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        """A Keras-style table of layers, output shapes and parameter counts."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for name, layer in zip(self.layer_names, self.layers):
            shape = "(None, " + ", ".join(map(str, layer.output_shape)) + ")"
            rows.append((f"{name} ({layer.type})", shape, f"{sum(w.size for w in layer.weights()):,}"))
        widths = [max(len(row[i]) for row in rows) + 2 for i in range(3)]
        table = ["".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        trainable = sum(p.size for p in self.trainable_weights())
        total = self.count_params()
        rule = "=" * sum(widths)
        result = "\n".join(
            [
                f'Model: "{self.spec["name"]}" (numnet, {self.backend} backend)',
                rule,
                table[0],
                rule,
                *table[1:],
                rule,
                f"Total params: {total:,}",
                f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}",
            ]
        )
        if print_fn is not None:
            print_fn(result)
        return result

    def get_weights(self) -> list[np.ndarray]:
        """Copies, in Keras order and layout: a Keras model of the same spec accepts them."""
        return [w.copy() for layer in self.layers for w in layer.weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        own = [w for layer in self.layers for w in layer.weights()]
        if len(weights) != len(own):
            raise InputError(f"set_weights got {len(weights)} arrays; this model has {len(own)}")
        for i, (target, new) in enumerate(zip(own, weights)):
            new = np.asarray(new)
            if new.shape != target.shape:
                raise InputError(f"weight {i} has shape {new.shape}; expected {target.shape}")
            if not np.isfinite(new).all():
                raise InputError(f"weight {i} contains NaN or infinite values")
        for target, new in zip(own, weights):
            target[...] = new  # in place: layers and optimizer hold references to these arrays

    def save(self, path: str | Path) -> None:
        """One file with spec, weights and optimizer state, written atomically."""
        from numnet.files import save_model

        save_model(self, path)


def _class_ids(y: np.ndarray) -> np.ndarray:
    return y.argmax(axis=1) if y.ndim == 2 else y
