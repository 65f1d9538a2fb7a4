"""Argument normalisation, the equivariant padding rule and the checks of an input's kind
(image or signal on a group), shared by every group layer."""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from groco_core.groups import PointGroup
from groco_core.registry import get_group

PADDINGS = ("valid_equiv", "same_equiv", "valid", "same")


def keyword_arguments(local_variables: dict[str, Any]) -> dict[str, Any]:
    """A public constructor's arguments (its `locals()`) as keywords for its base class:
    drops `self` and `__class__` and merges `**kwargs`, so that a rank-specific class
    (`GroupConv2D`) can list Keras's positional order and hand everything on by name.

    Example:
        >>> from groco_core.toolkit import keyword_arguments
        >>> def layer(self, filters, kernel_size=3, **kwargs):
        ...     return keyword_arguments(locals())
        >>> layer(None, 8, name="conv")
        {'filters': 8, 'kernel_size': 3, 'name': 'conv'}
    """
    named = {k: v for k, v in local_variables.items() if k not in ("self", "__class__")}
    extra = named.pop("kwargs", {})
    return {**named, **extra}


def check_positive_int(value: Any, name: str) -> int:
    """`value` as an int, or a TypeError / ValueError saying it must be a positive int.

    Example:
        >>> from groco_core.toolkit import check_positive_int
        >>> check_positive_int(4, "filters")
        4
        >>> check_positive_int(0, "filters")
        Traceback (most recent call last):
        ...
        ValueError: filters must be a positive int. Received: filters=0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int. Received: {name}={value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value}")
    return int(value)


def normalize_tuple(value: Any, rank: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of `rank` ints, each ≥ `minimum`, as a tuple; a TypeError or
    ValueError naming `name` otherwise.

    Example:
        >>> from groco_core.toolkit import normalize_tuple
        >>> normalize_tuple(3, 2, "kernel_size"), normalize_tuple([1, 2], 2, "strides")
        ((3, 3), (1, 2))
    """
    items = (value,) * rank if isinstance(value, (int, np.integer)) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if (
        items is None
        or len(items) != rank
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items)
    ):
        raise TypeError(
            f"{name} must be an int or a tuple of {rank} ints. Received: {name}={value!r}"
        )
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must be at least {minimum}. Received: {name}={value!r}")
    return tuple(int(v) for v in items)


def normalize_padding(padding: Any) -> str:
    """`padding` in lower case, one of `PADDINGS`; a ValueError listing them otherwise.

    Example:
        >>> from groco_core.toolkit import normalize_padding
        >>> normalize_padding("SAME_EQUIV")
        'same_equiv'
    """
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(
            f"padding must be one of {', '.join(repr(p) for p in PADDINGS)}. "
            f"Received: padding={padding!r}"
        )
    return padding.lower()


def normalize_data_format(data_format: Any) -> str:
    """`data_format` in lower case, the global image data format for None (any case is
    accepted, as in Keras).

    Example:
        >>> from groco_core.toolkit import normalize_data_format
        >>> normalize_data_format("Channels_Last")
        'channels_last'
    """
    if data_format is None:
        return keras.config.image_data_format()
    if not isinstance(data_format, str) or data_format.lower() not in (
        "channels_last",
        "channels_first",
    ):
        raise ValueError(
            "data_format must be 'channels_last', 'channels_first' or None. "
            f"Received: data_format={data_format!r}"
        )
    return data_format.lower()


def check_invariant_under_group(group: PointGroup, values: tuple[int, ...], name: str) -> None:
    """Per-axis settings (strides, dilation) must agree on axes the group exchanges (or,
    on a lattice such as the hexagonal one, mixes: any nonzero entry `M[i, j]`); a
    ValueError naming `name` otherwise.

    Example:
        >>> from groco_core import get_group
        >>> from groco_core.toolkit import check_invariant_under_group
        >>> check_invariant_under_group(get_group("P4M"), (2, 2), "strides")
        >>> check_invariant_under_group(get_group("P4M"), (1, 2), "strides")
        Traceback (most recent call last):
        ...
        ValueError: strides must be equal on the axes that group P4M exchanges, ...
    """
    values_array = np.asarray(values)
    for matrix in group.matrices:
        rows, cols = np.nonzero(matrix)
        if not np.array_equal(values_array[rows], values_array[cols]):
            raise ValueError(
                f"{name} must be equal on the axes that group {group.name} exchanges, or the "
                f"layer cannot be equivariant. Received: {name}={values}"
            )


