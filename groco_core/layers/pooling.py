"""Pooling of signals on a group: spatial pooling and pooling onto a subgroup.

Spatial pooling treats every group element as a channel (one `keras.ops` pooling on the group
axis merged into the channels). With a `subgroup` H the layer also pools over the right
cosets: `out(p, k) = pool_j f(p, h_k·r_j)` (see `groco_core.layers.reduce`), equivariant
under H. Global pooling, over space and the group axis, is in
`groco_core.layers.global_pooling`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core import backend
from groco_core.exporting import (
    channels_to_first,
    channels_to_last,
    fixed_dense,
    pad_spatial,
    selection_kernel,
    static_shape,
    swap_last_axes,
)
from groco_core.groups import PointGroup
from groco_core.layers import arguments
from groco_core.layers.arguments import check_group_axis, keyword_arguments
from groco_core.layers.fast_paths import reduce_max
from groco_core.layers.padding import PaddingRule
from groco_core.layers.reduce import coset_indices
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.layers.support import image_support, mask_to_support, plain_mask_to_support

MODES = ("max", "average")


def check_mode(mode: str) -> str:
    """`mode` if it is one of `MODES`, else a ValueError."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'max' or 'average'. Received: mode={mode!r}")
    return mode


def max_pool_3d_by_planes(x: Any, pool_size: tuple, strides: tuple, padding: str) -> Any:
    """`ops.max_pool(x, pool_size, strides, padding)` on channels-last volumes `x`, computed
    as a 2D max pooling of every depth slice followed by a 2D max pooling along the depth.

    The maximum of a box is the maximum over its depth of the maxima of its slices, and
    Keras's `"same"` pads each axis on its own, so the values are those of one 3D pooling.
    The gradient is what 3D pooling should give: each window's to one of its maximal
    entries, the first in (depth, row, column) order, on every backend and in every mode.
    TensorFlow's CPU 3D max pooling run eagerly gives it to every tied entry of a window
    instead (eight times the gradient for a window of equal values), and in a graph to
    one: training on images with flat regions then differed between eager and compiled.
    """
    shape = ops.shape(x)
    batch, depth, rows, columns, channels = (shape[i] for i in range(5))
    planes = ops.reshape(x, (-1, rows, columns, channels))
    planes = ops.max_pool(planes, pool_size[1:], strides[1:], padding, "channels_last")
    pooled = ops.shape(planes)
    stacked = ops.reshape(planes, (batch, depth, pooled[1] * pooled[2], channels))
    stacked = ops.max_pool(stacked, (pool_size[0], 1), (strides[0], 1), padding, "channels_last")
    return ops.reshape(stacked, (batch, -1, pooled[1], pooled[2], channels))


