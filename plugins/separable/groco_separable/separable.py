"""Separable group convolutions: a depthwise group convolution and a pointwise (kernel 1)
group convolution, composed.

`order="depthwise_first"` (the order of `keras.layers.SeparableConv2D`): each input channel
is convolved with its own spatial kernels, transformed by every element of `group`; then a
pointwise group convolution mixes the channels and the group axis, onto `subgroup`.
`order="pointwise_first"`: the pointwise group convolution first (onto `subgroup`), then one
spatial kernel per field, transformed by each element and shared over the group axis: the
kernel `k(x, h) = k_H(h) k_R(x)` of a G-separable convolution (docs/separable.md).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import keras
from keras import ops

from groco_core import PointGroup
from groco_core.toolkit import (
    BaseGroupConv,
    RegisteredGroupsMixin,
    backend_call,
    cached_transformed_kernel,
    keyword_arguments,
    merge_group_axis,
    reshape,
)
from groco_separable.depthwise import (
    CHECK_INPUT_SIDE,
    BaseDepthwiseGroupConv,
    DepthwiseGroupConv2D,
    DepthwiseGroupConv3D,
)

ORDERS = ("depthwise_first", "pointwise_first")


class PointwiseGroupConv(BaseGroupConv):
    """A group convolution with kernel size 1 over the merged group and channel axes: one
    matrix product, or the backend's `pointwise` (JAX: the product with gradients of its own;
    eager PyTorch: a 1×1 convolution on the channels-last memory)."""

    def __init__(self, rank: int, filters: int, group: Any, subgroup: Any = None, **kwargs: Any):
        super().__init__(rank, filters, 1, group, subgroup, **kwargs)

    def call(self, inputs: Any, training: Any = None) -> Any:
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(inputs, 1, -1) if channels_first else inputs
        if not self.lifting:
            x = merge_group_axis(x)
        kernel = cached_transformed_kernel(self, training)  # (1, ..., 1, [|G|·]C, |H|·F)
        elements = len(self.output_elements)
        bias = self.bias if self.use_bias else None
        y = backend_call("pointwise", x, kernel, bias, elements)
        if y is not NotImplemented:
            return self.finish(y, elements, channels_first)
        y = ops.matmul(x, reshape(kernel, tuple(kernel.shape[-2:])))
        return self.finish(y, elements, channels_first, bias)


class BaseSeparableGroupConv(RegisteredGroupsMixin, keras.layers.Layer):
    """Rank-generic separable group convolution; `SeparableGroupConv2D/3D` only fix `rank`.

    Args:
        rank: number of spatial axes.
        filters: output fields (channels per element of `subgroup`).
        kernel_size: spatial kernel size of the depthwise part.
        group, subgroup: the group the input lives on (or lifts to) and the subgroup the
            output lives on (default `group`).
        depth_multiplier: depthwise kernels per input channel (`depthwise_first` only).
        order: `"depthwise_first"` (default) or `"pointwise_first"`.
        strides, padding, data_format, dilation_rate, activation, use_bias,
            allow_non_equivariance: as in `groco_core.GroupConv2D`.
        depthwise_*, pointwise_*, bias_*: initializers, regularizers and constraints, as in
            `keras.layers.SeparableConv2D`.
        formulation: the depthwise part's formulation (see `BaseDepthwiseGroupConv`).

    Input shape:
        Lifting: `(batch, *spatial, C)`; group: `(batch, *spatial, |G|, C)`.

    Output shape:
        `(batch, *new_spatial, |subgroup|, filters)`.

    Raises:
        ValueError / TypeError: for arguments or inputs the layer cannot use (the message
            names the part, `depthwise` or `pointwise`, that refuses them).
    """

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: int | tuple[int, ...],
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        depth_multiplier: int = 1,
        order: str = "depthwise_first",
        strides: int | tuple[int, ...] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, ...] = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        allow_non_equivariance: bool = False,
        formulation: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if group is None:
            raise ValueError(
                f"{type(self).__name__} needs a `group`: the name of a registered point group "
                f"acting on {rank} dimensions, e.g. {type(self).__name__}(filters, "
                "kernel_size, group='P4M'). Received: group=None."
            )
        if order not in ORDERS:
            raise ValueError(
                f"order must be one of {', '.join(repr(o) for o in ORDERS)}. "
                f"Received: order={order!r}"
            )
        if order == "pointwise_first" and depth_multiplier != 1:
            raise ValueError(
                "order='pointwise_first' has one spatial kernel per output field, so "
                f"depth_multiplier must be 1. Received: depth_multiplier={depth_multiplier!r}. "
                "Raise filters instead, or use order='depthwise_first'."
            )
        self.rank = rank
        self.order = order
        depthwise_first = order == "depthwise_first"
        pointwise = PointwiseGroupConv(
            rank,
            filters,
            group,
            subgroup,
            data_format=data_format,
            activation=activation if depthwise_first else None,
            use_bias=use_bias and depthwise_first,
            kernel_initializer=pointwise_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=pointwise_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=pointwise_constraint,
            bias_constraint=bias_constraint,
            name=f"{self.name}_pointwise",
        )
        # The public class of this rank, so that its messages name a layer users know.
        depthwise_class = {2: DepthwiseGroupConv2D, 3: DepthwiseGroupConv3D}.get(rank)
        depthwise = (depthwise_class or partial(BaseDepthwiseGroupConv, rank))(
            kernel_size,
            # depthwise first: on the whole group, so the pointwise part mixes all of it.
            group=group if depthwise_first else pointwise.subgroup,
            depth_multiplier=depth_multiplier,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=None if depthwise_first else activation,
            use_bias=use_bias and not depthwise_first,
            depthwise_initializer=depthwise_initializer,
            bias_initializer=bias_initializer,
            depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer,
            depthwise_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
            allow_non_equivariance=allow_non_equivariance,
            formulation=formulation,
            name=f"{self.name}_depthwise",
        )
        self.depthwise, self.pointwise = depthwise, pointwise
        self.group, self.subgroup = pointwise.group, pointwise.subgroup
        self.filters = pointwise.filters
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)

    @property
    def data_format(self) -> str:
        return self.depthwise.data_format

    @classmethod
    def equivariance_cases(cls, group: PointGroup) -> list[Any]:
        """Small layers of this class on `group` for `groco check` (none for another rank)."""
        if group.dimension != cls.RANK:
            return []
        from groco_core.testing import EquivarianceCase

        size = (CHECK_INPUT_SIDE[cls.RANK],) * cls.RANK
        return [
            EquivarianceCase("separable lifting", cls(2, 3, group=group), (1, *size, 2)),
            EquivarianceCase(
                "separable group, pointwise first",
                cls(2, 3, group=group, order="pointwise_first"),
                (1, *size, group.order, 2),
            ),
        ]

    @property
    def parts(self) -> tuple[keras.layers.Layer, keras.layers.Layer]:
        """The two parts in the order they are applied."""
        if self.order == "depthwise_first":
            return self.depthwise, self.pointwise
        return self.pointwise, self.depthwise

    @property
    def lifting(self) -> bool:
        """Whether the layer was built on an image (known once built)."""
        return self.parts[0].lifting

    @property
    def in_channels(self) -> int:
        """The input's channels (known once built)."""
        return self.parts[0].in_channels

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        for part in self.parts:
            part.build(shape)
            shape = part.compute_output_shape(shape)
        self.built = True

    def call(self, inputs: Any) -> Any:
        first, second = self.parts
        return second(first(inputs))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        first, second = self.parts
        return second.compute_output_shape(first.compute_output_shape(tuple(input_shape)))

    def export_plain(self, inputs: Any) -> Any:
        """The same computation with stock Keras layers only (see `groco_core.export`)."""
        first, second = self.parts
        return second.export_plain(first.export_plain(inputs))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        depthwise = self.depthwise
        config.update(
            {
                "filters": self.filters,
                "kernel_size": depthwise.kernel_size,
                "group": self.group.name,
                "subgroup": None if self.subgroup == self.group else self.subgroup.name,
                "depth_multiplier": depthwise.depth_multiplier,
                "order": self.order,
                "strides": depthwise.strides,
                "padding": depthwise.padding,
                "data_format": depthwise.data_format,
                "dilation_rate": depthwise.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "allow_non_equivariance": depthwise.allow_non_equivariance,
                "formulation": depthwise.formulation,
            }
        )
        weights = (
            ("depthwise", self.depthwise, "kernel"),
            ("pointwise", self.pointwise, "kernel"),
            ("bias", self.parts[1], "bias"),
        )
        for prefix, part, weight in weights:
            config[f"{prefix}_initializer"] = keras.initializers.serialize(
                getattr(part, f"{weight}_initializer")
            )
            config[f"{prefix}_regularizer"] = keras.regularizers.serialize(
                getattr(part, f"{weight}_regularizer")
            )
            config[f"{prefix}_constraint"] = keras.constraints.serialize(
                getattr(part, f"{weight}_constraint")
            )
        return config


