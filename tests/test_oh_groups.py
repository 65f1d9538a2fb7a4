"""The cube groups of the oh plugin: contents, names, and the subgroup lattice of Oh.

The lattice facts are computed here from the 48 signed permutation matrices with the test's
own enumeration (joins of cyclic subgroups) and conjugacy test (matrix conjugation), not
with the plugin's generator.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from groco_core import get_group, list_groups, registry
from groco_core.registry import subgroups_of

OH_SIZE = 48
# Schoenflies symbol → (order, contains the inversion, only rotations)
SYMBOLS = {
    "C1": (1, False, True),
    "Ci": (2, True, False),
    "Cs": (2, False, False),
    "C2": (2, False, True),
    "C3": (3, False, True),
    "C4": (4, False, True),
    "S4": (4, False, False),
    "D2": (4, False, True),
    "C2v": (4, False, False),
    "C2h": (4, True, False),
    "S6": (6, True, False),
    "D3": (6, False, True),
    "C3v": (6, False, False),
    "D4": (8, False, True),
    "C4v": (8, False, False),
    "C4h": (8, True, False),
    "D2d": (8, False, False),
    "D2h": (8, True, False),
    "D3d": (12, True, False),
    "T": (12, False, True),
    "D4h": (16, True, False),
    "O": (24, False, True),
    "Td": (24, False, False),
    "Th": (24, True, False),
    "Oh": (48, True, False),
}


def all_signed_permutations() -> list[np.ndarray]:
    result = []
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            result.append(np.diag(signs) @ np.eye(3, dtype=np.int64)[list(permutation)])
    return result


def key_set(matrices) -> frozenset:
    return frozenset(np.asarray(m, dtype=np.int64).tobytes() for m in matrices)


def cube_groups():
    return [g for g in list_groups(3) if registry.group_plugin(g.name) == "oh"]


class OhLattice:
    """Every subgroup of Oh, found as joins of cyclic subgroups, and their conjugacy classes."""

    def __init__(self) -> None:
        self.elements = all_signed_permutations()
        keys = [m.tobytes() for m in self.elements]
        self.index = {k: i for i, k in enumerate(keys)}
        self.product = [
            [self.index[(a @ b).astype(np.int64).tobytes()] for b in self.elements]
            for a in self.elements
        ]
        self.identity = self.index[np.eye(3, dtype=np.int64).tobytes()]
        self.subgroups = self._all_subgroups()

    def generated(self, generators) -> frozenset:
        group, frontier = {self.identity}, [self.identity]
        while frontier:
            frontier = [
                p for a in frontier for g in generators if (p := self.product[a][g]) not in group
            ]
            group.update(frontier)
        return frozenset(group)

    def _all_subgroups(self) -> set[frozenset]:
        cyclic = {self.generated([g]) for g in range(OH_SIZE)}
        found, new = set(cyclic), set(cyclic)
        while new:
            joins = {self.generated(list(h | c)) for h in new for c in cyclic if not c <= h}
            new = joins - found
            found |= new
        return found

    def conjugate(self, subgroup: frozenset, x: int) -> frozenset:
        m = self.elements[x]
        return frozenset(
            self.index[(m @ self.elements[h] @ m.T).astype(np.int64).tobytes()] for h in subgroup
        )

    def classes(self) -> list[set[frozenset]]:
        remaining, result = set(self.subgroups), []
        while remaining:
            subgroup = next(iter(remaining))
            conjugates = {self.conjugate(subgroup, x) for x in range(OH_SIZE)}
            result.append(conjugates)
            remaining -= conjugates
        return result

    def as_indices(self, matrices) -> frozenset:
        return frozenset(self.index[np.asarray(m, dtype=np.int64).tobytes()] for m in matrices)


@pytest.fixture(scope="module")
def lattice() -> OhLattice:
    return OhLattice()


def test_oh_o_d4h_d4_have_the_documented_elements():
    signed = all_signed_permutations()
    determinant = {m.tobytes(): round(np.linalg.det(m)) for m in signed}
    assert key_set(get_group("Oh").matrices) == key_set(signed)
    assert get_group("Oh").order == 48
    assert key_set(get_group("O").matrices) == {k for k, d in determinant.items() if d == 1}
    keeps_depth = [m for m in signed if abs(m[0, 0]) == 1]  # depth axis onto itself
    assert key_set(get_group("D4h").matrices) == key_set(keeps_depth)
    assert key_set(get_group("D4").matrices) == key_set(
        [m for m in keeps_depth if round(np.linalg.det(m)) == 1]
    )
    assert [get_group(n).order for n in ("Oh", "O", "D4h", "D4")] == [48, 24, 16, 8]


def test_every_cube_group_is_a_closed_subgroup_of_oh_on_the_cubic_lattice():
    oh = key_set(all_signed_permutations())
    for group in cube_groups():
        keys = key_set(group.matrices)
        assert group.lattice == "cubic" and group.dimension == 3
        assert len(keys) == group.order and keys <= oh
        assert np.array_equal(group.matrices[0], np.eye(3))
        assert {
            (a @ b).astype(np.int64).tobytes() for a in group.matrices for b in group.matrices
        } == keys


def test_oh_has_98_subgroups_in_33_classes_each_with_one_registered_representative(lattice):
    classes = lattice.classes()
    assert len(lattice.subgroups) == 98
    assert len(classes) == 33
    registered = {g.name: lattice.as_indices(g.matrices) for g in cube_groups()}
    assert len(registered) == 33
    for conjugates in classes:
        representatives = [name for name, s in registered.items() if s in conjugates]
        assert len(representatives) == 1, (sorted(next(iter(conjugates))), representatives)


def test_names_are_schoenflies_symbols_that_fit_the_elements():
    names = [g.name for g in cube_groups()]
    assert {"Oh", "O", "D4h", "D4", "Td", "Th", "T", "D3d", "S6", "C3v", "C1", "Ci"} <= set(names)
    for group in cube_groups():
        symbol = group.name.split("_")[0]
        order, has_inversion, only_rotations = SYMBOLS[symbol]
        determinants = np.rint(np.linalg.det(group.matrices))
        assert group.order == order, group.name
        assert any(np.array_equal(m, -np.eye(3)) for m in group.matrices) == has_inversion
        assert bool(np.all(determinants == 1)) == only_rotations, group.name
    tagged = {n.split("_")[0] for n in names if "_" in n}
    assert tagged == {"C2", "Cs", "C2h", "C2v", "D2", "D2h", "D2d"}
    # No name is taken twice, even ignoring case, across every lattice.
    every_name = [g.name.lower() for g in list_groups()]
    assert len(every_name) == len(set(every_name))


def _diagonal(matrix) -> bool:
    return np.count_nonzero(matrix) == 3 and np.all(np.diag(matrix) != 0)


@pytest.mark.parametrize(
    ("name", "axis_kind_matrices"),
    [
        # `a`: the half turn / mirror is about a coordinate axis (a diagonal matrix);
        # `f`: about a face diagonal (it exchanges two axes).
        ("C2_a", True),
        ("Cs_a", True),
        ("C2h_a", True),
        ("C2v_aa", True),
        ("D2_aa", True),
        ("D2h_aa", True),
        ("C2_f", False),
        ("Cs_f", False),
        ("C2h_f", False),
    ],
)
def test_orientation_tags(name, axis_kind_matrices):
    assert all(_diagonal(m) for m in get_group(name).matrices) == axis_kind_matrices


def test_representatives_keep_the_depth_axis_where_their_class_allows():
    for group in cube_groups():
        two_group = group.order & (group.order - 1) == 0  # conjugate into D4h (Sylow)
        keeps_depth = all(abs(m[0, 0]) == 1 for m in group.matrices)
        assert keeps_depth == two_group, group.name
    # The main axis is depth: the quarter turn of C4 and the half turn of C2_a.
    assert any(
        np.array_equal(m, [[1, 0, 0], [0, 0, -1], [0, 1, 0]]) for m in get_group("C4").matrices
    )
    assert any(np.array_equal(m, np.diag([1, -1, -1])) for m in get_group("C2_a").matrices)
    assert any(np.array_equal(m, np.diag([-1, 1, 1])) for m in get_group("Cs_a").matrices)


def test_subgroup_relations_are_matrix_subsets():
    groups = cube_groups()
    for group in groups:
        expected = {h.name for h in groups if key_set(h.matrices) <= key_set(group.matrices)}
        reported = {n for n in subgroups_of(group) if registry.group_plugin(n) == "oh"}
        assert reported == expected, group.name
        for name, indices in subgroups_of(group).items():
            np.testing.assert_array_equal(group.matrices[list(indices)], get_group(name).matrices)
    assert set(subgroups_of("D4h")) >= {"D4", "C4v", "D2d_aa", "D2d_af", "C2v_f", "C2_f"}
    assert "D3d" not in subgroups_of("D4h")


def test_no_square_group_is_a_subgroup_of_a_cube_group():
    assert all(get_group(n).lattice == "cubic" for n in subgroups_of("Oh"))
    assert all(get_group(n).lattice == "square" for n in subgroups_of("P4M"))