class BaseGroupPooling(RegisteredGroupsMixin, keras.layers.Layer):
    """Rank-generic group pooling; `GroupMaxPooling1D/2D/3D` and
    `GroupAveragePooling1D/2D/3D` only fix `rank` and `mode`.

    Args:
        rank: number of spatial axes.
        mode: "max" or "average".
        group: the group the input lives on (name or object); its dimension must be `rank`.
        subgroup: a subgroup H of `group`: the output lives on H, each of its elements
            pooling the `[G:H]` elements of its row `h_k·r_j` (right cosets `H·r_j`).
            Default: `group` itself (no pooling over the group).
        pool_size: int or tuple of `rank` ints. Default 2.
        strides: int or tuple; default `pool_size`.
        padding: `"valid_equiv"` (default) or `"same_equiv"`: Keras's `valid` / `same` plus
            the minimum symmetric padding that keeps the output grid centred on the input
            grid; that padding is explicit zeros (as `ZeroPadding2D` would add), which count
            in maxima and averages, the same on every side. `"valid"` / `"same"`: Keras's own
            pooling padding (padded cells ignored), accepted only where equivariant.
        data_format: "channels_last" or "channels_first"; default from
            `keras.config.image_data_format()`.
        allow_non_equivariance: accept pool sizes, strides and paddings that break
            equivariance.

    Input shape:
        `(batch, *spatial, |G|, channels)` (`channels_first`: `(batch, channels, *spatial, |G|)`).

    Output shape:
        `(batch, *pooled_spatial, |H|, channels)` (`channels_first`:
        `(batch, channels, *pooled_spatial, |H|)`).

    Raises:
        ValueError / TypeError: for a bad argument (a subgroup that is not one, pool sizes
            or strides that differ on axes the group exchanges, a non-equivariant padding) or
            an input whose rank or group axis does not fit.
    """

    def __init__(
        self,
        rank: int,
        mode: str,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        pool_size: int | tuple[int, ...] = 2,
        strides: int | tuple[int, ...] | None = None,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.mode = check_mode(mode)
        layer_name = type(self).__name__
        if isinstance(pool_size, str):
            raise TypeError(
                f"pool_size must be an int or a tuple of {rank} ints. Received: "
                f"pool_size={pool_size!r}. The first positional argument is `pool_size`, as in "
                f"keras.layers.MaxPooling{rank}D; pass the group by keyword: group={pool_size!r}."
            )
        self.rank = rank
        self.group, self.subgroup, _ = arguments.resolve_groups(layer_name, group, subgroup, rank)
        self.num_cosets = self.group.order // self.subgroup.order
        self.pool_size = arguments.normalize_tuple(pool_size, rank, "pool_size")
        self.strides = (
            self.pool_size
            if strides is None
            else arguments.normalize_tuple(strides, rank, "strides")
        )
        self._padding_rule = PaddingRule(
            padding,
            self.pool_size,
            self.strides,
            self.subgroup,
            layer_name,
            allow_non_equivariance=allow_non_equivariance,
            window="pool",
        )
        self.padding = self._padding_rule.padding
        self.data_format = arguments.normalize_data_format(data_format)
        self.allow_non_equivariance = bool(allow_non_equivariance)
        # The output lives on H, so only H's exchanged axes must agree.
        if not self.allow_non_equivariance:
            arguments.check_invariant_under_group(self.subgroup, self.pool_size, "pool_size")
            arguments.check_invariant_under_group(self.subgroup, self.strides, "strides")
            arguments.check_window_in_support(
                layer_name, self.subgroup, self.pool_size, "pool_size"
            )
        self._coset_table = coset_indices(self.group, self.subgroup)
        self.input_spec = keras.layers.InputSpec(ndim=rank + 3)

    # -- shapes ---------------------------------------------------------------------------

    def _spatial_shape(self, shape: tuple) -> tuple:
        start = 1 if self.data_format == "channels_last" else 2
        return tuple(shape[start : start + self.rank])

    def _explicit_padding(self, paddings: tuple) -> tuple | None:
        """The zero padding the layer adds itself (the `_equiv` options), from the rule's
        `paddings`, or None; an axis of unknown size at stride > 1 is None inside the tuple
        (decided at run time)."""
        if not self.padding.endswith("_equiv"):
            return None
        if None in paddings:
            return paddings
        return paddings if any(b or a for b, a in paddings) else None

    def build(self, input_shape: tuple) -> None:
        group_axis = -2 if self.data_format == "channels_last" else -1
        check_group_axis(type(self).__name__, self.group, tuple(input_shape), group_axis)
        self._padding_rule.paddings(self._spatial_shape(input_shape))  # refuse bad ones early
        self._gather = self._coset_table.reshape(-1).astype("int32")  # numpy: safe in traces
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        spatial = self._padding_rule.output_spatial(self._spatial_shape(tuple(input_shape)))
        channel_axis = -1 if self.data_format == "channels_last" else 1
        channels = input_shape[channel_axis]
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, self.subgroup.order, channels)
        return (input_shape[0], channels, *spatial, self.subgroup.order)

    # -- computation ----------------------------------------------------------------------

    def _keras_padding(self) -> str:
        return "same" if self.padding == "same" else "valid"

    def call(self, inputs: Any) -> Any:
        # Channels go last (TensorFlow's CPU pooling only supports channels_last) and the
        # group axis is merged into them, so one ordinary pooling does every element.
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(inputs, 1, -1) if channels_first else inputs
        support = image_support(self.group, tuple(x.shape[1 : 1 + self.rank]))
        ignored = support is not None and not self.padding.endswith("_equiv")
        if support is not None:
            # Off a masked lattice's image support values behave like the layer's padding:
            # zeros for the `_equiv` options, ignored for Keras's own (a maximum never takes
            # -inf; an average is divided by the share of the window on the support below).
            fill = float("-inf") if ignored and self.mode == "max" else 0.0
            x = mask_to_support(x, self.group, fill=fill)
        shape = ops.shape(x)
        order, channels = shape[-2], shape[-1]
        x = ops.reshape(x, (shape[0], *shape[1:-2], order * channels))
        paddings = self._padding_rule.paddings(tuple(x.shape[1 : 1 + self.rank]))
        explicit = self._explicit_padding(paddings)
        if explicit is not None:
            if None in explicit:
                explicit = self._padding_rule.resolve(x, explicit)
            x = ops.pad(x, [(0, 0), *explicit, (0, 0)])
        elif None in paddings:
            # Keras's own "valid" / "same": the pooling pads itself and only the symmetry is
            # checked. Adding 0 · the checked padding makes the graph depend on that check.
            checked = self._padding_rule.resolve(x, paddings)
            x = ops.add(x, ops.cast(sum(b for b, _ in checked if b is not None) * 0, x.dtype))
        dtype = x.dtype
        # A backend without a CPU kernel for this dtype's 3D pooling pools in float32, which
        # a maximum leaves exact and an average rounds once.
        if backend.call("pools_in_float32", self.rank, self.mode, dtype) is True:
            x = ops.cast(x, "float32")
        x = ops.cast(self._pool(x), dtype)
        if ignored and self.mode == "average":
            share = self._pool(ops.cast(support[None, ..., None], x.dtype))
            x = ops.where(share > 0, x / ops.where(share > 0, share, 1), 0)
        pooled = ops.shape(x)
        x = ops.reshape(x, (pooled[0], *pooled[1:-1], order, channels))
        if self.num_cosets > 1:
            x = ops.take(x, self._gather, axis=-2)
            x = ops.reshape(
                x, (pooled[0], *pooled[1:-1], self.subgroup.order, self.num_cosets, channels)
            )
            x = reduce_max(x, (-2,)) if self.mode == "max" else ops.mean(x, axis=-2)
        x = mask_to_support(x, self.group)  # zeros off the output's support
        return ops.moveaxis(x, -1, 1) if channels_first else x

    def _pool(self, x: Any) -> Any:
        """The pooling of channels-last `x`: Keras's, or the backend's where Keras's fails
        (`average_pool`), or for 3D maxima `max_pool_3d_by_planes`."""
        padding = self._keras_padding()
        if self.mode == "average":
            pooled = backend.call("average_pool", x, self.pool_size, self.strides, padding)
            if pooled is not NotImplemented:
                return pooled
        elif self.rank == 3:
            return max_pool_3d_by_planes(x, self.pool_size, self.strides, padding)
        pool = ops.max_pool if self.mode == "max" else ops.average_pool
        return pool(x, self.pool_size, self.strides, padding, "channels_last")

    def export_plain(self, inputs: Any) -> Any:
        """The same map from stock Keras layers: Reshape, ZeroPadding, Max/AveragePooling,
        and for a subgroup a 0/1 (or 1/[G:H]) Dense over the group axis."""
        channels_first = self.data_format == "channels_first"
        x = channels_to_last(inputs, f"{self.name}_to_channels_last") if channels_first else inputs
        support = image_support(self.group, tuple(x.shape[1 : 1 + self.rank]))
        if support is not None:
            ignored = not self.padding.endswith("_equiv")
            if ignored and self.mode == "average" and np.prod(self.pool_size) > 1:
                raise ValueError(
                    f"{type(self).__name__} cannot be exported on group {self.group.name} "
                    f"({self.group.lattice} lattice): an average that ignores the points off "
                    "its image support divides by their number per window, which stock layers "
                    f"do not. Received: padding={self.padding!r}, pool_size={self.pool_size}. "
                    "Use padding='valid_equiv' or 'same_equiv'."
                )
            fill = float("-inf") if ignored and self.mode == "max" else 0.0
            x = plain_mask_to_support(x, self.group, f"{self.name}_input", fill=fill)
        shape = static_shape(x, type(self).__name__)
        spatial, order, channels = shape[:-2], shape[-2], shape[-1]
        x = keras.layers.Reshape((*spatial, order * channels), name=f"{self.name}_merge_group")(x)
        explicit = self._explicit_padding(self._padding_rule.paddings(spatial))
        if explicit is not None:
            x = pad_spatial(x, explicit, f"{self.name}_padding")
        kind = "MaxPooling" if self.mode == "max" else "AveragePooling"
        x = getattr(keras.layers, f"{kind}{self.rank}D")(
            pool_size=self.pool_size,
            strides=self.strides,
            padding=self._keras_padding(),
            data_format="channels_last",
            name=f"{self.name}_pool",
        )(x)
        pooled = tuple(x.shape[1:-1])
        x = keras.layers.Reshape((*pooled, order, channels), name=f"{self.name}_split_group")(x)
        if self.num_cosets > 1:
            x = swap_last_axes(x, f"{self.name}_group_last")
            if self.mode == "average":
                # Column k averages the row h_k·r_j of the coset table.
                kernel = selection_kernel(self._coset_table, order, 1.0 / self.num_cosets)
                x = fixed_dense(x, kernel, f"{self.name}_coset_average")
            else:
                # Columns j·|H| + k gather h_k·r_j; a (1, [G:H]) max pooling then takes the
                # maximum over j.
                kernel = selection_kernel(self._coset_table.T.reshape(-1), order)
                x = fixed_dense(x, kernel, f"{self.name}_coset_gather")
                rows = int(np.prod(pooled)) * channels
                x = keras.layers.Reshape(
                    (rows, self.num_cosets, self.subgroup.order), name=f"{self.name}_cosets"
                )(x)
                x = keras.layers.MaxPooling2D(
                    pool_size=(1, self.num_cosets),
                    data_format="channels_last",
                    name=f"{self.name}_coset_max",
                )(x)
                x = keras.layers.Reshape(
                    (*pooled, channels, self.subgroup.order), name=f"{self.name}_uncosets"
                )(x)
            x = swap_last_axes(x, f"{self.name}_group_back")
        x = plain_mask_to_support(x, self.group, f"{self.name}_output")
        return channels_to_first(x, f"{self.name}_to_channels_first") if channels_first else x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "group": self.group.name,
                "subgroup": None if self.subgroup == self.group else self.subgroup.name,
                "pool_size": self.pool_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "allow_non_equivariance": self.allow_non_equivariance,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="groco")
