"""GroupConv1D/2D/3DTranspose: shapes, parameters, the formula, equivariance, refusals."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from transforms import act_on_grid, max_equivariance_error

from groco_core import MatrixGroup, get_group, hookimpl
from groco_core.layers.conv_transpose import (
    GroupConv1DTranspose,
    GroupConv2DTranspose,
    GroupConv3DTranspose,
)
from groco_core.testing import check_equivariance

TOLERANCE = 1e-4


def _normal(rng, shape):
    return rng.normal(size=shape).astype("float32")


def _random_layer(rng, input_shape, *args, layer_class=GroupConv2DTranspose, **kwargs):
    """A built layer with random weights, set from numpy (JAX compiles its random
    initialisers anew for every weight shape, which is slow)."""
    layer = layer_class(*args, kernel_initializer="zeros", **kwargs)
    layer.build(input_shape)
    layer.set_weights([_normal(rng, w.shape) for w in layer.get_weights()])
    return layer


# -- shapes and parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    "input_shape, kwargs, expected",
    [
        # lifting, stride 1: (5 − 1) + 3
        ((2, 5, 5, 3), dict(kernel_size=3), (2, 7, 7, 8, 6)),
        # P4 → P4M, stride = kernel size: 5·2
        ((2, 5, 5, 4, 3), dict(kernel_size=2, strides=2, subgroup="P4"), (2, 10, 10, 8, 6)),
        # kernel larger than the stride: (5 − 1)·2 + 3
        ((2, 5, 5, 8, 3), dict(kernel_size=3, strides=2), (2, 11, 11, 8, 6)),
        # kernel smaller than the stride: Keras's 5·2, plus one to stay symmetric
        ((2, 5, 5, 8, 3), dict(kernel_size=1, strides=2), (2, 11, 11, 8, 6)),
        ((2, 5, 5, 8, 3), dict(kernel_size=3, padding="same_equiv"), (2, 5, 5, 8, 6)),
        # an even kernel cannot crop Keras's one point symmetrically: one more
        ((2, 5, 5, 8, 3), dict(kernel_size=2, padding="same_equiv"), (2, 6, 6, 8, 6)),
        ((2, 5, 5, 8, 3), dict(kernel_size=4, strides=2, padding="same_equiv"), (2, 10, 10, 8, 6)),
        ((2, 5, 5, 8, 3), dict(kernel_size=3, padding="same"), (2, 5, 5, 8, 6)),
        ((2, 5, 5, 8, 3), dict(kernel_size=3, dilation_rate=2), (2, 9, 9, 8, 6)),
        (
            (2, 5, 5, 8, 3),
            dict(kernel_size=3, strides=2, padding="same_equiv", output_padding=1),
            (2, 11, 11, 8, 6),
        ),
        (
            (2, 3, 5, 5, 8),
            dict(kernel_size=2, strides=2, data_format="channels_first"),
            (2, 6, 10, 10, 8),
        ),
    ],
)
def test_output_shape(input_shape, kwargs, expected):
    layer = GroupConv2DTranspose(6, group="P4M", kernel_initializer="zeros", **kwargs)
    assert tuple(layer(np.zeros(input_shape, "float32")).shape) == expected
    assert tuple(layer.compute_output_shape(input_shape)) == expected


def test_unknown_spatial_size_works_with_strides(rng):
    inputs = keras.Input((None, None, 3))
    outputs = GroupConv2DTranspose(2, 2, group="P4", strides=2, kernel_initializer="zeros")(inputs)
    assert tuple(outputs.shape) == (None, None, None, 4, 2)
    model = keras.Model(inputs, outputs)
    assert tuple(model(_normal(rng, (1, 5, 6, 3))).shape) == (1, 10, 12, 4, 2)


@pytest.mark.parametrize(
    "input_shape, subgroup, expected",
    [
        ((1, 4, 4, 3), None, 3 * 3 * 3 * 5 + 5),  # lifting: (k, k, C, F)
        ((1, 4, 4, 8, 3), None, 3 * 3 * 8 * 3 * 5 + 5),  # (k, k, |G|, C, F)
        ((1, 4, 4, 4, 3), "P4", 3 * 3 * 8 * 3 * 5 + 5),  # the kernel always spans G
    ],
)
def test_parameter_count(input_shape, subgroup, expected):
    layer = GroupConv2DTranspose(5, 3, group="P4M", subgroup=subgroup, kernel_initializer="zeros")
    layer.build(input_shape)
    assert layer.count_params() == expected


# -- the formula ---------------------------------------------------------------------------


def _reference(f, psi, group_matrices, input_matrices, stride):
    """out(p, g) = Σ_q Σ_k Σ_c f_c(q, k) ψ_c(M_g⁻¹ (p − s·q), g⁻¹k), full output, numpy loops."""
    batch, n, _, _, channels = f.shape
    k, filters = psi.shape[0], psi.shape[-1]
    length = (n - 1) * stride + k
    out = np.zeros((batch, length, length, len(group_matrices), filters))
    keys = [m.tobytes() for m in group_matrices]
    for g, m_g in enumerate(group_matrices):
        inverse = np.rint(np.linalg.inv(m_g)).astype(np.int64)
        for h, m_k in enumerate(input_matrices):
            element = keys.index((inverse @ m_k).astype(np.int64).tobytes())
            kernel = act_on_grid(psi[:, :, element], m_g, (0, 1))  # ψ(M_g⁻¹ r)
            for i in range(n):
                for j in range(n):
                    patch = np.einsum("bc,xycf->bxyf", f[:, i, j, h], kernel)
                    out[:, i * stride : i * stride + k, j * stride : j * stride + k, g] += patch
    return out


@pytest.mark.parametrize(
    "stride, kernel_size, padding, crop",
    [(1, 3, "valid_equiv", 0), (2, 2, "valid_equiv", 0), (2, 3, "valid_equiv", 0),
     (1, 3, "same_equiv", 1), (2, 3, "same_equiv", 0)],
)  # fmt: skip
def test_matches_formula_p4_to_p4m(rng, stride, kernel_size, padding, crop):
    """The full transposed output, cropped by `crop` points on each side (`same_equiv` at
    stride 1 is Keras's own `same` window, which the layer lets the convolution apply)."""
    group, subgroup = get_group("P4M"), get_group("P4")
    f = _normal(rng, (2, 3, 3, 4, 2))
    layer = _random_layer(
        rng,
        f.shape,
        3,
        kernel_size,
        group="P4M",
        subgroup="P4",
        strides=stride,
        padding=padding,
        use_bias=False,
    )
    y = ops.convert_to_numpy(layer(f))
    psi = ops.convert_to_numpy(layer.kernel)
    expected = _reference(f, psi, group.matrices, subgroup.matrices, stride)
    if crop:
        expected = expected[:, crop:-crop, crop:-crop]
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize(
    "padding, strides, kernel_size, output_padding",
    [
        ("valid", 1, 3, None),
        ("valid", 2, 2, None),
        ("valid", 2, 3, None),
        ("valid", 3, 2, None),  # kernel smaller than the stride: Keras pads zeros after
        ("same", 1, 2, None),
        ("same", 1, 3, None),
        ("same", 2, 3, None),
        ("same", 2, 4, None),
        ("valid", 2, 3, 1),
        ("same", 2, 3, 1),
    ],
)
def test_trivial_group_matches_keras_conv_transpose(
    rng, padding, strides, kernel_size, output_padding
):
    """On the trivial group P1 the lifting layer is Keras's Conv2DTranspose, windows included."""
    x = _normal(rng, (2, 4, 5, 3))
    layer = _random_layer(
        rng,
        x.shape,
        4,
        kernel_size,
        group="P1",
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        allow_non_equivariance=True,
    )
    y = ops.convert_to_numpy(layer(x))[..., 0, :]
    plain = keras.layers.Conv2DTranspose(
        4,
        kernel_size,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        kernel_initializer="zeros",
    )
    plain.build(x.shape)
    kernel = np.swapaxes(ops.convert_to_numpy(layer.kernel), -1, -2)  # Keras: (.., out, in)
    plain.set_weights([kernel, ops.convert_to_numpy(layer.bias)])
    np.testing.assert_allclose(y, ops.convert_to_numpy(plain(x)), atol=1e-5)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, strides, padding",
    [((2, 4, 5, 3), (3, 3, 4, 3), (2, 2), "valid"),
     ((2, 4, 5, 3), (3, 3, 4, 3), (1, 1), "valid"),
     ((2, 4, 5, 3), (3, 2, 4, 3), (2, 1), "same"),
     ((3, 6, 2), (4, 5, 2), (3,), "valid"),
     ((1, 3, 2, 3, 2), (2, 3, 2, 3, 2), (2, 2, 1), "same")],
)  # fmt: skip
def test_conv_transpose_has_keras_gradients(rng, x_shape, kernel_shape, strides, padding):
    """`conv_transpose` (on JAX on a CPU with its own kernel gradient) gives the value and
    the input and kernel gradients of `keras.ops.conv_transpose`, through a nonlinear
    loss."""
    from autodiff import value_and_gradients

    from groco_core.layers.conv_transpose import conv_transpose

    x, kernel = _normal(rng, x_shape), _normal(rng, kernel_shape)

    def ours(x, kernel):
        return ops.sum(ops.sin(conv_transpose(x, kernel, strides, padding)))

    def keras_own(x, kernel):
        y = ops.conv_transpose(x, kernel, strides, padding, data_format="channels_last")
        return ops.sum(ops.sin(y))

    value, gradients = value_and_gradients(ours, x, kernel)
    expected_value, expected_gradients = value_and_gradients(keras_own, x, kernel)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-4)
    for gradient, expected in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-4)


