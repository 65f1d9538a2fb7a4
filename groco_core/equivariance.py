"""Equivariance measured: `check_equivariance` and the inputs and cases it runs on.

The shared base of the testing kit (`groco_core.testing`, which re-exports every name here)
and of the conformance kit behind `groco check` (`groco_core.check`): both import this
module, neither imports the other's.

Example:
    >>> import numpy as np
    >>> from groco_core import GroupConv2D
    >>> from groco_core.equivariance import check_equivariance
    >>> layer = GroupConv2D(4, 3, group="P4M")
    >>> x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype("float32")
    >>> check_equivariance(layer, x) < 1e-4
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from groco_core.groups import PointGroup
from groco_core.registry import get_group

__all__ = ["EquivarianceCase", "check_equivariance", "random_input", "support_weights"]


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
        difference = np.abs(left - right)
        if not invariant_output:
            # A lattice in part of the array (hexagonal): compare where every element is
            # defined, i.e. inside the support mask of the output's grid.
            difference = difference * support_weights(output_group, right.shape, out_spatial)
        worst = max(worst, float(np.max(difference)) if difference.size else 0.0)
    return worst


def support_weights(
    group: PointGroup, shape: Sequence[int], spatial_axes: Sequence[int]
) -> np.ndarray:
    """1.0 inside `group.kernel_support_mask` of the grid of a tensor of this shape, 0.0
    outside, shaped to broadcast against the tensor (all ones when the group has no mask)."""
    spatial = tuple(int(shape[a]) for a in spatial_axes)
    mask = group.kernel_support_mask(spatial)
    broadcast = [1] * len(shape)
    if mask is None:
        return np.ones(broadcast, dtype="float32")
    for axis, size in zip(spatial_axes, spatial, strict=True):
        broadcast[axis] = size
    return np.asarray(mask, dtype="float32").reshape(broadcast)


def random_input(
    shape: Sequence[int],
    group: str | PointGroup,
    rng: np.random.Generator | None = None,
    data_format: str = "channels_last",
) -> np.ndarray:
    """A random float32 input of `shape`, zero outside the group's support mask (if any).

    The input is a signal on the grid or on a group; its spatial axes are the
    `group.dimension` axes after the batch axis (`channels_first`: after the channel axis).
    On a lattice stored in part of the array (hexagonal) an input must be supported inside
    that part for `check_equivariance` to be exact.
    """
    group = get_group(group)
    rng = rng or np.random.default_rng(0)
    x = rng.normal(size=tuple(shape)).astype("float32")
    start = 1 if data_format == "channels_last" else 2
    spatial_axes = tuple(range(start, start + group.dimension))
    return x * support_weights(group, x.shape, spatial_axes)


@dataclasses.dataclass
class EquivarianceCase:
    """One layer configuration for the conformance kit (`groco check`) to test.

    A layer class provided by a plugin is checked by `groco check` when it has a classmethod
    `equivariance_cases(group) -> list[EquivarianceCase]` (empty when the class does not
    apply to the group).

    Attributes:
        label: the row's text, e.g. "depthwise lifting".
        layer: an unbuilt layer (or any callable on tensors).
        input_shape: the full input shape, batch first (channels_last); rank
            `dimension + 2` is an image, `dimension + 3` a signal on a group.
        input_group, output_group, acting_subgroup: as in `check_equivariance` (defaults
            from the layer's attributes).
        tolerance: the largest error that passes.
    """

    label: str
    layer: Any
    input_shape: tuple[int, ...]
    input_group: str | PointGroup | None = None
    output_group: str | PointGroup | None = None
    acting_subgroup: str | PointGroup | None = None
    tolerance: float = 1e-4

    def max_error(
        self,
        group: str | PointGroup,
        rng: np.random.Generator | None = None,
        elements: Sequence[int] | None = None,
    ) -> float:
        """Runs `check_equivariance` on a random input supported on the group's lattice."""
        group = get_group(group)
        input_group = self.input_group or getattr(self.layer, "input_group", None) or group
        x = random_input(self.input_shape, input_group, rng)
        return check_equivariance(
            self.layer,
            x,
            group=group,
            acting_subgroup=self.acting_subgroup,
            input_group=self.input_group,
            output_group=self.output_group,
            elements=elements,
        )


def _element_in(group: PointGroup, matrix: np.ndarray) -> int:
    index = group.index_of(matrix) if hasattr(group, "index_of") else None
    if index is None:
        raise ValueError(
            f"The acting element {matrix.tolist()} is not in group {group.name}: the acting "
            "group must be a subgroup of the groups the input and output live on."
        )
    return index
