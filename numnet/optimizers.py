"""Optimizers with Keras' defaults and update formulas (see shared/KERAS_NUMERICS.md).

An optimizer owns references to the parameters it updates and keeps its slots beside them.
`get_state()` / `set_state()` carry everything a resumed run needs.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np


class Adam:
    def __init__(
        self,
        params: list[np.ndarray],
        kernels: ModuleType,
        learning_rate: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        self.params, self.kernels = params, kernels
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon
        self.iterations = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
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
            state += [m, v]
        return state

    def set_state(self, state: list[np.ndarray]) -> None:
        own = self.get_state()
        if [s.shape for s in state] != [s.shape for s in own]:
            raise ValueError(f"expected {len(own)} arrays shaped like the parameters, got {len(state)}")
        self.iterations = int(state[0])
        for target, new in zip(own[1:], state[1:]):
            target[...] = new


class SGD:
    def __init__(self, params: list[np.ndarray], kernels: ModuleType, learning_rate: float = 1e-2) -> None:
        self.params, self.learning_rate = params, learning_rate
        self.iterations = 0

    def step(self, grads: list[np.ndarray]) -> None:
        for param, grad in zip(self.params, grads):
            param -= np.asarray(self.learning_rate, param.dtype) * grad
        self.iterations += 1

    def get_state(self) -> list[np.ndarray]:
        return [np.array(self.iterations, dtype=np.int64)]

    def set_state(self, state: list[np.ndarray]) -> None:
        if len(state) != 1 or np.shape(state[0]) != ():
            raise ValueError(f"expected 1 scalar, got {len(state)} arrays")
        self.iterations = int(state[0])


def make_optimizer(config: dict, params: list[np.ndarray], kernels: ModuleType):
    options = {key: value for key, value in config.items() if key != "type"}
    return {"adam": Adam, "sgd": SGD}[config["type"]](params, kernels, **options)
