"""The hexagonal plugin, found through its entry point only, on every backend.

Equivariance is checked with this file's own action on axial coordinates (integer index
arithmetic from the matrices), independently of `groco_core`'s transform.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import groco_hexagonal
import keras
import numpy as np
import pytest
from groco_hexagonal.resample import (
    AXIAL_BASIS,
    hexagonal_positions,
    hexagonal_to_square,
    square_to_hexagonal,
)

from groco_core import (
    GlobalGroupAveragePooling2D,
    GlobalGroupMaxPooling2D,
    GroupConv2D,
    GroupMaxPooling2D,
    get_group,
    list_plugins,
    registry,
)
from groco_core.registry import subgroups_of
from groco_core.testing import assert_conforms

HEXAGONAL = ["P6M", "P6", "P31M", "P3M1", "P3", "HexP2", "HexP1"] + [
    f"HexM{a}" for a in range(0, 180, 30)
]


def hexagon(size: int) -> np.ndarray:
    radius = (size - 1) // 2
    i, j = np.meshgrid(*2 * [np.arange(-radius, radius + 1)], indexing="ij")
    return (np.abs(i) <= radius) & (np.abs(j) <= radius) & (np.abs(i + j) <= radius)


def act(x, matrix, group_matrices=None):
    """out[:, p] = x[:, M⁻¹ p] on the axes 1, 2 (zero where M⁻¹ p is off the array); on a
    signal on the group also out[..., h, :] = x[..., M⁻¹ M_h, :] (axis -2)."""
    size = x.shape[1]
    radius = (size - 1) // 2
    inverse = np.rint(np.linalg.inv(matrix)).astype(int)
    out = np.zeros_like(x)
    for i in range(-radius, radius + 1):
        for j in range(-radius, radius + 1):
            si, sj = inverse @ np.array([i, j])
            if abs(si) <= radius and abs(sj) <= radius:
                out[:, i + radius, j + radius] = x[:, si + radius, sj + radius]
    if group_matrices is not None:
        keys = [m.tobytes() for m in np.asarray(group_matrices, dtype=np.int64)]
        source = [keys.index((inverse @ m).astype(np.int64).tobytes()) for m in group_matrices]
        out = out[..., source, :]
    return out


def equivariance_error(layer, x, in_group=None, out_group=None, acting=None):
    """max over the acting matrices of |L(g·x) − g·L(x)| inside the output's hexagon."""
    acting = acting if acting is not None else out_group
    y = keras.ops.convert_to_numpy(layer(x))
    worst = 0.0
    for matrix in acting:
        left = keras.ops.convert_to_numpy(layer(act(x, matrix, in_group)))
        if y.ndim == 2:
            right = y
        else:
            right = act(y, matrix, out_group)
            left, right = left[:, hexagon(y.shape[1])], right[:, hexagon(y.shape[1])]
        worst = max(worst, float(np.max(np.abs(left - right))))
    return worst


def signal(rng, size, *rest):
    """A random signal supported on the hexagon inside a size × size array."""
    x = rng.normal(size=(1, size, size, *rest)).astype("float32")
    return x * hexagon(size).reshape((1, size, size) + (1,) * len(rest))


def test_groups_come_through_the_entry_point():
    info = {plugin.name: plugin for plugin in list_plugins()}["hexagonal"]
    assert info.source == "entry point of distribution 'groco-hexagonal'"
    assert info.version == groco_hexagonal.__version__
    assert sorted(info.groups) == sorted(HEXAGONAL) and not info.problems
    p6m = get_group("p6m")
    assert (p6m.order, p6m.lattice) == (12, "hexagonal")
    assert set(subgroups_of(p6m)) == set(HEXAGONAL)
    assert set(subgroups_of("P31M")) == {"P31M", "P3", "HexM0", "HexM60", "HexM120", "HexP1"}
    assert "P2" not in subgroups_of(p6m) and "HexP2" not in subgroups_of("P4M")


