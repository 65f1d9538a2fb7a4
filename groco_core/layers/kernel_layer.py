"""What every convolution-like group layer has: the arguments of a Keras convolution plus a
group, their checks, the kernel's transformation table in space, the input's kind and the
configuration. `BaseGroupConv` and `BaseGroupConvTranspose` are its siblings' bases; layer
plugins build on it (through `groco_core.toolkit`)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from groco_core.groups import PointGroup
from groco_core.layers import arguments
from groco_core.layers.group_axis import split_group_axis
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.layers.support import mask_to_support, plain_mask_to_support


class BaseGroupKernelLayer(RegisteredGroupsMixin, keras.layers.Layer):
    """The arguments, checks and configuration a convolution-like group layer shares.

    Sets, from the constructor's arguments (as `keras.layers.Conv2D` names them): `rank`,
    `filters`, `kernel_size`, `strides`, `dilation_rate`, `padding`, `data_format`,
    `activation`, `use_bias`, the `kernel_*` / `bias_*` initializers, regularizers and
    constraints, `allow_non_equivariance`; `group` and `subgroup` (resolved, `subgroup`
    defaulting to `group`) with `subgroup_elements`, the subgroup's indices in the group;
    `spatial_permutation` (`group.kernel_permutation(kernel_size)`, which also refuses a
    kernel shape the group does not map onto itself) and `kernel_mask` (the group's
    `kernel_support_mask`, None on a full window). `check_input_shape` sets `lifting` and
    `in_channels` when the layer is built.

    Subclasses make the kernel, the call and the output shape. Its messages name the
    subclass, so that users read the layer they made.

    Example:
        >>> from groco_core.toolkit import BaseGroupKernelLayer
        >>> layer = BaseGroupKernelLayer(2, 8, 3, group="P4M", subgroup="P4", strides=2)
        >>> layer.kernel_size, layer.strides, layer.subgroup.name, layer.subgroup_elements
        ((3, 3), (2, 2), 'P4', (0, 1, 2, 3))
    """

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: int | tuple[int, ...],
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        strides: int | tuple[int, ...] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, ...] = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        layer_name = type(self).__name__
        self.rank = rank
        if isinstance(strides, str):
            raise TypeError(
                f"strides must be an int or a tuple of {rank} ints. Received: "
                f"strides={strides!r}. The third positional argument is `strides`, as in "
                f"keras.layers.Conv{rank}D; pass the group by keyword: group={strides!r}."
            )
        self.group, self.subgroup, self.subgroup_elements = arguments.resolve_groups(
            layer_name, group, subgroup, rank
        )
        self.filters = arguments.check_positive_int(filters, "filters")
        self.kernel_size = arguments.normalize_tuple(kernel_size, rank, "kernel_size")
        self.strides = arguments.normalize_tuple(strides, rank, "strides")
        self.dilation_rate = arguments.normalize_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "strides > 1 together with dilation_rate > 1 is not supported by Keras "
                f"convolutions. Received: strides={self.strides}, "
                f"dilation_rate={self.dilation_rate}"
            )
        self.padding = arguments.normalize_padding(padding)
        self.data_format = arguments.normalize_data_format(data_format)
        self.allow_non_equivariance = bool(allow_non_equivariance)
        # Validates the kernel shape against the group (rotations need equal sizes).
        self.spatial_permutation = self.group.kernel_permutation(self.kernel_size)
        self.kernel_mask = self.group.kernel_support_mask(self.kernel_size)
        arguments.check_invariant_under_group(self.group, self.strides, "strides")
        arguments.check_invariant_under_group(self.group, self.dilation_rate, "dilation_rate")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    @property
    def extents(self) -> tuple[int, ...]:
        """The dilated kernel's size per spatial axis, `dilation·(kernel_size − 1) + 1`."""
        return tuple(
            d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation_rate, strict=True)
        )

    def spatial_shape(self, input_shape: tuple) -> tuple:
        """The spatial axes of an input or output shape, in the layer's data format."""
        start = 1 if self.data_format == "channels_last" else 2
        return tuple(input_shape[start : start + self.rank])

    def check_input_shape(
        self, input_shape: tuple, input_group: PointGroup, argument: str = "group"
    ) -> None:
        """Sets `lifting` (an image rather than a signal on `input_group`) and `in_channels`
        from the input shape, or raises a ValueError saying what is wrong and which argument
        (`argument`, the one naming `input_group`) to change."""
        layer_name = type(self).__name__
        input_rank = len(input_shape)
        if input_rank not in (self.rank + 2, self.rank + 3):
            raise ValueError(
                f"{layer_name} takes an image of rank {self.rank + 2} (lifting) or a signal on "
                f"the group of rank {self.rank + 3}. Received: input_shape={tuple(input_shape)}"
            )
        self.lifting = input_rank == self.rank + 2
        in_channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        if in_channels is None:
            raise ValueError(
                f"{layer_name} needs a known number of input channels. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.in_channels = int(in_channels)
        group_axis = -2 if self.data_format == "channels_last" else -1
        if not self.lifting and input_shape[group_axis] != input_group.order:
            from groco_core.registry import list_groups

            same_order = [
                g.name for g in list_groups(self.rank) if g.order == input_shape[group_axis]
            ]
            hint = f" Groups of that order: {', '.join(same_order)}." if same_order else ""
            raise ValueError(
                f"{layer_name}({argument}={input_group.name!r}) expects a signal on "
                f"{input_group.name} with a group axis (axis {group_axis}) of length "
                f"{input_group.order}. Received: input_shape={tuple(input_shape)}. Pass the "
                f"group the input lives on as `{argument}`.{hint}"
            )

    def masked_kernel(self) -> Any:
        """`self.kernel`, zero outside the group's `kernel_support_mask` (a hexagonal
        lattice's corners); the kernel itself where the group uses the whole window."""
        kernel = self.kernel
        if self.kernel_mask is None:
            return kernel
        extra = (1,) * (len(kernel.shape) - self.rank)
        mask = np.asarray(self.kernel_mask).reshape(self.kernel_size + extra)
        return keras.ops.multiply(kernel, keras.ops.cast(mask, kernel.dtype))

    def finish(
        self,
        y: Any,
        elements: int,
        channels_first: bool,
        bias: Any = None,
        fields: int | None = None,
    ) -> Any:
        """The output of the layer's plain operation `(batch, ..., elements·fields)`
        (channels-last) as the layer's output: `bias` added, group axis split off,
        activation, zeros off the group's image support (`mask_to_support`: a masked lattice
        such as the hexagonal one; nothing is added on square and cubic lattices), data
        format. `fields` defaults to `filters`."""
        fields = self.filters if fields is None else fields
        y = split_group_axis(y, elements, fields, bias)
        if self.activation is not None:
            y = self.activation(y)
        y = self.mask_input(y)
        return keras.ops.moveaxis(y, -1, 1) if channels_first else y

    def plain_mask(self, x: Any, suffix: str) -> Any:
        """`export_plain`'s `mask_input`: `x` in the layer's data format, zero off the image
        support, from stock Keras layers (`plain_mask_to_support`); `x` on square and cubic
        lattices."""
        start = 1 if self.data_format == "channels_last" else 2
        axes = tuple(range(start, start + self.rank))
        return plain_mask_to_support(x, self.group, f"{self.name}_{suffix}", axes)

    def mask_input(self, x: Any) -> Any:
        """Channels-last `x` (spatial axes right after the batch axis) with zeros off the
        group's image support, so that the layer reads (and, in `finish`, writes) only the
        points its group maps onto themselves; `x` itself on square and cubic lattices."""
        return mask_to_support(x, self.group, tuple(range(1, 1 + self.rank)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "group": self.group.name,
                "subgroup": None if self.subgroup == self.group else self.subgroup.name,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "allow_non_equivariance": self.allow_non_equivariance,
            }
        )
        return config
