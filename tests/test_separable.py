"""DepthwiseGroupConv2D/3D and SeparableGroupConv2D/3D (the `separable` plugin): the depthwise
formula against numpy, equivariance on every square group and in 3D, parameters, the three
formulations, config and `.keras` round trip, export, bad arguments and a small network."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from groco_separable import (
    DepthwiseGroupConv2D,
    DepthwiseGroupConv3D,
    SeparableGroupConv2D,
    SeparableGroupConv3D,
)
from keras import ops
from transforms import act, max_equivariance_error

from groco_core import GroupConv2D, export, get_group, get_layer, registry

SQUARE_GROUPS = ["P4M", "P4", "P2MM", "CMM", "PMh", "PMv", "PMd", "PMa", "P2", "P1"]


def largest_proper_subgroup(name: str) -> str:
    """The largest nontrivial subgroup other than the group itself (the group when none)."""
    group = get_group(name)
    orders = {s: get_group(s).order for s in registry.subgroups_of(group)}
    others = [s for s, order in orders.items() if 1 < order < group.order]
    return max(others, key=orders.get) if others else group.name


def depthwise_reference(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'valid' depthwise correlation in numpy: x (b, *s, C), kernel (*k, C, M) → (b, *o, C·M)."""
    spatial = kernel.ndim - 2
    windows = np.lib.stride_tricks.sliding_window_view(
        x, kernel.shape[:spatial], axis=tuple(range(1, 1 + spatial))
    )  # (b, *out, C, *k)
    letters = "ijk"[:spatial]
    y = np.einsum(f"b...c{letters},{letters}cm->b...cm", windows, kernel)
    return y.reshape(*y.shape[:-2], -1)


# -- the formula -----------------------------------------------------------------------------


def test_depthwise_equals_the_formula_with_each_element_s_kernel(rng):
    """out(p, h, c·M + m) = Σ_q f_c(q, h) ψ_{c,m}(M_h⁻¹(q − p)), on P4M onto P4, and lifting."""
    group, sub = get_group("P4M"), get_group("P4")
    lift = DepthwiseGroupConv2D(3, group="P4M", depth_multiplier=2)
    image = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    lifted = ops.convert_to_numpy(lift(image))
    psi = ops.convert_to_numpy(lift.kernel)
    assert psi.shape == (3, 3, 3, 2)
    for h, matrix in enumerate(group.matrices):
        np.testing.assert_allclose(
            lifted[..., h, :], depthwise_reference(image, act(psi, matrix, (0, 1))), atol=1e-5
        )
    layer = DepthwiseGroupConv2D(3, group="P4M", subgroup="P4", depth_multiplier=2)
    x = rng.normal(size=(2, 6, 6, 8, 3)).astype("float32")
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=(6,)).astype("float32"))
    y = ops.convert_to_numpy(layer(x))
    psi, bias = ops.convert_to_numpy(layer.kernel), ops.convert_to_numpy(layer.bias)
    assert y.shape == (2, 4, 4, 4, 6)
    group_matrices = [m.tobytes() for m in group.matrices.astype(np.int64)]
    for h, matrix in enumerate(sub.matrices):
        k = group_matrices.index(matrix.astype(np.int64).tobytes())  # h's index in P4M
        expected = depthwise_reference(x[..., k, :], act(psi, matrix, (0, 1))) + bias
        np.testing.assert_allclose(y[..., h, :], expected, atol=1e-5)


def test_p1_depthwise_is_a_plain_depthwise_conv2d(rng):
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    plain = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    expected = ops.convert_to_numpy(plain(x))
    layer = DepthwiseGroupConv2D(3, group="P1", depth_multiplier=2, padding="same")
    layer.build(x.shape)
    layer.set_weights(plain.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x))[..., 0, :], expected, atol=1e-5)