class GroupMaxPooling1D(BaseGroupPooling):
    """Max pooling of a signal on a group of the line (e.g. `"LM"`).

    Args:
        pool_size, strides, padding, data_format: as in `keras.layers.MaxPooling1D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"` (see `BaseGroupPooling`).
        group: the group the input lives on, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on (pooling over the cosets); default `group`.
        allow_non_equivariance: accept settings that break equivariance.
    """

    def __init__(
        self,
        pool_size: int | tuple[int] = 2,
        strides: int | tuple[int] | None = None,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupPooling.__init__(self, 1, "max", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupMaxPooling2D(BaseGroupPooling):
    """Max pooling of a signal on a 2D group.

    Args:
        pool_size, strides, padding, data_format: as in `keras.layers.MaxPooling2D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"` (see `BaseGroupPooling`).
        group: the group the input lives on, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on (pooling over the cosets); default `group`.
        allow_non_equivariance: accept settings that break equivariance.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((2, 8, 8, 8, 3))  # a signal on P4M
        >>> GroupMaxPooling2D(group="P4M")(x).shape
        (2, 4, 4, 8, 3)
        >>> GroupMaxPooling2D(group="P4M", subgroup="P4")(x).shape
        (2, 4, 4, 4, 3)
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupPooling.__init__(self, 2, "max", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupMaxPooling3D(BaseGroupPooling):
    """Max pooling of a signal on a 3D group.

    Args:
        pool_size, strides, padding, data_format: as in `keras.layers.MaxPooling3D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"` (see `BaseGroupPooling`).
        group: the group the input lives on, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on (pooling over the cosets); default `group`.
        allow_non_equivariance: accept settings that break equivariance.
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int, int] = 2,
        strides: int | tuple[int, int, int] | None = None,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupPooling.__init__(self, 3, "max", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupAveragePooling1D(BaseGroupPooling):
    """Average pooling of a signal on a group of the line.

    Args:
        pool_size, strides, padding, data_format: as in `keras.layers.AveragePooling1D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"` (see `BaseGroupPooling`).
        group: the group the input lives on, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on (pooling over the cosets); default `group`.
        allow_non_equivariance: accept settings that break equivariance.
    """

    def __init__(
        self,
        pool_size: int | tuple[int] = 2,
        strides: int | tuple[int] | None = None,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupPooling.__init__(self, 1, "average", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupAveragePooling2D(BaseGroupPooling):
    """Average pooling of a signal on a 2D group.

    Args:
        pool_size, strides, padding, data_format: as in `keras.layers.AveragePooling2D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"` (see `BaseGroupPooling`).
        group: the group the input lives on, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on (pooling over the cosets); default `group`.
        allow_non_equivariance: accept settings that break equivariance.
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupPooling.__init__(self, 2, "average", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupAveragePooling3D(BaseGroupPooling):
    """Average pooling of a signal on a 3D group.

    Args:
        pool_size, strides, padding, data_format: as in `keras.layers.AveragePooling3D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"` (see `BaseGroupPooling`).
        group: the group the input lives on, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on (pooling over the cosets); default `group`.
        allow_non_equivariance: accept settings that break equivariance.
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int, int] = 2,
        strides: int | tuple[int, int, int] | None = None,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupPooling.__init__(self, 3, "average", **keyword_arguments(locals()))