@keras.saving.register_keras_serializable(package="groco_separable")
class SeparableGroupConv2D(BaseSeparableGroupConv):
    """2D separable group convolution, e.g. on `"P4M"`.

    Args:
        filters, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier,
            activation, use_bias, depthwise_initializer, pointwise_initializer,
            bias_initializer, depthwise_regularizer, pointwise_regularizer, bias_regularizer,
            activity_regularizer, depthwise_constraint, pointwise_constraint,
            bias_constraint: as in `keras.layers.SeparableConv2D`, in the same order;
            `padding` also takes `"valid_equiv"` (the default) and `"same_equiv"`.
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        order, allow_non_equivariance, formulation: see `BaseSeparableGroupConv`.

    Example:
        >>> import numpy as np
        >>> from groco_separable import SeparableGroupConv2D
        >>> lifted = SeparableGroupConv2D(8, 3, group="P4M")(np.zeros((2, 9, 9, 3)))
        >>> lifted.shape
        (2, 7, 7, 8, 8)
        >>> SeparableGroupConv2D(4, 3, group="P4M", subgroup="P4")(lifted).shape
        (2, 5, 5, 4, 4)
    """

    RANK = 2

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] = 1,
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        order: str = "depthwise_first",
        allow_non_equivariance: bool = False,
        formulation: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(self.RANK, **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco_separable")
class SeparableGroupConv3D(BaseSeparableGroupConv):
    """3D separable group convolution (cubic-lattice groups).

    Args:
        filters, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier,
            activation, use_bias, depthwise_initializer, pointwise_initializer,
            bias_initializer, depthwise_regularizer, pointwise_regularizer, bias_regularizer,
            activity_regularizer, depthwise_constraint, pointwise_constraint,
            bias_constraint: as in `keras.layers.SeparableConv2D`, in the same order;
            `padding` also takes `"valid_equiv"` (the default) and `"same_equiv"`.
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        order, allow_non_equivariance, formulation: see `BaseSeparableGroupConv`.
    """

    RANK = 3

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int, int],
        strides: int | tuple[int, int, int] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int, int] = 1,
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        order: str = "depthwise_first",
        allow_non_equivariance: bool = False,
        formulation: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(self.RANK, **keyword_arguments(locals()))
