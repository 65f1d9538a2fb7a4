"""GroupConv1D/2D/3D: the DESIGN formulas, equivariance, shapes, parameters, config, errors."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from keras import ops
from transforms import act, max_equivariance_error

from groco_core import GroupConv1D, GroupConv2D, GroupConv3D, MatrixGroup, get_group, hookimpl

SQUARE_GROUPS = ["P4M", "P4", "P2MM", "CMM", "PMh", "PMv", "PMd", "PMa", "P2", "P1"]


def correlate(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Plain 'valid' cross-correlation in numpy: x (b, *s, c), kernel (*k, c, f)."""
    spatial = kernel.ndim - 2
    windows = np.lib.stride_tricks.sliding_window_view(
        x, kernel.shape[:spatial], axis=tuple(range(1, 1 + spatial))
    )
    # windows: (b, *out, c, *k)
    letters = "ijk"[:spatial]
    return np.einsum(f"b...c{letters},{letters}cf->b...f", windows, kernel)


def matrices(name: str) -> np.ndarray:
    return get_group(name).matrices


# -- the formulas ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["P4M", "P4", "CMM", "PMh"])
def test_lifting_equals_conv_with_kernel_transformed_by_each_element(name, rng):
    layer = GroupConv2D(3, 3, group=name, use_bias=False)
    x = rng.normal(size=(2, 7, 7, 2)).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    psi = ops.convert_to_numpy(layer.kernel)
    assert psi.shape == (3, 3, 2, 3)
    for h, matrix in enumerate(matrices(name)):
        kernel_h = act(psi, matrix, (0, 1))  # ψ(M_h⁻¹ r)
        np.testing.assert_allclose(y[..., h, :], correlate(x, kernel_h), atol=1e-5)


@pytest.mark.parametrize("name", ["P4M", "P2MM", "PMd"])
def test_group_conv_equals_the_design_formula(name, rng):
    order = get_group(name).order
    layer = GroupConv2D(3, 3, group=name)
    x = rng.normal(size=(2, 6, 6, order, 2)).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    psi = ops.convert_to_numpy(layer.kernel)
    bias = ops.convert_to_numpy(layer.bias)
    layer.bias.assign(rng.normal(size=bias.shape).astype("float32"))
    y = ops.convert_to_numpy(layer(x))
    bias = ops.convert_to_numpy(layer.bias)
    assert psi.shape == (3, 3, order, 2, 3)
    merged_x = x.reshape(2, 6, 6, order * 2)
    for h, matrix in enumerate(matrices(name)):
        # ψ(M_h⁻¹ r, h⁻¹k): the test's own action on the spatial and group axes of ψ.
        kernel_h = act(psi, matrix, (0, 1), matrices(name), 2).reshape(3, 3, order * 2, 3)
        np.testing.assert_allclose(y[..., h, :], correlate(merged_x, kernel_h) + bias, atol=1e-5)


def test_meeting_taps_are_the_taps_that_read_the_input():
    """`meeting_taps` against the taps found by walking every output point, and the cropped
    window's padding against the output size; None where every tap meets the input."""
    from groco_core.toolkit import PaddingRule

    group, cropped_somewhere = get_group("P4M"), 0
    for size, kernel, stride, padding in itertools.product(
        range(1, 7), range(1, 6), (1, 2), ("same_equiv", "valid_equiv")
    ):
        rule = PaddingRule(padding, (kernel,), (stride,), group, "Test")
        try:
            ((before, after),) = rule.paddings((size,))
        except ValueError:
            continue  # no equivariant padding for this size
        outputs = (size + before + after - kernel) // stride + 1
        meeting = sorted(
            {
                t
                for o in range(outputs)
                for t in range(kernel)
                if 0 <= o * stride + t - before < size
            }
        )
        found = rule.meeting_taps((size,))
        if meeting == list(range(kernel)):
            assert found is None, (size, kernel, stride, padding)
            continue
        cropped_somewhere += 1
        ((box,), ((start, end),)) = found
        assert box == (meeting[0], meeting[-1] + 1)
        width = box[1] - box[0]
        assert (size + start + end - width) // stride + 1 == outputs
        assert start >= 0 and end >= 0
        # Output point 0 reads from the same input point with the cropped window.
        assert -start == meeting[0] - before
    assert cropped_somewhere >= 5