@pytest.mark.parametrize("rank", [2, 3])
def test_the_formulations_agree(rank, rng):
    """depthwise_conv (2D only), grouped_conv and patches give the same output."""
    layer_class = DepthwiseGroupConv2D if rank == 2 else DepthwiseGroupConv3D
    group = "P4M" if rank == 2 else "O"
    formulations = ["depthwise_conv", "grouped_conv", "patches", "shifts"][rank - 2 :]
    x = rng.normal(size=(1, *(7,) * rank, 3)).astype("float32")
    outputs = []
    for formulation in formulations:
        layer = layer_class(3, group=group, depth_multiplier=2, strides=2, formulation=formulation)
        layer.build(x.shape)
        layer.kernel.assign(
            np.arange(np.prod(layer.kernel.shape), dtype="float32").reshape(layer.kernel.shape)
            / 100
        )
        outputs.append(ops.convert_to_numpy(layer(x)))
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "kernel_size, strides, dilation, multiplier, paddings",
    [((3, 3), (1, 1), (1, 1), 1, ((1, 1), (1, 1))), ((3, 3), (2, 2), (1, 1), 2, ((0, 1), (1, 0))),
     ((3, 3), (1, 1), (2, 2), 3, None), ((5, 4), (1, 1), (1, 1), 1, ((2, 2), (1, 2))),
     ((5, 5), (1, 1), (1, 1), 2, ((2, 2), (2, 2))), ((7, 3), (1, 1), (1, 1), 1, None),
     ((3, 5), (1, 1), (2, 2), 1, ((2, 1), (3, 4))), ((5, 5), (1, 1), (1, 1), 1, ((5, 0), (0, 1)))],
)  # fmt: skip
def test_the_formulations_have_the_same_gradients(
    kernel_size, strides, dilation, multiplier, paddings, rng
):
    """The gradients of `depthwise_conv` (on TensorFlow with its own kernel gradient above
    3×3; on PyTorch, where it and `grouped_conv` are one convolution, with its kernel
    gradient in 3×3 tiles above 3×3), `shifts` (with JAX's own gradients, the input's taken
    per sample above 9 kernel points at stride 1) and `patches` with respect to input, kernel
    and bias equal those of `grouped_conv`, through a nonlinear loss; so do those with respect
    to kernel and bias alone, where no input gradient is asked for."""
    x = rng.normal(size=(3, 9, 9, 4)).astype("float32")
    formulations = ("depthwise_conv", "shifts", "patches")
    _check_gradients(x, kernel_size, strides, dilation, multiplier, paddings, formulations, rng)


@pytest.mark.parametrize(
    "kernel_size, strides, dilation, multiplier, paddings",
    [((3, 3, 3), (1, 1, 1), (1, 1, 1), 1, ((1, 1), (1, 1), (1, 1))),
     ((2, 3, 3), (1, 1, 1), (1, 2, 1), 2, ((0, 1), (2, 2), (1, 0))),
     ((3, 3, 3), (2, 1, 2), (1, 1, 1), 1, None)],
)  # fmt: skip
def test_the_3d_formulations_have_the_same_gradients(
    kernel_size, strides, dilation, multiplier, paddings, rng
):
    """In 3D, where `shifts` is the default on TensorFlow and JAX (each with its own
    gradients), with and without the input's gradient."""
    x = rng.normal(size=(2, 6, 7, 6, 3)).astype("float32")
    formulations = ("shifts", "patches")
    _check_gradients(x, kernel_size, strides, dilation, multiplier, paddings, formulations, rng)


@pytest.mark.parametrize(
    "x_shape, kernel_size, paddings",
    [((3, 9, 9, 4), (5, 5), ((2, 2), (2, 2))), ((2, 6, 7, 6, 3), (3, 3, 3), ((1, 1),) * 3)],
)
def test_the_per_sample_shifts_gradients_equal_the_references(x_shape, kernel_size, paddings, rng):
    """At stride 1 with more than 9 kernel points, JAX's `shifts` takes its input's gradient
    in its per-sample loop, one kernel point after another (and TensorFlow's its own shifted
    sum): its gradients equal those of `grouped_conv`, and those of `shifts` differentiated
    by the backend itself (inside `reference_formulations()`)."""
    from groco_core.layers.fast_paths import reference_formulations

    x = rng.normal(size=x_shape).astype("float32")
    rank = len(kernel_size)
    ones = (1,) * rank
    arguments = (x, kernel_size, ones, ones, 1, paddings, ("shifts",))
    fast = _check_gradients(*arguments, np.random.default_rng(5))
    with reference_formulations():
        reference = _check_gradients(*arguments, np.random.default_rng(5))  # the same kernel
    for name in ("shifts", "shifts without x"):
        (value, gradients), (expected_value, expected_gradients) = fast[name], reference[name]
        np.testing.assert_allclose(value, expected_value, rtol=1e-4, atol=1e-4)
        for gradient, expected in zip(gradients, expected_gradients, strict=True):
            np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-4)


