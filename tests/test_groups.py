"""Point groups: axioms, the contents of the p4m plugin, subgroups, cosets, transforms."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from transforms import act, act_on_grid

import groco_core
from groco_core import MatrixGroup, get_group, list_groups
from groco_core.registry import subgroups_of

SQUARE_ORDERS = {
    "P4M": 8,
    "P4": 4,
    "P2MM": 4,
    "CMM": 4,
    "PMh": 2,
    "PMv": 2,
    "PMd": 2,
    "PMa": 2,
    "P2": 2,
    "P1": 1,
}
ALL_GROUPS = list(SQUARE_ORDERS) + ["LM", "L1"]


def _index(matrices, matrix):
    hits = [i for i, m in enumerate(matrices) if np.array_equal(m, matrix)]
    assert len(hits) == 1
    return hits[0]


def test_square_lattice_groups_are_all_registered():
    square = {g.name: g.order for g in list_groups(dimension=2) if g.lattice == "square"}
    assert square == SQUARE_ORDERS
    assert {g.name for g in list_groups(dimension=1)} == {"LM", "L1"}


@pytest.mark.parametrize("name", ALL_GROUPS)
def test_group_axioms_and_cayley_table_against_matrix_products(name):
    group = get_group(name)
    m = group.matrices
    assert np.array_equal(m[0], np.eye(group.dimension))
    assert len({x.tobytes() for x in m}) == group.order
    assert set(np.rint(np.abs(np.linalg.det(m))).astype(int)) == {1}
    for i, j in itertools.product(range(group.order), repeat=2):
        assert group.cayley[i, j] == _index(m, m[i] @ m[j])
    for i in range(group.order):
        assert np.array_equal(m[i] @ m[group.inverses[i]], np.eye(group.dimension))


def test_lookup_is_case_insensitive_and_names_are_canonical():
    assert get_group("p4m") is get_group("P4M")
    assert get_group("pmh").name == "PMh"


def test_named_elements_have_the_documented_matrices():
    quarter_turn = np.array([[0, -1], [1, 0]])
    image = np.arange(12).reshape(3, 4)
    # The P4 generator turns an image like numpy.rot90.
    assert np.array_equal(act_on_grid(image, quarter_turn, (0, 1)), np.rot90(image))
    assert get_group("P4").index_of(quarter_turn) == 1
    assert np.array_equal(get_group("PMh").matrices[1], np.diag([-1, 1]))
    assert np.array_equal(get_group("PMv").matrices[1], np.diag([1, -1]))
    assert np.array_equal(get_group("PMd").matrices[1], [[0, 1], [1, 0]])
    assert np.array_equal(get_group("PMa").matrices[1], [[0, -1], [-1, 0]])
    # PMh flips rows (mirror line horizontal), PMv flips columns.
    assert np.array_equal(act_on_grid(image, np.diag([-1, 1]), (0, 1)), image[::-1])
    assert np.array_equal(act_on_grid(image, np.diag([1, -1]), (0, 1)), image[:, ::-1])


def test_subgroups_are_derived_from_matrix_subsets():
    p4m = get_group("P4M")
    assert set(subgroups_of(p4m)) == set(SQUARE_ORDERS)
    assert set(subgroups_of("CMM")) == {"CMM", "PMd", "PMa", "P2", "P1"}
    assert set(subgroups_of("P4")) == {"P4", "P2", "P1"}
    for name, indices in subgroups_of(p4m).items():
        sub = get_group(name)
        assert np.array_equal(p4m.matrices[list(indices)], sub.matrices)
    assert "LM" not in subgroups_of(p4m)  # other lattice


def test_subgroup_indices_rejects_non_subgroups():
    with pytest.raises(ValueError, match="'PMh' is not a subgroup of P4. Subgroups of P4: P4"):
        get_group("PMh", subgroup_of="P4")


def test_a_group_checks_a_subgroup_object_by_itself():
    p4 = get_group("P4")
    assert p4.subgroup_indices(get_group("P2")) == (0, 2)
    with pytest.raises(
        ValueError,
        match=r"^'PMh' is not a subgroup of P4: its element 1, \[\[-1, 0\], \[0, 1\]\], is not "
        r"in P4\.$",
    ):
        p4.subgroup_indices(get_group("PMh"))
    with pytest.raises(ValueError, match=r"'LM' is not a subgroup of P4: it acts on the line"):
        p4.subgroup_indices(get_group("LM"))
    # A name is the registry's business: the message says where to look it up.
    with pytest.raises(TypeError, match=r"use groco_core.get_group\('PMh', subgroup_of='P4'\)"):
        p4.subgroup_indices("PMh")
    with pytest.raises(TypeError, match=r"Received: subgroup='P2'"):
        p4.cosets("P2")


def test_groups_do_not_import_the_registry():
    # Bypass the package's __init__ (which imports the registry for its own names) so that
    # only groups.py and what it imports are loaded.
    script = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("groco_core")
        package.__path__ = [{os.path.dirname(groco_core.__file__)!r}]
        sys.modules["groco_core"] = package
        import groco_core.groups
        print(sorted(name for name in sys.modules if name.startswith("groco_core.")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split("\n")[0] == "['groco_core.groups', 'groco_core.validation']"


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("sub", ["P4", "CMM", "PMv", "P1"])
def test_cosets_partition_the_group(sub, side):
    group = get_group("P4M")
    cosets = group.cosets(get_group(sub), side=side)
    flat = sorted(i for coset in cosets for i in coset)
    assert flat == list(range(group.order))
    assert len(cosets) == group.order // get_group(sub).order
    members = group.subgroup_indices(get_group(sub))
    assert cosets[0] == members
    for coset in cosets:
        rep = group.matrices[coset[0]]
        for h, element in zip(members, coset, strict=True):
            product = rep @ group.matrices[h] if side == "left" else group.matrices[h] @ rep
            assert np.array_equal(group.matrices[element], product)


@pytest.mark.parametrize("shape", [(3, 3), (4, 4), (2, 2), (5, 5)])
@pytest.mark.parametrize("name", ["P4M", "CMM", "P2MM"])
def test_kernel_permutation_transforms_the_kernel(name, shape):
    group = get_group(name)
    kernel = np.random.default_rng(0).normal(size=shape)
    table = group.kernel_permutation(shape)
    for h in range(group.order):
        expected = act_on_grid(kernel, group.matrices[h], (0, 1))
        assert np.array_equal(kernel.reshape(-1)[table[h]].reshape(shape), expected)


def test_kernel_permutation_refuses_shapes_the_group_does_not_preserve():
    with pytest.raises(ValueError, match=r"kernel_size must be mapped onto itself.*\(3, 5\)"):
        get_group("P4").kernel_permutation((3, 5))
    # Mirrors in the axes preserve rectangles.
    assert get_group("P2MM").kernel_permutation((3, 5)).shape == (4, 15)


@pytest.mark.parametrize("name", ["P4M", "P4", "CMM", "PMa"])
def test_transform_agrees_with_the_independent_transform(name, rng):
    from keras import ops

    group = get_group(name)
    x = rng.normal(size=(2, 5, 5, group.order, 3)).astype("float32")
    for g in range(group.order):
        ours = ops.convert_to_numpy(group.transform(x, g, (1, 2), group_axis=3))
        theirs = act(x, group.matrices[g], (1, 2), group.matrices, 3)
        np.testing.assert_array_equal(ours, theirs)


def test_transform_is_an_action():
    from keras import ops

    group = get_group("P4M")
    x = np.arange(2 * 4 * 4 * 8, dtype="float32").reshape(2, 4, 4, 8)
    for a, b in itertools.product(range(8), repeat=2):
        ab = group.cayley[a, b]
        twice = group.transform(group.transform(x, b, (1, 2), 3), a, (1, 2), 3)
        np.testing.assert_array_equal(
            ops.convert_to_numpy(twice), ops.convert_to_numpy(group.transform(x, ab, (1, 2), 3))
        )


def test_transform_rejects_bad_elements():
    with pytest.raises(ValueError, match=r"element must be an index in \[0, 4\).*element=4"):
        get_group("P4").transform(np.zeros((1, 3, 3, 1)), 4, (1, 2))


@pytest.mark.parametrize(
    ("matrices", "message"),
    [
        ([[[1, 0], [0, 1]], [[0, -1], [1, 0]]], "not closed under multiplication"),
        ([[[-1, 0], [0, 1]], [[1, 0], [0, 1]]], "must be the identity"),
        ([[[1, 0], [0, 1]], [[1, 0], [0, 1]]], "must be unique"),
        ([[[1, 0], [0, 1]], [[2, 0], [0, 1]]], "determinant"),
        ([[[1, 0], [0, 1]], [[0.5, 0], [0, 1]]], "integer entries"),
        ([[1, 0], [0, 1]], "shape"),
    ],
)
def test_invalid_definitions_are_rejected_with_the_reason(matrices, message):
    with pytest.raises(ValueError, match=f"Invalid group definition 'Bad'.*{message}"):
        MatrixGroup("Bad", matrices)


def test_invalid_names_are_rejected():
    with pytest.raises(ValueError, match="Invalid group definition '4P': name"):
        MatrixGroup("4P", [[[1, 0], [0, 1]]])


def test_the_top_level_exports_every_layer_lazily():
    import subprocess
    import sys

    import groco_core
    from groco_core import layers

    assert set(layers.__all__) <= set(groco_core.__all__)
    code = (
        "import sys, groco_core; assert 'keras' not in sys.modules; "
        "from groco_core import *; assert GroupDense.__name__ == 'GroupDense'; "
        "assert callable(export)"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={"KERAS_BACKEND": "jax", "PATH": ""}
    )
