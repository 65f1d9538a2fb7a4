"""Fuzzing: random layer configurations are either exactly equivariant or refused clearly.

Hypothesis draws a group (the line, the square, hexagonal and cubic lattices), a layer kind,
kernel size, strides, dilation, padding, input size (the same along every axis, or one per
axis), data format and subgroup, and the options of some kinds: feature `groups` and the
number of filters of a group convolution, `depth_multiplier` and `formulation` of the
depthwise and separable layers, the separable layers' `order`, global max or average pooling,
batch normalization by the moving or the batch's own statistics. On the hexagonal lattice
the input size is odd and the same along both axes (the group maps the grid of an even-sized
array off itself) and the input is zero outside the inscribed hexagon, which the group maps
onto itself; outputs are compared inside their own hexagon. Each configuration must either
(a) be refused at construction or on its first call with a `ValueError` / `TypeError` whose
message names what is wrong, or (b) run and be equivariant to float32 round-off under every
element of the group its output lives on, checked with the transforms written in
`tests/transforms.py`. Anything else (another exception, a non-equivariant result) fails.

Profiles: `HYPOTHESIS_PROFILE=ci` (the default, derandomized and small so that `make test`
stays fast) and `HYPOTHESIS_PROFILE=deep` (`make fuzz`: many more cases).
"""

from __future__ import annotations

import os

import groco_separable
import keras
import numpy as np
import pytest
from groco_separable.depthwise import FORMULATIONS
from groco_separable.separable import ORDERS
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from transforms import hexagon_mask, max_equivariance_error

import groco_core
from groco_core import get_group, list_groups, subgroups_of

settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Lattices the test's own transforms (tests/transforms.py) act on.
LATTICES = ("line", "square", "hexagonal", "cubic")
KINDS = (
    "lifting_conv",
    "group_conv",
    "transposed",
    "pooling",
    "global_pooling",
    "batch_norm",
    "dense",
    "reduce",
    "depthwise",
    "separable",
)
# Words a refusal must use to say what is wrong (an argument, or the input it got).
NAMED = (
    "strides",
    "padding",
    "kernel",
    "pool",
    "size",
    "dilation",
    "subgroup",
    "group",
    "input",
    "data_format",
    "output_padding",
    "filters",
    "groups",
    "fields",
    "depth_multiplier",
    "formulation",
    "order",
)


def _groups(dimension: int, lattices: tuple[str, ...] = LATTICES) -> list[str]:
    groups = [g for g in list_groups(dimension) if g.lattice in lattices]
    if dimension == 3:  # keep the volumes' convolutions cheap
        groups = [g for g in groups if g.order <= 8]
    return sorted(g.name for g in groups)


@st.composite
def configurations(draw, lattices: tuple[str, ...] = LATTICES):
    kind = draw(st.sampled_from(KINDS))
    dimensions = sorted({g.dimension for g in list_groups() if g.lattice in lattices})
    if kind in ("depthwise", "separable"):
        dimensions = [d for d in dimensions if d in (2, 3)]
    dimension = draw(st.sampled_from(dimensions))
    group = get_group(draw(st.sampled_from(_groups(dimension, lattices))))
    subgroups = sorted(
        name for name in subgroups_of(group) if get_group(name).lattice == group.lattice
    )
    subgroup = draw(st.sampled_from([None, *subgroups]))
    biggest = {1: 9, 2: 8, 3: 5}[dimension]
    size = draw(st.integers(1, biggest))
    if group.lattice == "hexagonal" and size % 2 == 0:
        size += 1
    sizes = (size,) * dimension
    if group.lattice != "hexagonal" and dimension > 1 and draw(st.booleans()):
        sizes = tuple(
            draw(st.lists(st.integers(1, biggest), min_size=dimension, max_size=dimension))
        )
    formulations = FORMULATIONS
    if dimension == 3:
        formulations = formulations[1:]  # `depthwise_conv` exists for 1 and 2 spatial axes
    return {
        "kind": kind,
        "group": group.name,
        "subgroup": subgroup,
        "size": size,
        "sizes": sizes,
        "kernel": draw(st.integers(1, 4)),
        "strides": draw(st.integers(1, 3)),
        "dilation": draw(st.sampled_from((1, 1, 2))),
        "padding": draw(st.sampled_from(("valid_equiv", "same_equiv", "valid", "same"))),
        "channels_first": draw(st.booleans()),
        "output_padding": draw(st.sampled_from((None, 0, 1))),
        "filters": draw(st.sampled_from((3, 4))),
        "groups": draw(st.sampled_from((1, 1, 2))),
        "depth_multiplier": draw(st.sampled_from((1, 2))),
        "formulation": draw(st.sampled_from((None, *formulations))),
        "order": draw(st.sampled_from(ORDERS)),
        "average": draw(st.booleans()),
        "training": draw(st.booleans()),
    }