def _check_gradients(x, kernel_size, strides, dilation, multiplier, paddings, formulations, rng):
    """Each of `formulations` against `grouped_conv`: the value of a nonlinear loss and its
    gradients with respect to input, kernel and bias, and (`shifts`) to kernel and bias
    alone. Returns each formulation's value and gradients by name."""
    from autodiff import value_and_gradients

    from groco_core.toolkit import depthwise_correlation

    channels = x.shape[-1]
    kernel = rng.normal(size=(*kernel_size, channels, multiplier)).astype("float32")
    bias = rng.normal(size=(channels * multiplier,)).astype("float32")
    results = {}
    for formulation in ("grouped_conv", *formulations):

        def loss(x, kernel, bias, formulation=formulation):
            y = depthwise_correlation(x, kernel, strides, dilation, formulation, paddings, bias)
            return ops.sum(ops.sin(y))

        results[formulation] = value_and_gradients(loss, x, kernel, bias)
        if formulation in ("grouped_conv", "shifts"):  # shifts leaves out unasked gradients
            results[formulation + " without x"] = value_and_gradients(
                lambda kernel, bias, loss=loss: loss(x, kernel, bias), kernel, bias
            )
    value, gradients = results["grouped_conv"]
    expected_without_x = gradients[1:]
    for name, (other_value, other_gradients) in results.items():
        if name.startswith("grouped_conv"):
            continue
        np.testing.assert_allclose(other_value, value, rtol=1e-4, atol=1e-4)
        expected_gradients = expected_without_x if name.endswith("without x") else gradients
        for other, expected in zip(other_gradients, expected_gradients, strict=True):
            np.testing.assert_allclose(other, expected, rtol=1e-4, atol=1e-4)
    return results


@pytest.mark.parametrize(
    "lifting, subgroup, use_bias",
    [(False, None, True), (True, None, True), (False, "P4", True), (False, None, False)],
)
def test_the_pointwise_gradients_equal_those_of_keras_matmul_and_bias(
    lifting, subgroup, use_bias, rng
):
    """The pointwise part's value and its gradients with respect to input, kernel and bias,
    through a nonlinear loss, equal those of `keras.ops.matmul` with its transformed kernel
    and the bias added by `keras.ops.add` (on JAX the part computes its own gradients)."""
    from autodiff import value_and_gradients
    from groco_separable.separable import PointwiseGroupConv

    group = get_group("P4M")
    shape = (2, 5, 6, 3) if lifting else (2, 5, 6, group.order, 3)
    layer = PointwiseGroupConv(2, 4, "P4M", subgroup, use_bias=use_bias)
    layer.build(shape)
    elements = get_group(subgroup or "P4M").order
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=layer.kernel.shape).astype("float32")
    bias = rng.normal(size=(4,)).astype("float32")
    variables = [layer.kernel, layer.bias] if use_bias else [layer.kernel]

    def ours(x, *values):
        y, _ = layer.stateless_call(list(values), [], x, training=True)
        return ops.sum(ops.sin(y))

    def keras_own(x, *values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            expanded = layer.transformed_kernel()
        merged = ops.reshape(x, (*x.shape[:3], -1))
        y = ops.matmul(merged, ops.reshape(expanded, expanded.shape[-2:]))
        y = ops.reshape(y, (*y.shape[:3], elements, 4))
        if use_bias:
            y = ops.add(y, values[1])
        return ops.sum(ops.sin(y))

    arrays = (x, kernel, bias) if use_bias else (x, kernel)
    value, gradients = value_and_gradients(ours, *arrays)
    expected_value, expected_gradients = value_and_gradients(keras_own, *arrays)
    assert len(gradients) == len(arrays)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-3)
    for gradient, expected in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-3)


