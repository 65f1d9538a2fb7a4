"""Global pooling of signals on a group: the maximum or mean over space and the group axis,
an invariant `(batch, channels)`."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.groups import PointGroup
from groco_core.layers import arguments
from groco_core.layers.arguments import check_group_axis, keyword_arguments
from groco_core.layers.fast_paths import reduce_max
from groco_core.layers.pooling import check_mode
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.layers.support import mask_to_support, plain_mask_to_support, support_count
from groco_core.registry import get_group


class BaseGlobalGroupPooling(RegisteredGroupsMixin, keras.layers.Layer):
    """Rank-generic global pooling over space and the group axis: an invariant output.

    Args:
        rank: number of spatial axes.
        mode: "max" or "average".
        group: optional: the group the input lives on (name or object), to check the length
            of the group axis and, on a masked lattice (hexagonal), to pool over its image
            support only (a mean over the support's points, a maximum ignoring the others).
            Any signal on any group is accepted without it.
        keepdims: keep the reduced axes (space and group) with length 1, as Keras's
            global pooling layers do.
        data_format: "channels_last" or "channels_first"; default from
            `keras.config.image_data_format()`.

    Input shape:
        `(batch, *spatial, |G|, channels)` (`channels_first`: `(batch, channels, *spatial, |G|)`).

    Output shape:
        `(batch, channels)`; with `keepdims`, `(batch, 1, ..., 1, channels)` (`channels_first`:
        `(batch, channels, 1, ..., 1)`).
    """

    def __init__(
        self,
        rank: int,
        mode: str,
        group: str | PointGroup | None = None,
        keepdims: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.rank = rank
        self.mode = check_mode(mode)
        self.group = None if group is None else get_group(group)
        self.keepdims = bool(keepdims)
        self.data_format = arguments.normalize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=rank + 3)

    @property
    def output_group(self) -> None:
        """None: the output has no group axis; it is invariant under `group`."""
        return None

    def _reduced_axes(self) -> tuple[int, ...]:
        start = 1 if self.data_format == "channels_last" else 2
        return tuple(range(start, start + self.rank + 1))

    def build(self, input_shape: tuple) -> None:
        if self.group is not None:
            group_axis = -2 if self.data_format == "channels_last" else -1
            check_group_axis(type(self).__name__, self.group, tuple(input_shape), group_axis)
        self.built = True

    def call(self, inputs: Any) -> Any:
        axes = self._reduced_axes()
        spatial_axes = axes[:-1]
        spatial = tuple(inputs.shape[a] for a in spatial_axes)
        count = support_count(self.group, spatial)
        if self.mode == "average":
            if count is None:
                return ops.mean(inputs, axis=axes, keepdims=self.keepdims)
            # On a masked lattice: the mean over the image support's points only.
            x = mask_to_support(inputs, self.group, spatial_axes)
            total = ops.sum(x, axis=axes, keepdims=self.keepdims)
            return total / ops.cast(count * int(inputs.shape[axes[-1]]), total.dtype)
        if count is not None:
            inputs = mask_to_support(inputs, self.group, spatial_axes, fill=float("-inf"))
        return reduce_max(inputs, axes, keepdims=self.keepdims)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        if not self.keepdims:
            return (input_shape[0], channels)
        ones = (1,) * (self.rank + 1)
        if self.data_format == "channels_last":
            return (input_shape[0], *ones, channels)
        return (input_shape[0], channels, *ones)

    def export_plain(self, inputs: Any) -> Any:
        """The same map from stock Keras layers: Reshape, Global*Pooling1D, Reshape."""
        channels_last = self.data_format == "channels_last"
        channels = inputs.shape[-1 if channels_last else 1]
        spatial_axes = self._reduced_axes()[:-1]
        count = support_count(self.group, tuple(inputs.shape[a] for a in spatial_axes))
        if count is not None:
            # A masked lattice: the maximum ignores the points off the image support, the
            # mean is over the support's points only.
            fill = float("-inf") if self.mode == "max" else 0.0
            inputs = plain_mask_to_support(inputs, self.group, self.name, spatial_axes, fill)
        flat = (-1, channels) if channels_last else (channels, -1)
        x = keras.layers.Reshape(flat, name=f"{self.name}_flatten")(inputs)
        kind = "GlobalMaxPooling1D" if self.mode == "max" else "GlobalAveragePooling1D"
        x = getattr(keras.layers, kind)(data_format=self.data_format, name=f"{self.name}_pool")(x)
        if count is not None and self.mode == "average":
            points = int(np.prod([inputs.shape[a] for a in spatial_axes]))
            x = keras.layers.Rescaling(points / count, name=f"{self.name}_support_mean")(x)
        if self.keepdims:
            ones = (1,) * (self.rank + 1)
            kept = (*ones, channels) if channels_last else (channels, *ones)
            x = keras.layers.Reshape(kept, name=f"{self.name}_keepdims")(x)
        return x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "group": None if self.group is None else self.group.name,
                "keepdims": self.keepdims,
                "data_format": self.data_format,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="groco")
class GlobalGroupMaxPooling1D(BaseGlobalGroupPooling):
    """Maximum over the line and the group; see `BaseGlobalGroupPooling`."""

    def __init__(
        self,
        data_format: str | None = None,
        keepdims: bool = False,
        *,
        group: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        BaseGlobalGroupPooling.__init__(self, 1, "max", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GlobalGroupMaxPooling2D(BaseGlobalGroupPooling):
    """Maximum over the image and the group: invariant features; see `BaseGlobalGroupPooling`.

    Example:
        >>> import numpy as np
        >>> GlobalGroupMaxPooling2D()(np.zeros((2, 5, 5, 8, 3))).shape
        (2, 3)
    """

    def __init__(
        self,
        data_format: str | None = None,
        keepdims: bool = False,
        *,
        group: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        BaseGlobalGroupPooling.__init__(self, 2, "max", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GlobalGroupMaxPooling3D(BaseGlobalGroupPooling):
    """Maximum over the volume and the group; see `BaseGlobalGroupPooling`."""

    def __init__(
        self,
        data_format: str | None = None,
        keepdims: bool = False,
        *,
        group: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        BaseGlobalGroupPooling.__init__(self, 3, "max", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GlobalGroupAveragePooling1D(BaseGlobalGroupPooling):
    """Mean over the line and the group; see `BaseGlobalGroupPooling`."""

    def __init__(
        self,
        data_format: str | None = None,
        keepdims: bool = False,
        *,
        group: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        BaseGlobalGroupPooling.__init__(self, 1, "average", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GlobalGroupAveragePooling2D(BaseGlobalGroupPooling):
    """Mean over the image and the group: invariant features; see `BaseGlobalGroupPooling`."""

    def __init__(
        self,
        data_format: str | None = None,
        keepdims: bool = False,
        *,
        group: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        BaseGlobalGroupPooling.__init__(self, 2, "average", **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GlobalGroupAveragePooling3D(BaseGlobalGroupPooling):
    """Mean over the volume and the group; see `BaseGlobalGroupPooling`."""

    def __init__(
        self,
        data_format: str | None = None,
        keepdims: bool = False,
        *,
        group: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        BaseGlobalGroupPooling.__init__(self, 3, "average", **keyword_arguments(locals()))
