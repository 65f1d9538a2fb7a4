"""`BasisGroupConv2D`: its basis against the closed-form Gaussian derivatives, its output
against a numpy group convolution, its equivariance under this suite's own action, and its
arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from groco_srf import BasisGroupConv2D
from srf_actions import act, correlate, equivariance_error

import groco_core
from groco_core.testing import check_layer_class

ORDERS_UP_TO_2 = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]


def reference_basis(size: int, sigma: float) -> np.ndarray:
    """∂ᵃ_row ∂ᵇ_col of the Gaussian, a + b ≤ 2, written out, each scaled to unit norm."""
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * sigma**2))
    derivatives = [g, -t / sigma**2 * g, (t**2 / sigma**4 - 1 / sigma**2) * g]
    basis = np.stack([np.outer(derivatives[a], derivatives[b]) for a, b in ORDERS_UP_TO_2])
    return basis / np.linalg.norm(basis.reshape(6, -1), axis=1)[:, None, None]


def randomize(layer: BasisGroupConv2D, rng: np.random.Generator) -> None:
    layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))


def numpy_group_conv(x, coefficients, bias, basis, matrices, input_matrices=None):
    """`[f ⋆ ψ](p, h) = Σ_q Σ_k Σ_c f_c(q, k) ψ_c(M_h⁻¹ (q − p), h⁻¹k)` (lifting: no k), 'valid',
    with ψ = Σ_i basis[i] ⊗ coefficients[i], each ψ_h made by `act`."""
    kernel = np.einsum("ipq,i...->pq...", basis, coefficients)  # (k, k, [G,] C, F)
    outputs = []
    for matrix in matrices:
        # The output field axis in front plays the batch axis of `act`.
        moved = act(np.moveaxis(kernel, -1, 0), matrix, input_matrices)
        transformed = np.moveaxis(moved, 0, -1)
        transformed = transformed.reshape(*transformed.shape[:2], -1, transformed.shape[-1])
        merged = x.reshape(*x.shape[:3], -1)
        outputs.append(correlate(merged, transformed) + bias)
    return np.stack(outputs, axis=-2)


@pytest.mark.parametrize("size, sigma", [(3, 1.0), (4, 0.8), (5, 1.5)])
def test_the_basis_is_the_gaussian_derivatives_sampled_on_the_grid(size, sigma):
    layer = BasisGroupConv2D(2, size, order=2, sigma=sigma, group="P4M")
    np.testing.assert_allclose(layer.basis, reference_basis(size, sigma), atol=1e-6)
    assert layer.basis.shape == (6, size, size)
    assert BasisGroupConv2D(2, 5, order=4, group="P4").basis.shape == (15, 5, 5)
    assert BasisGroupConv2D(2, 3, order=0, group="P4").basis.shape == (1, 3, 3)


def test_orthonormalised_basis_spans_the_same_filters():
    plain = BasisGroupConv2D(2, 5, order=2, sigma=1.2, group="P4M").basis.reshape(6, -1)
    ortho = BasisGroupConv2D(
        2, 5, order=2, sigma=1.2, orthonormalize=True, group="P4M"
    ).basis.reshape(6, -1)
    np.testing.assert_allclose(ortho @ ortho.T, np.eye(6), atol=1e-5)
    # Each plain filter lies in the span of the orthonormal ones, and the first is kept.
    np.testing.assert_allclose((plain @ ortho.T) @ ortho, plain, atol=1e-5)
    np.testing.assert_allclose(ortho[0], plain[0], atol=1e-6)
    assert not np.allclose(ortho[3], plain[3], atol=1e-3)  # (2, 0) is made orthogonal to g


@pytest.mark.parametrize("group", ["P4M", "P4"])
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
def test_output_is_the_numpy_group_convolution(group, lifting, rng):
    group = groco_core.get_group(group)
    shape = (2, 7, 7, 3) if lifting else (2, 7, 7, group.order, 3)
    x = rng.normal(size=shape).astype("float32")
    layer = BasisGroupConv2D(4, 3, sigma=0.9, group=group)
    layer.build(shape)
    randomize(layer, rng)
    expected = numpy_group_conv(
        x,
        keras.ops.convert_to_numpy(layer.kernel),
        keras.ops.convert_to_numpy(layer.bias),
        reference_basis(3, 0.9),
        group.matrices,
        None if lifting else group.matrices,
    )
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (2, 5, 5, group.order, 4)
    np.testing.assert_allclose(y, expected, atol=1e-4)


def test_output_onto_a_subgroup_is_the_numpy_convolution_for_its_elements(rng):
    p4m, p4 = groco_core.get_group("P4M"), groco_core.get_group("P4")
    x = rng.normal(size=(1, 7, 7, 8, 2)).astype("float32")
    layer = BasisGroupConv2D(3, 3, group="P4M", subgroup="P4")
    layer.build(x.shape)
    randomize(layer, rng)
    expected = numpy_group_conv(
        x,
        keras.ops.convert_to_numpy(layer.kernel),
        keras.ops.convert_to_numpy(layer.bias),
        reference_basis(3, 1.0),
        p4.matrices,
        p4m.matrices,
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-4)


@pytest.mark.parametrize("group", ["P4M", "P4"])
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["valid_equiv", "same_equiv"])
def test_equivariant_under_every_element(group, lifting, strides, padding, rng):
    matrices = groco_core.get_group(group).matrices
    shape = (1, 9, 9, 2) if lifting else (1, 9, 9, len(matrices), 2)
    x = rng.normal(size=shape).astype("float32")
    layer = BasisGroupConv2D(3, 3, strides=strides, padding=padding, group=group)
    error = equivariance_error(layer, x, None if lifting else matrices, matrices)
    assert error < 1e-4
    # The check can fail: a transformed input is not the same input.
    y = keras.ops.convert_to_numpy(layer(x))
    assert np.abs(keras.ops.convert_to_numpy(layer(act(x, matrices[1]))) - y).max() > 1e-2


def test_even_kernel_and_subgroup_output_are_equivariant(rng):
    p4m, p4 = groco_core.get_group("P4M"), groco_core.get_group("P4")
    x = rng.normal(size=(1, 8, 8, 8, 2)).astype("float32")
    layer = BasisGroupConv2D(2, 4, sigma=1.2, group="P4M", subgroup="P4")
    assert equivariance_error(layer, x, p4m.matrices, p4.matrices) < 1e-4


def test_the_conformance_kit_passes_on_every_element_of_p4m():
    rows = check_layer_class(BasisGroupConv2D, "P4M")
    assert [row.check for row in rows] == [
        "BasisGroupConv2D: lifting",
        "BasisGroupConv2D: group",
        "BasisGroupConv2D: group, strides 2, same_equiv",
        "BasisGroupConv2D: onto CMM",
    ]
    assert [row.status for row in rows] == ["ok"] * 4, rows


def test_equivariant_on_a_masked_lattice():
    try:
        groco_core.get_group("P6M")
    except ValueError:
        pytest.skip("groco-hexagonal is not installed")
    layer = BasisGroupConv2D(2, 3, group="P6M")
    assert layer.basis[:, layer.kernel_mask == 0].max() == 0  # nothing off the hexagon
    for case in BasisGroupConv2D.equivariance_cases(groco_core.get_group("P6M"))[:2]:
        assert case.max_error("P6M") < 1e-4, case.label  # lifting, group: all 12 elements


def test_weights_and_parameter_count():
    layer = BasisGroupConv2D(5, 3, order=1, group="P4M")
    layer.build((None, 9, 9, 8, 2))
    assert tuple(layer.kernel.shape) == (3, 8, 2, 5)
    assert layer.count_params() == 3 * 8 * 2 * 5 + 5
    lifting = BasisGroupConv2D(5, 5, group="P4M", use_bias=False)
    lifting.build((None, 9, 9, 2))
    assert tuple(lifting.kernel.shape) == (6, 2, 5) and lifting.bias is None


def test_a_changed_kernel_is_seen_by_the_next_inference_call(rng):
    x = rng.normal(size=(1, 7, 7, 2)).astype("float32")
    inputs = keras.Input((7, 7, 2))
    layer = BasisGroupConv2D(2, 3, group="P4")
    model = keras.Model(inputs, layer(inputs))
    first = model.predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), first)
    layer.kernel.assign(2 * keras.ops.convert_to_numpy(layer.kernel))
    np.testing.assert_allclose(model.predict(x, verbose=0), 2 * first, rtol=1e-5, atol=1e-5)


def test_training_moves_the_coefficients_and_lowers_the_loss(rng):
    inputs = keras.Input((7, 7, 1))
    x = BasisGroupConv2D(2, 3, group="P4", activation="relu")(inputs)
    outputs = groco_core.GlobalGroupAveragePooling2D(group="P4")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    data = rng.normal(size=(8, 7, 7, 1)).astype("float32")
    targets = np.ones((8, 2), "float32")
    before = model.evaluate(data, targets, verbose=0)
    model.fit(data, targets, epochs=5, batch_size=8, verbose=0)
    assert model.evaluate(data, targets, verbose=0) < before


def test_lora_updates_the_coefficients_and_stays_equivariant(rng):
    x = rng.normal(size=(1, 7, 7, 2)).astype("float32")
    layer = BasisGroupConv2D(3, 3, group="P4M")
    before = keras.ops.convert_to_numpy(layer(x))
    layer.enable_lora(2)
    assert tuple(layer.lora_kernel_a.shape) == (6, 2, 2)
    layer.lora_kernel_b.assign(np.ones(layer.lora_kernel_b.shape, "float32"))
    assert np.abs(keras.ops.convert_to_numpy(layer(x)) - before).max() > 1e-2
    matrices = groco_core.get_group("P4M").matrices
    assert equivariance_error(layer, x, None, matrices) < 1e-4


def test_config_round_trip():
    layer = BasisGroupConv2D(
        4,
        5,
        order=1,
        sigma=0.7,
        orthonormalize=True,
        strides=2,
        padding="same_equiv",
        group="P4M",
        subgroup="P4",
        activation="relu",
        name="srf",
    )
    config = layer.get_config()
    assert (config["order"], config["sigma"], config["orthonormalize"]) == (1, 0.7, True)
    assert (config["group"], config["subgroup"], config["kernel_size"]) == ("P4M", "P4", (5, 5))
    clone = BasisGroupConv2D.from_config(config)
    assert clone.get_config() == config
    np.testing.assert_array_equal(clone.basis, layer.basis)


def test_protocol_members():
    layer = BasisGroupConv2D(2, 3, group="P4M", subgroup="P4")
    assert isinstance(layer, groco_core.GroupLayer)
    assert issubclass(BasisGroupConv2D, groco_core.GroupLayer)
    assert (layer.input_group.name, layer.output_group.name) == ("P4M", "P4")
    assert layer.data_format == "channels_last"


def test_channels_first_is_channels_last_transposed(rng):
    x = rng.normal(size=(1, 7, 7, 4, 2)).astype("float32")
    last = BasisGroupConv2D(2, 3, group="P4")
    first = BasisGroupConv2D(2, 3, group="P4", data_format="channels_first")
    first.build((None, 2, 7, 7, 4))
    last.build(x.shape)
    first.set_weights(last.get_weights())
    y = keras.ops.convert_to_numpy(first(np.moveaxis(x, -1, 1)))
    np.testing.assert_allclose(
        np.moveaxis(y, 1, -1), keras.ops.convert_to_numpy(last(x)), atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(kernel_size=3, order=3),
            ValueError,
            r"order=3 gives 10 Gaussian derivative filters, but on a kernel_size=\(3, 3\) "
            r"kernel \(9 points\) with sigma=1.0 only 8 of them are linearly independent\. "
            r"Received: order=3, kernel_size=\(3, 3\), sigma=1.0\. Use a lower order",
        ),
        (dict(order=-1), ValueError, r"order must be a non-negative int\. Received: order=-1"),
        (dict(order=1.5), TypeError, r"order must be a non-negative int\. Received: order=1.5"),
        (dict(sigma=0), ValueError, r"sigma must be a positive number\. Received: sigma=0"),
        (dict(sigma="1"), TypeError, r"sigma must be a positive number\. Received: sigma='1'"),
        (
            dict(groups=2),
            ValueError,
            r"does not split its fields into groups\. Received: "
            r"groups=2\. Use groups=1",
        ),
        (dict(group=None), ValueError, r"BasisGroupConv2D needs a `group`"),
        (
            dict(kernel_size=(3, 5)),
            ValueError,
            r"kernel_size must be mapped onto itself by every "
            r"element of P4M",
        ),
        (
            dict(strides=(1, 2)),
            ValueError,
            r"strides must be equal on the axes that group P4M "
            r"exchanges",
        ),
    ],
    ids=[
        "order-too-high",
        "order-negative",
        "order-float",
        "sigma-zero",
        "sigma-str",
        "groups",
        "no-group",
        "non-square-kernel",
        "unequal-strides",
    ],
)
def test_bad_arguments_are_refused(kwargs, error, message):
    arguments = dict(filters=2, kernel_size=3, group="P4M") | kwargs
    with pytest.raises(error, match=message):
        BasisGroupConv2D(**arguments)


def test_a_too_fine_sigma_makes_the_filters_dependent():
    # At sigma=0.1 the Gaussian is a single point: the derivatives vanish off the centre.
    with pytest.raises(ValueError, match=r"only \d of them are linearly independent"):
        BasisGroupConv2D(2, 3, sigma=0.1, group="P4M")
