"""Shared fixtures: real MNIST (never a stand-in) and the engine backends to run each test on."""

from __future__ import annotations

import numpy as np
import pytest

import numnet
from numnet.backends import BACKENDS

ENGINE_BACKENDS = [name for name in ("numpy", "numba") if name in BACKENDS]


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST arrays, from the cache or fetched once per session."""
    return numnet.data.load_mnist()


@pytest.fixture(scope="session")
def mnist_inputs(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    return (numnet.data.to_model_input(x_train), y_train), (numnet.data.to_model_input(x_test), y_test)


@pytest.fixture(params=ENGINE_BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