@pytest.mark.parametrize(
    "size, kernel, stride, lifting",
    [(1, 3, 1, False), (2, 4, 2, False), (1, 3, 2, True), (2, 5, 1, True), (3, 5, 2, False)],
)
@pytest.mark.parametrize("training", [True, False])
def test_inputs_smaller_than_the_kernel_equal_the_design_formula(
    size, kernel, stride, lifting, training, rng
):
    """On inputs whose padding some kernel taps alone read (the last stages of a network),
    the layer still computes the formula with the whole kernel, in training and inference."""
    order = get_group("P4M").order
    layer = GroupConv2D(3, kernel, strides=stride, padding="same_equiv", group="P4M")
    shape = (2, size, size, 2) if lifting else (2, size, size, order, 2)
    x = rng.normal(size=shape).astype("float32")
    layer(x)
    layer.bias.assign(rng.normal(size=(3,)).astype("float32"))
    y = ops.convert_to_numpy(layer(x, training=training))
    psi, bias = ops.convert_to_numpy(layer.kernel), ops.convert_to_numpy(layer.bias)
    pad = layer.padding_rule.paddings((size, size))
    merged = np.pad(x.reshape(2, size, size, -1), ((0, 0), *pad, (0, 0)))
    for h, matrix in enumerate(matrices("P4M")):
        if lifting:
            kernel_h = act(psi, matrix, (0, 1))
        else:
            kernel_h = act(psi, matrix, (0, 1), matrices("P4M"), 2)
        kernel_h = kernel_h.reshape(kernel, kernel, -1, 3)
        expected = correlate(merged, kernel_h)[:, ::stride, ::stride] + bias
        np.testing.assert_allclose(y[..., h, :], expected, atol=1e-5)


@pytest.mark.parametrize(
    "layer_class, name, size, kwargs",
    [
        (GroupConv1D, "LM", 9, {"strides": 2}),
        (GroupConv2D, "P4M", 7, {}),
        (GroupConv2D, "P4M", 7, {"strides": 2, "subgroup": "P4"}),
        (GroupConv2D, "P4M", 7, {"strides": 3, "groups": 2, "data_format": "channels_first"}),
        (GroupConv3D, "O", 5, {}),
        (GroupConv3D, "O", 5, {"strides": 2, "subgroup": "D4"}),
    ],
)
@pytest.mark.parametrize("lifting", [True, False])
def test_one_point_kernels_equal_the_design_formula(layer_class, name, size, kwargs, lifting, rng):
    """A 1-point kernel mixes fields and group elements at every `strides`-th point; JAX and
    TensorFlow compute it as a matrix product, PyTorch as a convolution."""
    group = get_group(name)
    rank, order = group.dimension, group.order
    channels_first = kwargs.get("data_format") == "channels_first"
    layer = layer_class(4, 1, group=name, **kwargs)
    group_axis = () if lifting else (order,)
    x = rng.normal(size=(2, *(size,) * rank, *group_axis, 2)).astype("float32")
    y = ops.convert_to_numpy(layer(np.moveaxis(x, -1, 1) if channels_first else x))
    y = np.moveaxis(y, 1, -1) if channels_first else y
    layer.bias.assign(rng.normal(size=(4,)).astype("float32"))
    y = ops.convert_to_numpy(layer(np.moveaxis(x, -1, 1) if channels_first else x))
    y = np.moveaxis(y, 1, -1) if channels_first else y
    psi = ops.convert_to_numpy(layer.kernel).reshape((*group_axis, -1, 4))
    if kwargs.get("groups", 1) > 1:  # input field j feeds output fields 2j and 2j + 1
        dense = np.zeros((*group_axis, 2, 4), "float32")
        for j in range(2):
            dense[..., j, 2 * j : 2 * j + 2] = psi[..., 0, 2 * j : 2 * j + 2]
        psi = dense
    strides = kwargs.get("strides", 1)
    points = x[(slice(None), *(slice(None, None, strides),) * rank)]
    subgroup = get_group(kwargs.get("subgroup", name))
    elements = [group.index_of(m) for m in subgroup.matrices]
    assert y.shape == (*points.shape[: 1 + rank], len(elements), 4)
    for h, element in enumerate(elements):
        if lifting:
            expected = points @ psi
        else:  # ψ(h⁻¹k): the test's own action on the kernel's group axis
            psi_h = act(psi, group.matrices[element], (), group.matrices, 0)
            expected = np.einsum("...kc,kcf->...f", points, psi_h)
        bias = ops.convert_to_numpy(layer.bias)
        np.testing.assert_allclose(y[..., h, :], expected + bias, atol=1e-5)


