"""Built-in plugin: depthwise and separable group convolutions.

`DepthwiseGroupConv2D/3D` and `SeparableGroupConv2D/3D`, registered through the same
`groco_register_layers` hook a third-party plugin uses. Importing `groco_separable` does not
import Keras: the layers load on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from groco_core.hookspecs import hookimpl

__all__ = [
    "DepthwiseGroupConv2D",
    "DepthwiseGroupConv3D",
    "SeparableGroupConv2D",
    "SeparableGroupConv3D",
]

_MODULES = {
    "DepthwiseGroupConv2D": "depthwise",
    "DepthwiseGroupConv3D": "depthwise",
    "SeparableGroupConv2D": "separable",
    "SeparableGroupConv3D": "separable",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"groco_separable.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'groco_separable' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


@hookimpl
def groco_register_layers(register: Callable[[type], None]) -> None:
    """Registers the four layers (importing Keras, which the hook may do)."""
    for name in __all__:
        register(__getattr__(name))
