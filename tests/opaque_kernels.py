"""A kernel module whose arrays are opaque: numnet's layers may hold them and hand them back to the
kernels, and read their shape and dtype, but any arithmetic, indexing, comparison or conversion of
them outside the kernels raises. Inside, every kernel is the NumPy reference's, so results are the
reference's bit for bit. A GPU module's arrays need behave no more like NumPy's than these."""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from numnet.backends import numpy_kernels
from numnet.backends.interface import interface_functions


class OpaqueArrayError(TypeError):
    """Something outside the kernel module computed with a kernel array."""


def _refuse(name: str):
    def refuse(self, *args, **kwargs):
        raise OpaqueArrayError(f"a kernel array was used outside the kernels ({name})")

    return refuse


class Opaque:
    """A kernel array: shape, dtype, size and ndim are all it shows."""

    __slots__ = ("value",)
    __array_ufunc__ = None  # NumPy's ufuncs and operators refuse it instead of converting it
    __array_function__ = None

    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    size = property(lambda self: self.value.size)
    ndim = property(lambda self: self.value.ndim)


for _name in ("__array__", "__getitem__", "__setitem__", "__len__", "__iter__", "__bool__", "__float__",
              "__int__", "__index__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__neg__",
              "__pos__", "__abs__", "__invert__", "__contains__", "__copy__", "__deepcopy__", "__reduce__",
              "__reduce_ex__", *(f"__{op}__" for base in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow",
              "matmul", "and", "or", "xor", "lshift", "rshift") for op in (base, f"r{base}", f"i{base}"))):  # fmt: skip
    setattr(Opaque, _name, _refuse(_name))
Opaque.__hash__ = None  # type: ignore[assignment]


def unwrap(value: Any) -> Any:
    if isinstance(value, Opaque):
        return value.value
    if isinstance(value, tuple | list):
        return type(value)(unwrap(v) for v in value)
    return value


def wrap(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return Opaque(value)
    if isinstance(value, tuple):
        return tuple(wrap(v) for v in value)
    return value


def _kernel(name: str):
    reference = getattr(numpy_kernels, name)

    def kernel(*args, **kwargs):
        result = reference(*unwrap(args), **{key: unwrap(value) for key, value in kwargs.items()})
        return unwrap(result) if name == "to_numpy" else wrap(result)

    kernel.__name__ = name
    return kernel


def module() -> types.ModuleType:
    """The opaque kernel module: every interface function, none of the optional fused ones."""
    opaque = types.ModuleType("opaque_kernels")
    opaque.NAME = "opaque"
    for name in interface_functions():
        setattr(opaque, name, _kernel(name))
    return opaque
