"""Argument normalisation and the equivariant padding rule, shared by every group layer."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

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


def equivariant_padding(
    size: int | None,
    extent: int,
    stride: int,
    padding: str,
    allow_non_equivariance: bool,
    layer_name: str,
    window: str = "kernel",
) -> tuple[int, int]:
    """(before, after) padding of one spatial axis.

    `valid_equiv` / `same_equiv` start from Keras's `valid` / `same` padding and add the
    minimum, equal on both sides, that centres the output grid on the input grid. `valid` /
    `same` are Keras's own, accepted when they are centred.

    Raises:
        ValueError: when the padding (or any padding, for the `_equiv` options) breaks
            equivariance, unless `allow_non_equivariance` is set.
    """
    if size is None:
        if stride > 1:
            raise ValueError(
                f"{layer_name}: strides > 1 need a known spatial input size to choose the "
                "padding. Received an input with spatial size None; give the Input a shape."
            )
        size = extent  # with stride 1 the padding does not depend on the size
    base = "same" if padding.startswith("same") else "valid"
    before, after = keras_padding(size, extent, stride, base)
    if not padding.endswith("_equiv"):
        if is_centred(size, extent, stride, before, after) or allow_non_equivariance:
            return before, after
        raise ValueError(
            f"{layer_name}: padding={padding!r} breaks equivariance for input size {size}, "
            f"{window} extent {extent} and stride {stride}: the output grid is not centred on "
            f"the input grid. Use padding='{padding}_equiv', which pads the minimum extra, or "
            "pass allow_non_equivariance=True."
        )
    start = max(before, after)
    for pad in range(start, start + stride):
        if is_centred(size, extent, stride, pad, pad):
            return pad, pad
    if allow_non_equivariance:
        return before, after
    raise ValueError(
        f"{layer_name}: no padding makes this layer equivariant for input size {size}, "
        f"{window} extent {extent} and stride {stride}: with an even stride, the input size and "
        f"the {window} extent must have the same parity. Change the input size by one (crop or "
        f"pad the input), use a {window}_size of the input's parity, or an odd stride; or pass "
        "allow_non_equivariance=True."
    )


def check_group_axis(
    layer_name: str, group: PointGroup, input_shape: tuple, group_axis: int
) -> None:
    """Refuses an input whose group axis does not have the group's order."""
    length = input_shape[group_axis]
    if length is not None and length != group.order:
        raise ValueError(
            f"{layer_name}(group={group.name!r}) expects a signal on {group.name} with a group "
            f"axis (axis {group_axis}) of length {group.order}. Received: "
            f"input_shape={tuple(input_shape)}. Pass the group the input lives on as `group`."
        )


def resolve_subgroup(group: Any, subgroup: Any) -> tuple[PointGroup, PointGroup, int]:
    """The group, the subgroup (default: the group) and the number of cosets."""
    group = get_group(group)
    subgroup = group if subgroup is None else get_group(subgroup)
    group.subgroup_indices(subgroup)  # ValueError listing the subgroups when it is not one
    return group, subgroup, group.order // subgroup.order
