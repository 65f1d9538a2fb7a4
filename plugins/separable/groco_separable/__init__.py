"""Built-in plugin: depthwise and separable group convolutions."""

from __future__ import annotations

from collections.abc import Callable

from groco_core.hookspecs import hookimpl


@hookimpl
def groco_register_layers(register: Callable[[type], None]) -> None:
    """Placeholder: the separable layers are registered here."""
