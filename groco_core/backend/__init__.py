"""Backend fast paths: one module per backend, chosen here and nowhere else.

The layers are written in plain `keras.ops`. Where a backend runs the same function faster
(or, for a maximum's gradient on JAX, more robustly), its module here defines a function of
that name; `call(name, ...)` runs it on the current backend and returns `NotImplemented`
where the backend has none, or where its own conditions (an eager call, a CPU, a kernel
shape, `groco_core.layers.fast_paths.takes`) say it does not apply. The caller then computes
its `keras.ops` reference. Each module imports its framework inside its functions, so that
importing one never needs another backend installed.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import keras

# Loaded on first use; a plain dictionary, which `torch.compile` reads without a graph break
# (a break here would let a layer decide "eager" outside the graph it then traces).
_LOADED: dict[str, ModuleType] = {}


def current() -> ModuleType:
    """The fast paths of the backend Keras runs on."""
    name = keras.backend.backend()
    module = _LOADED.get(name)
    if module is None:
        module = _LOADED[name] = importlib.import_module(f"groco_core.backend.{name}")
    return module


def call(name: str, *args: Any, **kwargs: Any) -> Any:
    """The current backend's fast path `name` applied to the arguments, or `NotImplemented`
    where it has none or it does not apply; the caller then computes its `keras.ops`
    reference.

    Example:
        >>> import numpy as np
        >>> from keras import ops
        >>> from groco_core.toolkit import backend_call
        >>> x = np.arange(6.0).reshape(2, 3)
        >>> y = backend_call("reshape", x, (3, 2))
        >>> y = ops.reshape(x, (3, 2)) if y is NotImplemented else y
        >>> tuple(y.shape)
        (3, 2)
    """
    function = getattr(current(), name, None)
    if function is None:
        return NotImplemented
    return function(*args, **kwargs)


def eager_torch() -> bool:
    """Whether this runs on PyTorch outside `torch.compile`, where a layer may call `torch`
    directly (through this package's functions).

    Example:
        >>> import keras
        >>> from groco_core.toolkit import eager_torch
        >>> eager_torch() == (keras.backend.backend() == "torch")
        True
    """
    return call("eager") is True


def torch_compiling() -> bool:
    """Whether this runs on PyTorch inside `torch.compile`, where code that calls `torch`
    directly gives way to Keras's own ops, which the compiler traces.

    Example:
        >>> from groco_core.toolkit import torch_compiling
        >>> torch_compiling()  # not inside torch.compile here
        False
    """
    return call("compiling") is True


def on_jax_cpu() -> bool:
    """Whether this runs on JAX computing on a CPU, where some layers take gradients that
    XLA's CPU backend runs faster than its own.

    Example:
        >>> import keras
        >>> from groco_core.toolkit import on_jax_cpu
        >>> on_jax_cpu() == (keras.backend.backend() == "jax")  # no accelerator here
        True
    """
    return call("on_cpu") is True