# -- equivariance --------------------------------------------------------------------------

GROUPS = ["P4M", "P4", "P2MM", "CMM", "PMd"]
STRIDE_KERNEL = [(1, 3), (2, 2)]


@pytest.mark.parametrize("group_name", GROUPS)
@pytest.mark.parametrize("stride, kernel_size", STRIDE_KERNEL)
def test_equivariance(rng, group_name, stride, kernel_size):
    group = get_group(group_name)
    shape = (2, 4, 4, group.order, 2)
    layer = _random_layer(rng, shape, 3, kernel_size, group=group_name, strides=stride)
    x = _normal(rng, shape)
    error = max_equivariance_error(layer, x, group.matrices, group.matrices, group.matrices)
    assert error < TOLERANCE


@pytest.mark.parametrize("group_name", ["P4M", "PMd"])
@pytest.mark.parametrize("stride, kernel_size", STRIDE_KERNEL)
def test_lifting_equivariance(rng, group_name, stride, kernel_size):
    group = get_group(group_name)
    layer = _random_layer(rng, (2, 4, 4, 2), 3, kernel_size, group=group_name, strides=stride)
    x = _normal(rng, (2, 4, 4, 2))
    error = max_equivariance_error(layer, x, group.matrices, None, group.matrices)
    assert error < TOLERANCE


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=2, strides=2),
        dict(kernel_size=3, strides=2, padding="same_equiv", output_padding=1),
        dict(kernel_size=1, strides=2),
        dict(kernel_size=3, dilation_rate=2),
    ],
)
def test_p4_to_p4m_upsampling_is_equivariant_under_p4(rng, kwargs):
    p4, p4m = get_group("P4"), get_group("P4M")
    x = _normal(rng, (2, 4, 4, 4, 2))
    layer = _random_layer(rng, x.shape, 3, group="P4M", subgroup="P4", activation="relu", **kwargs)
    error = max_equivariance_error(layer, x, p4.matrices, p4.matrices, p4m.matrices)
    assert error < TOLERANCE
    assert (
        check_equivariance(layer, x, acting_subgroup="P4", input_group="P4", output_group="P4M")
        < TOLERANCE
    )