def test_p1_is_a_plain_conv2d(rng):
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    plain = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
    expected = ops.convert_to_numpy(plain(x))
    layer = GroupConv2D(4, 3, group="P1", padding="same", activation="relu")
    layer.build(x.shape)
    layer.set_weights(plain.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x))[..., 0, :], expected, atol=1e-5)


@pytest.mark.parametrize(
    "rank, lifting, options, padding",
    [(2, True, {}, "valid"), (2, False, {}, "valid"), (2, False, {"strides": 2}, "valid"),
     (2, True, {"padding": "same_equiv"}, "same"), (2, False, {"dilation_rate": 2}, "valid"),
     (3, True, {"padding": "same_equiv"}, "same"), (3, False, {"strides": 2}, "valid")],
)  # fmt: skip
def test_gradients_equal_those_of_keras_convolution_and_bias(rank, lifting, options, padding, rng):
    """The layer's value and its gradients with respect to input, kernel and bias, through a
    nonlinear loss, equal those of `keras.ops.conv` with the layer's transformed kernel and
    the bias added by `keras.ops.add` (on PyTorch the layer's own convolution sums its 2D and
    3D bias gradients apart)."""
    from autodiff import value_and_gradients

    group = get_group("P4M" if rank == 2 else "D4")
    size = 9 if rank == 2 else 5
    spatial = (size,) * rank
    shape = (2, *spatial, 3) if lifting else (2, *spatial, group.order, 3)
    layer = (GroupConv2D if rank == 2 else GroupConv3D)(4, 3, group=group.name, **options)
    layer.build(shape)
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=layer.kernel.shape).astype("float32")
    bias = rng.normal(size=layer.bias.shape).astype("float32")

    def ours(x, kernel, bias):
        y, _ = layer.stateless_call([kernel, bias], [], x, training=True)
        return ops.sum(ops.sin(y))

    def keras_own(x, kernel, bias):
        with keras.StatelessScope(state_mapping=[(layer.kernel, kernel), (layer.bias, bias)]):
            expanded = layer.transformed_kernel()
        merged = ops.reshape(x, (*x.shape[: 1 + rank], -1))
        strides, dilation = options.get("strides", 1), options.get("dilation_rate", 1)
        y = ops.conv(merged, expanded, strides, padding, dilation_rate=dilation)
        y = ops.add(ops.reshape(y, (*y.shape[: 1 + rank], group.order, 4)), bias)
        return ops.sum(ops.sin(y))

    value, gradients = value_and_gradients(ours, x, kernel, bias)
    expected_value, expected_gradients = value_and_gradients(keras_own, x, kernel, bias)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-3)
    for gradient, expected in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-3)


def test_transformed_kernel_is_one_gather_of_the_weights():
    layer = GroupConv2D(2, 3, group="P4M")
    layer.build((None, 9, 9, 8, 5))
    table = layer.transformed_kernel_indices()
    assert table.shape == (8, 9, 8)
    # Every weight position is used once per output element.
    for row in table:
        assert sorted(row.reshape(-1)) == list(range(9 * 8))