# -- equivariance ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SQUARE_GROUPS)
def test_both_layers_are_equivariant_on_every_square_group(name, rng):
    group = get_group(name)
    sub = get_group(largest_proper_subgroup(name))
    image = rng.normal(size=(1, 9, 9, 2)).astype("float32")
    lift = DepthwiseGroupConv2D(3, group=name, depth_multiplier=2)
    err = max_equivariance_error(lift, image, group.matrices, None, group.matrices)
    assert err < 1e-4
    signal = ops.convert_to_numpy(lift(image))
    layers = [
        DepthwiseGroupConv2D(3, group=name, subgroup=sub.name, strides=2),
        SeparableGroupConv2D(3, 3, group=name, subgroup=sub.name, strides=2),
        SeparableGroupConv2D(3, 3, group=name, subgroup=sub.name, order="pointwise_first"),
    ]
    for layer in layers:
        err = max_equivariance_error(layer, signal, sub.matrices, group.matrices, sub.matrices)
        assert err < 1e-4, layer.name
    separable_lift = SeparableGroupConv2D(3, 3, group=name, subgroup=sub.name, strides=2)
    err = max_equivariance_error(separable_lift, image, sub.matrices, None, sub.matrices)
    assert err < 1e-4


@pytest.mark.parametrize(("name", "sub"), [("O", None), ("Oh", "O")])
def test_3d_layers_are_equivariant_on_o_and_oh(name, sub, rng):
    group = get_group(name)
    out_group = group if sub is None else get_group(sub)
    sample = rng.choice(out_group.order, size=6, replace=False)
    image = rng.normal(size=(1, 5, 5, 5, 2)).astype("float32")
    lift = DepthwiseGroupConv3D(3, group=name)
    err = max_equivariance_error(
        lift, image, group.matrices[sample], None, group.matrices, spatial_dims=3
    )
    assert err < 1e-4
    signal = ops.convert_to_numpy(lift(image))
    for layer in (
        DepthwiseGroupConv3D(3, group=name, subgroup=sub, padding="same_equiv"),
        SeparableGroupConv3D(2, 3, group=name, subgroup=sub, padding="same_equiv"),
    ):
        err = max_equivariance_error(
            layer,
            signal,
            out_group.matrices[sample],
            group.matrices,
            out_group.matrices,
            spatial_dims=3,
        )
        assert err < 1e-4, layer.name


# -- parameters, shapes, options --------------------------------------------------------------


def test_parameter_counts():
    depthwise = DepthwiseGroupConv2D(5, group="P4M", depth_multiplier=3)
    depthwise.build((None, 28, 28, 8, 4))
    assert depthwise.count_params() == 5 * 5 * 4 * 3 + 4 * 3
    lifting = DepthwiseGroupConv2D(3, group="P4M", depth_multiplier=2, use_bias=False)
    lifting.build((None, 28, 28, 4))
    assert lifting.count_params() == 3 * 3 * 4 * 2
    separable = SeparableGroupConv2D(32, 3, group="P4M")
    separable.build((None, 28, 28, 8, 32))
    assert separable.count_params() == 3 * 3 * 32 + 8 * 32 * 32 + 32
    full = GroupConv2D(32, 3, group="P4M")
    full.build((None, 28, 28, 8, 32))
    assert full.count_params() / separable.count_params() > 8
    multiplied = SeparableGroupConv2D(6, 3, group="P4M", subgroup="P4", depth_multiplier=2)
    multiplied.build((None, 9, 9, 8, 5))
    assert multiplied.count_params() == 3 * 3 * 5 * 2 + 8 * 5 * 2 * 6 + 6
    assert multiplied.compute_output_shape((None, 9, 9, 8, 5)) == (None, 7, 7, 4, 6)
    pointwise_first = SeparableGroupConv2D(6, 3, group="P4M", order="pointwise_first")
    pointwise_first.build((None, 9, 9, 8, 5))
    assert pointwise_first.count_params() == 8 * 5 * 6 + 3 * 3 * 6 + 6
    cube = SeparableGroupConv3D(4, 3, group="O")
    cube.build((None, 5, 5, 5, 24, 2))
    assert cube.count_params() == 27 * 2 + 24 * 2 * 4 + 4