def _layer(config: dict):
    """The layer, whether its input lives on a group, and the group of its input/output."""
    kind, group, subgroup = config["kind"], config["group"], config["subgroup"]
    rank = get_group(group).dimension
    data_format = "channels_first" if config["channels_first"] else "channels_last"
    conv = {
        "kernel_size": config["kernel"],
        "strides": config["strides"],
        "padding": config["padding"],
        "data_format": data_format,
        "group": group,
        "subgroup": subgroup,
    }
    if config["dilation"] > 1:
        conv["dilation_rate"] = config["dilation"]
    if kind in ("lifting_conv", "group_conv"):
        groups = config.get("groups", 1)
        layer = getattr(groco_core, f"GroupConv{rank}D")(
            config.get("filters", 3), groups=groups, **conv
        )
        return layer, kind == "group_conv", group, subgroup or group
    if kind == "transposed":
        if config["output_padding"] is not None:
            conv["output_padding"] = config["output_padding"]
        layer = getattr(groco_core, f"GroupConv{rank}DTranspose")(3, **conv)
        return layer, True, subgroup or group, group
    if kind == "pooling":
        mode = "Max" if config["size"] % 2 else "Average"
        layer = getattr(groco_core, f"Group{mode}Pooling{rank}D")(
            pool_size=config["kernel"],
            strides=config["strides"],
            padding=config["padding"],
            data_format=data_format,
            group=group,
            subgroup=subgroup,
        )
        return layer, True, group, subgroup or group
    if kind == "global_pooling":
        mode = "Average" if config.get("average") else "Max"
        layer = getattr(groco_core, f"GlobalGroup{mode}Pooling{rank}D")(
            data_format=data_format, group=group
        )
        return layer, True, group, None
    if kind == "batch_norm":
        axis = 1 if config["channels_first"] else -1
        norm = groco_core.GroupBatchNormalization(axis=axis, group=group)
        if config.get("training"):  # normalized by the batch's own statistics

            def norm_training(inputs):
                return norm(inputs, training=True)

            return norm_training, True, group, group
        return norm, True, group, group
    if kind == "dense":
        dense = groco_core.GroupDense(3, group=group, subgroup=subgroup)
        return dense, True, group, subgroup or group
    if kind == "reduce":
        reduce = groco_core.GroupReduce(group, subgroup or group, data_format=data_format)
        return reduce, True, group, subgroup or group
    conv["depth_multiplier"] = config.get("depth_multiplier", 1)
    conv["formulation"] = config.get("formulation")
    if kind == "depthwise":
        layer = getattr(groco_separable, f"DepthwiseGroupConv{rank}D")(**conv)
    else:
        conv["order"] = config.get("order", "depthwise_first")
        layer = getattr(groco_separable, f"SeparableGroupConv{rank}D")(3, **conv)
    return layer, config["size"] % 2 == 0, group, subgroup or group


def _input(config: dict, on_group: bool, input_group: str, rng) -> np.ndarray:
    rank = get_group(config["group"]).dimension
    spatial = tuple(config.get("sizes", (config["size"],) * rank))
    order = (get_group(input_group).order,) if on_group else ()
    channels = 2
    if config["kind"] == "dense":
        spatial = ()  # (batch, |G|, channels) for GroupDense
        order = (get_group(input_group).order,)
    if config["channels_first"] and config["kind"] != "dense":
        shape = (1, channels, *spatial, *order)
    else:
        shape = (1, *spatial, *order, channels)
    x = rng.normal(size=shape).astype("float32")
    if _hexagonal(config) and spatial:
        first = 2 if config["channels_first"] else 1
        mask_shape = [1] * len(shape)
        mask_shape[first : first + 2] = spatial
        x = x * hexagon_mask(spatial[0]).reshape(mask_shape)
    return x


def _hexagonal(config: dict) -> bool:
    return get_group(config["group"]).lattice == "hexagonal"


