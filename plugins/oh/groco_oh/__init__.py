"""Built-in plugin: Oh, the 48 symmetries of the cube, and one representative of every
conjugacy class of its subgroups (33 classes, 98 subgroups), on the cubic lattice.

Matrices act on `(depth, row, col)` coordinates centred on the grid. The groups are computed
from the 48 signed permutation matrices by `groco_oh.lattice` (closure, conjugacy under Oh)
and named by their Schoenflies symbol, with an orientation tag where one symbol names several
classes: `a` for an axis (or mirror normal) along a coordinate axis, `f` along a face
diagonal; a second letter gives the kind of the secondary elements where the first does not
tell the classes apart. Representatives keep the depth axis on themselves where the class
allows it, with their main axis along depth: `D4h` is the symmetry group of a square cuboid
whose depth differs from its height and width. See docs/cube_groups.md for the table.

Nothing here imports Keras, so `groco list-groups` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

from groco_core import MatrixGroup
from groco_core.hookspecs import hookimpl

__version__ = "0.1.0"

LATTICE = "cubic"

_DESCRIPTIONS = {
    "Oh": "every rotation and reflection of a cube",
    "O": "the 24 rotations of a cube",
    "Td": "the symmetries of a regular tetrahedron in the cube",
    "Th": "the rotations of a tetrahedron and the inversion",
    "T": "the 12 rotations of a regular tetrahedron in the cube",
    "D4h": "the symmetries of a square cuboid (depth differs from height = width)",
    "D4": "the rotations of a square cuboid (depth differs from height = width)",
    "C4v": "quarter turns about {axis} and the mirrors ⊥ {mirrors}",
    "C4h": "quarter turns about {axis}, the mirror ⊥ {axis} and the inversion",
    "C4": "quarter turns about {axis}",
    "S4": "the rotoreflections S4 about {axis} and the half turn",
    "D2d": "S4 about {axis}, half turns about {half_turns}, mirrors ⊥ {mirrors}",
    "D2h": "half turns about {half_turns}, the 3 mirrors ⊥ them and the inversion",
    "D2": "half turns about {half_turns}",
    "C2v": "the half turn about {axis} and the mirrors ⊥ {mirrors}",
    "C2h": "the half turn about {axis}, the mirror ⊥ {axis} and the inversion",
    "C2": "the half turn about {axis}",
    "Cs": "the mirror ⊥ {axis}",
    "Ci": "the inversion (every axis flipped)",
    "C1": "identity only: a plain convolution",
    "D3d": "third turns about {axis}, 3 half turns ⊥ it, the inversion and 3 mirrors",
    "D3": "third turns about {axis} and 3 half turns ⊥ it",
    "C3v": "third turns about {axis} and the mirrors ⊥ {mirrors}",
    "S6": "third turns about {axis}, the inversion and the rotoreflections S6",
    "C3": "third turns about {axis}",
}


def cube_groups() -> list[MatrixGroup]:
    """One `MatrixGroup` per conjugacy class of subgroups of Oh, largest first."""
    from groco_oh.lattice import (
        axes_names,
        principal_axis_name,
        signed_permutation_matrices,
        subgroup_classes,
    )

    matrices = signed_permutation_matrices()
    groups = []
    for subgroup_class in subgroup_classes():
        elements = matrices[list(subgroup_class.elements)]
        description = _DESCRIPTIONS[subgroup_class.symbol].format(
            axis=principal_axis_name(elements),
            half_turns=axes_names(elements, determinant=1, trace=-1),
            mirrors=axes_names(elements, determinant=-1, trace=1),
        )
        groups.append(MatrixGroup(subgroup_class.name, elements, LATTICE, description))
    return groups


@hookimpl
def groco_register_groups(register: Callable[[object], None]) -> None:
    for group in cube_groups():
        register(group)
