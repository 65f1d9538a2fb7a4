"""Group pooling, pooling onto a subgroup and global group pooling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from transforms import max_equivariance_error

from groco_core.groups import MatrixGroup
from groco_core.hookspecs import hookimpl
from groco_core.layers.global_pooling import (
    GlobalGroupAveragePooling1D,
    GlobalGroupAveragePooling2D,
    GlobalGroupMaxPooling2D,
    GlobalGroupMaxPooling3D,
)
from groco_core.layers.pooling import (
    GroupAveragePooling1D,
    GroupAveragePooling2D,
    GroupMaxPooling1D,
    GroupMaxPooling2D,
    GroupMaxPooling3D,
)
from groco_core.registry import get_group

GROUPS_2D = ["P4M", "P4", "P2MM", "CMM", "PMd"]
POOLINGS_2D = [GroupMaxPooling2D, GroupAveragePooling2D]


def signal(rng, shape):
    return rng.normal(size=shape).astype("float32")


def matrices(name):
    return get_group(name).matrices


def as_numpy(x):
    return ops.convert_to_numpy(x)


def assert_export_matches(layer, x):
    inputs = keras.Input(x.shape[1:])
    plain = keras.Model(inputs, layer.export_plain(inputs))
    grouped = keras.Model(inputs, layer(inputs))
    np.testing.assert_allclose(as_numpy(plain(x)), as_numpy(grouped(x)), atol=1e-5)
    assert not [lay for lay in plain.layers if type(lay).__module__.startswith("groco")]


# -- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, spatial, order",
    [
        ({}, 3, 8),
        ({"pool_size": 3, "strides": 2, "padding": "same_equiv"}, 4, 8),
        ({"pool_size": 3, "strides": 1, "padding": "same"}, 7, 8),
        ({"pool_size": 3, "strides": 3, "padding": "valid_equiv"}, 3, 8),
        ({"subgroup": "P4"}, 3, 4),
        ({"subgroup": "P1"}, 3, 1),
    ],
)
@pytest.mark.parametrize("pooling", POOLINGS_2D)
def test_pooling_shapes_and_no_weights(pooling, kwargs, spatial, order, rng):
    layer = pooling(group="P4M", **kwargs)
    x = signal(rng, (2, 7, 7, 8, 3)) if "pool_size" in kwargs else signal(rng, (2, 6, 6, 8, 3))
    y = layer(x)
    assert y.shape == (2, spatial, spatial, order, 3)
    assert layer.compute_output_shape(x.shape) == y.shape
    assert layer.count_params() == 0


def test_pooling_channels_first_shape(rng):
    layer = GroupAveragePooling2D(group="P4M", subgroup="CMM", data_format="channels_first")
    x = signal(rng, (2, 3, 6, 6, 8))
    assert layer(x).shape == (2, 3, 3, 3, 4)
    assert layer.compute_output_shape(x.shape) == (2, 3, 3, 3, 4)


def test_pooling_unknown_batch_in_functional_model():
    inputs = keras.Input((6, 6, 8, 3))
    outputs = GroupMaxPooling2D(group="P4M", subgroup="P2MM")(inputs)
    assert tuple(outputs.shape) == (None, 3, 3, 4, 3)


# -- values against numpy -----------------------------------------------------------------


def test_spatial_max_pooling_pools_every_element_separately(rng):
    x = signal(rng, (2, 6, 6, 8, 3))
    expected = x.reshape(2, 3, 2, 3, 2, 8, 3).max(axis=(2, 4))
    np.testing.assert_allclose(as_numpy(GroupMaxPooling2D(group="P4M")(x)), expected, atol=1e-6)


def test_average_pooling_onto_trivial_subgroup_averages_the_whole_group(rng):
    x = signal(rng, (2, 4, 4, 8, 3))
    expected = x.reshape(2, 2, 2, 2, 2, 8, 3).mean(axis=(2, 4, 5))[:, :, :, None, :]
    y = GroupAveragePooling2D(group="P4M", subgroup="P1")(x)
    np.testing.assert_allclose(as_numpy(y), expected, atol=1e-6)


def test_max_pooling_onto_subgroup_takes_max_over_right_coset_rows(rng):
    # out(k) = max over g in G with M_k⁻¹ M_g a coset representative, built from matrices.
    group, sub = matrices("P4M"), matrices("P4")
    x = signal(rng, (2, 2, 2, 8, 3))
    keys = [m.tobytes() for m in group]
    y = as_numpy(GroupMaxPooling2D(group="P4M", subgroup="P4", pool_size=1)(x))
    reflections = [g for g in range(8) if round(np.linalg.det(group[g])) == -1]
    for k, m_k in enumerate(sub):
        # H·r with H = P4: the representatives are the identity and the first reflection.
        rows = [keys.index(m_k.tobytes()), keys.index((m_k @ group[reflections[0]]).tobytes())]
        np.testing.assert_allclose(y[:, :, :, k], x[:, :, :, rows].max(axis=3), atol=1e-6)


# -- equivariance -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pooling, group",
    [(GroupMaxPooling2D, g) for g in GROUPS_2D]
    + [(GroupAveragePooling2D, g) for g in ("P4M", "CMM")],
)
def test_pooling_is_equivariant(pooling, group, rng):
    order = len(matrices(group))
    layer = pooling(group=group, pool_size=3, strides=2, padding="same_equiv")
    x = signal(rng, (1, 7, 7, order, 2))
    error = max_equivariance_error(layer, x, matrices(group), matrices(group), matrices(group))
    assert error < 1e-5


@pytest.mark.parametrize(
    "pooling, group, subgroup",
    [
        (GroupMaxPooling2D, "P4M", "P4"),
        (GroupMaxPooling2D, "P4M", "CMM"),
        (GroupMaxPooling2D, "P4M", "PMd"),
        (GroupMaxPooling2D, "P4", "P2"),
        (GroupMaxPooling2D, "P2MM", "PMh"),
        (GroupAveragePooling2D, "P4M", "P4"),
        (GroupAveragePooling2D, "P4M", "PMd"),
    ],
)
def test_pooling_onto_subgroup_is_equivariant_under_subgroup(pooling, group, subgroup, rng):
    layer = pooling(group=group, subgroup=subgroup)
    x = signal(rng, (1, 6, 6, len(matrices(group)), 2))
    error = max_equivariance_error(
        layer, x, matrices(subgroup), matrices(group), matrices(subgroup)
    )
    assert error < 1e-5


def test_pooling_channels_first_is_equivariant(rng):
    layer = GroupMaxPooling2D(
        group="P4M",
        subgroup="P4",
        pool_size=3,
        padding="valid_equiv",
        data_format="channels_first",
    )
    x = signal(rng, (1, 2, 7, 7, 8))
    error = max_equivariance_error(
        layer, x, matrices("P4"), matrices("P4M"), matrices("P4"), channels_last=False
    )
    assert error < 1e-5


def test_unequal_pool_sizes_are_fine_for_a_group_without_rotations(rng):
    layer = GroupMaxPooling2D(group="P4M", subgroup="P2MM", pool_size=(2, 3), strides=(2, 1))
    x = signal(rng, (1, 6, 7, 8, 2))
    error = max_equivariance_error(layer, x, matrices("P2MM"), matrices("P4M"), matrices("P2MM"))
    assert error < 1e-5


@pytest.mark.parametrize(
    "pooling, kwargs",
    [
        (GroupMaxPooling1D, {}),
        (GroupAveragePooling1D, {"pool_size": 3, "strides": 2, "padding": "same_equiv"}),
        (GroupMaxPooling1D, {"subgroup": "L1"}),
    ],
)
def test_pooling_1d_on_lm(pooling, kwargs, rng):
    layer = pooling(group="LM", **kwargs)
    x = signal(rng, (2, 8, 2, 3)) if "padding" not in kwargs else signal(rng, (2, 9, 2, 3))
    y = layer(x)
    assert y.shape == layer.compute_output_shape(x.shape)
    out_group = "L1" if "subgroup" in kwargs else "LM"
    error = max_equivariance_error(
        layer, x, matrices(out_group), matrices("LM"), matrices(out_group), spatial_dims=1
    )
    assert error < 1e-5


class CubeTurns:
    """A 3D group for the tests: quarter turns about the depth axis."""

    @hookimpl
    def groco_register_groups(self, register):
        turn = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
        elements = [np.linalg.matrix_power(turn, n) for n in range(4)]
        register(MatrixGroup("TestTurnsZ", elements, lattice="cubic"))


def test_pooling_3d_with_a_registered_3d_group(register_plugin, rng):
    register_plugin(CubeTurns(), name="test_cube_turns")
    layer = GroupMaxPooling3D(group="TestTurnsZ", pool_size=(1, 2, 2))
    x = signal(rng, (1, 3, 4, 4, 4, 2))
    assert layer(x).shape == (1, 3, 2, 2, 4, 2)
    group = matrices("TestTurnsZ")
    assert max_equivariance_error(layer, x, group, group, group, spatial_dims=3) < 1e-5
    assert_export_matches(layer, x)
    with pytest.raises(ValueError, match="pool_size must be equal"):
        GroupMaxPooling3D(group="TestTurnsZ", pool_size=(2, 1, 2))
    invariant = GlobalGroupMaxPooling3D(group="TestTurnsZ")
    assert max_equivariance_error(invariant, x, group, group, spatial_dims=3) < 1e-6


# -- global pooling -----------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS_2D)
@pytest.mark.parametrize("pooling", [GlobalGroupMaxPooling2D, GlobalGroupAveragePooling2D])
def test_global_pooling_is_invariant(pooling, group, rng):
    order = len(matrices(group))
    layer = pooling(group=group)
    x = signal(rng, (2, 5, 5, order, 3))
    assert layer(x).shape == (2, 3)
    assert max_equivariance_error(layer, x, matrices(group), matrices(group)) < 1e-5


def test_global_pooling_values_and_keepdims(rng):
    x = signal(rng, (2, 4, 4, 8, 3))
    y = GlobalGroupMaxPooling2D(keepdims=True)(x)
    np.testing.assert_allclose(as_numpy(y), x.max(axis=(1, 2, 3), keepdims=True), atol=1e-6)
    channels_first = GlobalGroupAveragePooling2D(data_format="channels_first", keepdims=True)
    moved = np.moveaxis(x, -1, 1)
    assert channels_first.compute_output_shape(moved.shape) == (2, 3, 1, 1, 1)
    np.testing.assert_allclose(
        as_numpy(channels_first(moved)), moved.mean(axis=(2, 3, 4), keepdims=True), atol=1e-6
    )


def test_global_pooling_1d(rng):
    layer = GlobalGroupAveragePooling1D(group="LM")
    x = signal(rng, (2, 6, 2, 3))
    assert layer.compute_output_shape(x.shape) == (2, 3)
    assert max_equivariance_error(layer, x, matrices("LM"), matrices("LM"), spatial_dims=1) < 1e-6


# -- serialization and export -------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        GroupMaxPooling2D(group="P4M", subgroup="P4", pool_size=3, strides=2, padding="same_equiv"),
        GroupAveragePooling2D(
            group="P4M", subgroup="CMM", pool_size=3, strides=2, padding="same_equiv"
        ),
        GlobalGroupMaxPooling2D(group="P4M", keepdims=True),
    ],
)
def test_get_config_round_trip(layer, rng):
    x = signal(rng, (2, 7, 7, 8, 3))
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert layer.get_config()["group"] == "P4M"
    np.testing.assert_allclose(as_numpy(clone(x)), as_numpy(layer(x)), atol=1e-6)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (
            GroupMaxPooling2D(group="P4M", pool_size=3, strides=2, padding="same_equiv"),
            (7, 7, 8, 3),
        ),
        (
            GroupMaxPooling2D(group="P4M", subgroup="CMM", pool_size=3, strides=2, padding="same"),
            (7, 7, 8, 3),
        ),
        (
            GroupAveragePooling2D(group="P4M", subgroup="P4", data_format="channels_first"),
            (3, 6, 6, 8),
        ),
        (GroupMaxPooling1D(group="LM", subgroup="L1"), (6, 2, 3)),
        (GlobalGroupMaxPooling2D(group="P4M"), (5, 5, 8, 3)),
        (GlobalGroupAveragePooling2D(data_format="channels_first", keepdims=True), (3, 5, 5, 8)),
    ],
)
def test_export_plain_matches(layer, shape, rng):
    assert_export_matches(layer, signal(rng, (2, *shape)))


# -- bad arguments ------------------------------------------------------------------------


def test_wrong_group_axis_length(rng):
    with pytest.raises(ValueError, match="group axis .* of length 8"):
        GroupMaxPooling2D(group="P4M")(signal(rng, (1, 4, 4, 4, 2)))
    with pytest.raises(ValueError, match="group axis .* of length 4"):
        GlobalGroupMaxPooling2D(group="P4")(signal(rng, (1, 4, 4, 8, 2)))


def test_bad_pooling_arguments():
    with pytest.raises(ValueError, match="not a subgroup of P4"):
        GroupMaxPooling2D(group="P4", subgroup="PMd")
    with pytest.raises(ValueError, match="pool_size must be equal"):
        GroupMaxPooling2D(group="P4", pool_size=(2, 3))
    with pytest.raises(ValueError, match="strides must be equal"):
        GroupAveragePooling2D(group="P4M", pool_size=2, strides=(1, 2))
    with pytest.raises(ValueError, match="needs a group acting on 1"):
        GroupMaxPooling1D(group="P4M")
    with pytest.raises(ValueError, match="padding must be one of"):
        GroupMaxPooling2D(group="P4M", padding="full")
    with pytest.raises(TypeError, match="pool_size must be an int"):
        GroupMaxPooling2D(group="P4M", pool_size=(2, 2, 2))


def test_non_equivariant_padding_refused_unless_allowed(rng):
    x = signal(rng, (1, 7, 7, 8, 2))
    with pytest.raises(ValueError, match="breaks equivariance"):
        GroupMaxPooling2D(group="P4M", padding="valid")(x)
    with pytest.raises(ValueError, match="no padding makes this layer equivariant"):
        GroupMaxPooling2D(group="P4M")(x)
    allowed = GroupMaxPooling2D(group="P4M", padding="valid", allow_non_equivariance=True)
    assert allowed(x).shape == (1, 3, 3, 8, 2)
    unequal = GroupMaxPooling2D(group="P4", pool_size=(2, 3), allow_non_equivariance=True)
    assert unequal(signal(rng, (1, 6, 6, 4, 2))).shape == (1, 3, 2, 4, 2)


def _pooling_gradient(layer, x, compiled: bool) -> np.ndarray:
    """The gradient of the sum of the layer's output with respect to `x`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        gradient = jax.grad(lambda t: ops.sum(layer(t)))
        return np.asarray((jax.jit(gradient) if compiled else gradient)(x))
    if backend == "tensorflow":
        import tensorflow as tf

        def gradient(t):
            with tf.GradientTape() as tape:
                tape.watch(t)
                total = tf.reduce_sum(layer(t))
            return tape.gradient(total, t)

        step = tf.function(gradient) if compiled else gradient
        return step(tf.constant(x)).numpy()
    import torch

    t = torch.tensor(x, requires_grad=True)
    layer(t).sum().backward()
    return t.grad.numpy()


@pytest.mark.parametrize("compiled", [False, True])
def test_3d_max_pooling_gives_each_windows_gradient_to_one_tied_entry(compiled):
    # A volume of equal values: every window is all ties. Each window's gradient goes to
    # its first entry, as in 2D; TensorFlow's own 3D max pooling, run eagerly, gave it to
    # all eight entries of a 2×2×2 window (a gradient eight times too large), and in a
    # graph to one.
    layer = GroupMaxPooling3D(pool_size=2, strides=2, group="C4v")
    x = np.full((1, 4, 4, 4, 8, 1), 0.5, "float32")
    gradient = _pooling_gradient(layer, x, compiled)
    expected = np.zeros_like(x)
    expected[:, ::2, ::2, ::2] = 1.0
    np.testing.assert_array_equal(gradient, expected)