def test_matrices_are_the_documented_turns_and_mirrors():
    basis = AXIAL_BASIS
    p6m = get_group("P6M")
    for k in range(6):
        turn = basis @ p6m.matrices[k] @ np.linalg.inv(basis)
        angle = np.deg2rad(60 * k)
        # y points down: a counter-clockwise turn on screen is a negative angle in (x, y).
        expected = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
        np.testing.assert_allclose(turn, expected, atol=1e-12)
        mirror = basis @ p6m.matrices[6 + k] @ np.linalg.inv(basis)
        # The mirror line runs at 30·k degrees from a_row towards a_col.
        line_angle = np.arctan2(basis[1, 0], basis[0, 0]) - np.deg2rad(30 * k)
        direction = np.array([np.cos(line_angle), np.sin(line_angle)])
        np.testing.assert_allclose(mirror @ direction, direction, atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(mirror), -1)
        assert get_group(f"HexM{30 * k}").matrices[1].tolist() == p6m.matrices[6 + k].tolist()


def test_masked_taps_never_move_and_stay_zero():
    p6m = get_group("P6M")
    for size in (3, 5):
        table = p6m.kernel_permutation((size, size))
        mask = hexagon(size).reshape(-1)
        outside = np.flatnonzero(~mask)
        assert len(outside) == (size // 2) * (size // 2 + 1)
        assert np.all(table[:, outside] == outside)
        assert all(set(row[mask]) == set(np.flatnonzero(mask)) for row in table)
    layer = GroupConv2D(3, 5, group="P6M", kernel_initializer="ones")
    layer(np.zeros((1, 7, 7, 12, 2), "float32"))
    kernel = keras.ops.convert_to_numpy(layer.transformed_kernel())
    assert np.all(kernel[~hexagon(5)] == 0) and np.all(kernel[hexagon(5)] == 1)


def test_lifting_and_group_conv_are_exactly_equivariant_under_all_12_elements(rng):
    p6m = get_group("P6M").matrices
    x = signal(rng, 11, 2)
    lift = GroupConv2D(3, 3, group="P6M")
    error = equivariance_error(lift, x, out_group=p6m)
    lifted = keras.ops.convert_to_numpy(lift(x))
    conv = GroupConv2D(2, 3, group="P6M")
    group_error = equivariance_error(conv, signal(rng, 9, 12, 3), p6m, p6m)
    assert error < 1e-5 and group_error < 1e-5
    assert np.abs(lifted).max() > 0.1


def test_strided_conv_onto_a_subgroup_is_equivariant_under_the_subgroup(rng):
    p6m, p3m1 = get_group("P6M"), get_group("P3M1")
    layer = GroupConv2D(2, 3, group="P6M", subgroup="P3M1", strides=2)
    x = signal(rng, 11, 12, 2)
    assert equivariance_error(layer, x, p6m.matrices, p3m1.matrices) < 1e-5


def test_pooling_onto_a_subgroup_and_global_pooling(rng):
    p6m, p6 = get_group("P6M").matrices, get_group("P6").matrices
    x = signal(rng, 9, 12, 3)
    onto_p6 = GroupMaxPooling2D(group="P6M", subgroup="P6", pool_size=1)
    assert onto_p6(x).shape == (1, 9, 9, 6, 3)
    assert equivariance_error(onto_p6, x, p6m, p6) == 0.0
    for pooling in (GlobalGroupMaxPooling2D(group="P6M"), GlobalGroupAveragePooling2D(group="P6M")):
        assert equivariance_error(pooling, x, p6m, acting=p6m) < 1e-6


def test_the_conformance_kit_passes_on_p6m():
    # Every row of `groco check P6M`; the subgroups are checked by `groco check --plugin`.
    assert_conforms("P6M")


def test_bad_sizes_get_a_clear_message():
    with pytest.raises(ValueError, match=r"same odd size on both axes.*Received: shape=\(4, 4\)"):
        GroupConv2D(2, 4, group="P6M")
    with pytest.raises(ValueError, match=r"uses only part of a square window.*pool_size=1"):
        GroupMaxPooling2D(group="P6M", subgroup="P6")


def test_rotating_the_hexagonal_samples_is_rotating_the_picture():
    # Samples of f at the lattice points, turned by 60° with the group, are the samples of
    # f turned by 60° counter-clockwise on screen.
    positions = hexagonal_positions(9)

    def f(x, y):
        return np.sin(0.7 * x) + 0.3 * y**2 - 0.2 * x * y + x

    cos, sin = np.cos(np.deg2rad(60)), np.sin(np.deg2rad(60))
    # (f turned)(p) = f(R⁻¹ p), R = [[cos, sin], [-sin, cos]] in (x, y) with y down: a turn
    # counter-clockwise on screen.
    x, y = positions[..., 0], positions[..., 1]
    turned = f(cos * x - sin * y, sin * x + cos * y)
    samples = f(x, y)[None, :, :, None] * hexagon(9)[None, :, :, None]
    rotated = keras.ops.convert_to_numpy(get_group("P6").transform(samples, 1, (1, 2)))
    np.testing.assert_allclose(rotated[0, hexagon(9), 0], turned[hexagon(9)], atol=1e-5)


def test_resampling_round_trip():
    rows, cols = np.mgrid[0:32, 0:32]
    image = np.exp(-((rows - 15.5) ** 2 + (cols - 15.5) ** 2) / 60.0)
    hexagonal = square_to_hexagonal(image, 31)
    assert hexagonal.shape == (31, 31) and np.all(hexagonal[~hexagon(31)] == 0)
    back = hexagonal_to_square(hexagonal, (32, 32))
    # Nearest lattice point: off by at most ~0.58 pixel, where the slope is below 0.15.
    assert np.abs(back - image)[8:24, 8:24].max() < 0.08
    colour = square_to_hexagonal(np.stack([image, 1 - image], -1), 15, spacing=2.0)
    assert colour.shape == (15, 15, 2)


def test_keras_file_on_p6m_without_the_plugin_names_p6m_and_the_plugin(tmp_path):
    inputs = keras.Input((7, 7, 1))
    outputs = GroupConv2D(2, 3, group="P6M")(inputs)
    path = str(tmp_path / "p6m.keras")
    keras.Model(inputs, outputs).save(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROCO_")}
    env["GROCO_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # as if groco-hexagonal were not installed
    env["KERAS_BACKEND"] = "jax"  # the quickest to import; .keras files are backend-neutral
    script = textwrap.dedent(
        f"""
        import groco_core
        try:
            groco_core.load_model({path!r})
        except ValueError as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown group 'P6M': no installed plugin provides it" in result.stdout
    assert "a plugin must provide every group" in result.stdout
    assert "saved with P6M from plugin 'hexagonal' (distribution 'groco-hexagonal' 0.1.0)" in (
        result.stdout
    )
    assert registry.group_plugin("P6M") == "hexagonal"


def test_the_fixture_re_registers_the_installed_plugin(register_plugin):
    register_plugin(groco_hexagonal, name="hexagonal_again")
    assert registry.group_plugin("P6M") == "hexagonal_again"
    assert "hexagonal" not in {plugin.name for plugin in list_plugins()}


def test_network_on_p6m_exports_to_plain_keras(rng):
    from groco_core import (
        GroupBatchNormalization,
        GroupConv2DTranspose,
        export,
    )

    inputs = keras.Input((9, 9, 1))
    x = GroupConv2D(3, 3, group="P6M")(inputs)
    x = GroupBatchNormalization(group="P6M")(x)
    x = GroupMaxPooling2D(group="P6M", subgroup="P6", pool_size=1)(x)
    x = GroupConv2DTranspose(2, 3, group="P6")(x)
    outputs = GlobalGroupAveragePooling2D(group="P6")(x)
    model = keras.Model(inputs, outputs)
    plain = export(model)
    assert not any(type(layer).__module__.startswith("groco") for layer in plain.layers)
    x = signal(rng, 9, 1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )
