"""The hooks a GroCo plugin implements.

A plugin is any module or object with functions marked `@groco_core.hookimpl`, exposed
through the `groco` entry-point group (or registered directly with
`groco_core.registry.register_plugin`). Each hook receives a `register` callback and calls
it once per object it provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "groco"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def groco_register_groups(register: Callable[[Any], None]) -> None:
    """Register point groups: call `register(group)` for each `PointGroup` instance.

    Names must be unique across all plugins (case-insensitive); a clash is an error naming
    both plugins. Definitions are validated (closure, identity first, unique elements,
    determinant ±1, integer entries, name pattern) before they are registered.
    """


@hookspec
def groco_register_layers(register: Callable[[Any], None]) -> None:
    """Register layer classes: call `register(layer_class)` for each `keras.layers.Layer`
    subclass the plugin provides. Names (the class names) must be unique across plugins.
    """
