"""GroupDense (group convolution over the group only) and GroupReduce (restriction to H)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from transforms import act_on_group_axis, max_equivariance_error

from groco_core.layers.dense import GroupDense
from groco_core.layers.reduce import GroupReduce
from groco_core.registry import get_group

GROUPS_2D = ["P4M", "P4", "P2MM", "CMM", "PMd"]


def signal(rng, shape):
    return rng.normal(size=shape).astype("float32")


def matrices(name):
    return get_group(name).matrices


def as_numpy(x):
    return ops.convert_to_numpy(x)


def index(group_matrices, matrix):
    keys = [m.tobytes() for m in np.asarray(group_matrices, dtype=np.int64)]
    return keys.index(np.asarray(matrix, dtype=np.int64).tobytes())


def assert_export_matches(layer, x):
    inputs = keras.Input(x.shape[1:])
    plain = keras.Model(inputs, layer.export_plain(inputs))
    np.testing.assert_allclose(as_numpy(plain(x)), as_numpy(layer(x)), atol=1e-5)
    assert not [lay for lay in plain.layers if type(lay).__module__.startswith("groco")]


# -- GroupDense ---------------------------------------------------------------------------


def test_dense_shapes_and_parameters(rng):
    layer = GroupDense(5, group="P4M", subgroup="P4")
    x = signal(rng, (2, 8, 3))
    assert layer(x).shape == (2, 4, 5)
    assert layer.compute_output_shape(x.shape) == (2, 4, 5)
    assert tuple(layer.kernel.shape) == (8, 3, 5)
    assert layer.count_params() == 8 * 3 * 5 + 5


def test_dense_matches_numpy_formula(rng):
    group, sub = matrices("P4M"), matrices("CMM")
    layer = GroupDense(4, group="P4M", subgroup="CMM", bias_initializer="random_normal")
    x = signal(rng, (2, 8, 3))
    y = as_numpy(layer(x))
    kernel, bias = (as_numpy(w) for w in (layer.kernel, layer.bias))
    expected = np.zeros((2, 4, 4), dtype="float64")
    for h, m_h in enumerate(sub):
        for k, m_k in enumerate(group):
            source = index(group, np.rint(np.linalg.inv(m_h)).astype(int) @ m_k)
            expected[:, h] += x[:, k] @ kernel[source]
    np.testing.assert_allclose(y, expected + bias, atol=1e-5)


@pytest.mark.parametrize("group", GROUPS_2D)
def test_dense_is_equivariant(group, rng):
    g = matrices(group)
    layer = GroupDense(3, group=group, activation="relu", bias_initializer="random_normal")
    x = signal(rng, (2, len(g), 4))
    y = as_numpy(layer(x))
    for m in g:
        left = as_numpy(layer(act_on_group_axis(x, g, m, group_axis=1)))
        np.testing.assert_allclose(left, act_on_group_axis(y, g, m, group_axis=1), atol=1e-5)


def test_dense_onto_subgroup_with_spatial_axes_is_equivariant(rng):
    layer = GroupDense(3, group="P4M", subgroup="P2MM")
    x = signal(rng, (1, 5, 5, 8, 2))
    error = max_equivariance_error(layer, x, matrices("P2MM"), matrices("P4M"), matrices("P2MM"))
    assert error < 1e-5
    assert_export_matches(layer, x)


def test_dense_config_round_trip_and_export(rng):
    layer = GroupDense(4, group="LM", activation="tanh", bias_initializer="random_normal")
    x = signal(rng, (2, 2, 3))
    layer(x)
    config = layer.get_config()
    assert config["group"] == "LM" and config["units"] == 4
    clone = GroupDense.from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(as_numpy(clone(x)), as_numpy(layer(x)), atol=1e-6)
    assert_export_matches(layer, x)
    assert_export_matches(
        GroupDense(2, group="P4M", subgroup="PMd", use_bias=False), signal(rng, (2, 8, 3))
    )


def test_dense_bad_inputs(rng):
    with pytest.raises(ValueError, match="lifting from \\(batch, channels\\) is not meaningful"):
        GroupDense(3, group="P4M")(signal(rng, (2, 8)))
    with pytest.raises(ValueError, match="group axis .* of length 8"):
        GroupDense(3, group="P4M")(signal(rng, (2, 4, 3)))
    with pytest.raises(ValueError, match="not a subgroup of P4"):
        GroupDense(3, group="P4", subgroup="CMM")
    with pytest.raises(ValueError, match="units must be a positive int"):
        GroupDense(0, group="P4")
    with pytest.raises(TypeError, match="units must be a positive int"):
        GroupDense(2.5, group="P4")


# -- GroupReduce --------------------------------------------------------------------------


def test_reduce_shapes_and_restriction_block(rng):
    layer = GroupReduce("P4M", "P4")
    x = signal(rng, (2, 5, 5, 8, 3))
    y = as_numpy(layer(x))
    assert y.shape == (2, 5, 5, 4, 6)
    assert layer.compute_output_shape(x.shape) == (2, 5, 5, 4, 6)
    assert layer.count_params() == 0
    # Channel block 0 is the plain restriction of the input to P4's elements.
    rows = [index(matrices("P4M"), m) for m in matrices("P4")]
    np.testing.assert_array_equal(y[..., :3], x[:, :, :, rows])
    # Nothing is lost: at every point the values are the input's, rearranged.
    np.testing.assert_array_equal(
        np.sort(y.reshape(2, 5, 5, -1), -1), np.sort(x.reshape(2, 5, 5, -1), -1)
    )


@pytest.mark.parametrize(
    "group, subgroup",
    [("P4M", "P4"), ("P4M", "CMM"), ("P4M", "PMd"), ("P4", "P2"), ("P2MM", "PMv")],
)
def test_reduce_is_equivariant_under_subgroup(group, subgroup, rng):
    layer = GroupReduce(group, subgroup)
    x = signal(rng, (1, 4, 4, len(matrices(group)), 2))
    error = max_equivariance_error(
        layer, x, matrices(subgroup), matrices(group), matrices(subgroup)
    )
    assert error == 0.0


def test_reduce_without_space_channels_first_and_1d(rng):
    flat = GroupReduce("P4M", "P1")
    x = signal(rng, (2, 8, 3))
    assert flat(x).shape == (2, 1, 24)
    channels_first = GroupReduce("P4M", "P2", data_format="channels_first")
    xf = signal(rng, (1, 3, 4, 4, 8))
    assert channels_first(xf).shape == (1, 12, 4, 4, 2)
    error = max_equivariance_error(
        channels_first, xf, matrices("P2"), matrices("P4M"), matrices("P2"), channels_last=False
    )
    assert error == 0.0
    line = GroupReduce("LM", "L1")
    assert line(signal(rng, (2, 6, 2, 3))).shape == (2, 6, 1, 6)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (GroupReduce("P4M", "CMM"), (5, 5, 8, 3)),
        (GroupReduce("P4M", "P4", data_format="channels_first"), (3, 4, 4, 8)),
        (GroupReduce("P4", "P1"), (4, 2)),
    ],
)
def test_reduce_config_round_trip_and_export(layer, shape, rng):
    x = signal(rng, (2, *shape))
    clone = GroupReduce.from_config(layer.get_config())
    np.testing.assert_array_equal(as_numpy(clone(x)), as_numpy(layer(x)))
    assert_export_matches(layer, x)


def test_reduce_bad_arguments(rng):
    with pytest.raises(ValueError, match="needs the subgroup"):
        GroupReduce("P4M", None)
    with pytest.raises(ValueError, match="not a subgroup of P2MM"):
        GroupReduce("P2MM", "P4")
    with pytest.raises(ValueError, match="group axis .* of length 8"):
        GroupReduce("P4M", "P4")(signal(rng, (1, 4, 4, 4, 2)))
