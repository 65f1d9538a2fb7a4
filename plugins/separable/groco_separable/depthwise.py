"""Depthwise group convolutions: one spatial kernel per input channel, transformed by each
group element, no mixing across channels or group elements.

`out(p, h, c·M + m) = Σ_q f_c(q, h) ψ_{c,m}(M_h⁻¹ (q − p))` (lifting: `f_c(q)`). Built on
the toolkit's `BaseGroupConv` (arguments, padding rule, input checks, kernel mask, config):
only the kernel's shape, its transformation (spatial only) and the convolution differ; the
convolution itself is the toolkit's `depthwise_correlation`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core import PointGroup
from groco_core.toolkit import DEPTHWISE_FORMULATIONS as FORMULATIONS
from groco_core.toolkit import (
    BaseGroupConv,
    KernelGather,
    add_kernel_and_bias,
    cached_transformed_kernel,
    depthwise_correlation,
    fastest_depthwise_formulation,
    keyword_arguments,
    merge_group_axis,
    tile_over_group,
)

# Input side of the layers `equivariance_cases` gives `groco check`, per rank: small and odd.
CHECK_INPUT_SIDE = {2: 7, 3: 5}

_RENAMED = {
    "kernel_initializer": "depthwise_initializer",
    "kernel_regularizer": "depthwise_regularizer",
    "kernel_constraint": "depthwise_constraint",
}


def check_depth_multiplier(depth_multiplier: Any) -> int:
    """`depth_multiplier` as an int, or a TypeError / ValueError saying what it must be."""
    if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, (int, np.integer)):
        raise TypeError(
            f"depth_multiplier must be a positive int. Received: "
            f"depth_multiplier={depth_multiplier!r}"
        )
    if depth_multiplier <= 0:
        raise ValueError(
            "depth_multiplier must be a positive int. Received: "
            f"depth_multiplier={depth_multiplier}"
        )
    return int(depth_multiplier)


def check_formulation(formulation: Any, rank: int) -> str | None:
    """`formulation` (None: the backend's fastest), or a ValueError listing the choices."""
    if formulation is None:
        return None
    choices = FORMULATIONS if rank <= 2 else FORMULATIONS[1:]
    if formulation not in choices:
        raise ValueError(
            f"formulation must be None (the backend's fastest) or one of "
            f"{', '.join(repr(c) for c in choices)} for {rank} spatial axes "
            f"(keras.ops.depthwise_conv has 1 or 2). Received: formulation={formulation!r}"
        )
    return formulation


class BaseDepthwiseGroupConv(BaseGroupConv):
    """Rank-generic depthwise group convolution; `DepthwiseGroupConv2D/3D` only fix `rank`.

    Each input channel has `depth_multiplier` spatial kernels. At output element `h` (of
    `subgroup`, default `group`) the input at `h` (lifting: the image) is convolved with
    those kernels transformed by `h`; channels and group elements are never mixed.

    Args:
        rank: number of spatial axes.
        kernel_size: as in `keras.layers.DepthwiseConv2D`.
        group: the point group (name or object); its dimension must equal `rank`.
        subgroup: a subgroup of `group` on which the output lives; default `group`.
        depth_multiplier: kernels (output channels) per input channel.
        strides, padding, data_format, dilation_rate, activation, use_bias,
            allow_non_equivariance: as in `groco_core.GroupConv2D`.
        depthwise_initializer, depthwise_regularizer, depthwise_constraint, bias_*: as in
            `keras.layers.DepthwiseConv2D`.
        formulation: how the depthwise convolution runs: None (the backend's fastest, see
            `groco_core.toolkit.fastest_depthwise_formulation`), `"depthwise_conv"`,
            `"grouped_conv"`, `"patches"` or `"shifts"`. All give the same result.

    Input shape:
        Lifting: `(batch, *spatial, C)`; group: `(batch, *spatial, |G|, C)`
        (`channels_first`: channels on axis 1).

    Output shape:
        `(batch, *new_spatial, |subgroup|, C·depth_multiplier)`, channel `c·M + m`.

    Raises:
        ValueError / TypeError: for arguments or inputs the layer cannot use, naming the
            argument, the value received and the fix.
    """

    def __init__(
        self,
        rank: int,
        kernel_size: int | tuple[int, ...],
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        depth_multiplier: int = 1,
        strides: int | tuple[int, ...] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, ...] = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        allow_non_equivariance: bool = False,
        formulation: str | None = None,
        **kwargs: Any,
    ):
        depth_multiplier = check_depth_multiplier(depth_multiplier)
        self.formulation = check_formulation(formulation, rank)
        super().__init__(
            rank,
            depth_multiplier,  # the base's `filters`: kernels per input channel
            kernel_size,
            group,
            subgroup,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=depthwise_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
            allow_non_equivariance=allow_non_equivariance,
            **kwargs,
        )

    @property
    def depth_multiplier(self) -> int:
        return self.filters

    @property
    def output_channels(self) -> int:
        """`in_channels · depth_multiplier` (known once built)."""
        return self.in_channels * self.filters

    def build_kernel(self) -> None:
        """Creates the kernel `(*kernel_size, in_channels, depth_multiplier)`, the bias
        `(in_channels·depth_multiplier,)`, `kernel_gather` and `input_elements`: the input's
        group elements the output's are (None where they are all of them, or lifting)."""
        add_kernel_and_bias(
            self,
            self.kernel_size + (self.in_channels, self.depth_multiplier),
            bias_shape=(self.output_channels,),
        )
        # Kept in numpy: a backend tensor made here could belong to a graph being traced.
        self.kernel_gather = KernelGather(self.transformed_kernel_indices())
        self.input_elements = None
        if not self.lifting and len(self.output_elements) != self.group.order:
            self.input_elements = np.asarray(self.output_elements, dtype="int32")

    def transformed_kernel_indices(self) -> np.ndarray:
        """Gather indices `(|H|, kernel points)`: row `h` lists where `ψ(M_h⁻¹ r)` is stored.
        The group axis of the input is never mixed, so the kernel has no group part."""
        return self.spatial_permutation[np.asarray(self.output_elements)]

    def transformed_kernel(self) -> Any:
        """The kernel of the equivalent plain depthwise convolution, `(*kernel_size, C_in, M')`:
        lifting: `C_in = C`, `M' = |H|·M` (channel `c·|H|·M + h·M + m`); group input:
        `C_in = |H|·C` (input channel `h·C + c`), `M' = M`."""
        flat = ops.reshape(self.masked_kernel(), (-1, self.in_channels, self.depth_multiplier))
        elements = len(self.output_elements)
        if self.lifting:
            moved = self.kernel_gather.moved(flat, 1)  # (K, C, |H|, M)
            return ops.reshape(
                moved, self.kernel_size + (self.in_channels, elements * self.depth_multiplier)
            )
        moved = self.kernel_gather.moved(flat, 0)  # (K, |H|, C, M)
        return ops.reshape(
            moved, self.kernel_size + (elements * self.in_channels, self.depth_multiplier)
        )

    def _formulation(self) -> str:
        return self.formulation or fastest_depthwise_formulation(self.rank)

    def call(self, inputs: Any, training: Any = None) -> Any:
        channels_first = self.data_format == "channels_first"
        # Zero off a masked lattice's image support (`finish` zeroes the output there too).
        x = self.mask_input(ops.moveaxis(inputs, 1, -1) if channels_first else inputs)
        elements = len(self.output_elements)
        if not self.lifting:
            if self.input_elements is not None:
                x = ops.take(x, self.input_elements, axis=-2)
            x = merge_group_axis(x)  # channel h·C + c
        paddings = self.padding_rule.paddings(tuple(x.shape[1 : 1 + self.rank]))
        bias = None
        if self.use_bias:  # in the convolution's channel order
            if self.lifting:  # channel c·|H|·M + h·M + m has bias c·M + m
                bias = ops.reshape(self.bias, (self.in_channels, 1, self.filters))
                bias = ops.broadcast_to(bias, (self.in_channels, elements, self.filters))
                bias = ops.reshape(bias, (-1,))
            else:  # channel h·C·M + c·M + m
                bias = tile_over_group(self.bias, elements)
        y = depthwise_correlation(
            x,
            cached_transformed_kernel(self, training),
            self.strides,
            self.dilation_rate,
            self._formulation(),
            paddings,
            bias,
        )
        if self.lifting:
            # channel c·|H|·M + h·M + m → (h, c·M + m)
            shape = ops.shape(y)
            y = ops.reshape(y, (shape[0], *shape[1:-1], self.in_channels, elements, self.filters))
            y = ops.reshape(ops.swapaxes(y, -3, -2), (*shape[:-1], -1))
        # channel h·C·M + c·M + m
        return self.finish(y, elements, channels_first, fields=self.output_channels)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        spatial = self.padding_rule.output_spatial(self.spatial_shape(input_shape))
        elements = len(self.output_elements)
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        channels = None if channels is None else channels * self.depth_multiplier
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, elements, channels)
        return (input_shape[0], channels, *spatial, elements)

    def export_plain(self, inputs: Any) -> Any:
        """The same computation with stock Keras layers only (see `groco_core.export`)."""
        from groco_separable.exporting import export_depthwise_group_conv

        # On a masked lattice: read and write only the image support, as `call` does.
        outputs = export_depthwise_group_conv(self, self.plain_mask(inputs, "input"))
        return self.plain_mask(outputs, "output")

    @classmethod
    def equivariance_cases(cls, group: PointGroup) -> list[Any]:
        """Small layers of this class on `group` for `groco check` (none for another rank)."""
        if group.dimension != cls.RANK:
            return []
        from groco_core.testing import EquivarianceCase

        size = (CHECK_INPUT_SIDE[cls.RANK],) * cls.RANK
        return [
            EquivarianceCase(
                "depthwise lifting", cls(3, group=group, depth_multiplier=2), (1, *size, 2)
            ),
            EquivarianceCase("depthwise group", cls(3, group=group), (1, *size, group.order, 2)),
        ]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["depth_multiplier"] = config.pop("filters")
        for old, new in _RENAMED.items():
            config[new] = config.pop(old)
        config["formulation"] = self.formulation
        return config


