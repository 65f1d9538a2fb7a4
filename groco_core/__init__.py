"""GroCo core: point groups, the layer protocol, the plugin registry and the generic
group-equivariant layers.

Importing `groco_core` is cheap: Keras (and the layers) load on first access of a layer
name, and plugins on first use of the registry. Where Keras is already imported, the layers
of GroCo and of every installed plugin are registered with Keras at once, so that
`import keras, groco_core` then `keras.models.load_model("model.keras")` finds their classes,
as it does for other Keras extensions.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
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

_LAZY_MODULES = {"layers", "testing", "exporting", "applications"}


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


def _register_layers_with_keras() -> None:
    """Imports the layers of GroCo and of every installed plugin (each class registers itself
    with Keras as it is defined), where Keras is imported already and so costs nothing more;
    without this, `keras.models.load_model` cannot locate their classes. A strict-mode plugin
    failure is left to the first use of the registry, which raises it again. Where a plugin's
    own package is importing `groco_core` (its import is not finished), loading the plugins
    now would find that package half-defined, so registration waits for the registry's first
    use."""
    if "keras" not in sys.modules or _plugin_module_initialising():
        return
    try:
        list_layers()
    except PluginError:
        pass


def _plugin_module_initialising() -> bool:
    """Whether the package of an installed `groco` entry point is in the middle of its import."""
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="groco"):
        module = sys.modules.get(entry_point.value.split(":")[0].split(".")[0])
        spec = getattr(module, "__spec__", None)
        if module is not None and getattr(spec, "_initializing", False):
            return True
    return False


_register_layers_with_keras()