def test_channels_first_gives_the_same_result(rng):
    x = rng.normal(size=(1, 7, 7, 8, 3)).astype("float32")
    last = SeparableGroupConv2D(4, 3, group="P4M", subgroup="P4", depth_multiplier=2)
    y = ops.convert_to_numpy(last(x))
    first = SeparableGroupConv2D(
        4, 3, group="P4M", subgroup="P4", depth_multiplier=2, data_format="channels_first"
    )
    first.build((1, 3, 7, 7, 8))
    first.set_weights(last.get_weights())
    y_first = ops.convert_to_numpy(first(np.moveaxis(x, -1, 1)))
    np.testing.assert_allclose(np.moveaxis(y_first, 1, -1), y, atol=1e-5)


# -- registry, config, saving, export ---------------------------------------------------------


def test_layers_are_registered_by_the_separable_plugin():
    for layer in (DepthwiseGroupConv2D, DepthwiseGroupConv3D, SeparableGroupConv2D):
        assert get_layer(layer.__name__) is layer
        assert registry.layer_plugin(layer.__name__) == "separable"
    assert keras.saving.get_registered_object("groco_separable>SeparableGroupConv3D") is (
        SeparableGroupConv3D
    )


def test_importing_the_plugin_does_not_import_keras():
    code = "import sys, groco_separable; assert 'keras' not in sys.modules; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_get_config_round_trip():
    layer = SeparableGroupConv2D(
        4,
        3,
        group="P4M",
        subgroup="P4",
        depth_multiplier=2,
        strides=2,
        activation="relu",
        pointwise_regularizer="l2",
        depthwise_constraint="non_neg",
        formulation="patches",
    )
    config = layer.get_config()
    clone = SeparableGroupConv2D.from_config(config)
    assert clone.get_config() == config
    depthwise = DepthwiseGroupConv2D(3, group="CMM", depth_multiplier=3, use_bias=False)
    config = depthwise.get_config()
    assert config["depth_multiplier"] == 3 and "filters" not in config
    assert DepthwiseGroupConv2D.from_config(config).get_config() == config


def _network(inputs):
    x = DepthwiseGroupConv2D(3, group="P4M", depth_multiplier=2, activation="relu")(inputs)
    x = SeparableGroupConv2D(4, 3, group="P4M", subgroup="P4", strides=2, activation="relu")(x)
    return SeparableGroupConv2D(3, 3, group="P4", order="pointwise_first", padding="same_equiv")(x)


def test_keras_file_round_trip(tmp_path, rng):
    inputs = keras.Input((11, 11, 3))
    model = keras.Model(inputs, _network(inputs))
    x = rng.normal(size=(2, 11, 11, 3)).astype("float32")
    path = str(tmp_path / "separable.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_export_uses_stock_layers_and_gives_the_same_output(rng):
    inputs = keras.Input((11, 11, 3))
    model = keras.Model(inputs, _network(inputs))
    for layer in model.layers[1:]:
        for weight in layer.weights:
            weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.3)
    plain = export(model)
    modules = {type(layer).__module__.split(".")[0] for layer in plain.layers}
    assert modules == {"keras"}
    kinds = {type(layer).__name__ for layer in plain.layers}
    assert "DepthwiseConv2D" in kinds and "Conv2D" in kinds
    x = rng.normal(size=(2, 11, 11, 3)).astype("float32")
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)


def test_3d_export_is_a_grouped_conv3d(rng):
    name = "O"
    inputs = keras.Input((5, 5, 5, 2))
    x = DepthwiseGroupConv3D(3, group=name, depth_multiplier=2, padding="same_equiv")(inputs)
    x = DepthwiseGroupConv3D(3, group=name, bias_initializer="ones", data_format="channels_last")(x)
    model = keras.Model(inputs, SeparableGroupConv3D(2, 1, group=name)(x))
    plain = export(model)
    grouped = [layer for layer in plain.layers if isinstance(layer, keras.layers.Conv3D)]
    assert [layer.groups for layer in grouped[:2]] == [2, 24 * 4]
    x = rng.normal(size=(1, 5, 5, 5, 2)).astype("float32")
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)


