"""GroCo core: point groups, the layer protocol, the plugin registry and the generic
group-equivariant layers.

Importing `groco_core` is cheap: Keras (and the layers) load on first access of a layer
name, and plugins on first use of the registry.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from groco_core.group_layer import GroupLayer
from groco_core.groups import MatrixGroup, PointGroup
from groco_core.hookspecs import hookimpl
from groco_core.layer_names import LAYER_NAMES
from groco_core.registry import (
    PluginError,
    get_group,
    get_layer,
    group_plugin,
    list_groups,
    list_layers,
    list_plugins,
    subgroups_of,
)

__version__ = "0.1.0"

__all__ = [
    "GroupLayer",
    "MatrixGroup",
    "export",
    "PluginError",
    "PointGroup",
    "get_group",
    "get_layer",
    "group_plugin",
    "hookimpl",
    "list_groups",
    "list_layers",
    "list_plugins",
    "subgroups_of",
    "load_model",
    *LAYER_NAMES,  # loaded on first access
]

_LAZY_MODULES = {"layers", "testing", "exporting"}


def __getattr__(name: str) -> Any:
    if name == "export":
        return importlib.import_module("groco_core.exporting").export
    if name == "load_model":
        return importlib.import_module("groco_core.layers.serialization").load_model
    if name in _LAZY_MODULES:
        return importlib.import_module(f"groco_core.{name}")
    # `from groco_core import <submodule>` asks here first: answer without importing Keras.
    if name.startswith("_") or importlib.util.find_spec(f"groco_core.{name}") is not None:
        raise AttributeError(f"module 'groco_core' has no attribute {name!r}")
    layers = importlib.import_module("groco_core.layers")
    if name in LAYER_NAMES:
        return getattr(layers, name)
    raise AttributeError(f"module 'groco_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_MODULES | set(LAYER_NAMES))
