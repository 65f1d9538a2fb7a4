"""GroCo plugin: layers built from fixed smooth filters.

- `BasisGroupConv2D`: a group convolution whose kernel is a learned combination of Gaussian
  derivatives (structured receptive fields, Jacobsen et al. 2016), exactly equivariant on
  any group GroCo knows.
- `GroupBlurPool2D`: anti-aliased downsampling of signals on a group (Zhang 2019): a fixed
  binomial blur of every channel of every group element, then the stride.

Registered through the `groco` entry point (see this package's `pyproject.toml`). Importing
`groco_srf` does not import Keras: the layers load on first access, and the hook imports
them when the registry asks for layers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from groco_core.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["BasisGroupConv2D", "GroupBlurPool2D"]

_MODULES = {"BasisGroupConv2D": "basis_conv", "GroupBlurPool2D": "blur_pool"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"groco_srf.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'groco_srf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


@hookimpl
def groco_register_layers(register: Callable[[type], None]) -> None:
    """Registers `BasisGroupConv2D` and `GroupBlurPool2D` (importing Keras, which this hook
    may do)."""
    for name in __all__:
        register(__getattr__(name))