def test_channels_first_is_channels_last_transposed(rng):
    x = _normal(rng, (2, 4, 4, 4, 3))
    last = _random_layer(rng, x.shape, 5, 2, group="P4M", subgroup="P4", strides=2)
    first = GroupConv2DTranspose(
        5,
        2,
        group="P4M",
        subgroup="P4",
        strides=2,
        data_format="channels_first",
        kernel_initializer="zeros",
    )
    y_last = last(x)
    first.build((2, 3, 4, 4, 4))
    first.set_weights(last.get_weights())
    y_first = first(np.moveaxis(x, -1, 1))
    np.testing.assert_allclose(
        np.moveaxis(ops.convert_to_numpy(y_first), 1, -1), ops.convert_to_numpy(y_last), atol=1e-5
    )
    p4, p4m = get_group("P4"), get_group("P4M")
    error = max_equivariance_error(
        first, np.moveaxis(x, -1, 1), p4.matrices, p4.matrices, p4m.matrices, channels_last=False
    )
    assert error < TOLERANCE


def test_1d_transpose_on_the_line(rng):
    line = get_group("LM")
    x = _normal(rng, (2, 5, 2, 2))
    layer = _random_layer(
        rng, x.shape, 3, 3, group="LM", strides=2, layer_class=GroupConv1DTranspose
    )
    assert tuple(layer(x).shape) == (2, 11, 2, 3)
    error = max_equivariance_error(
        layer, x, line.matrices, line.matrices, line.matrices, spatial_dims=1
    )
    assert error < TOLERANCE


