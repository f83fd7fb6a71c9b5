"""Optimizers with Keras' update formulas: Adam's bias correction, epsilon outside the square root.

An optimizer owns references to the parameters it updates and keeps its slots beside them, on the
same kernel module. Its options come from the validated spec, whose defaults
(`numnet.specs.OPTIMIZERS`) are the only ones. `get_state()` / `set_state()` carry everything a
resumed run needs, as NumPy arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numnet.schedules import learning_rate_at, rate_to_set


class Optimizer:
    """The learning rate: a number callbacks may change, or a schedule of the step count."""

    iterations = 0

    def __init__(self, learning_rate: float | dict[str, Any]) -> None:
        self.schedule = learning_rate if isinstance(learning_rate, dict) else None
        self._rate = None if self.schedule else float(learning_rate)

    @property
    def learning_rate(self) -> float:
        """The rate of the next update (Keras' `optimizer.learning_rate`)."""
        return learning_rate_at(self.schedule, self.iterations) if self.schedule else self._rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._rate = rate_to_set(self.schedule, value)


class Adam(Optimizer):
    def __init__(
        self, params: list[Any], kernels: Any, learning_rate: float | dict[str, Any], beta_1: float, beta_2: float,
        epsilon: float,
    ) -> None:  # fmt: skip
        super().__init__(learning_rate)
        self.params, self.kernels = params, kernels
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.iterations = 0
        self.m = [kernels.zeros(p.shape, p.dtype) for p in params]
        self.v = [kernels.zeros(p.shape, p.dtype) for p in params]

    def step(self, grads: list[Any]) -> None:
        t = self.iterations + 1
        # Keras turns the Python betas into float32 tensors before raising them to the power t, so
        # its bias correction uses float32-rounded betas even for float64 weights: do the same.
        beta_1, beta_2 = float(np.float32(self.beta_1)), float(np.float32(self.beta_2))
        alpha = self.learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for param, grad, m, v in zip(self.params, grads, self.m, self.v):
            self.kernels.adam_update(param, grad, m, v, alpha, self.beta_1, self.beta_2, self.epsilon)
        self.iterations = t

    def get_state(self) -> list[np.ndarray]:
        """iterations, then m and v of each parameter."""
        state = [np.array(self.iterations, dtype=np.int64)]
        for m, v in zip(self.m, self.v):
            state += [self.kernels.to_numpy(m), self.kernels.to_numpy(v)]
        return state

    def set_state(self, state: list[np.ndarray]) -> None:
        slots = [slot for pair in zip(self.m, self.v) for slot in pair]
        if len(state) != 1 + len(slots) or any(np.shape(s) != t.shape for s, t in zip(state[1:], slots)):
            raise ValueError(f"expected {1 + len(slots)} arrays shaped like the parameters, got {len(state)}")
        _check_iterations(state[0])
        if not all(np.isfinite(s).all() for s in state[1:]):
            raise ValueError("the Adam state holds NaN or infinite values")
        if any((np.asarray(v) < 0).any() for v in state[2::2]):
            raise ValueError("the Adam state holds a negative second moment (v), which no training produces")
        self.iterations = int(state[0])
        for target, new in zip(slots, state[1:]):
            self.kernels.assign(target, self.kernels.asarray(new, target.dtype))


class SGD(Optimizer):
    def __init__(self, params: list[Any], kernels: Any, learning_rate: float | dict[str, Any]) -> None:
        super().__init__(learning_rate)
        self.params, self.kernels = params, kernels
        self.iterations = 0

    def step(self, grads: list[Any]) -> None:
        rate = self.learning_rate
        for param, grad in zip(self.params, grads):
            self.kernels.sgd_update(param, grad, rate)
        self.iterations += 1

    def get_state(self) -> list[np.ndarray]:
        return [np.array(self.iterations, dtype=np.int64)]

    def set_state(self, state: list[np.ndarray]) -> None:
        if len(state) != 1 or np.shape(state[0]) != ():
            raise ValueError(f"expected 1 scalar, got {len(state)} arrays")
        _check_iterations(state[0])
        self.iterations = int(state[0])


def _check_iterations(value: np.ndarray) -> None:
    if np.shape(value) != () or not np.issubdtype(np.asarray(value).dtype, np.integer) or int(value) < 0:
        raise ValueError(f"the optimizer's step count must be a non-negative integer, got {value!r}")


OPTIMIZER_TYPES = {"adam": Adam, "sgd": SGD}


def make_optimizer(config: dict, params: list[Any], kernels: Any):
    """An optimizer from a validated spec's optimizer section (every option present)."""
    options = {key: value for key, value in config.items() if key != "type"}
    return OPTIMIZER_TYPES[config["type"]](params, kernels, **options)