@keras.saving.register_keras_serializable(package="groco_separable")
class DepthwiseGroupConv2D(BaseDepthwiseGroupConv):
    """2D depthwise group convolution, e.g. on `"P4M"`.

    Args:
        kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
            activation, use_bias, depthwise_initializer, bias_initializer,
            depthwise_regularizer, bias_regularizer, activity_regularizer,
            depthwise_constraint, bias_constraint: as in `keras.layers.DepthwiseConv2D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"`.
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        allow_non_equivariance, formulation: see `BaseDepthwiseGroupConv`.

    Example:
        >>> import numpy as np
        >>> from groco_separable import DepthwiseGroupConv2D
        >>> layer = DepthwiseGroupConv2D(3, group="P4M", depth_multiplier=2)
        >>> lifted = layer(np.zeros((2, 9, 9, 3)))
        >>> lifted.shape
        (2, 7, 7, 8, 6)
        >>> DepthwiseGroupConv2D(3, group="P4M", subgroup="P4")(lifted).shape
        (2, 5, 5, 4, 6)
    """

    RANK = 2

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid_equiv",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        formulation: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(self.RANK, **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco_separable")
class DepthwiseGroupConv3D(BaseDepthwiseGroupConv):
    """3D depthwise group convolution (cubic-lattice groups). Stock Keras has no
    `DepthwiseConv3D`: it runs (and exports) as a grouped `Conv3D`.

    Args:
        kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
            activation, use_bias, depthwise_initializer, bias_initializer,
            depthwise_regularizer, bias_regularizer, activity_regularizer,
            depthwise_constraint, bias_constraint: as in `keras.layers.DepthwiseConv2D`, in
            the same order; `padding` also takes `"valid_equiv"` (the default) and
            `"same_equiv"`.
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        allow_non_equivariance, formulation: see `BaseDepthwiseGroupConv`.
    """

    RANK = 3

    def __init__(
        self,
        kernel_size: int | tuple[int, int, int],
        strides: int | tuple[int, int, int] = 1,
        padding: str = "valid_equiv",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int, int] = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        formulation: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(self.RANK, **keyword_arguments(locals()))
