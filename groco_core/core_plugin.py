"""The core's own plugin: registers the generic layers, so `list_layers()` shows them."""

from __future__ import annotations

from collections.abc import Callable

from groco_core.hookspecs import hookimpl


@hookimpl
def groco_register_layers(register: Callable[[type], None]) -> None:
    from groco_core import layers

    for name in layers.__all__:
        register(getattr(layers, name))