def check_window_in_support(
    layer_name: str, group: PointGroup, window: tuple[int, ...], name: str
) -> None:
    """Refuses a pooling window larger than one point on a lattice that uses only part of a
    square window (its `kernel_support_mask`): the block would not be mapped onto itself.

    Example:
        >>> from groco_core import get_group
        >>> from groco_core.toolkit import check_window_in_support
        >>> check_window_in_support("MyPooling", get_group("P4M"), (2, 2), "pool_size")
    """
    if max(window) == 1:
        return
    try:
        mask = group.kernel_support_mask(window)
    except ValueError:
        mask = np.zeros(window, dtype=bool)
    if mask is not None and not np.all(mask):
        raise ValueError(
            f"{layer_name}: group {group.name} ({group.lattice} lattice) uses only part of a "
            f"square window (its kernel_support_mask), so pooling {name}={window} blocks would "
            f"break equivariance. Received: {name}={window}. Use {name}=1 (pooling onto a "
            "subgroup only) and a strided group convolution to downsample, or pass "
            "allow_non_equivariance=True."
        )


def check_group_axis(
    layer_name: str, group: PointGroup, input_shape: tuple, group_axis: int
) -> None:
    """Refuses an input that is not a signal on `group`: one with a number of spatial axes
    other than 0 or the group's dimension (an image that was not lifted, or a signal whose
    axes would be misread), or whose group axis does not have the group's order.

    Example:
        >>> from groco_core import get_group
        >>> from groco_core.toolkit import check_group_axis
        >>> check_group_axis("MyLayer", get_group("P4"), (None, 9, 9, 4, 3), group_axis=-2)
        >>> check_group_axis("MyLayer", get_group("P4"), (None, 9, 9, 8, 3), group_axis=-2)
        Traceback (most recent call last):
        ...
        ValueError: MyLayer(group='P4') expects a signal on P4 with a group axis ...
    """
    rank, dimension = len(input_shape), group.dimension
    if rank - 3 not in (0, dimension):
        takes = (
            f"a signal on {group.name}: (batch, |G|, channels), or (batch, *spatial, |G|, "
            f"channels) with {dimension} spatial axes since {group.name} acts on {dimension} "
            "dimension(s)"
        )
        if rank == dimension + 2:
            raise ValueError(_unlifted_image(layer_name, group, dimension, input_shape, takes))
        looks_like = (
            "a tensor without a group axis"
            if rank < 3
            else f"a tensor with {rank - 3} axes between the batch and the group axes"
        )
        raise ValueError(
            f"{layer_name}(group={group.name!r}) takes {takes}. Received: "
            f"input_shape={tuple(input_shape)}, which looks like {looks_like}. Lift an image "
            f"onto the group first with a lifting {_lifting_layer(group, dimension)}, then "
            f"apply {layer_name}."
        )
    length = input_shape[group_axis]
    if length is not None and length != group.order:
        raise ValueError(
            f"{layer_name}(group={group.name!r}) expects a signal on {group.name} with a group "
            f"axis (axis {group_axis}) of length {group.order}. Received: "
            f"input_shape={tuple(input_shape)}. Pass the group the input lives on as `group`."
        )


def _lifting_layer(group: PointGroup | None, dimension: int) -> str:
    """`GroupConv2D(filters, kernel_size, group='P4M')`: the layer that lifts an image."""
    name = "..." if group is None else repr(group.name)
    if dimension not in (1, 2, 3):
        return "group convolution"
    return f"GroupConv{dimension}D(filters, kernel_size, group={name})"


def _unlifted_image(
    layer_name: str, group: PointGroup | None, dimension: int, input_shape: tuple, takes: str
) -> str:
    """The message for an image given to a layer that `takes` signals on a group only."""
    label = layer_name if group is None else f"{layer_name}(group={group.name!r})"
    return (
        f"{label} takes {takes}. Received: input_shape={tuple(input_shape)}, which looks "
        "like an image (no group axis). Lift an image onto the group first with a lifting "
        f"{_lifting_layer(group, dimension)}, then apply {layer_name}."
    )


