"""`GroupBlurPool2D`: its filter, its output against numpy, its equivariance under this
suite's own action, that it really low-passes, and its arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from groco_srf import GroupBlurPool2D
from srf_actions import act, correlate, equivariance_error

import groco_core
from groco_core import MatrixGroup, hookimpl
from groco_core.testing import check_layer_class

BINOMIAL_ROWS = {2: [1, 1], 3: [1, 2, 1], 4: [1, 3, 3, 1], 5: [1, 4, 6, 4, 1]}


def numpy_blur_pool(x, size, stride, padding):
    """Zeros `padding` on each side of both spatial axes, then every (element, channel)
    correlated with the binomial filter written out, at `stride`."""
    row = np.array(BINOMIAL_ROWS[size], dtype="float64")
    blur = np.outer(row, row) / row.sum() ** 2
    x = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0), (0, 0)])
    batch, rows, cols, order, channels = x.shape
    merged = x.reshape(batch, rows, cols, order * channels)
    out = np.stack(
        [
            correlate(merged[..., i : i + 1], blur[..., None, None], stride)[..., 0]
            for i in range(order * channels)
        ],
        axis=-1,
    )
    return out.reshape(*out.shape[:3], order, channels)


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_the_blur_is_the_normalised_binomial_filter(size):
    row = np.array(BINOMIAL_ROWS[size], dtype="float64")
    layer = GroupBlurPool2D(size, group="P4M")
    np.testing.assert_allclose(layer.blur, np.outer(row, row) / row.sum() ** 2, atol=1e-7)


@pytest.mark.parametrize(
    "size, side, strides, padding, pads, out_side",
    [
        (3, 9, 2, "valid_equiv", 0, 4),
        (2, 8, 2, "valid_equiv", 0, 4),
        (4, 8, 2, "same_equiv", 1, 4),
        (5, 9, 2, "same_equiv", 2, 5),
        (3, 6, 1, "same_equiv", 1, 6),
    ],
)
def test_output_is_the_numpy_blur_then_subsampling(
    size, side, strides, padding, pads, out_side, rng
):
    x = rng.normal(size=(2, side, side, 4, 3)).astype("float32")
    layer = GroupBlurPool2D(size, strides=strides, padding=padding, group="P4")
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (2, out_side, out_side, 4, 3)
    assert layer.compute_output_shape(x.shape) == y.shape
    np.testing.assert_allclose(y, numpy_blur_pool(x, size, strides, pads), atol=1e-5)


@pytest.mark.parametrize("group", ["P4M", "P4"])
@pytest.mark.parametrize(
    "size, side, strides, padding",
    [
        (3, 9, 2, "valid_equiv"),
        (3, 9, 2, "same_equiv"),
        (4, 8, 2, "valid_equiv"),
        (2, 8, 2, "same_equiv"),
        (5, 7, 1, "same_equiv"),
    ],
)
def test_equivariant_under_every_element(group, size, side, strides, padding, rng):
    matrices = groco_core.get_group(group).matrices
    x = rng.normal(size=(1, side, side, len(matrices), 2)).astype("float32")
    layer = GroupBlurPool2D(size, strides=strides, padding=padding, group=group)
    assert equivariance_error(layer, x, matrices, matrices) < 1e-5
    # The check can fail: the layer does not ignore how its input is turned.
    y = keras.ops.convert_to_numpy(layer(x))
    turned = keras.ops.convert_to_numpy(layer(act(x, matrices[1], matrices)))
    assert np.abs(turned - y).max() > 1e-2


@pytest.mark.parametrize("group", ["P4M", "P4"])
def test_the_conformance_kit_passes(group):
    rows = check_layer_class(GroupBlurPool2D, group)
    assert [row.status for row in rows] == ["ok", "ok"], rows


def test_a_checkerboard_is_removed_where_plain_subsampling_aliases_it():
    # The highest frequency the grid holds: plain stride-2 sampling turns it into a constant
    # (aliasing), the blur (3: [1, 2, 1]/4; 4: [1, 3, 3, 1]/8 each way) cancels it.
    i, j = np.indices((9, 9))
    checkerboard = ((-1.0) ** (i + j))[None, :, :, None, None] * np.ones((1, 9, 9, 8, 2))
    checkerboard = checkerboard.astype("float32")
    subsampled = checkerboard[:, ::2, ::2]
    assert np.abs(subsampled).min() == 1.0 and np.ptp(subsampled) == 0  # aliased to a constant
    for size, x in ((3, checkerboard), (4, checkerboard[:, :8, :8])):
        y = keras.ops.convert_to_numpy(GroupBlurPool2D(size, group="P4M")(x))
        assert np.abs(y).max() < 1e-6, size
    # A constant passes unchanged: the blur sums to 1.
    constant = np.full((1, 9, 9, 8, 2), 3.0, "float32")
    y = keras.ops.convert_to_numpy(GroupBlurPool2D(3, group="P4M")(constant))
    np.testing.assert_allclose(y, 3.0, atol=1e-5)


def test_the_blur_attenuates_high_frequencies_more_than_low_ones(rng):
    # Energy kept, per frequency, of a cosine along the rows: monotone falling.
    rows = np.arange(17)
    kept = []
    for frequency in (0.1, 0.25, 0.4):
        wave = np.cos(2 * np.pi * frequency * rows)[None, :, None, None, None]
        x = np.broadcast_to(wave, (1, 17, 17, 4, 1)).astype("float32")
        y = keras.ops.convert_to_numpy(
            GroupBlurPool2D(3, strides=1, padding="valid_equiv", group="P4")(x)
        )
        kept.append(np.abs(y).max())
    assert kept[0] > 0.85 and kept[0] > kept[1] > kept[2] and kept[2] < 0.2, kept


def test_channels_first_is_channels_last_transposed(rng):
    x = rng.normal(size=(2, 9, 9, 4, 3)).astype("float32")
    last = keras.ops.convert_to_numpy(GroupBlurPool2D(3, group="P4")(x))
    layer = GroupBlurPool2D(3, group="P4", data_format="channels_first")
    first = keras.ops.convert_to_numpy(layer(np.moveaxis(x, -1, 1)))
    np.testing.assert_allclose(np.moveaxis(first, 1, -1), last, atol=1e-6)
    assert layer.compute_output_shape((2, 3, 9, 9, 4)) == (2, 3, 4, 4, 4)


def test_config_round_trip_and_protocol():
    layer = GroupBlurPool2D(4, strides=2, padding="same_equiv", group="P4M", name="blur")
    config = layer.get_config()
    assert (config["group"], config["blur_size"], config["strides"]) == ("P4M", 4, (2, 2))
    assert config["padding"] == "same_equiv"
    assert GroupBlurPool2D.from_config(config).get_config() == config
    assert isinstance(layer, groco_core.GroupLayer)
    assert layer.input_group is layer.output_group is layer.group
    assert layer.weights == []  # the blur is fixed: nothing to train or save


class ShiftedMirror(MatrixGroup):
    """A mirror group whose kernel table is wrong on purpose: it shifts taps."""

    def kernel_permutation(self, shape):
        points = int(np.prod(shape))
        return np.stack([np.arange(points), np.roll(np.arange(points), 1)])


class ShiftedMirrorPlugin:
    @hookimpl
    def groco_register_groups(self, register):
        register(
            ShiftedMirror("SrfShiftedM", [[[1, 0], [0, 1]], [[-1, 0], [0, 1]]], lattice="srf_test")
        )


def test_a_group_that_does_not_keep_the_blur_is_refused(register_plugin):
    register_plugin(ShiftedMirrorPlugin(), name="srf_shifted")
    with pytest.raises(
        ValueError,
        match=r"GroupBlurPool2D: the 3×3 binomial blur is not invariant under group "
        r"SrfShiftedM: .* Received: group='SrfShiftedM', blur_size=3\. Use a group whose "
        r"elements map the square window onto itself",
    ):
        GroupBlurPool2D(3, group="SrfShiftedM")
    assert GroupBlurPool2D(3, group="SrfShiftedM", allow_non_equivariance=True).blur_size == 3


def test_a_lattice_in_part_of_the_window_is_refused():
    try:
        groco_core.get_group("P6M")
    except ValueError:
        pytest.skip("groco-hexagonal is not installed")
    with pytest.raises(
        ValueError,
        match=r"GroupBlurPool2D: group P6M \(hexagonal lattice\) uses only part of a square "
        r"window .* Received: blur_size=\(3, 3\)",
    ):
        GroupBlurPool2D(3, group="P6M")
    assert GroupBlurPool2D.equivariance_cases(groco_core.get_group("P6M")) == []


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(blur_size=1),
            ValueError,
            r"blur_size must be one of 2, 3, 4, 5 .* "
            r"Received: blur_size=1",
        ),
        (dict(blur_size=6), ValueError, r"Received: blur_size=6"),
        (dict(blur_size="3"), ValueError, r"Received: blur_size='3'"),
        (
            dict(strides=(1, 2)),
            ValueError,
            r"strides must be equal on the axes that group P4M "
            r"exchanges",
        ),
        (dict(strides=0), ValueError, r"strides must be at least 1"),
        (dict(group=None), ValueError, r"GroupBlurPool2D needs a `group`"),
        (dict(padding="full"), ValueError, r"padding must be one of"),
        (dict(data_format="nhwc"), ValueError, r"data_format must be"),
    ],
    ids=[
        "size-1",
        "size-6",
        "size-str",
        "strides-unequal",
        "strides-0",
        "no-group",
        "padding",
        "data-format",
    ],
)
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        GroupBlurPool2D(**(dict(blur_size=3, group="P4M") | kwargs))


def test_bad_inputs_are_refused():
    layer = GroupBlurPool2D(3, group="P4M")
    with pytest.raises(ValueError, match=r"looks like an image .* Lift an image onto the group"):
        layer(np.zeros((1, 9, 9, 2), "float32"))
    with pytest.raises(ValueError, match=r"group axis \(axis -2\) of length 8"):
        GroupBlurPool2D(3, group="P4M")(np.zeros((1, 9, 9, 4, 2), "float32"))
    # Stride 2 needs an input size of the blur's parity: 8 and 3 do not centre.
    with pytest.raises(
        ValueError,
        match=r"no padding makes this layer equivariant for input "
        r"size 8",
    ):
        GroupBlurPool2D(3, group="P4M")(np.zeros((1, 8, 8, 8, 2), "float32"))
