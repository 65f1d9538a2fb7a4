"""Argument normalisation, the equivariant padding rule and the checks of an input's kind
(image or signal on a group), shared by every group layer."""

from __future__ import annotations

import math
import weakref
from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.groups import PointGroup
from groco_core.registry import get_group

PADDINGS = ("valid_equiv", "same_equiv", "valid", "same")


def normalize_tuple(value: Any, rank: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of `rank` ints, each ≥ `minimum`, as a tuple."""
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
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(
            f"padding must be one of {', '.join(repr(p) for p in PADDINGS)}. "
            f"Received: padding={padding!r}"
        )
    return padding.lower()


def normalize_data_format(data_format: Any) -> str:
    """`data_format` in lower case, the global image data format for None (any case is
    accepted, as in Keras)."""
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
    on a lattice such as the hexagonal one, mixes: any nonzero entry `M[i, j]`)."""
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
    square window (its `kernel_support_mask`): the block would not be mapped onto itself."""
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


def check_centre_point(
    layer_name: str,
    group: PointGroup,
    spatial: tuple,
    paddings: tuple,
    extents: tuple[int, ...],
    strides: tuple[int, ...],
) -> None:
    """Refuses an output grid of even size where `group` needs a centre point.

    A centred grid of even size has its centre between points; the flips and axis swaps of
    a signed permutation map such a grid onto itself, other matrices do not (the hexagonal
    lattice's 60° turn, in axial coordinates, moves the offset `(½, ½)` to `(−½, 1)`). On
    such a group the output grid must contain the input's centre point: an odd size on every
    axis. Sizes not known yet (None) are not checked.
    """
    matrices = np.abs(np.asarray(group.matrices))
    if np.all(matrices.sum(axis=-2) == 1) and np.all(matrices <= 1):
        return
    for n, padding, extent, stride in zip(spatial, paddings, extents, strides, strict=True):
        if n is None or padding is None:
            continue
        out = (n + sum(padding) - extent) // stride + 1
        if out >= 1 and out % 2 == 0:
            raise ValueError(
                f"{layer_name}: group {group.name} ({group.lattice} lattice) maps an output "
                f"grid onto itself only when it has a centre point, but input size {n} gives "
                f"output size {out}, which is even. Received: input size {n}, kernel extent "
                f"{extent}, strides={stride}, padding {padding}. Use an input size whose "
                "output size is odd, or pass allow_non_equivariance=True."
            )


def keras_padding(size: int, extent: int, stride: int, padding: str) -> tuple[int, int]:
    """The (before, after) padding Keras uses for "valid" or "same"."""
    if padding == "valid":
        return 0, 0
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def is_centred(size: int, extent: int, stride: int, before: int, after: int) -> bool:
    """Whether the output grid is centred on the input grid (so flips map it to itself).

    Kernel centres sit at input coordinate `-before + (extent - 1)/2 - (size - 1)/2 + j·stride`;
    the first and last of them are symmetric exactly when
    `after - before == (size + before + after - extent) mod stride`.
    """
    span = size + before + after - extent
    return span >= 0 and after - before == span % stride


_PARITY = ("even", "odd")


def _centred_padding(size: int, extent: int, stride: int, padding: str) -> tuple[int, int] | None:
    """The padding of `equivariant_padding` when it exists, else None."""
    base = "same" if padding.startswith("same") else "valid"
    before, after = keras_padding(size, extent, stride, base)
    if not padding.endswith("_equiv"):
        return (before, after) if is_centred(size, extent, stride, before, after) else None
    start = max(before, after)
    for pad in range(start, start + stride):
        if is_centred(size, extent, stride, pad, pad):
            return pad, pad
    return None


def _working_alternatives(
    size: int, window_size: int, dilation: int, stride: int, padding: str, window: str, rank: int
) -> list[str]:
    """Concrete changes that make `_centred_padding` exist, for the parity message."""
    extent = dilation * (window_size - 1) + 1
    same = padding.startswith("same")

    def works(n: int, e: int) -> bool:
        return n >= 1 and (same or n >= e) and _centred_padding(n, e, stride, padding) is not None

    sizes = [n for n in (size - 2, size - 1, size + 1, size + 2) if works(n, extent)]
    windows = [
        k
        for k in (window_size - 2, window_size - 1, window_size + 1, window_size + 2)
        if k >= (1 if window == "kernel" else 2) and works(size, dilation * (k - 1) + 1)
    ]
    sizes, windows = sorted(sizes, key=lambda n: (abs(n - size), n))[:2], windows[:2]
    sizes.sort()
    windows = sorted(sorted(windows, key=lambda k: (abs(k - window_size), k))[:2])
    options = []
    if sizes:
        options.append(f"an input of size {' or '.join(map(str, sizes))}")
    if windows:
        options.append(f"{window}_size {' or '.join(map(str, windows))}")
    if window == "kernel":
        # Stride 1 keeps every size; a pooling window of the right parity then downsamples.
        reduced = size if same else size - extent + 1
        pools = [p for p in range(2, 2 + stride) if _centred_padding(reduced, p, stride, "valid")]
        if reduced >= 1 and pools:
            options.append(
                f"strides=1 followed by GroupMaxPooling{rank}D(pool_size={pools[0]}, "
                f"strides={stride}) (the stride-1 output has size {reduced})"
            )
    return options


def equivariant_padding(
    size: int | None,
    extent: int,
    stride: int,
    padding: str,
    allow_non_equivariance: bool,
    layer_name: str,
    window: str = "kernel",
    window_size: int | None = None,
    dilation: int = 1,
    rank: int = 2,
) -> tuple[int, int] | None:
    """(before, after) padding of one spatial axis; None when the size is unknown and the
    padding depends on it (a stride > 1): it is then decided at call time, from the size the
    input has there.

    `valid_equiv` / `same_equiv` start from Keras's `valid` / `same` padding and add the
    minimum, equal on both sides, that centres the output grid on the input grid. `valid` /
    `same` are Keras's own, accepted when they are centred.

    Args:
        size, extent, stride: the input size, the (dilated) window extent and the stride.
        padding, allow_non_equivariance: the layer's arguments.
        layer_name, window, window_size, dilation, rank: for the messages (`window` is
            `"kernel"` or `"pool"`; `window_size` defaults to `extent`).

    Raises:
        ValueError: when the output would be empty, or the padding (any padding, for the
            `_equiv` options) breaks equivariance, unless `allow_non_equivariance` is set;
            the message names sizes that work.
    """
    if size is None:
        if stride > 1:
            return None
        size = extent  # with stride 1 the padding does not depend on the size
    window_size = extent if window_size is None else window_size
    if padding.startswith("valid") and size < extent:
        raise ValueError(
            f"{layer_name}: the {window} extent {extent} is larger than the input size {size}, "
            f"so the output would be empty. Received: input size {size}, "
            f"{window}_size={window_size}. Use a larger input, a smaller {window}_size, or "
            "padding='same_equiv'."
        )
    result = _centred_padding(size, extent, stride, padding)
    if result is not None:
        return result
    base = "same" if padding.startswith("same") else "valid"
    if allow_non_equivariance:
        return keras_padding(size, extent, stride, base)
    if not padding.endswith("_equiv"):
        raise ValueError(
            f"{layer_name}: padding={padding!r} breaks equivariance for input size {size}, "
            f"{window} extent {extent} and stride {stride}: the output grid is not centred on "
            f"the input grid. Received: padding={padding!r}, input size {size}, "
            f"{window}_size={window_size}, strides={stride}. Use padding='{padding}_equiv', "
            "which pads the minimum extra, or pass allow_non_equivariance=True."
        )
    rule = (
        f"with an even stride, the input size and the {window} extent must have the same "
        f"parity, and {size} is {_PARITY[size % 2]} while the extent {extent} is "
        f"{_PARITY[extent % 2]}"
        if stride % 2 == 0
        else "the output grid cannot be centred on the input grid"
    )
    options = _working_alternatives(size, window_size, dilation, stride, padding, window, rank)
    fixes = "; ".join(options) + "; or " if options else ""
    raise ValueError(
        f"{layer_name}: no padding makes this layer equivariant for input size {size}, "
        f"{window} extent {extent} and stride {stride}: {rule}. Received: input size {size}, "
        f"{window}_size={window_size}, strides={stride}, padding={padding!r}. What works here: "
        f"{fixes}pass allow_non_equivariance=True. See docs/designing.md."
    )


def runtime_padding(
    size: Any,
    extent: int,
    stride: int,
    padding: str,
    allow_non_equivariance: bool,
    layer_name: str,
    window: str = "kernel",
) -> tuple[Any, Any]:
    """`equivariant_padding` for a size that is known only when the computation runs (a
    TensorFlow graph traced with an unknown spatial size): integer tensors `(before, after)`.

    A size that no padding makes equivariant fails at run time with the rule in the message
    (TensorFlow's `InvalidArgumentError`), unless `allow_non_equivariance` is set.
    """
    n = ops.cast(size, "int32")
    if padding.startswith("same"):
        total = ops.maximum((ops.floor_divide(n + stride - 1, stride) - 1) * stride + extent - n, 0)
    else:
        total = ops.zeros((), "int32")
    before = ops.floor_divide(total, 2)
    after = total - before
    if padding.endswith("_equiv"):
        found = ops.full((), -1, "int32")
        start = ops.maximum(before, after)
        for step in reversed(range(stride)):  # the smallest centring padding wins
            span = n + 2 * (start + step) - extent
            centred = ops.logical_and(span >= 0, ops.equal(ops.mod(span, stride), 0))
            found = ops.where(centred, start + step, found)
        ok = found >= 0
        before, after = ops.where(ok, found, before), ops.where(ok, found, after)
    else:
        span = n + before + after - extent
        ok = ops.logical_and(span >= 0, ops.equal(after - before, ops.mod(span, stride)))
    if allow_non_equivariance:
        return before, after
    rule = (
        f"with stride {stride} the size must have the parity of the {window} extent {extent}"
        if stride == 2
        else f"the output grid cannot be centred for this size at stride {stride}"
    )
    message = (
        f"{layer_name}: no padding={padding!r} makes this layer equivariant for the input's "
        f"spatial size: {rule}. Crop or pad the input, or pass allow_non_equivariance=True. "
        "Input size:"
    )
    return _checked(ok, message, n, before), after


def runtime_paddings(
    x: Any,
    paddings: tuple,
    extents: tuple[int, ...],
    strides: tuple[int, ...],
    padding: str,
    allow_non_equivariance: bool,
    layer_name: str,
    window: str = "kernel",
) -> list:
    """`paddings` of a channels-last `x`, the axes left undecided (None: an unknown size at
    stride > 1, only in a TensorFlow graph) computed by `runtime_padding` from the size `x`
    has when the computation runs."""
    shape = ops.shape(x)
    return [
        runtime_padding(shape[1 + axis], e, s, padding, allow_non_equivariance, layer_name, window)
        if pad is None
        else pad
        for axis, (pad, e, s) in enumerate(zip(paddings, extents, strides, strict=True))
    ]


def _checked(ok: Any, message: str, size: Any, value: Any) -> Any:
    """`value`, once `ok` holds: a run-time assertion in a TensorFlow graph, a ValueError
    where `ok` is concrete."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.control_dependencies([tf.debugging.Assert(ok, [message, size])]):
            return tf.identity(value)
    if not bool(ops.convert_to_numpy(ok)):
        raise ValueError(f"{message} {int(ops.convert_to_numpy(size))}")
    return value


def check_group_axis(
    layer_name: str, group: PointGroup, input_shape: tuple, group_axis: int
) -> None:
    """Refuses an input that is not a signal on `group`: one with a number of spatial axes
    other than 0 or the group's dimension (an image that was not lifted, or a signal whose
    axes would be misread), or whose group axis does not have the group's order."""
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


def resolve_subgroup(group: Any, subgroup: Any) -> tuple[PointGroup, PointGroup, int]:
    """The group, the subgroup (default: the group) and the number of cosets."""
    group = get_group(group)
    subgroup = group if subgroup is None else get_group(subgroup, subgroup_of=group)
    group.subgroup_indices(subgroup)  # ValueError listing the subgroups when it is not one
    return group, subgroup, group.order // subgroup.order
