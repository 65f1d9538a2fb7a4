"""Every 3D layer on the cube groups: equivariance with the tests' own numpy transforms.

Groups: Oh, O, D4h, D3d (a 3-fold axis along a body diagonal) and C2v_f (a 2-fold axis
along a face diagonal). On the TensorFlow backend (the quickest here) every element of the
acting group is tested; the other backends test a fixed sample that includes a generating
set of Oh.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from transforms import act, max_equivariance_error

from groco_core import (
    GlobalGroupAveragePooling3D,
    GlobalGroupMaxPooling3D,
    GroupAveragePooling3D,
    GroupBatchNormalization,
    GroupConv2D,
    GroupConv3D,
    GroupConv3DTranspose,
    GroupMaxPooling3D,
    GroupReduce,
    export,
    get_group,
)

TOLERANCE = 1e-4
EVERY_ELEMENT = keras.backend.backend() == "tensorflow"
# A quarter turn about depth, a third turn about d+r+c and the inversion generate Oh.
GENERATORS = (
    [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
    [[0, 0, 1], [1, 0, 0], [0, 1, 0]],
    [[-1, 0, 0], [0, -1, 0], [0, 0, -1]],
)


def acting_matrices(name: str) -> np.ndarray:
    """Every element on TensorFlow; elsewhere the generators of Oh in the group and 5 more."""
    matrices = get_group(name).matrices
    if EVERY_ELEMENT or len(matrices) <= 8:
        return matrices
    generators = [m for m in matrices if any(np.array_equal(m, g) for g in GENERATORS)]
    sample = np.random.default_rng(7).choice(len(matrices), size=5, replace=False)
    return np.concatenate([np.asarray(generators).reshape(-1, 3, 3), matrices[sample]])


def error_of(layer, x, acting, in_group, out_group, channels_last=True) -> float:
    return max_equivariance_error(
        layer,
        x,
        acting_matrices(acting),
        None if in_group is None else get_group(in_group).matrices,
        None if out_group is None else get_group(out_group).matrices,
        channels_last=channels_last,
        spatial_dims=3,
    )


def signal(rng, name: str, size: int = 5, channels: int = 1) -> np.ndarray:
    order = get_group(name).order
    return rng.normal(size=(1, size, size, size, order, channels)).astype("float32")


# -- every layer kind on Oh (every element of Oh on one backend) -----------------------------


def oh_cases():
    """(layer, input group, output group, acting group, input size)"""
    return [
        (GroupConv3D(2, 3, group="Oh"), None, "Oh", "Oh", 5),
        (GroupConv3D(2, 3, group="Oh", subgroup="O"), "Oh", "O", "O", 5),
        (GroupConv3D(1, 3, group="Oh", subgroup="D4h", strides=2), "Oh", "D4h", "D4h", 5),
        (GroupConv3D(1, 2, group="Oh", strides=2, padding="same_equiv"), "Oh", "Oh", "Oh", 6),
        (GroupMaxPooling3D(group="Oh", subgroup="D4h"), "Oh", "D4h", "D4h", 6),
        (
            GroupAveragePooling3D(group="Oh", pool_size=3, strides=1, padding="same_equiv"),
            "Oh",
            "Oh",
            "Oh",
            5,
        ),
        (GlobalGroupMaxPooling3D(group="Oh"), "Oh", None, "Oh", 5),
        (GlobalGroupAveragePooling3D(group="Oh"), "Oh", None, "Oh", 5),
        (GroupBatchNormalization(group="Oh"), "Oh", "Oh", "Oh", 5),
        (GroupReduce(group="Oh", subgroup="D4h"), "Oh", "D4h", "D4h", 5),
        (GroupConv3DTranspose(1, 2, group="Oh", subgroup="D4h", strides=2), "D4h", "Oh", "D4h", 3),
        (GroupConv3DTranspose(1, 3, group="Oh", padding="same_equiv"), "Oh", "Oh", "Oh", 3),
    ]


@pytest.mark.parametrize("case", range(len(oh_cases())))
def test_every_layer_kind_is_equivariant_on_oh(case, rng):
    layer, in_group, out_group, acting, size = oh_cases()[case]
    if in_group is None:
        x = rng.normal(size=(1, size, size, size, 1)).astype("float32")
    else:
        x = signal(rng, in_group, size)
    assert error_of(layer, x, acting, in_group, out_group) < TOLERANCE


def test_channels_first_group_convolution_on_oh(rng):
    x = np.moveaxis(signal(rng, "Oh", 5), -1, 1)
    layer = GroupConv3D(2, 3, group="Oh", subgroup="O", data_format="channels_first")
    assert layer(x).shape == (1, 2, 3, 3, 3, 24)
    assert error_of(layer, x, "O", "Oh", "O", channels_last=False) < TOLERANCE


# -- the other groups: lifting, group conv, coset pooling, transposed conv, reduce -----------

SUBGROUP_OF = {"O": "D4", "D4h": "C4v", "D3d": "S6", "C2v_f": "C2_f"}


@pytest.mark.parametrize("name", list(SUBGROUP_OF))
def test_layers_on_o_d4h_a_three_fold_and_a_face_diagonal_group(name, rng):
    sub = SUBGROUP_OF[name]
    image = rng.normal(size=(1, 5, 5, 5, 1)).astype("float32")
    assert error_of(GroupConv3D(2, 3, group=name), image, name, None, name) < TOLERANCE
    x = signal(rng, name, 5)
    cases = [
        (GroupConv3D(1, 3, group=name, subgroup=sub, strides=2), name, sub, sub),
        (GroupMaxPooling3D(group=name, subgroup=sub, pool_size=1), name, sub, sub),
        (GroupReduce(group=name, subgroup=sub), name, sub, sub),
    ]
    for layer, in_group, out_group, acting in cases:
        assert error_of(layer, x, acting, in_group, out_group) < TOLERANCE, layer.name
    transpose = GroupConv3DTranspose(1, 2, group=name, subgroup=sub, strides=2)
    assert error_of(transpose, signal(rng, sub, 3), sub, sub, name) < TOLERANCE


def test_d4h_on_a_volume_whose_depth_differs(rng):
    group = get_group("D4h")
    image = rng.normal(size=(1, 4, 7, 7, 2)).astype("float32")
    lift = GroupConv3D(2, (3, 3, 3), group="D4h")
    assert (
        max_equivariance_error(lift, image, group.matrices, None, group.matrices, spatial_dims=3)
        < TOLERANCE
    )
    lifted = ops.convert_to_numpy(lift(image))
    assert lifted.shape == (1, 2, 5, 5, 16, 2)
    # Depth is never exchanged with rows or columns: its kernel size and stride may differ.
    conv = GroupConv3D(2, (1, 3, 3), group="D4h", strides=(1, 2, 2))
    error = max_equivariance_error(
        conv, lifted, group.matrices, group.matrices, group.matrices, spatial_dims=3
    )
    assert error < TOLERANCE
    assert conv(lifted).shape == (1, 2, 2, 2, 16, 2)
    pool = GroupMaxPooling3D(group="D4h", subgroup="D4", pool_size=(1, 3, 3), strides=1)
    error = max_equivariance_error(
        pool,
        lifted,
        get_group("D4").matrices,
        group.matrices,
        get_group("D4").matrices,
        spatial_dims=3,
    )
    assert error < TOLERANCE


# -- parameters, saving, export --------------------------------------------------------------


def test_parameter_counts():
    lift = GroupConv3D(4, 3, group="Oh")
    lift.build((None, 5, 5, 5, 2))
    assert lift.count_params() == 27 * 2 * 4 + 4
    conv = GroupConv3D(4, 3, group="Oh", subgroup="D4h", use_bias=False)
    conv.build((None, 5, 5, 5, 48, 2))
    assert conv.count_params() == 27 * 48 * 2 * 4
    assert conv.compute_output_shape((None, 5, 5, 5, 48, 2)) == (None, 3, 3, 3, 16, 4)
    transpose = GroupConv3DTranspose(4, 2, group="Oh", subgroup="D4h")
    transpose.build((None, 3, 3, 3, 16, 2))
    # The adjoint of GroupConv3D(group="Oh", subgroup="D4h"): its kernel lives on Oh.
    assert transpose.count_params() == 8 * 48 * 2 * 4 + 4
    assert GroupReduce("Oh", "D4h").compute_output_shape((None, 5, 5, 5, 48, 2)) == (
        None,
        5,
        5,
        5,
        16,
        6,
    )


def _network() -> keras.Model:
    inputs = keras.Input((5, 5, 5, 1))
    x = GroupConv3D(2, 3, group="Oh", activation="relu")(inputs)
    x = GroupBatchNormalization(group="Oh")(x)
    x = GroupConv3D(2, 3, group="Oh", subgroup="D4h", padding="same_equiv")(x)
    x = GroupMaxPooling3D(group="D4h", subgroup="C4v", pool_size=1)(x)
    x = GroupConv3DTranspose(2, 2, group="D4h", subgroup="C4v", strides=2)(x)
    x = GroupReduce(group="D4h", subgroup="D4")(x)
    x = GlobalGroupAveragePooling3D(group="D4")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_keras_round_trip_and_export_of_a_cube_network(tmp_path, rng):
    model = _network()
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    x = rng.normal(size=(2, 5, 5, 5, 1)).astype("float32")
    expected = ops.convert_to_numpy(model(x))
    path = tmp_path / "cube.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), expected, atol=1e-5)
    assert [layer.group.name for layer in loaded.layers[1:4]] == ["Oh", "Oh", "Oh"]
    plain = export(model)
    assert not any(type(layer).__module__.startswith("groco") for layer in plain.layers)
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x)), expected, atol=1e-4)
    # Invariant under D4: the last group the signal lives on before global pooling.
    for matrix in acting_matrices("D4"):
        moved = act(x, matrix, (1, 2, 3))
        np.testing.assert_allclose(ops.convert_to_numpy(model(moved)), expected, atol=1e-4)


# -- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: GroupConv3D(2, (3, 3, 5), group="D4h"),
            r"kernel_size must be mapped onto itself by every element of D4h: its rotations "
            r"need equal sizes on the axes they exchange\. Received: kernel_size=\(3, 3, 5\)",
        ),
        (
            lambda: GroupConv3D(2, (1, 3, 3), group="Oh"),
            r"kernel_size must be mapped onto itself by every element of Oh",
        ),
        (
            lambda: GroupConv3D(2, 3, group="Oh", strides=(1, 2, 2)),
            r"strides must be equal on the axes that group Oh exchanges, or the layer cannot be "
            r"equivariant\. Received: strides=\(1, 2, 2\)",
        ),
        (
            lambda: GroupMaxPooling3D(group="O", pool_size=(2, 2, 1)),
            r"pool_size must be equal on the axes that group O exchanges",
        ),
        (
            lambda: GroupConv3D(2, 3, group="O", subgroup="Td"),
            r"'Td' is not a subgroup of O\. Subgroups of O: O, T, D4, D3, C4, D2_aa, D2_af, C3, "
            r"C2_a, C2_f, C1\.",
        ),
        (
            lambda: GroupConv2D(2, 3, group="Oh"),
            r"GroupConv2D needs a group acting on 2 dimension\(s\); group Oh acts on 3\. "
            r"Received: group='Oh'",
        ),
        (lambda: GroupConv3D(2, 3, group="C2"), r"Unknown group 'C2': no installed plugin"),
    ],
)
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_signal_on_the_wrong_group_is_refused():
    with pytest.raises(
        ValueError,
        match=r"GroupConv3D\(group='Oh'\) expects a signal on Oh with a group axis \(axis -2\) "
        r"of length 48\. Received: input_shape=\(1, 5, 5, 5, 24, 1\)\. Pass the group the input "
        r"lives on as `group`\. Groups of that order: O, Td, Th\.",
    ):
        GroupConv3D(2, 3, group="Oh")(np.zeros((1, 5, 5, 5, 24, 1), "float32"))
    with pytest.raises(ValueError, match=r"no padding makes this layer equivariant for input"):
        GroupConv3D(2, 3, group="Oh", strides=2)(np.zeros((1, 6, 6, 6, 1), "float32"))
