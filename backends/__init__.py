"""Backends: each turns a spec into a model with the same API.

numpy and numba share numnet's layers and differ only in their kernel modules; tensorflow, jax
and torch build the same spec as a Keras 3 model on that framework.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from numnet.errors import BackendUnavailable
from numnet.keras import KERAS_FRAMEWORKS
from numnet.settings import SETTINGS


class KernelBackend:
    """A numnet engine backend: numnet's layers running on one kernel module."""

    def __init__(self, kernel_module: str, requirement: str) -> None:
        self.kernel_module, self.requirement = kernel_module, requirement

    def kernels(self) -> ModuleType:
        try:
            return importlib.import_module(self.kernel_module)
        except ImportError as error:
            raise BackendUnavailable(
                f"backend needs {self.requirement}, which failed to import ({error}); "
                f"install it with `pip install {self.requirement}`"
            ) from error

    def build(self, spec, seed: int = 0, dtype=np.float32):
        from numnet.engine.model import Model

        return Model(spec, self.kernels(), seed=SETTINGS["seed"].check(seed), dtype=dtype)


class KerasBackend:
    """Keras 3 models built from the same spec on one framework, imported only when one is built."""

    def __init__(self, framework: str) -> None:
        self.framework = framework

    def build(self, spec, seed: int = 0, dtype=np.float32, strategy: str = "default"):
        from numnet.backends.keras_backend import build

        seed = SETTINGS["seed"].check(seed)
        return build(spec, seed=seed, dtype=dtype, strategy=strategy, backend=self.framework)


# Every kernel module implements numnet.backends.interface.Kernels and is tested by one line here.
KERNEL_MODULES = {
    "numpy": ("numnet.backends.numpy_kernels", "numpy"),
    "numba": ("numnet.backends.numba_kernels", "numba"),
    "cuda": ("numnet.backends.cuda_kernels", "numnet[cuda]"),
}
BACKENDS: dict[str, Any] = {
    **{name: KernelBackend(module, requirement) for name, (module, requirement) in KERNEL_MODULES.items()},
    **{framework: KerasBackend(framework) for framework in KERAS_FRAMEWORKS},
}


def get_backend(name: str):
    if not isinstance(name, str) or name not in BACKENDS:
        raise BackendUnavailable(f"backend {name!r} is not available; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name]


def require(name: str) -> None:
    """Raises BackendUnavailable now if numnet's engine cannot run on `name` here (no GPU, a package
    missing), so a command stops before it writes anything. Keras backends are checked when built."""
    backend = get_backend(name)
    if isinstance(backend, KernelBackend):
        backend.kernels()