# -- equivariance -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SQUARE_GROUPS)
def test_lifting_and_group_conv_are_equivariant(name, rng):
    group = get_group(name)
    x = rng.normal(size=(2, 9, 9, 3)).astype("float32")
    lift = GroupConv2D(4, 3, group=name)
    assert max_equivariance_error(lift, x, group.matrices, None, group.matrices) < 1e-4
    y = ops.convert_to_numpy(lift(x))
    conv = GroupConv2D(3, 3, group=name, activation="relu")
    assert max_equivariance_error(conv, y, group.matrices, group.matrices, group.matrices) < 1e-4


@pytest.mark.parametrize(
    ("name", "sub", "options", "size"),
    [
        ("P4M", "P4", {}, 9),
        ("P4M", "CMM", {"strides": 2}, 9),
        ("P4M", "P1", {"strides": 3, "padding": "same_equiv"}, 10),
        ("P4", "P2", {"strides": 2, "kernel_size": 2}, 10),  # even size needs an even kernel
        ("P2MM", "PMv", {"dilation_rate": 2}, 9),
        ("CMM", None, {"kernel_size": 2}, 8),
        ("P4M", None, {"kernel_size": 4, "padding": "same_equiv"}, 7),
        ("PMd", None, {"strides": 2, "padding": "same_equiv"}, 11),
        ("P4M", "P4", {"data_format": "channels_first", "strides": 2}, 9),
    ],
)
def test_equivariance_with_subgroups_strides_dilation_even_kernels(name, sub, options, size, rng):
    options = {"kernel_size": 3, **options}
    channels_last = options.get("data_format", "channels_last") == "channels_last"
    group, out = get_group(name), get_group(sub or name)
    shape = (2, size, size, group.order, 3) if channels_last else (2, 3, size, size, group.order)
    x = rng.normal(size=shape).astype("float32")
    layer = GroupConv2D(4, group=name, subgroup=sub, **options)
    error = max_equivariance_error(
        layer, x, out.matrices, group.matrices, out.matrices, channels_last=channels_last
    )
    assert error < 1e-4


def test_check_equivariance_from_the_testing_kit_agrees(rng):
    from groco_core.testing import check_equivariance

    layer = GroupConv2D(4, 3, group="P4M", subgroup="P2MM", strides=2)
    x = rng.normal(size=(2, 9, 9, 8, 2)).astype("float32")
    assert check_equivariance(layer, x) < 1e-4
    # It detects a broken layer: a plain convolution is not equivariant.
    plain = keras.layers.Conv2D(4, 3)
    assert (
        check_equivariance(plain, x[..., 0, :], group="P4", output_group="P1", acting_subgroup="P1")
        < 1e-6
    )


def test_non_equivariant_configuration_is_detectably_broken_when_allowed(rng):
    x = rng.normal(size=(1, 8, 8, 2)).astype("float32")
    layer = GroupConv2D(2, 3, group="PMh", strides=2, allow_non_equivariance=True)
    group = get_group("PMh")
    assert max_equivariance_error(layer, x, group.matrices, None, group.matrices) > 1e-2


def test_group_conv_1d_is_equivariant_under_reflection(rng):
    group = get_group("LM")
    x = rng.normal(size=(3, 11, 2)).astype("float32")
    lift = GroupConv1D(4, 3, group="LM", strides=2)
    err = max_equivariance_error(lift, x, group.matrices, None, group.matrices, spatial_dims=1)
    assert err < 1e-5
    y = ops.convert_to_numpy(lift(x))
    assert y.shape == (3, 5, 2, 4)
    conv = GroupConv1D(2, 2, group="LM", subgroup="L1")
    err = max_equivariance_error(
        conv, y, get_group("L1").matrices, group.matrices, get_group("L1").matrices, spatial_dims=1
    )
    assert err < 1e-5


def _closure(generators: list[np.ndarray]) -> list[np.ndarray]:
    elements = [np.eye(3, dtype=int)]
    frontier = list(elements)
    while frontier:
        new = []
        for a, b in itertools.product(frontier, generators):
            product = a @ b
            if not any(np.array_equal(product, e) for e in elements + new):
                new.append(product)
        elements += new
        frontier = new
    return elements


