"""Central finite differences against a layer's analytic backward pass (float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], array: np.ndarray, indices, eps: float = 1e-6) -> np.ndarray:
    """d f / d array[i] for each flat index i, perturbing the array in place."""
    flat = array.reshape(-1)
    grads = []
    for i in indices:
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        grads.append((up - down) / (2 * eps))
    return np.array(grads)


def sample_indices(size: int, rng: np.random.Generator, count: int = 40) -> np.ndarray:
    return rng.choice(size, size=min(size, count), replace=False)


def assert_close_gradients(
    analytic: np.ndarray, numeric: np.ndarray, what: str, rtol: float = 1e-5, atol: float = 1e-8
) -> None:
    """Relative to the largest gradient; atol absorbs the ~1e-10 rounding noise of the differences."""
    scale = max(np.abs(numeric).max(), np.abs(analytic).max())
    error = np.abs(analytic - numeric).max()
    assert error <= atol + rtol * scale, f"{what}: gradient error {error:.2e} (largest gradient {scale:.2e})"


def check_layer(layer, x: np.ndarray, training: bool, rng: np.random.Generator, before_forward=None) -> None:
    """Checks dL/dx and dL/dparam for L = sum(r * layer(x)) with a fixed random r."""
    before_forward = before_forward or (lambda: None)
    before_forward()
    y = layer.forward(x, training)
    r = rng.standard_normal(y.shape)

    def loss() -> float:
        before_forward()
        return float((r * layer.forward(x, training)).sum())

    before_forward()
    layer.forward(x, training)
    dx = layer.backward(r)
    grads = {name: g.copy() for name, g in layer.grads.items()}
    idx = sample_indices(x.size, rng)
    assert_close_gradients(dx.reshape(-1)[idx], numerical_gradient(loss, x, idx), f"{layer.type} input")
    if training:
        for name, param in layer.params.items():
            idx = sample_indices(param.size, rng)
            numeric = numerical_gradient(loss, param, idx)
            assert_close_gradients(grads[name].reshape(-1)[idx], numeric, f"{layer.type} {name}")
