"""Built-in plugin: Oh, the 48 symmetries of the cube, and its subgroups (cubic lattice)."""

from __future__ import annotations

from collections.abc import Callable

from groco_core.hookspecs import hookimpl


@hookimpl
def groco_register_groups(register: Callable[[object], None]) -> None:
    """Placeholder: the cube groups are registered here."""
