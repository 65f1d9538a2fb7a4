"""The image support of a masked lattice, applied to tensors.

A lattice stored in part of its array (the hexagonal one, in axial coordinates: the largest
hexagon of an odd square array) is mapped onto itself by its group only inside that part,
`group.image_support_mask(spatial)`. A layer that wrote anything else there (a bias, a
border effect, a batch norm's offset) would hand the next layer values that a turn of the
lattice does not move with the image, and stacks would stop being equivariant. So every
layer on such a lattice reads its input as zero off the support and writes zeros there;
reductions over space (global pooling, batch norm statistics) use the support's points only.

On square and cubic lattices the mask is None and every function here returns its input
unchanged: no mask is made and no operation is added to the layer's graph.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

from groco_core.groups import PointGroup


@functools.lru_cache(maxsize=512)
def _cached_mask(kind: type, group: PointGroup, spatial: tuple[int, ...]) -> np.ndarray | None:
    """The mask, keyed on the group's class too: a subclass that changes the mask but keeps
    the name and matrices compares equal to its base."""
    mask = group.image_support_mask(spatial)
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != spatial:
        raise ValueError(
            f"Group {group.name}: image_support_mask({spatial}) returned shape {mask.shape}; "
            "it must return a boolean array of the shape it is given, or None."
        )
    if mask.all():
        return None
    mask.setflags(write=False)
    return mask


def image_support(group: PointGroup | None, spatial: Sequence[int | None]) -> np.ndarray | None:
    """The group's image support for arrays of spatial shape `spatial`, or None when every
    point is used (square and cubic lattices, or no group), so that callers add nothing.

    Computed once per group and shape. The shape must be known where the group has a mask:
    the mask is a constant of the layer's graph.

    Args:
        group: the group the tensor lives on (its lattice decides the mask), or None.
        spatial: the array's spatial shape.

    Raises:
        ValueError: on a masked lattice, for a shape with an unknown (None) size, or a shape
            the group refuses (the hexagonal lattice needs odd squares).

    Example:
        >>> from groco_core import get_group
        >>> from groco_core.toolkit import image_support
        >>> image_support(get_group("P4M"), (8, 8)) is None
        True
    """
    if group is None:
        return None
    if any(n is None for n in spatial):
        probe = tuple(3 for _ in spatial)
        if _cached_mask(type(group), group, probe) is None:
            return None
        raise ValueError(
            f"Group {group.name} ({group.lattice} lattice) uses only part of an array (its "
            "image_support_mask), so a layer on it needs the spatial sizes when it is built "
            f"or traced. Received: spatial shape {tuple(spatial)}. Give the model's Input a "
            "known spatial shape."
        )
    return _cached_mask(type(group), group, tuple(int(n) for n in spatial))


def _axes_and_mask(
    x: Any, group: PointGroup | None, spatial_axes: Sequence[int] | None
) -> tuple[tuple[int, ...], np.ndarray | None]:
    """`x`'s spatial axes (default: the `group.dimension` axes after the batch axis) and the
    group's image support for their sizes (None where nothing is masked)."""
    if group is None:
        return (), None
    rank = len(x.shape)
    axes = (
        tuple(range(1, 1 + group.dimension))
        if spatial_axes is None
        else tuple(a % rank for a in spatial_axes)
    )
    return axes, image_support(group, tuple(x.shape[a] for a in axes))


def mask_to_support(
    x: Any,
    group: PointGroup | None,
    spatial_axes: Sequence[int] | None = None,
    fill: float = 0.0,
) -> Any:
    """`x` with every point off the group's image support set to `fill` (default 0), so
    that a layer on a masked lattice reads and writes only the points the group maps onto
    themselves; `x` itself, with no operation added, where the group has no mask.

    Args:
        x: a tensor whose spatial axes are `spatial_axes` (default: the `group.dimension`
            axes after the batch axis, i.e. channels-last).
        group: the group the tensor lives on, or None (nothing to do).
        spatial_axes: the tensor's spatial axes, in coordinate order.
        fill: the value off the support: 0 for what a layer writes and reads, the lowest
            float for a maximum that must ignore those points.

    Example:
        >>> import numpy as np
        >>> from groco_core import get_group
        >>> from groco_core.toolkit import mask_to_support
        >>> x = np.ones((1, 5, 5, 1), "float32")
        >>> mask_to_support(x, get_group("P4M")) is x
        True
    """
    rank = len(x.shape)
    axes, mask = _axes_and_mask(x, group, spatial_axes)
    if mask is None:
        return x
    shape = [1] * rank
    for axis, size in zip(axes, mask.shape, strict=True):
        shape[axis] = size
    # `where`, not a product: a non-finite value off the support must not leak into it.
    return ops.where(np.reshape(mask, shape), x, ops.cast(fill, x.dtype))


def support_count(group: PointGroup | None, spatial: Sequence[int]) -> int | None:
    """The number of points in the image support of arrays of shape `spatial`, or None
    when every point is used (for averages over the support)."""
    mask = image_support(group, spatial)
    return None if mask is None else int(mask.sum())


def plain_mask_to_support(
    x: Any,
    group: PointGroup | None,
    name: str,
    spatial_axes: Sequence[int] | None = None,
    fill: float = 0.0,
) -> Any:
    """`mask_to_support` for `export_plain`, from stock Keras layers: the spatial points
    moved onto the last axis (`Permute`, `Reshape`), a `Dense` with the fixed diagonal 0/1
    kernel of the mask (and `fill` as the bias off the support, for a maximum that must
    ignore those points), and back. `x` itself, with no layer added, where the group has no
    mask. The kernel has `points²` entries: a masked lattice's images are small.

    Args:
        x: a symbolic tensor (batch first) whose spatial axes are `spatial_axes` (default:
            the `group.dimension` axes after the batch axis).
        group: the group the tensor lives on, or None.
        name: a prefix for the layers' names.
        spatial_axes: the spatial axes, in coordinate order.
        fill: the value off the support; a finite float (the lowest float32 for "-inf").
    """
    import keras

    from groco_core.exporting import fixed_dense

    rank = len(x.shape)
    axes, mask = _axes_and_mask(x, group, spatial_axes)
    if mask is None:
        return x
    others = tuple(a for a in range(1, rank) if a not in axes)
    order = axes + others  # spatial axes first
    moved = keras.layers.Permute(order, name=f"{name}_support_spatial_first")(x)
    points = int(mask.size)
    rest = int(np.prod([x.shape[a] for a in others])) if others else 1
    flat = keras.layers.Reshape((points, rest), name=f"{name}_support_flatten")(moved)
    flat = keras.layers.Permute((2, 1), name=f"{name}_support_points_last")(flat)
    keep = mask.reshape(-1).astype("float32")
    fill = max(float(fill), float(np.finfo("float32").min))
    bias = None if fill == 0.0 else np.where(keep > 0, 0.0, fill).astype("float32")
    flat = fixed_dense(flat, np.diag(keep), f"{name}_support_mask", bias=bias)
    flat = keras.layers.Permute((2, 1), name=f"{name}_support_points_first")(flat)
    shape = tuple(int(x.shape[a]) for a in order)
    moved = keras.layers.Reshape(shape, name=f"{name}_support_unflatten")(flat)
    back = tuple(int(i) + 1 for i in np.argsort(order))
    return keras.layers.Permute(back, name=f"{name}_support_axes_back")(moved)
