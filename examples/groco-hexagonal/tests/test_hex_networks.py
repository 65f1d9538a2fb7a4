"""Hexagonal networks, not just layers, are invariant under all 12 elements of P6M.

A layer that leaves a value off the hexagon (a bias, a batch norm's `beta`) is equivariant on
its own, but the next layer reads that value, which a turn of the lattice does not move with
the image. The networks here have non-zero biases everywhere and an image that fills the
hexagon of its array, so such a leak shows. The group acts through this file's own index
arithmetic on axial coordinates (`act`), from the group's integer matrices.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from groco_hexagonal.groups import HexagonalGroup

from groco_core import (
    GlobalGroupAveragePooling2D,
    GlobalGroupMaxPooling2D,
    GroupAveragePooling2D,
    GroupBatchNormalization,
    GroupConv2D,
    GroupMaxPooling2D,
    get_group,
)

TOLERANCE = 1e-5  # outputs are of order 0.1–1; float32 round-off is ~1e-7


def hexagon(size: int) -> np.ndarray:
    radius = (size - 1) // 2
    i, j = np.meshgrid(*2 * [np.arange(-radius, radius + 1)], indexing="ij")
    return np.abs(i + j) <= radius


def act(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """out[:, p] = x[:, M⁻¹ p] for an image batch in axial coordinates (axes 1, 2); zero
    where M⁻¹ p is off the array."""
    size = x.shape[1]
    radius = (size - 1) // 2
    inverse = np.rint(np.linalg.inv(matrix)).astype(int)
    out = np.zeros_like(x)
    for i in range(-radius, radius + 1):
        for j in range(-radius, radius + 1):
            si, sj = inverse @ np.array([i, j])
            if abs(si) <= radius and abs(sj) <= radius:
                out[:, i + radius, j + radius] = x[:, si + radius, sj + radius]
    return out


def image(size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Random values on every point of the hexagon, zero on the array's two corners."""
    x = np.random.default_rng(seed).normal(size=(batch, size, size, 2)).astype("float32")
    return x * hexagon(size)[None, :, :, None]


def all_turns(x: np.ndarray) -> np.ndarray:
    """The 12 images g·x, g in P6M, stacked on the batch axis (one forward pass)."""
    return np.concatenate([act(x, m) for m in get_group("P6M").matrices])


def biased(seed: int) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=0.5, seed=seed)


def conv(filters: int, padding: str, seed: int, group="P6M") -> GroupConv2D:
    return GroupConv2D(
        filters,
        3,
        group=group,
        padding=padding,
        activation="relu",
        bias_initializer=biased(seed),
    )


class LeakyP6M(HexagonalGroup):
    """P6M with its image support forgotten: the layers as they were before the rule, writing
    and reading values off the hexagon."""

    def image_support_mask(self, shape):
        return None


def network(padding: str, kind: str, group: str | HexagonalGroup = "P6M") -> list:
    """lift (ReLU) → [pooling [onto P6]] → [batch norm] → group conv (ReLU) → global
    pooling (max after pooling, else average)."""
    keras.utils.set_random_seed(3)
    layers = [conv(4, padding, 1, group=group)]
    if kind in ("pooling", "subgroup"):
        # A stride-2 subsampling (the only pooling window the hexagon allows is one point).
        layers.append(GroupMaxPooling2D(1, strides=2, padding=padding, group=group))
    if kind == "subgroup":
        # Pooling onto P6 over the mirrors' cosets: invariant under the six turns only.
        layers.append(GroupAveragePooling2D(1, group=group, subgroup="P6"))
        layers.append(
            GroupConv2D(
                3, 3, group="P6", padding=padding, activation="relu", bias_initializer=biased(2)
            )
        )
        layers.append(GlobalGroupMaxPooling2D(group="P6"))
        return layers
    if kind == "batch_norm":
        layers.append(
            GroupBatchNormalization(
                group="P6M",
                beta_initializer=biased(4),
                moving_mean_initializer=biased(5),
            )
        )
    layers.append(conv(3, padding, 2, group=group))
    pooling = GlobalGroupMaxPooling2D if kind == "pooling" else GlobalGroupAveragePooling2D
    layers.append(pooling(group=group))
    return layers


def run(layers: list, x: np.ndarray, training: bool = False) -> np.ndarray:
    for layer in layers:
        if isinstance(layer, GroupBatchNormalization):
            x = layer(x, training=training)
        else:
            x = layer(x)
    return keras.ops.convert_to_numpy(x)


# Padding → image size: `same` keeps 9 (a stride-2 pooling then gives 5), `valid` takes
# 11 → 9 (→ 5) → 7 (→ 3).
SIZES = {"same_equiv": 9, "same": 9, "valid_equiv": 11, "valid": 11}


def invariance_error(padding: str, kind: str, group="P6M") -> tuple[float, float]:
    """(max over the 12 elements and the batch of |N(g·x) − N(x)|, max |N(x)|)."""
    x = image(SIZES[padding])
    y = run(network(padding, kind, group), all_turns(x)).reshape(12, x.shape[0], -1)
    if kind == "subgroup":
        y = y[:6]  # P6M lists its six turns first: P6
    return float(np.max(np.abs(y - y[0]))), float(np.max(np.abs(y[0])))


@pytest.mark.parametrize(
    "padding, kind",
    [
        (padding, kind)
        for padding in ("same_equiv", "valid_equiv")
        for kind in ("plain", "pooling", "subgroup", "batch_norm")
    ]
    + [("same", "plain"), ("valid", "plain"), ("same", "pooling"), ("valid", "batch_norm")],
)
def test_networks_are_invariant_under_all_twelve_elements(padding, kind):
    error, size = invariance_error(padding, kind)
    assert size > 0.05  # the output is not trivially zero
    assert error < TOLERANCE, (error, size)


def test_batch_norm_statistics_in_training_are_taken_on_the_hexagon():
    # Training-mode statistics come from each batch: g·x gets its own batch.
    layers = network("same_equiv", "batch_norm")
    x = image(9, seed=1)
    reference = run(layers, x, training=True)
    for matrix in get_group("P6M").matrices:
        turned = run(layers, act(x, matrix), training=True)
        np.testing.assert_allclose(turned, reference, atol=TOLERANCE)


def test_every_layer_writes_zeros_off_the_hexagon():
    x = image(9)
    for layer in network("same_equiv", "batch_norm")[:-1]:
        x = layer(x)
        values = keras.ops.convert_to_numpy(x)
        assert np.all(values[:, ~hexagon(9)] == 0), type(layer).__name__
        assert np.any(values[:, hexagon(9)] != 0), type(layer).__name__


def test_without_the_image_support_the_networks_are_not_invariant():
    # The layers as they were before the rule: nothing masked. The same networks then change
    # under a 60° turn by far more than round-off, so the tests above can fail.
    leaky = LeakyP6M("LeakyP6M", get_group("P6M").matrices)
    for padding in ("same_equiv", "valid_equiv"):
        error, size = invariance_error(padding, "plain", leaky)
        assert error > 1e-3 * size, (padding, error, size)
