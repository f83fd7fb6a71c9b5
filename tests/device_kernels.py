"""A device kernel module seen from the host, for the kernel tests: they hand every module NumPy
arrays; this moves them in with the module's own `asarray`, brings results out with `to_numpy`, and
writes the results of in-place kernels back into the caller's arrays."""

from __future__ import annotations

import inspect
import types
from typing import Any

import numpy as np

from numnet.backends.interface import OPTIONAL, interface_functions

# Arguments the interface defines as NumPy: the augmentation layers' host draws.
DRAWS = {"transforms", "displacement"}
HOST_ARGUMENTS = {"warp": DRAWS, "warp_backward": DRAWS, "bend": DRAWS | {"images"},
                  "bend_backward": DRAWS | {"images"}, "stroke_width": {"amounts"},
                  "stroke_width_backward": {"amounts"}, "contrast": {"factors"},
                  "contrast_backward": {"factors"}}  # fmt: skip
IN_PLACE = {"adam_update": ("param", "m", "v"), "sgd_update": ("param",), "assign": ("target",),
            "moving_average": ("moving",)}  # fmt: skip


def on_host(module: types.ModuleType) -> types.ModuleType:
    host = types.ModuleType(f"{module.__name__}_on_host")
    for name, value in vars(module).items():
        if not name.startswith("__"):
            setattr(host, name, value)
    for name in [*interface_functions(), *(f for f in OPTIONAL if hasattr(module, f))]:
        setattr(host, name, _through(module, name))
    return host


def _through(module: types.ModuleType, name: str):
    kernel = getattr(module, name)
    signature = inspect.signature(kernel)

    def call(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        moved = {key: _in(module, key in HOST_ARGUMENTS.get(name, ()), value) for key, value in given.items()}
        result = kernel(**moved)
        for key in IN_PLACE.get(name, ()):
            given[key][...] = module.to_numpy(moved[key])
        return _out(module, result)

    call.__name__ = name
    call.__signature__ = signature
    return call


def _in(module, host: bool, value: Any) -> Any:
    return module.asarray(value, value.dtype) if isinstance(value, np.ndarray) and not host else value


def _out(module, value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_out(module, v) for v in value)
    if value is None or isinstance(value, int | float | np.ndarray):
        return value
    return module.to_numpy(value)