# What each built layer takes, `(ranks or None for any, ((axis, length), ...))`: the fast path
# of `check_call_input`, made on the layer's first call after it was built.
_BUILT_INPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_call_input(layer: Any, inputs: Any) -> None:
    """Refuses, before Keras and the backend see it, an input of another kind than `layer`
    takes or was built on, with a message saying what changed and the fix: the backends'
    own errors ("convolution requires lhs and rhs ndim to be equal") say neither, and some
    mismatches would even run, on the wrong values (a gather on a group axis of another
    length, a lifting depthwise convolution given a signal on the group).

    Only what the layer records is compared, on the input's static shape, in Python (no
    ops); once a layer is built, what it takes is kept, so that a call costs a lookup and a
    few comparisons (0.5–2 µs, by backend):

    - A layer that records `lifting` when built (the convolutions, which take an image or
      a signal on the group, and record `in_channels` too) keeps its input's kind, its
      number of channels and, on the group, the length of the group axis.
    - A layer of signals on its group only: one whose Keras `input_spec` asks for `rank + 3`
      axes (pooling, a built `GroupBatchNormalization`) or at least 3 (`GroupReduce`), or
      that records `in_channels` but not `lifting` (`GroupDense`). It is given an image:
      the message says to lift it first, ahead of Keras's generic input-spec message; built,
      on a known group, its group axis is checked (`check_group_axis`), and any recorded
      `in_channels`.

    Any other layer, and an input whose rank is unknown, passes.
    """
    shape = getattr(inputs, "shape", None)
    if shape is None:
        return
    expected = _BUILT_INPUTS.get(layer)
    try:
        if expected is not None and _fits(shape, *expected):
            return
        shape = tuple(shape)
    except ValueError:  # a TensorFlow tensor of unknown rank
        return
    expected = _check_input(layer, shape)
    if expected is not None:
        _BUILT_INPUTS[layer] = expected


def _fits(shape: Any, ranks: tuple[int, ...] | None, fixed: tuple[tuple[int, int], ...]) -> bool:
    if ranks is not None and len(shape) not in ranks:
        return False
    for axis, length in fixed:
        size = shape[axis]
        if size is not None and size != length:
            return False
    return True


def _check_input(layer: Any, shape: tuple) -> tuple | None:
    """`check_call_input` in full: raises, or returns what the layer takes once built."""
    lifting = getattr(layer, "lifting", None)
    if lifting is not None and layer.built and getattr(layer, "rank", None) is not None:
        return _check_built_kind(layer, shape, lifting)
    in_channels = getattr(layer, "in_channels", None)
    spec = getattr(layer, "input_spec", None)
    group = getattr(layer, "input_group", None) or getattr(layer, "group", None)
    if not isinstance(group, PointGroup):
        group = None
    dimension = getattr(layer, "rank", None)
    if dimension is None and group is not None:
        dimension = group.dimension
    needs_space = dimension is not None and getattr(spec, "ndim", None) == dimension + 3
    if not (needs_space or in_channels is not None or getattr(spec, "min_ndim", None) == 3):
        return (None, ()) if layer.built else None  # not a layer of signals on its group only
    layer_name = type(layer).__name__
    channel_axis = _channel_axis(layer, len(shape))
    if needs_space and len(shape) == dimension + 2:  # before Keras's "expected ndim=5"
        axes = "(batch, *spatial, |G|, channels)"
        if channel_axis == 1:
            axes = "(batch, channels, *spatial, |G|)"
        on = "a group" if group is None else group.name
        takes = f"a signal on {on}: {axes} with {dimension} spatial axes"
        raise ValueError(_unlifted_image(layer_name, group, dimension, shape, takes))
    if not layer.built:
        return None
    ranks = (dimension + 3,) if needs_space else None
    fixed = []
    if group is not None:
        group_axis = -1 if channel_axis == 1 else -2
        check_group_axis(layer_name, group, shape, group_axis)
        ranks = ranks or (3, group.dimension + 3)
        fixed.append((group_axis, group.order))
    if in_channels is not None:
        if shape[channel_axis] not in (None, in_channels):
            raise ValueError(_changed_channels(layer, shape, channel_axis))
        fixed.append((channel_axis, in_channels))
    return ranks, tuple(fixed)


def _channel_axis(layer: Any, rank: int) -> int:
    """-1 or 1: from the layer's `data_format`, else its `axis` (Keras's normalization
    layers), else the last."""
    data_format = getattr(layer, "data_format", None)
    if data_format is not None:
        return 1 if data_format == "channels_first" else -1
    axis = getattr(layer, "axis", None)
    return 1 if isinstance(axis, int) and rank > 2 and axis % rank == 1 else -1


def _check_built_kind(layer: Any, shape: tuple, lifting: bool) -> tuple:
    """For a built layer that records `lifting`: the same kind of input, number of channels
    and group axis as it was built on. Returns them as `check_call_input` keeps them."""
    rank = layer.rank
    expected = rank + 2 if lifting else rank + 3
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    if len(shape) != expected:
        raise ValueError(_changed_kind(layer, shape, lifting, channels_first))
    channel_axis = 1 if channels_first else -1
    if shape[channel_axis] not in (None, layer.in_channels):
        raise ValueError(_changed_channels(layer, shape, channel_axis))
    fixed = ((channel_axis, layer.in_channels),)
    if not lifting:
        group = getattr(layer, "input_group", None) or layer.group
        group_axis = -1 if channels_first else -2
        if shape[group_axis] not in (None, group.order):
            raise ValueError(_changed_group_axis(layer, shape, group, group_axis))
        fixed += ((group_axis, group.order),)
    return (expected,), fixed