class _CubicTestPlugin:
    """A small 3D group (quarter turns about the depth axis and a depth mirror, order 8)."""

    @hookimpl
    def groco_register_groups(self, register):
        turn = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
        mirror = np.diag([-1, 1, 1])
        register(MatrixGroup("TestD4h", _closure([turn, mirror]), lattice="cubic"))


def test_group_conv_3d_with_a_plugin_group(register_plugin, rng):
    register_plugin(_CubicTestPlugin(), name="cubic_test")
    group = get_group("testd4h")
    assert group.order == 8
    x = rng.normal(size=(1, 5, 5, 5, 2)).astype("float32")
    lift = GroupConv3D(2, 3, group="TestD4h")
    err = max_equivariance_error(lift, x, group.matrices, None, group.matrices, spatial_dims=3)
    assert err < 1e-4
    y = ops.convert_to_numpy(lift(x))
    assert y.shape == (1, 3, 3, 3, 8, 2)
    conv = GroupConv3D(2, (3, 3, 3), group="TestD4h", padding="same_equiv")
    err = max_equivariance_error(
        conv, y, group.matrices, group.matrices, group.matrices, spatial_dims=3
    )
    assert err < 1e-4


# -- shapes, parameters, config -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sub", "expected_group_axis"), [("P4M", None, 8), ("P4M", "P4", 4), ("P2", "P1", 1)]
)
def test_shapes_and_parameter_counts(name, sub, expected_group_axis):
    order = get_group(name).order
    lift = GroupConv2D(16, 3, group=name, subgroup=sub)
    out = lift.compute_output_shape((None, 28, 28, 3))
    assert out == (None, 26, 26, expected_group_axis, 16)
    lift.build((None, 28, 28, 3))
    assert lift.count_params() == 3 * 3 * 3 * 16 + 16
    conv = GroupConv2D(16, 3, group=name, subgroup=sub, use_bias=False)
    conv.build((None, 28, 28, order, 5))
    assert conv.count_params() == 3 * 3 * order * 5 * 16
    y = conv(np.zeros((1, 28, 28, order, 5), "float32"))
    assert tuple(y.shape) == (1, 26, 26, expected_group_axis, 16)


def test_padding_choices_give_the_documented_sizes():
    def out(size, **kw):
        return GroupConv2D(1, group="P4", **kw).compute_output_shape((None, size, size, 1))[1]

    assert out(9, kernel_size=3, strides=2) == 4  # valid already centred
    assert out(10, kernel_size=3, strides=3) == 4  # one pixel each side centres the grid
    assert out(9, kernel_size=3, padding="same_equiv") == 9
    assert out(9, kernel_size=2, padding="same_equiv") == 10  # even kernel: one more
    assert out(10, kernel_size=2, strides=2) == 5
    assert out(9, kernel_size=3, strides=3, padding="same_equiv") == 3


def test_functional_model_and_keras_file_round_trip(tmp_path, rng):
    inputs = keras.Input((9, 9, 3))
    hidden = GroupConv2D(4, 3, group="P4M", activation="relu")(inputs)
    outputs = GroupConv2D(2, 3, group="p4m", subgroup="p4", strides=2)(hidden)
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, 3, 3, 4, 2)
    x = rng.normal(size=(2, 9, 9, 3)).astype("float32")
    expected = ops.convert_to_numpy(model(x))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)
    assert loaded.layers[-1].group.name == "P4M" and loaded.layers[-1].subgroup.name == "P4"


def test_get_config_round_trip(rng):
    layer = GroupConv2D(
        3,
        (2, 2),
        group="p4m",
        subgroup="CMM",
        padding="same_equiv",
        strides=1,
        data_format="channels_first",
        dilation_rate=2,
        activation="tanh",
        use_bias=False,
        kernel_regularizer="l2",
    )
    config = layer.get_config()
    assert config["group"] == "P4M" and config["subgroup"] == "CMM"
    clone = GroupConv2D.from_config(config)
    assert clone.get_config() == config
    x = rng.normal(size=(1, 2, 7, 7)).astype("float32")
    clone.build(x.shape)
    layer.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(clone(x)), ops.convert_to_numpy(layer(x)), atol=1e-6
    )