QUARTER_TURN_ABOUT_DEPTH = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]


class _DepthAxisTurns:
    """A small 3D group for the test: quarter turns about the depth axis."""

    @hookimpl
    def groco_register_groups(self, register):
        turn = np.asarray(QUARTER_TURN_ABOUT_DEPTH)
        powers = [np.linalg.matrix_power(turn, i) for i in range(4)]
        register(MatrixGroup("TransposeTestTurns3D", powers, lattice="cubic"))


def test_3d_transpose(rng, register_plugin):
    register_plugin(_DepthAxisTurns(), name="transpose_test_turns_3d")
    group = get_group("TransposeTestTurns3D")
    x = _normal(rng, (1, 3, 3, 3, 4, 2))
    layer = _random_layer(
        rng, x.shape, 2, 2, group=group.name, strides=2, layer_class=GroupConv3DTranspose
    )
    assert tuple(layer(x).shape) == (1, 6, 6, 6, 4, 2)
    error = max_equivariance_error(
        layer, x, group.matrices, group.matrices, group.matrices, spatial_dims=3
    )
    assert error < TOLERANCE


# -- serialisation -------------------------------------------------------------------------


def test_get_config_round_trip(rng):
    x = _normal(rng, (2, 3, 3, 4, 2))
    layer = _random_layer(
        rng,
        x.shape,
        4,
        3,
        group="p4m",
        subgroup="p4",
        strides=2,
        padding="same_equiv",
        output_padding=1,
        activation="tanh",
    )
    y = ops.convert_to_numpy(layer(x))
    config = layer.get_config()
    assert (config["group"], config["subgroup"], config["output_padding"]) == ("P4M", "P4", (1, 1))
    clone = GroupConv2DTranspose.from_config(config)
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(ops.convert_to_numpy(clone(x)), y)


# -- refused configurations ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kernel_size=2, padding="same"), r"padding='same' breaks equivariance.*same_equiv"),
        (dict(kernel_size=3, strides=2, padding="same"), r"padding='same' breaks equivariance"),
        (dict(kernel_size=1, strides=2, padding="valid"), r"padding='valid' breaks equivariance"),
        (
            dict(kernel_size=2, strides=2, padding="valid", output_padding=1),
            r"breaks equivariance for kernel extent 2, stride 2 and output_padding 1",
        ),
        (dict(kernel_size=3, strides=(1, 2)), r"strides must be equal on the axes"),
        (dict(kernel_size=3, strides=2, output_padding=2), r"output_padding must be smaller"),
        (
            dict(kernel_size=3, strides=2, output_padding=(0, 1)),
            r"output_padding must be equal on the axes",
        ),
        (dict(kernel_size=(3, 2)), r"kernel_size must be mapped onto itself"),
        (dict(kernel_size=3, padding="full"), r"padding must be one of"),
        (dict(kernel_size=3, strides=2, dilation_rate=2), r"strides > 1 together with dilation"),
    ],
)
def test_refuses_non_equivariant_configurations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupConv2DTranspose(4, group="P4", **kwargs)


def test_allow_non_equivariance_accepts_keras_padding():
    layer = GroupConv2DTranspose(
        4, 2, group="P4", padding="same", allow_non_equivariance=True, kernel_initializer="zeros"
    )
    assert tuple(layer(np.zeros((1, 5, 5, 4, 2), "float32")).shape) == (1, 5, 5, 4, 4)


def test_subgroup_must_be_contained_in_group():
    with pytest.raises(ValueError, match=r"'PMd' is not a subgroup of P4\."):
        GroupConv2DTranspose(4, 3, group="P4", subgroup="PMd")


def test_group_of_wrong_dimension():
    with pytest.raises(ValueError, match=r"needs a group acting on 2 dimension"):
        GroupConv2DTranspose(4, 3, group="LM")


def test_input_on_the_wrong_group():
    layer = GroupConv2DTranspose(4, 3, group="P4M", subgroup="P4")
    with pytest.raises(ValueError, match=r"expects a signal on P4 with a group axis.*`subgroup`"):
        layer(np.zeros((1, 5, 5, 8, 2), "float32"))


def test_input_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"takes an image of rank 4 \(lifting\)"):
        GroupConv2DTranspose(4, 3, group="P4")(np.zeros((1, 5, 2), "float32"))
