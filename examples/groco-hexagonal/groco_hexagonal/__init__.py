"""GroCo plugin: the point groups of the hexagonal lattice, P6M and its subgroups.

Registered through the `groco` entry point (see this package's `pyproject.toml`); nothing
here imports Keras, so `groco list-groups` stays fast.

Images live in axial coordinates: the array indices `(row, col)`, centred on the array,
*are* the lattice coordinates (see `groco_hexagonal.groups`); `groco_hexagonal.resample`
converts ordinary images to and from that storage.
"""

from __future__ import annotations

from collections.abc import Callable

from groco_core import hookimpl

__version__ = "0.1.0"


@hookimpl
def groco_register_groups(register: Callable[[object], None]) -> None:
    """Registers P6M, P6, P3M1, P31M, P3, HexP2, HexP1 and the six mirror groups."""
    from groco_hexagonal.groups import hexagonal_groups

    for group in hexagonal_groups():
        register(group)