def test_layer_is_registered_for_keras_serialization():
    assert keras.saving.get_registered_object("groco>GroupConv2D") is GroupConv2D


# -- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"group": "P4N"}, ValueError, r"Unknown group 'P4N'.*Closest match: 'P4M'"),
        ({"group": 4}, TypeError, r"group must be a group name.*group=4"),
        ({"group": "LM"}, ValueError, r"needs a group acting on 2 dimension.*group='LM'"),
        ({"group": "P4", "subgroup": "PMh"}, ValueError, r"'PMh' is not a subgroup of P4"),
        ({"filters": 0}, ValueError, r"filters must be a positive int.*filters=0"),
        ({"filters": "8"}, TypeError, r"filters must be a positive int.*filters='8'"),
        ({"kernel_size": (3, 3, 3)}, TypeError, r"kernel_size must be an int or a tuple of 2"),
        ({"kernel_size": (3, 5)}, ValueError, r"mapped onto itself by every element of P4M"),
        ({"strides": (1, 2)}, ValueError, r"strides must be equal on the axes.*\(1, 2\)"),
        ({"padding": "full"}, ValueError, r"padding must be one of.*padding='full'"),
        ({"data_format": "NHWC"}, ValueError, r"data_format must be.*data_format='NHWC'"),
        ({"strides": 2, "dilation_rate": 2}, ValueError, r"strides > 1 together with"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(kwargs, error, message):
    arguments = {"filters": 4, "kernel_size": 3, "group": "P4M", **kwargs}
    with pytest.raises(error, match=message):
        GroupConv2D(**arguments)


def test_a_rectangular_kernel_is_fine_for_axis_mirrors():
    layer = GroupConv2D(2, (3, 5), group="P2MM")
    assert layer(np.zeros((1, 7, 9, 3), "float32")).shape == (1, 5, 5, 4, 2)


@pytest.mark.parametrize(
    ("layer_kwargs", "shape", "message"),
    [
        ({"strides": 2}, (1, 8, 8, 3), r"no padding makes this layer equivariant for input size 8"),
        (
            {"strides": 2, "padding": "valid", "kernel_size": 2},
            (1, 9, 9, 3),
            r"padding='valid' breaks equivariance.*Use padding='valid_equiv'",
        ),
        ({"kernel_size": 2, "padding": "same"}, (1, 9, 9, 3), r"padding='same' breaks"),
        ({}, (1, 9, 9, 4, 3), r"group axis \(axis -2\) of length 8.*Groups of that order: "),
        ({}, (1, 9, 3), r"takes an image of rank 4 \(lifting\) or a signal on the group of rank"),
    ],
)
def test_bad_inputs_are_refused_at_build(layer_kwargs, shape, message):
    layer = GroupConv2D(**{"filters": 2, "kernel_size": 3, "group": "P4M", **layer_kwargs})
    with pytest.raises(ValueError, match=message):
        layer(np.zeros(shape, "float32"))


def test_unknown_spatial_size_is_decided_at_call_time():
    # The padding of a strided layer depends on the size, so it is decided when the layer
    # runs (tests/test_keras_parity.py checks the results); the symbolic output is unknown.
    assert GroupConv2D(2, 3, group="P4", strides=2)(keras.Input((None, None, 3))).shape == (
        None,
        None,
        None,
        4,
        2,
    )
    assert GroupConv2D(2, 3, group="P4")(keras.Input((None, None, 3))).shape[-2:] == (4, 2)


def test_allow_non_equivariance_accepts_what_is_otherwise_refused():
    layer = GroupConv2D(2, 3, group="P4M", strides=2, allow_non_equivariance=True)
    assert layer(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 3, 3, 8, 2)
