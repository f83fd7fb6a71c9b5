"""The numnet engine's Model: a spec built into layers on one kernel module.

Everything the user sees (fit, evaluate, predict, checks, callbacks, saving) comes from
`numnet.engine.training.ModelAPI`; this class supplies the forward and backward passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet import specs
from numnet.engine.fusion import fuse
from numnet.engine.optimizers import make_optimizer
from numnet.engine.summary import Summary
from numnet.engine.training import EpochProgress, ModelAPI
from numnet.errors import TrainingDiverged
from numnet.layers import Activation, Layer, check_spec, keras_names, outputs_logits


class Model(ModelAPI):
    """Layers built from a spec on a kernel module (numpy, numba or cuda); see `numnet.build`."""

    def __init__(self, spec: specs.Spec, kernels: Any, seed: int = 0, dtype=np.float32) -> None:
        self.spec, self.layers = check_spec(spec)
        self.kernels = kernels
        self.backend = kernels.NAME
        self.device = getattr(kernels, "DEVICE", None)  # a GPU module names its GPU; None: the CPU
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.input_shape = tuple(self.spec["input_shape"])
        init_rng = np.random.default_rng(seed)
        self.dropout_rng = np.random.default_rng([seed, 1])
        self.shuffle_rng = np.random.default_rng([seed, 2])
        streams = {"dropout": self.dropout_rng, "augmentation": np.random.default_rng([seed, 3])}
        self.generators = {**streams, "shuffle": self.shuffle_rng}  # what a checkpoint carries

        self.layer_names = keras_names([layer.type for layer in self.layers])
        shape = self.input_shape
        ops: list[Layer] = []  # the flat chain forward/backward run: layers plus their activations
        for layer in self.layers:
            rng = streams.get(layer.random_stream, init_rng)
            shape = layer.build(shape, rng, self.dtype, kernels)
            ops.append(layer)
            activation = layer.config.get("activation") if layer.type != "Activation" else None
            if activation not in (None, "linear"):
                act = Activation(activation=activation)
                act.build(shape, rng, self.dtype, kernels)
                ops.append(act)
        self.output_shape = shape
        self.ops = fuse(ops)
        self.outputs_logits = outputs_logits(self.layers)
        # The fused loss takes logits: every op runs before it but a final softmax.
        self.logit_ops = self.ops if self.outputs_logits else self.ops[:-1]
        # Backward stops at the first op with parameters: nothing before it wants a gradient.
        first = next((i for i, op in enumerate(self.ops) if op.params), 0)
        self.ops[first].needs_input_grad = False
        self.backward_ops = self.logit_ops[first:][::-1]
        self.num_classes = shape[0]
        self.optimizer = make_optimizer(self.spec["optimizer"], self.trainable_weights(), kernels)
        self.epochs_done = 0

    def random_state(self) -> dict[str, Any]:
        """Where each seeded generator stands: a run resumed from a checkpoint then shuffles and draws
        what it would have without the break, bit for bit."""
        return {name: rng.bit_generator.state for name, rng in self.generators.items()}

    def set_random_state(self, state: Any) -> None:
        if not isinstance(state, dict) or set(state) != set(self.generators):
            raise ValueError(f"random_state must name the generators {sorted(self.generators)}")
        for name, value in state.items():
            if not _pcg64_state(value):
                raise ValueError(f"random_state {name!r} is not a PCG64 generator's state")
            self.generators[name].bit_generator.state = value

    # -- forward / backward -------------------------------------------------------------------
    def trainable_weights(self) -> list[Any]:
        return [p for layer in self.layers for p in layer.params.values()]

    def _logits(self, x: Any, training: bool) -> Any:
        """Runs every op but a final softmax: the fused loss wants logits."""
        for op in self.logit_ops:
            x = op.forward(x, training)
        return x

    def _targets(self, y: np.ndarray) -> Any:
        if y.ndim == 2:
            return self.kernels.asarray(y, self.dtype)
        return self.kernels.one_hot(self.kernels.asarray(y, np.intp), self.num_classes, self.dtype)

    def _forward_backward(self, x: Any, y: np.ndarray) -> tuple[float, Any, list[Any]]:
        """Loss, logits and gradients (in `trainable_weights` order) of one batch in training mode."""
        logits = self._logits(x, training=True)
        loss, dy = self.kernels.softmax_cross_entropy(logits, self._targets(y))
        if not np.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss}")
        for op in self.backward_ops:
            dy = op.backward(dy)
        return loss, logits, [layer.grads[name] for layer in self.layers for name in layer.params]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """The training-mode loss of (x, y) and its gradient for every trainable weight (Keras order).

        Moves batch-norm moving statistics and draws dropout masks, exactly as a training step does.
        """
        x = self._check_x(x)
        loss, _, grads = self._forward_backward(self.kernels.asarray(x, self.dtype), self._check_y(y, x.shape[0]))
        return loss, [self.kernels.to_numpy(g) for g in grads]

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One optimizer step on a batch; returns the batch loss and the number classified right."""
        loss, logits, grads = self._forward_backward(self.kernels.asarray(x, self.dtype), y)
        self.optimizer.step(grads)
        return loss, self._correct(logits, y)

    def _correct(self, scores: Any, y: np.ndarray) -> int:
        ids = y.argmax(axis=1) if y.ndim == 2 else y
        return self.kernels.count_correct(scores, self.kernels.asarray(ids, np.intp))

    # -- ModelAPI hooks ------------------------------------------------------------------------
    def _train_epoch(self, x, y, batch_size, shuffle, progress: EpochProgress):
        n = x.shape[0]
        order = self.shuffle_rng.permutation(n) if shuffle else np.arange(n)
        total_loss, correct, seen = 0.0, 0, 0
        for step in range(progress.steps):
            progress.begin_step(step)
            batch = order[step * batch_size : (step + 1) * batch_size]
            loss, right = self.train_step(x[batch], y[batch])
            total_loss += loss * len(batch)
            correct += right
            seen += len(batch)
            progress.end_step(total_loss / seen, correct / seen)
        return total_loss / seen, correct / seen

    def _evaluate(self, x, y, batch_size):
        total_loss, correct = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            logits = self._logits(self.kernels.asarray(xb, self.dtype), training=False)
            loss, _ = self.kernels.softmax_cross_entropy(logits, self._targets(yb))
            total_loss += loss * xb.shape[0]
            correct += self._correct(logits, yb)
        return total_loss / x.shape[0], correct / x.shape[0]

    def _predict(self, x, batch_size):
        out = np.empty((x.shape[0], self.num_classes), np.float32)
        for start in range(0, x.shape[0], batch_size):
            h = self.kernels.asarray(x[start : start + batch_size], self.dtype)
            for op in self.ops:
                h = op.forward(h, training=False)
            out[start : start + batch_size] = self.kernels.to_numpy(h)
        return out

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(self.kernels.to_numpy(w)) for layer in self.layers for w in layer.weights()]

    def _assign_weights(self, weights: list[np.ndarray]) -> None:
        own = [w for layer in self.layers for w in layer.weights()]
        for target, new in zip(own, weights):
            self.kernels.assign(target, self.kernels.asarray(new, target.dtype))  # the optimizer holds these

    @property
    def learning_rate(self) -> float:
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate = value

    # -- description ---------------------------------------------------------------------------
    def count_params(self) -> int:
        return sum(w.size for layer in self.layers for w in layer.weights())

    def _summary(self) -> Summary:
        rows = []
        for name, layer in zip(self.layer_names, self.layers):
            shape = "(None, " + ", ".join(map(str, layer.output_shape)) + ")"
            rows.append((f"{name} ({layer.type})", shape, f"{sum(w.size for w in layer.weights()):,}"))
        title = f'Model: "{self.spec["name"]}" (numnet, {self.backend} backend)'
        return Summary(title, rows, self.count_params(), sum(p.size for p in self.trainable_weights()))


def _pcg64_state(value: Any) -> bool:
    """A state as numpy's PCG64 writes it, every number in its range."""
    if not isinstance(value, dict) or value.get("bit_generator") != "PCG64" or not isinstance(value.get("state"), dict):
        return False
    inner = value["state"]
    words = [inner.get("state"), inner.get("inc")]
    return (all(type(w) is int and 0 <= w < 1 << 128 for w in words)
            and value.get("has_uint32") in (0, 1)
            and type(value.get("uinteger")) is int and 0 <= value["uinteger"] < 1 << 32)  # fmt: skip
