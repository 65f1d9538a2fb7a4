"""Bad inputs, clearly answered: a layer called on another kind of input than it was built on
(an image after a signal on the group, or the reverse, other channels, another group axis),
an image given to a layer of signals on the group only, and a subgroup name that is not one.
Each is a ValueError saying what changed and the fix, before Keras or the backend see it; a
correct call afterwards still works."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from groco_separable import (
    DepthwiseGroupConv2D,
    DepthwiseGroupConv3D,
    SeparableGroupConv2D,
    SeparableGroupConv3D,
)

from groco_core import (
    GlobalGroupAveragePooling1D,
    GlobalGroupAveragePooling2D,
    GlobalGroupAveragePooling3D,
    GlobalGroupMaxPooling1D,
    GlobalGroupMaxPooling2D,
    GlobalGroupMaxPooling3D,
    GroupAveragePooling1D,
    GroupAveragePooling2D,
    GroupAveragePooling3D,
    GroupBatchNormalization,
    GroupConv1D,
    GroupConv1DTranspose,
    GroupConv2D,
    GroupConv2DTranspose,
    GroupConv3D,
    GroupConv3DTranspose,
    GroupDense,
    GroupMaxPooling1D,
    GroupMaxPooling2D,
    GroupMaxPooling3D,
    GroupReduce,
    get_group,
)

# A group per rank, small enough to keep the tests fast.
GROUP = {1: "LM", 2: "P4M", 3: "C4"}
SIDE = {1: 8, 2: 8, 3: 5}

CONV_LAYERS = [
    pytest.param(lambda g: GroupConv1D(2, 3, group=g), 1, id="GroupConv1D"),
    pytest.param(lambda g: GroupConv2D(2, 3, group=g), 2, id="GroupConv2D"),
    pytest.param(lambda g: GroupConv3D(2, 3, group=g), 3, id="GroupConv3D"),
    pytest.param(lambda g: GroupConv1DTranspose(2, 3, group=g), 1, id="GroupConv1DTranspose"),
    pytest.param(lambda g: GroupConv2DTranspose(2, 3, group=g), 2, id="GroupConv2DTranspose"),
    pytest.param(lambda g: GroupConv3DTranspose(2, 3, group=g), 3, id="GroupConv3DTranspose"),
    pytest.param(lambda g: DepthwiseGroupConv2D(3, group=g), 2, id="DepthwiseGroupConv2D"),
    pytest.param(lambda g: DepthwiseGroupConv3D(3, group=g), 3, id="DepthwiseGroupConv3D"),
    pytest.param(lambda g: SeparableGroupConv2D(2, 3, group=g), 2, id="SeparableGroupConv2D"),
    pytest.param(lambda g: SeparableGroupConv3D(2, 3, group=g), 3, id="SeparableGroupConv3D"),
]


def image(rank: int, channels: int = 1) -> np.ndarray:
    return np.zeros((1, *(SIDE[rank],) * rank, channels), "float32")


def signal(rank: int, channels: int = 1, order: int | None = None) -> np.ndarray:
    order = get_group(GROUP[rank]).order if order is None else order
    return np.zeros((1, *(SIDE[rank],) * rank, order, channels), "float32")


def _sequence(symbolic_call: bool):
    """The input as it is, or a symbolic input of its shape."""
    return (lambda x: keras.Input(x.shape[1:])) if symbolic_call else (lambda x: x)


# -- a conv-like layer keeps the input kind, channels and group axis it was built on ------


@pytest.mark.parametrize("symbolic_call", [False, True], ids=["eager", "symbolic"])
@pytest.mark.parametrize("make, rank", CONV_LAYERS)
def test_built_on_an_image_then_called_on_a_signal(make, rank, symbolic_call):
    wrap = _sequence(symbolic_call)
    layer = make(GROUP[rank])
    first = layer(wrap(image(rank)))
    with pytest.raises(
        ValueError,
        match=rf"was built on an image \(batch, \*spatial, channels\) of rank {rank + 2}, "
        rf"lifting it onto {GROUP[rank]}; it was called on a signal on a group \(batch, "
        rf"\*spatial, \|G\|, channels\) of rank {rank + 3}\. Received: input_shape=\(\w+, "
        rf".*\)\. A layer keeps the input kind it was built with: use a new \w+ for signals "
        r"on a group\.",
    ):
        layer(wrap(signal(rank)))
    assert layer(wrap(image(rank))).shape == first.shape


@pytest.mark.parametrize("symbolic_call", [False, True], ids=["eager", "symbolic"])
@pytest.mark.parametrize("make, rank", CONV_LAYERS)
def test_built_on_a_signal_then_called_on_an_image(make, rank, symbolic_call):
    wrap = _sequence(symbolic_call)
    layer = make(GROUP[rank])
    first = layer(wrap(signal(rank)))
    with pytest.raises(
        ValueError,
        match=rf"was built on a signal on {GROUP[rank]} \(batch, \*spatial, \|G\|, channels\) "
        rf"of rank {rank + 3}; it was called on an image \(batch, \*spatial, channels\) of "
        rf"rank {rank + 2}\. Received: input_shape=.*A layer keeps the input kind it was "
        r"built with: use a new \w+ for images\.",
    ):
        layer(wrap(image(rank)))
    assert layer(wrap(signal(rank))).shape == first.shape


@pytest.mark.parametrize("make, rank", CONV_LAYERS)
def test_changed_channels_are_refused(make, rank):
    layer = make(GROUP[rank])
    layer(signal(rank, channels=2))
    with pytest.raises(
        ValueError,
        match=r"was built on an input with 2 channel\(s\) \(axis -1\); it was called on one "
        r"with 3\. Received: input_shape=.*A layer keeps the number of input channels it was "
        r"built with \(its kernel is made for them\): use a new \w+ for 3 channels\.",
    ):
        layer(signal(rank, channels=3))
    lifting = make(GROUP[rank])
    lifting(image(rank, channels=2))
    with pytest.raises(ValueError, match=r"built on an input with 2 channel\(s\)"):
        lifting(image(rank, channels=1))
    assert lifting(image(rank, channels=2)).shape[-1] > 0


@pytest.mark.parametrize("make, rank", CONV_LAYERS)
def test_a_changed_group_axis_is_refused(make, rank):
    group = get_group(GROUP[rank])
    layer = make(group.name)
    layer(signal(rank))
    with pytest.raises(
        ValueError,
        match=rf"was built on a signal on {group.name}, whose group axis \(axis -2\) has "
        rf"length {group.order}; it was called on one whose group axis has length "
        rf"{group.order + 1}\. Received: input_shape=.*A layer keeps the group it was built "
        rf"on: pass a signal on {group.name}, or use a new \w+ whose `group` is the group the "
        "input lives on.",
    ):
        layer(signal(rank, order=group.order + 1))
    layer(signal(rank))


def test_the_message_names_the_layer_and_the_shape_received():
    layer = GroupConv2D(4, 3, group="P4M", name="lift")
    layer(np.zeros((1, 9, 9, 1), "float32"))
    with pytest.raises(
        ValueError,
        match=r"^GroupConv2D 'lift' was built on an image .* Received: "
        r"input_shape=\(1, 9, 9, 8, 1\)\.",
    ):
        layer(np.zeros((1, 9, 9, 8, 1), "float32"))


def test_transposed_layer_names_its_subgroup_argument():
    layer = GroupConv2DTranspose(2, 3, group="P4M", subgroup="P4")
    layer(np.zeros((1, 5, 5, 4, 1), "float32"))
    with pytest.raises(ValueError, match=r"signal on P4, whose group axis .* `subgroup`"):
        layer(np.zeros((1, 5, 5, 8, 1), "float32"))


def test_channels_first_inputs_are_described_channels_first():
    layer = GroupConv2D(2, 3, group="P4", data_format="channels_first")
    layer(np.zeros((1, 2, 7, 7), "float32"))
    with pytest.raises(
        ValueError,
        match=r"built on an image \(batch, channels, \*spatial\) of rank 4.*called on a signal "
        r"on a group \(batch, channels, \*spatial, \|G\|\) of rank 5",
    ):
        layer(np.zeros((1, 2, 7, 7, 4), "float32"))
    with pytest.raises(ValueError, match=r"2 channel\(s\) \(axis 1\); it was called on one with 3"):
        layer(np.zeros((1, 3, 7, 7), "float32"))
    assert layer(np.zeros((1, 2, 7, 7), "float32")).shape == (1, 2, 5, 5, 4)


def test_an_input_of_neither_kind_is_described():
    layer = GroupConv2D(2, 3, group="P4")
    layer(np.zeros((1, 7, 7, 1), "float32"))
    with pytest.raises(
        ValueError,
        match=r"called on an input of rank 3, neither an image \(rank 4\) nor a signal on a "
        r"group \(rank 5\).*pass it an image \(batch, \*spatial, channels\) of rank 4\.",
    ):
        layer(np.zeros((1, 7, 1), "float32"))


def test_calls_of_the_same_kind_pass_in_a_compiled_model():
    inputs = keras.Input((None, None, 1))
    x = GroupConv2D(2, 3, group="P4", padding="same_equiv")(inputs)
    x = GroupConv2D(2, 3, group="P4", padding="same_equiv")(x)
    x = GroupMaxPooling2D(group="P4", pool_size=1)(x)
    outputs = GlobalGroupMaxPooling2D()(x)
    model = keras.Model(inputs, outputs)
    assert model.predict(np.zeros((2, 7, 7, 1), "float32"), verbose=0).shape == (2, 2)
    assert model.predict(np.zeros((2, 9, 9, 1), "float32"), verbose=0).shape == (2, 2)


# -- GroupDense ---------------------------------------------------------------------------


def test_group_dense_keeps_its_channels_and_group_axis():
    layer = GroupDense(4, group="P4M")
    layer(np.zeros((2, 8, 3), "float32"))
    with pytest.raises(ValueError, match=r"GroupDense 'group_dense\w*' was built on an input "):
        layer(np.zeros((2, 8, 5), "float32"))
    with pytest.raises(ValueError, match=r"GroupDense\(group='P4M'\) expects a signal on P4M "):
        layer(np.zeros((2, 4, 3), "float32"))
    with pytest.raises(ValueError, match=r"looks like a tensor without a group axis"):
        layer(np.zeros((2, 3), "float32"))
    assert layer(np.zeros((2, 4, 4, 8, 3), "float32")).shape == (2, 4, 4, 8, 4)


# -- an image given to a layer of signals on the group only --------------------------------

POOLING = [
    GroupMaxPooling1D,
    GroupMaxPooling2D,
    GroupMaxPooling3D,
    GroupAveragePooling1D,
    GroupAveragePooling2D,
    GroupAveragePooling3D,
]
GLOBAL_POOLING = [
    GlobalGroupMaxPooling1D,
    GlobalGroupMaxPooling2D,
    GlobalGroupMaxPooling3D,
    GlobalGroupAveragePooling1D,
    GlobalGroupAveragePooling2D,
    GlobalGroupAveragePooling3D,
]


def _pooling(cls: type) -> object:
    rank = int(cls.__name__[-2])
    # Pooling 2×2 blocks of an odd-sized volume could not be equivariant.
    return pytest.param(
        lambda group: cls(group=group, pool_size=2 if SIDE[rank] % 2 == 0 else 1),
        rank,
        True,
        id=cls.__name__,
    )


SIGNAL_ONLY = (
    [_pooling(cls) for cls in POOLING]
    + [
        pytest.param(cls, int(cls.__name__[-2]), with_group, id=f"{cls.__name__}-{label}")
        for cls in GLOBAL_POOLING
        for with_group, label in ((True, "group"), (False, "no-group"))
    ]
    + [
        pytest.param(lambda group: GroupBatchNormalization(group=group), 2, True, id="BN-2D"),
        pytest.param(lambda group: GroupBatchNormalization(group=group), 3, True, id="BN-3D"),
        pytest.param(lambda group: GroupReduce(group, "P1"), 2, True, id="GroupReduce"),
    ]
)


def _lift_message(name: str, rank: int, group: str | None) -> str:
    label = name if group is None else rf"{name}\(group='{group}'\)"
    argument = r"\.\.\." if group is None else f"'{group}'"
    return (
        rf"^{label} takes a signal on .*Received: input_shape=\(\w+, .*\), which looks like an "
        r"image \(no group axis\)\. Lift an image onto the group first with a lifting "
        rf"GroupConv{rank}D\(filters, kernel_size, group={argument}\), then apply {name}\.$"
    )


@pytest.mark.parametrize("symbolic_call", [False, True], ids=["eager", "symbolic"])
@pytest.mark.parametrize("make, rank, with_group", SIGNAL_ONLY)
def test_an_image_is_told_to_be_lifted_first(make, rank, with_group, symbolic_call):
    group = GROUP[rank] if with_group else None
    layer = make(group=group)
    name = type(layer).__name__
    wrap = _sequence(symbolic_call)
    with pytest.raises(ValueError, match=_lift_message(name, rank, group)):
        layer(wrap(image(rank)))
    first = layer(wrap(signal(rank, channels=2)))
    with pytest.raises(ValueError, match=_lift_message(name, rank, group)):
        layer(wrap(image(rank)))  # once built, too
    assert layer(wrap(signal(rank, channels=2))).shape == first.shape


@pytest.mark.parametrize(
    "make",
    [
        lambda: GroupMaxPooling2D(group="P4M"),
        lambda: GlobalGroupAveragePooling2D(group="P4M"),
        lambda: GroupReduce("P4M", "P4"),
        lambda: GroupBatchNormalization(group="P4M"),
    ],
    ids=["GroupMaxPooling2D", "GlobalGroupAveragePooling2D", "GroupReduce", "BN"],
)
def test_a_built_layer_refuses_a_group_axis_of_another_length(make):
    # Before, a gather on a P4 group axis with P4M's indices ran, on the wrong values.
    layer = make()
    name = type(layer).__name__
    layer(signal(2))
    with pytest.raises(
        ValueError,
        match=rf"{name}\(group='P4M'\) expects a signal on P4M with a group axis \(axis -2\) "
        r"of length 8\. Received: input_shape=\(1, 8, 8, 4, 1\)",
    ):
        layer(signal(2, order=4))
    layer(signal(2))


def test_channels_first_pooling_describes_channels_first():
    layer = GroupMaxPooling2D(group="P4", data_format="channels_first")
    with pytest.raises(ValueError, match=r"\(batch, channels, \*spatial, \|G\|\) with 2 spatial"):
        layer(np.zeros((1, 1, 8, 8), "float32"))
    assert layer(np.zeros((1, 1, 8, 8, 4), "float32")).shape == (1, 1, 4, 4, 4)


# -- subgroup names -----------------------------------------------------------------------


def test_an_unknown_group_lists_every_name_it_could_mean():
    with pytest.raises(
        ValueError, match=r"Unknown group 'C2'.*Closest matches: 'C2_a', 'C2_f', 'C1'\.$"
    ):
        get_group("C2")
    with pytest.raises(ValueError, match=r"Unknown group 'p4n'.*Closest match: 'P4M'\.$"):
        get_group("p4n")


@pytest.mark.parametrize(
    "make",
    [
        lambda: GroupMaxPooling2D(group="P4M", subgroup="C2"),
        lambda: GroupDense(2, group="P4M", subgroup="C2"),
        lambda: GroupReduce("P4M", "C2"),
        lambda: get_group("C2", subgroup_of="P4M"),
        lambda: GroupConv2D(2, 3, group="P4M", subgroup="C2"),
    ],
    ids=["GroupMaxPooling2D", "GroupDense", "GroupReduce", "get_group", "GroupConv2D"],
)
def test_a_subgroup_name_is_answered_with_the_subgroups_first(make):
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value) == (
        "Unknown group 'C2': no installed plugin provides it, and a plugin must provide "
        "every group. Subgroups of P4M: P4M, CMM, P2MM, P4, P2, PMa, PMd, PMh, PMv, P1. "
        "Closest match among them: 'P2'. Other groups it could mean, not subgroups of P4M: "
        "'C2_a', 'C2_f'."
    )


def test_a_subgroup_name_lists_every_subgroup_it_could_mean():
    with pytest.raises(
        ValueError,
        match=r"Unknown group 'c2'.* Subgroups of Oh: Oh, .*Closest matches among them: "
        r"'C2_a', 'C2_f', 'C1'\.$",
    ):
        GroupMaxPooling3D(group="Oh", subgroup="c2")


def test_a_group_that_is_not_a_subgroup_gets_only_a_near_miss():
    with pytest.raises(
        ValueError,
        match=r"^'C4' is not a subgroup of P4M\. Subgroups of P4M: .*P1\. Closest match "
        r"among them: 'P4'\.$",
    ):
        get_group("C4", subgroup_of="P4M")
    with pytest.raises(
        ValueError,
        match=r"^'PMh' is not a subgroup of P4\. Subgroups of P4: "
        r"P4, P2, P1\.$",
    ):
        GroupMaxPooling2D(group="P4", subgroup="PMh")
