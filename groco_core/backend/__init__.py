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
    where it has none or it does not apply."""
    function = getattr(current(), name, None)
    if function is None:
        return NotImplemented
    return function(*args, **kwargs)
