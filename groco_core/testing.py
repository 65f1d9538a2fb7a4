"""The testing kit: equivariance checks for layers and any tensor function.

Example:
    >>> import numpy as np
    >>> from groco_core import GroupConv2D
    >>> from groco_core.testing import check_equivariance
    >>> layer = GroupConv2D(4, 3, group="P4M")
    >>> x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype("float32")
    >>> check_equivariance(layer, x) < 1e-4
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from groco_core.groups import PointGroup
from groco_core.registry import get_group


def _layout(rank: int, spatial_dims: int, channels_last: bool, on_group: bool):
    """(spatial axes, group axis) of a tensor of this rank."""
    if channels_last:
        spatial = tuple(range(1, 1 + spatial_dims))
        group_axis = rank - 2 if on_group else None
    else:
        spatial = tuple(range(2, 2 + spatial_dims))
        group_axis = rank - 1 if on_group else None
    return spatial, group_axis


def check_equivariance(
    layer: Callable[[Any], Any],
    x: Any,
    group: str | PointGroup | None = None,
    acting_subgroup: str | PointGroup | None = None,
    input_group: str | PointGroup | None = None,
    output_group: str | PointGroup | None = None,
    spatial_dims: int | None = None,
    data_format: str | None = None,
    elements: Sequence[int] | None = None,
) -> float:
    """Max |L(g·x) − g·L(x)| over the elements g of the acting group.

    The input is a signal on the grid when its rank is `spatial_dims + 2`, else a signal on
    `input_group`; the output likewise (on `output_group`, or no group axis at all for an
    invariant output `(batch, channels)`).

    Args:
        layer: a group layer or any callable on tensors.
        x: input batch.
        group: the layer's group (default: `layer.group`).
        acting_subgroup: the group whose action is tested (default: the group the output
            lives on); it must be a subgroup of the groups both sides live on.
        input_group, output_group: groups the input / output signals live on (default:
            the layer's `input_group` / `output_group` (else `subgroup`), else `group`).
        spatial_dims: number of spatial axes (default: the acting group's dimension).
        data_format: "channels_last" or "channels_first" (default: `layer.data_format`, else
            "channels_last").
        elements: indices (into the acting group) to test; default all.

    Returns:
        The largest absolute deviation, as a Python float.
    """
    from keras import ops

    group = get_group(group if group is not None else layer.group)
    if input_group is None:
        input_group = getattr(layer, "input_group", None) or group
    input_group = get_group(input_group)
    if output_group is None:
        output_group = (
            getattr(layer, "output_group", None) or getattr(layer, "subgroup", None) or group
        )
    output_group = get_group(output_group)
    acting = get_group(acting_subgroup) if acting_subgroup is not None else output_group
    spatial_dims = spatial_dims or acting.dimension
    data_format = data_format or getattr(layer, "data_format", None) or "channels_last"
    channels_last = data_format == "channels_last"

    x = ops.convert_to_tensor(ops.convert_to_numpy(x).astype("float32"))
    y = layer(x)
    in_rank, out_rank = len(x.shape), len(y.shape)
    in_spatial, in_group_axis = _layout(
        in_rank, spatial_dims, channels_last, in_rank == spatial_dims + 3
    )
    invariant_output = out_rank == 2
    out_spatial, out_group_axis = _layout(
        out_rank, spatial_dims, channels_last, out_rank == spatial_dims + 3
    )
    worst = 0.0
    for element in range(acting.order) if elements is None else elements:
        matrix = acting.matrices[element]
        g_in = _element_in(input_group, matrix)
        transformed_x = input_group.transform(x, g_in, in_spatial, in_group_axis)
        left = ops.convert_to_numpy(layer(transformed_x))
        if invariant_output:
            right = ops.convert_to_numpy(y)
        else:
            g_out = _element_in(output_group, matrix)
            right = ops.convert_to_numpy(
                output_group.transform(y, g_out, out_spatial, out_group_axis)
            )
        if left.shape != right.shape:
            raise ValueError(
                f"L(g·x) has shape {left.shape} but g·L(x) has shape {right.shape} for element "
                f"{element} of {acting.name}: the layer changes the grid differently for a "
                "transformed input."
            )
        worst = max(worst, float(np.max(np.abs(left - right))) if left.size else 0.0)
    return worst


def _element_in(group: PointGroup, matrix: np.ndarray) -> int:
    index = group.index_of(matrix) if hasattr(group, "index_of") else None
    if index is None:
        raise ValueError(
            f"The acting element {matrix.tolist()} is not in group {group.name}: the acting "
            "group must be a subgroup of the groups the input and output live on."
        )
    return index