def _kind(rank: int, lifting: bool, channels_first: bool, group: str = "a group") -> str:
    """`an image (batch, *spatial, channels) of rank 4`, `a signal on P4M (...) of rank 5`."""
    if lifting:
        axes = "(batch, channels, *spatial)" if channels_first else "(batch, *spatial, channels)"
        return f"an image {axes} of rank {rank + 2}"
    axes = (
        "(batch, channels, *spatial, |G|)" if channels_first else "(batch, *spatial, |G|, channels)"
    )
    return f"a signal on {group} {axes} of rank {rank + 3}"


def _changed_kind(layer: Any, shape: tuple, lifting: bool, channels_first: bool) -> str:
    layer_class, rank = type(layer).__name__, layer.rank
    group = getattr(layer, "input_group", None) or layer.group
    built_on = _kind(rank, lifting, channels_first, group.name)
    if lifting:
        output_group = getattr(layer, "output_group", None) or layer.group
        built_on += f", lifting it onto {output_group.name}"
    if len(shape) in (rank + 2, rank + 3):
        called_on = _kind(rank, len(shape) == rank + 2, channels_first)
        plural = "images" if len(shape) == rank + 2 else "signals on a group"
        fix = f"use a new {layer_class} for {plural}"
    else:
        called_on = (
            f"an input of rank {len(shape)}, neither an image (rank {rank + 2}) nor a signal "
            f"on a group (rank {rank + 3})"
        )
        fix = f"pass it {_kind(rank, lifting, channels_first, group.name)}"
    return (
        f"{layer_class} {layer.name!r} was built on {built_on}; it was called on {called_on}. "
        f"Received: input_shape={shape}. A layer keeps the input kind it was built with: "
        f"{fix}."
    )


def _changed_channels(layer: Any, shape: tuple, channel_axis: int) -> str:
    layer_class = type(layer).__name__
    return (
        f"{layer_class} {layer.name!r} was built on an input with {layer.in_channels} "
        f"channel(s) (axis {channel_axis}); it was called on one with {shape[channel_axis]}. "
        f"Received: input_shape={shape}. A layer keeps the number of input channels it was "
        f"built with (its kernel is made for them): use a new {layer_class} for "
        f"{shape[channel_axis]} channels."
    )


def _changed_group_axis(layer: Any, shape: tuple, group: PointGroup, group_axis: int) -> str:
    layer_class = type(layer).__name__
    argument = "group" if group is layer.group else "subgroup"
    return (
        f"{layer_class} {layer.name!r} was built on a signal on {group.name}, whose group axis "
        f"(axis {group_axis}) has length {group.order}; it was called on one whose group axis "
        f"has length {shape[group_axis]}. Received: input_shape={shape}. A layer keeps the "
        f"group it was built on: pass a signal on {group.name}, or use a new {layer_class} "
        f"whose `{argument}` is the group the input lives on."
    )


_EXAMPLE_GROUP = {1: "LM", 2: "P4M", 3: "Oh"}


def resolve_groups(
    layer_name: str, group: Any, subgroup: Any, rank: int
) -> tuple[PointGroup, PointGroup, tuple[int, ...]]:
    """The layer's group (a name or a `PointGroup`, acting on `rank` dimensions), the
    subgroup its output lives on (default: the group) and the subgroup's indices in the group.

    Raises:
        ValueError: for a missing group, an unknown name, a group of another dimension or a
            subgroup that is not one, naming the argument, the value and the groups there are.

    Example:
        >>> from groco_core.toolkit import resolve_groups
        >>> group, subgroup, indices = resolve_groups("MyLayer", "P4M", "P4", rank=2)
        >>> group.name, subgroup.name, len(indices)
        ('P4M', 'P4', 4)
    """
    if group is None:
        raise ValueError(
            f"{layer_name} needs a `group`: the name of a registered point group acting on "
            f"{rank} dimension(s), e.g. {layer_name}(..., group={_EXAMPLE_GROUP[rank]!r}). "
            f"Received: group=None. See `groco list-groups --dimension {rank}`."
        )
    if isinstance(group, str) and not group:
        raise ValueError(f"group must be a non-empty group name. Received: group={group!r}")
    group = get_group(group)
    if group.dimension != rank:
        raise ValueError(
            f"{layer_name} needs a group acting on {rank} dimension(s); group {group.name} acts "
            f"on {group.dimension}. Received: group={group.name!r}. Groups of dimension {rank}: "
            f"see `groco list-groups --dimension {rank}`."
        )
    subgroup = group if subgroup is None else get_group(subgroup, subgroup_of=group)
    return group, subgroup, group.subgroup_indices(subgroup)