def _check(config: dict) -> str:
    """Runs one configuration; returns "refused" or "equivariant" (or fails)."""
    rng = np.random.default_rng(0)
    try:
        layer, on_group, input_group, output_group = _layer(config)
        x = _input(config, on_group, input_group, rng)
        y = keras.ops.convert_to_numpy(layer(x))
    except (ValueError, TypeError) as error:
        message = str(error)
        assert "Received" in message and any(word in message for word in NAMED), message
        assert "Traceback" not in message
        return "refused"
    rank = get_group(config["group"]).dimension
    # The layer is equivariant under the smaller of the groups its input and output live on.
    candidates = [g for g in (input_group if on_group else None, output_group) if g is not None]
    acting = min((get_group(g) for g in candidates), key=lambda g: g.order)
    channels_last = not config["channels_first"] or config["kind"] == "dense"
    spatial_dims = 0 if config["kind"] == "dense" else rank
    error = max_equivariance_error(
        layer,
        x,
        acting.matrices,
        get_group(input_group).matrices if on_group else None,
        None if output_group is None else get_group(output_group).matrices,
        channels_last=channels_last,
        spatial_dims=spatial_dims,
        hexagonal=_hexagonal(config),
    )
    assert error <= 1e-5 * max(1.0, float(np.max(np.abs(y)))), (config, error)
    return "equivariant"


@given(configurations())
def test_every_configuration_is_equivariant_or_refused(config):
    outcome = _check(config)
    assert outcome in ("equivariant", "refused")
    event(f"{config['kind']}: {outcome}")  # `--hypothesis-show-statistics` counts them
    if len(set(config["sizes"])) > 1:
        event(f"unequal sizes: {outcome}")


@given(configurations(lattices=("hexagonal",)))
def test_every_hexagonal_configuration_is_equivariant_or_refused(config):
    # The hexagonal groups of the example plugin (groco-hexagonal, installed by `make
    # install`), drawn on their own so that every run covers them.
    outcome = _check(config)
    assert outcome in ("equivariant", "refused")
    event(f"{config['kind']}: {outcome}")


def test_fuzzing_reaches_both_outcomes():
    # The strategy is not degenerate: some configurations run, some are refused.
    outcomes = {
        _check(
            {"kind": "lifting_conv", "group": "P4M", "subgroup": None, "size": size,
             "kernel": 3, "strides": 2, "dilation": 1, "padding": "valid_equiv",
             "channels_first": False, "output_padding": None}
        )
        for size in (7, 8)
    }  # fmt: skip
    assert outcomes == {"equivariant", "refused"}


def test_regression_transposed_conv_with_an_empty_output_is_refused():
    # Found by the fuzzer: Keras's `same` window with output_padding=0 crops a kernel-2
    # transposed convolution of one point to nothing; the layer returned an empty tensor.
    layer = groco_core.GroupConv1DTranspose(
        3, 2, padding="same_equiv", output_padding=0, group="L1"
    )
    with pytest.raises(
        ValueError, match=r"output would be empty: input size 1 gives output size 0"
    ):
        layer(np.zeros((1, 1, 1, 2), "float32"))
    assert layer.compute_output_shape((1, 3, 1, 2)) == (1, 2, 1, 3)


def test_regression_hexagonal_output_without_a_centre_point_is_refused(rng):
    # Found by the fuzzer: on the hexagonal lattice a strided output of even size (input 3,
    # kernel 1, stride 2: the points at offsets ±1 of the centre) was computed, though a 60°
    # turn maps that grid off itself. Odd output sizes keep the centre and stay equivariant.
    layer = groco_core.GroupConv2D(2, 1, strides=2, group="P6M")
    with pytest.raises(ValueError, match=r"input size 3 gives output size 2, which is even"):
        layer(np.zeros((1, 3, 3, 2), "float32"))
    x = rng.normal(size=(1, 5, 5, 2)).astype("float32") * hexagon_mask(5)[None, :, :, None]
    group = get_group("P6M")
    error = max_equivariance_error(layer, x, group.matrices, None, group.matrices, hexagonal=True)
    assert error < 1e-5


def test_regression_3d_average_pooling_same_with_a_window_longer_than_the_volume(rng):
    # Found by the fuzzer: on PyTorch, Keras hands `avg_pool3d` the `same` padding and
    # `avg_pool3d` refused a window longer than the unpadded volume (a backend stack trace);
    # `keras.layers.AveragePooling3D` fails the same way there. The layer pads and divides
    # itself in that case; on every backend it is the mean over the window's points inside
    # the volume, here computed by loops, and equivariant under O.
    layer = groco_core.GroupAveragePooling3D(pool_size=3, strides=1, padding="same", group="O")
    x = rng.normal(size=(1, 2, 2, 2, 24, 2)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    expected = np.zeros_like(x)
    for i, j, k in np.ndindex(2, 2, 2):
        window = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, max(k - 1, 0) : k + 2]
        expected[:, i, j, k] = window.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    group = get_group("O")
    error = max_equivariance_error(
        layer, x, group.matrices, group.matrices, group.matrices, spatial_dims=3
    )
    assert error < 1e-5