# -- bad arguments and inputs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"depth_multiplier": 0}, ValueError, r"depth_multiplier must be a positive int.*=0$"),
        ({"depth_multiplier": 1.5}, TypeError, r"depth_multiplier must be a positive int.*=1.5"),
        ({"group": "LM"}, ValueError, r"DepthwiseGroupConv2D needs a group acting on 2 dim"),
        ({"group": "P4", "subgroup": "PMh"}, ValueError, r"'PMh' is not a subgroup of P4"),
        ({"kernel_size": (3, 5)}, ValueError, r"mapped onto itself by every element of P4M"),
        ({"padding": "full"}, ValueError, r"padding must be one of.*padding='full'"),
        (
            {"formulation": "fft"},
            ValueError,
            r"formulation must be None \(the backend's fastest\) or one of 'depthwise_conv', "
            r"'grouped_conv', 'patches', 'shifts' for 2 spatial axes.*Received: formulation='fft'",
        ),
    ],
)
def test_bad_depthwise_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        DepthwiseGroupConv2D(**{"kernel_size": 3, "group": "P4M", **kwargs})


def test_bad_separable_arguments_are_refused():
    with pytest.raises(ValueError, match=r"order must be one of 'depthwise_first', "):
        SeparableGroupConv2D(4, 3, group="P4M", order="depthwise_last")
    with pytest.raises(ValueError, match=r"depth_multiplier must be 1. Received: depth_mult"):
        SeparableGroupConv2D(4, 3, group="P4M", order="pointwise_first", depth_multiplier=2)
    with pytest.raises(ValueError, match=r"filters must be a positive int.*filters=0"):
        SeparableGroupConv2D(0, 3, group="P4M")
    with pytest.raises(
        ValueError,
        match=r"'grouped_conv', 'patches', 'shifts' for 3 spatial axes.*='depthwise_conv'",
    ):
        DepthwiseGroupConv3D(3, group="O", formulation="depthwise_conv")


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (
            DepthwiseGroupConv2D(3, group="P4M"),
            (1, 9, 9, 4, 3),
            r"DepthwiseGroupConv2D\(group='P4M'\) expects a signal on P4M with a group axis "
            r"\(axis -2\) of length 8. Received: input_shape=\(1, 9, 9, 4, 3\)",
        ),
        (
            SeparableGroupConv2D(2, 3, group="P4M", strides=2),
            (1, 8, 8, 3),
            r"no padding makes this layer equivariant for input size 8",
        ),
        (
            DepthwiseGroupConv2D(3, group="P4M"),
            (1, 9, 3),
            r"takes an image of rank 4 \(lifting\) or a signal on the group of rank 5",
        ),
    ],
)
def test_bad_inputs_are_refused(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(np.zeros(shape, "float32"))


# -- a small network --------------------------------------------------------------------------


def test_an_invariant_separable_network_trains_and_stays_invariant(rng):
    from groco_core import GlobalGroupAveragePooling2D

    inputs = keras.Input((9, 9, 1))
    x = SeparableGroupConv2D(4, 3, group="P4M", activation="relu")(inputs)
    x = SeparableGroupConv2D(4, 3, group="P4M", activation="relu", depth_multiplier=2)(x)
    x = GlobalGroupAveragePooling2D(group="P4M")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images = rng.normal(size=(16, 9, 9, 1)).astype("float32")
    labels = (images[:, 4, 4, 0] > 0).astype("int32")
    history = model.fit(images, labels, epochs=3, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    err = max_equivariance_error(model, images[:4], get_group("P4M").matrices)
    assert err < 1e-4


def test_the_conformance_kit_cases_pass():
    group = get_group("P4M")
    for layer_class in (DepthwiseGroupConv2D, SeparableGroupConv2D):
        cases = layer_class.equivariance_cases(group)
        assert len(cases) == 2
        for case in cases:
            assert case.max_error(group) < case.tolerance, case.label
    assert DepthwiseGroupConv3D.equivariance_cases(group) == []
    assert SeparableGroupConv3D.equivariance_cases(group) == []
