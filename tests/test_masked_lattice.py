"""Masked lattices: every layer reads and writes only the group's image support.

The masked lattice here is this file's own: the twelve P6M matrices in axial coordinates and
the hexagon `|i|, |j|, |i + j| ≤ (n − 1)/2` of an odd square array, written out below (not
taken from the groco-hexagonal example). The square and cubic lattices must pay nothing: no
mask, and not one operation more in any layer. Whole networks under all twelve elements, with
this file's kind of index arithmetic for the action: examples/groco-hexagonal/tests/
test_hex_networks.py; here, `groco check`'s network rows pass on the masked lattice and fail
on a leaky one.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from groco_separable import DepthwiseGroupConv2D, SeparableGroupConv2D

import groco_core
from groco_core import (
    GlobalGroupAveragePooling2D,
    GlobalGroupMaxPooling2D,
    GroupAveragePooling2D,
    GroupBatchNormalization,
    GroupConv2D,
    GroupConv2DTranspose,
    GroupConv3D,
    GroupMaxPooling2D,
    MatrixGroup,
    get_group,
)
from groco_core.check import check_network, network_sizes
from groco_core.layers import support
from groco_core.toolkit import image_support, mask_to_support

ROTATION = np.array([[0, -1], [1, 1]])  # 60° in axial coordinates
MIRROR = np.array([[1, 1], [0, -1]])
TURNS = [np.linalg.matrix_power(ROTATION, k) for k in range(6)]
P6M_MATRICES = np.stack(TURNS + [t @ MIRROR for t in TURNS]).astype(np.int64)


def hexagon(n: int) -> np.ndarray:
    i, j = np.indices((n, n)) - (n - 1) // 2
    return np.abs(i + j) <= (n - 1) // 2


class Axial(MatrixGroup):
    """P6M on the hexagonal lattice, defined here."""

    def __init__(self, name: str = "AxialTestP6M"):
        super().__init__(name, P6M_MATRICES, lattice="axial_test")

    def kernel_support_mask(self, shape):
        if len(shape) != 2 or shape[0] != shape[1] or shape[0] % 2 == 0:
            raise ValueError(f"odd square arrays only. Received: shape={tuple(shape)}")
        return hexagon(shape[0])


class LeakyAxial(Axial):
    """The same lattice with its image support forgotten: layers write off the hexagon."""

    def image_support_mask(self, shape):
        return None


AXIAL = Axial()


def act(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """out[:, p] = x[:, M⁻¹ p] on axes 1, 2 (zero off the array), by index arithmetic."""
    n = x.shape[1]
    r = (n - 1) // 2
    inverse = np.rint(np.linalg.inv(matrix)).astype(int)
    out = np.zeros_like(x)
    for i in range(-r, r + 1):
        for j in range(-r, r + 1):
            si, sj = inverse @ np.array([i, j])
            if abs(si) <= r and abs(sj) <= r:
                out[:, i + r, j + r] = x[:, si + r, sj + r]
    return out


def numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def signal(n: int, order: int = 12, seed: int = 0, corners: float = 0.0) -> np.ndarray:
    """A signal on the group, filling the hexagon; `corners` scales values off it."""
    x = np.random.default_rng(seed).normal(size=(2, n, n, order, 2)).astype("float32")
    inside = hexagon(n)[None, :, :, None, None]
    return np.where(inside, x, corners * x).astype("float32")


# -- the group's image support ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, shapes",
    [("P4M", [(6, 6), (7, 7), (4, 6)]), ("LM", [(8,), (9,)]), ("Oh", [(4, 4, 4), (5, 5, 5)])],
)
def test_square_and_cubic_lattices_have_no_image_support(name, shapes):
    group = get_group(name)
    for shape in shapes:
        assert group.image_support_mask(shape) is None
        assert image_support(group, shape) is None
    x = np.ones((1, *shapes[0], 1), "float32")
    assert mask_to_support(x, group) is x


def test_the_masked_lattice_support_is_its_hexagon_and_even_arrays_are_refused():
    for n in (3, 5, 9):
        np.testing.assert_array_equal(AXIAL.image_support_mask((n, n)), hexagon(n))
        assert image_support(AXIAL, (n, n)).sum() == 3 * n * n // 4 + 1  # 1 + 3r(r + 1)
    with pytest.raises(ValueError, match=r"odd square arrays only. Received: shape=\(8, 8\)"):
        image_support(AXIAL, (8, 8))
    with pytest.raises(ValueError, match=r"input size 8 gives output size 6, which is even"):
        GroupConv2D(2, 3, group=AXIAL)(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match=r"odd square arrays only. Received: shape=\(8, 8\)"):
        GroupBatchNormalization(group=AXIAL)(np.zeros((1, 8, 8, 12, 1), "float32"))


def test_the_support_maps_onto_itself():
    # What the layers rely on: every element maps the support onto the support.
    for n in (5, 7):
        ones = hexagon(n).astype("float32")[None, :, :, None]
        for matrix in P6M_MATRICES:
            np.testing.assert_array_equal(act(ones, matrix), ones)


def test_mask_to_support_zeroes_or_fills_off_the_hexagon():
    x = np.arange(2 * 5 * 5, dtype="float32").reshape(2, 5, 5, 1) + 1
    zeroed = numpy(mask_to_support(x, AXIAL))
    np.testing.assert_array_equal(zeroed[:, hexagon(5)], x[:, hexagon(5)])
    assert np.all(zeroed[:, ~hexagon(5)] == 0)
    filled = numpy(mask_to_support(x, AXIAL, fill=float("-inf")))
    assert np.all(np.isneginf(filled[:, ~hexagon(5)]))
    # channels_first: the spatial axes named.
    moved = np.moveaxis(x, -1, 1)
    np.testing.assert_array_equal(
        numpy(mask_to_support(moved, AXIAL, spatial_axes=(2, 3))), np.moveaxis(zeroed, -1, 1)
    )


# -- no cost on square and cubic lattices ------------------------------------------------


class CountingOps:
    """Stands for `keras.ops` inside `groco_core.layers.support`, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __getattr__(self, name):
        function = getattr(keras.ops, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return function(*args, **kwargs)

        return counted


def every_layer_kind(group, n: int, rank: int = 2) -> list:
    """(layer, input, call keywords) for each layer kind, on inputs of side n."""
    order = group.order
    image = np.ones((1, *(n,) * rank, 2), "float32")
    on_group = np.ones((1, *(n,) * rank, order, 2), "float32")
    if rank == 3:
        return [(GroupConv3D(2, 3, group=group), image, {})]
    return [
        (GroupConv2D(2, 3, group=group), image, {}),
        (GroupConv2D(2, 3, group=group, padding="same_equiv"), on_group, {}),
        (GroupConv2DTranspose(2, 3, group=group), on_group, {}),
        (GroupMaxPooling2D(1, group=group), on_group, {}),
        (GroupAveragePooling2D(1, padding="same", group=group), on_group, {}),
        (GroupBatchNormalization(group=group), on_group, {"training": True}),
        (GroupBatchNormalization(group=group), on_group, {"training": False}),
        (GlobalGroupAveragePooling2D(group=group), on_group, {}),
        (GlobalGroupMaxPooling2D(group=group), on_group, {}),
        (DepthwiseGroupConv2D(3, group=group), on_group, {}),
        (SeparableGroupConv2D(2, 3, group=group), image, {}),
    ]


@pytest.mark.parametrize("name, n, rank", [("P4M", 6, 2), ("Oh", 5, 3)])
def test_square_and_cubic_layers_add_no_operation(monkeypatch, name, n, rank):
    counting = CountingOps()
    monkeypatch.setattr(support, "ops", counting)
    for layer, x, keywords in every_layer_kind(get_group(name), n, rank):
        layer(x, **keywords)
    assert counting.calls == 0


def test_the_counter_counts_on_a_masked_lattice(monkeypatch):
    # The control of the test above: a masked layer does call it (every layer kind is shown
    # to mask below, by its values).
    counting = CountingOps()
    monkeypatch.setattr(support, "ops", counting)
    GroupConv2D(2, 3, group=AXIAL)(np.ones((1, 5, 5, 2), "float32"))
    assert counting.calls > 0


# -- every layer reads and writes only the support ----------------------------------------


def test_every_layer_writes_zeros_and_ignores_values_off_the_support():
    clean, dirty = signal(9), signal(9, corners=100.0)
    image_clean, image_dirty = clean[..., 0, :], dirty[..., 0, :]
    biased = {"bias_initializer": keras.initializers.Constant(0.7)}
    cases = [
        (GroupConv2D(2, 3, group=AXIAL, padding="same_equiv", **biased), True, {}),
        (GroupConv2D(2, 3, group=AXIAL, **biased), False, {}),
        (GroupConv2DTranspose(2, 3, group=AXIAL, **biased), False, {}),
        (GroupMaxPooling2D(1, strides=2, group=AXIAL), False, {}),
        (GroupMaxPooling2D(1, strides=2, padding="same", group=AXIAL), False, {}),
        (GroupAveragePooling2D(1, strides=2, padding="same", group=AXIAL), False, {}),
        (
            GroupBatchNormalization(group=AXIAL, beta_initializer="ones"),
            False,
            {"training": True},
        ),
        (DepthwiseGroupConv2D(3, group=AXIAL, padding="same_equiv", **biased), False, {}),
        (SeparableGroupConv2D(2, 3, group=AXIAL, padding="same_equiv", **biased), True, {}),
    ]
    for layer, lifting, keywords in cases:
        name = type(layer).__name__
        x, x_dirty = (image_clean, image_dirty) if lifting else (clean, dirty)
        y = numpy(layer(x, **keywords))
        n = y.shape[1]
        assert np.all(y[:, ~hexagon(n)] == 0), name
        assert np.any(y[:, hexagon(n)] != 0), name
        np.testing.assert_allclose(numpy(layer(x_dirty, **keywords)), y, atol=1e-5, err_msg=name)


def test_global_pooling_is_over_the_support_only():
    x = signal(5, corners=100.0)
    inside = x[:, hexagon(5)]  # (batch, points, order, channels)
    np.testing.assert_allclose(
        numpy(GlobalGroupAveragePooling2D(group=AXIAL)(x)), inside.mean(axis=(1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        numpy(GlobalGroupMaxPooling2D(group=AXIAL)(x)), inside.max(axis=(1, 2)), rtol=1e-6
    )
    # Without the group the layer cannot know the lattice: the whole array.
    np.testing.assert_allclose(
        numpy(GlobalGroupMaxPooling2D()(x)), x.max(axis=(1, 2, 3)), rtol=1e-6
    )


def test_batch_norm_statistics_are_over_the_support_only():
    x = signal(5, corners=100.0)
    layer = GroupBatchNormalization(group=AXIAL, momentum=0.0, epsilon=1e-3)
    y = numpy(layer(x, training=True))
    inside = x[:, hexagon(5)].reshape(-1, 2)
    mean, variance = inside.mean(axis=0), inside.var(axis=0)
    expected = (x[:, hexagon(5)] - mean) / np.sqrt(variance + 1e-3)
    np.testing.assert_allclose(y[:, hexagon(5)], expected, rtol=1e-4, atol=1e-5)
    assert np.all(y[:, ~hexagon(5)] == 0)
    np.testing.assert_allclose(numpy(layer.moving_mean), mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(numpy(layer.moving_variance), variance, rtol=1e-4)


def test_batch_norm_refuses_renorm_on_a_masked_lattice():
    layer = GroupBatchNormalization(group=AXIAL, renorm=True)
    with pytest.raises(ValueError, match=r"renorm.*Received: renorm=True"):
        layer(signal(5), training=True)


# -- `groco check`'s network rows ----------------------------------------------------------


def test_network_sizes_are_even_and_odd_or_two_odd_ones():
    assert network_sizes("P4M") == (6, 7)
    assert network_sizes("LM") == (8, 9)
    assert network_sizes("Oh") == (4, 5)
    assert network_sizes(AXIAL) == (9, 5)


def test_the_check_network_rows_fail_for_an_unmasked_lattice_layer():
    leaky = check_network(LeakyAxial("LeakyAxialTestP6M"), quick=True)
    assert [row.status for row in leaky] == ["FAIL", "FAIL"]
    assert all(row.max_error > 1e-3 for row in leaky)
    masked = check_network(AXIAL, quick=True)
    assert [row.status for row in masked] == ["ok", "ok"]
    assert [row.check[-6:] for row in masked] == ["size 9", "size 5"]


def test_the_check_rows_include_networks_and_an_even_size():
    labels = [case.label for case in groco_core.check.core_cases("P4M")]
    assert "GroupConv2D lifting, even size 6" in labels
    assert not any("even" in case.label for case in groco_core.check.core_cases(AXIAL))
    rows = check_network("P2", quick=True)
    assert [row.check[-6:] for row in rows] == ["size 6", "size 7"]
    assert all(row.passed for row in rows)


def test_export_keeps_the_support_and_adds_nothing_on_the_square_lattice():
    def model(group, n):
        inputs = keras.Input((n, n, 1))
        bias = keras.initializers.RandomNormal(stddev=0.5, seed=4)
        x = GroupConv2D(2, 3, group=group, bias_initializer=bias, activation="relu")(inputs)
        x = GroupBatchNormalization(group=group, beta_initializer=bias)(x)
        x = GroupMaxPooling2D(1, strides=2, group=group)(x)
        x = GroupConv2DTranspose(2, 3, group=group, bias_initializer=bias)(x)
        x = SeparableGroupConv2D(2, 3, group=group, bias_initializer=bias)(x)
        outputs = [
            GlobalGroupAveragePooling2D(group=group)(x),
            GlobalGroupMaxPooling2D(group=group)(x),
        ]
        return keras.Model(inputs, outputs)

    masked = model(AXIAL, 11)
    plain = groco_core.export(masked)
    assert not any(type(layer).__module__.startswith("groco") for layer in plain.layers)
    x = signal(11, order=1, corners=50.0)[..., 0, :1]
    for got, expected in zip(plain(x), masked(x), strict=True):
        np.testing.assert_allclose(numpy(got), numpy(expected), rtol=1e-5, atol=1e-5)
    square = groco_core.export(model("P4M", 11))
    assert not any("_support_" in layer.name for layer in square.layers)
