"""The hooks a GroCo plugin implements.

A plugin is any module or object with functions marked `@groco_core.hookimpl`, exposed
through the `groco` entry-point group (or registered directly with
`groco_core.registry.register_plugin`). Each hook receives a `register` callback and calls
it once per object it provides, and returns None.

Nothing fails silently (see docs/plugins.md): a hook name that is not one of these, a
`groco_*` function not marked with `hookimpl`, a plugin without any of these hooks, a hook
that returns a value, and every object that is skipped (invalid, clashing) are reported as a
`GrocoPluginWarning` naming the plugin (a `PluginError` with `GROCO_STRICT_PLUGINS=1`). A
hook whose one parameter is not named `register` (pluggy passes it by name) is refused, and
its plugin with it, with the name to write.
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

    Import Keras and the layer modules inside this hook, not at the plugin's top level. A
    class not registered with `keras.saving.register_keras_serializable` is registered under
    its top-level package's name. An optional classmethod `equivariance_cases(group)` lets
    `groco check` test the class (see `groco_core.testing.EquivarianceCase`). Each class
    must follow the `groco_core.GroupLayer` protocol; one that does not is refused, naming
    what it lacks (`groco_core.group_layer.missing_members`).
    """
