"""Group convolutions: lifting (image → signal on the group) and group (group → group).

`[f ⋆ ψ](p, h) = Σ_q Σ_c f_c(q) ψ_c(M_h⁻¹ (q − p))` (lifting) and
`[f ⋆ ψ](p, h) = Σ_q Σ_k Σ_c f_c(q, k) ψ_c(M_h⁻¹ (q − p), h⁻¹k)` (group). The kernel is
transformed by every output element with one gather (indices built in numpy at build time)
and handed to one `keras.ops.conv`, the group axis merged into the channel axis.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core import backend
from groco_core.groups import PointGroup
from groco_core.layers.arguments import keyword_arguments
from groco_core.layers.fast_paths import takes
from groco_core.layers.group_axis import merge_group_axis, reshape, tile_over_group
from groco_core.layers.kernel_cache import cached_transformed_kernel
from groco_core.layers.kernel_layer import BaseGroupKernelLayer
from groco_core.layers.kernels import KernelGather, add_kernel_and_bias, group_kernel_indices
from groco_core.layers.lora import LoRAKernelMixin
from groco_core.layers.padding import PaddingRule


class BaseGroupConv(LoRAKernelMixin, BaseGroupKernelLayer):
    """Rank-generic group convolution; `GroupConv1D/2D/3D` only fix `rank`.

    Args:
        rank: number of spatial axes.
        filters: number of output fields (the output has `filters` channels per element
            of the output group).
        kernel_size, strides, dilation_rate, activation, use_bias, *_initializer,
            *_regularizer, *_constraint, data_format: as in `keras.layers.Conv2D`.
        group: the point group (name or object); its dimension must equal `rank`.
        subgroup: name of a subgroup of `group` on which the output lives (the group
            analogue of a stride); default: `group` itself.
        padding: `"valid_equiv"` (default) or `"same_equiv"`: Keras's `valid` / `same` plus
            the minimum symmetric padding that keeps the output grid centred on the input
            grid; `"valid"` / `"same"`: Keras's own, accepted only where equivariant.
        groups: split the input and output fields into this many groups, as
            `keras.layers.Conv2D(groups=...)` does with channels: output group `j` sees only
            input group `j` (over every element of the group axis). The kernel is
            `(*kernel_size, [|G|,] in_channels / groups, filters)`; the convolution runs with
            the block-diagonal kernel, so it costs what the ungrouped one costs.
        lora_rank, lora_alpha: LoRA as in `keras.layers.Conv2D`: the low-rank update is added
            to the untransformed kernel, so the layer stays equivariant (see `enable_lora`).
        allow_non_equivariance: accept configurations that break equivariance.

    Input shape:
        Lifting: `(batch, *spatial, channels)`; group: `(batch, *spatial, |G|, channels)`
        (`channels_first`: `(batch, channels, *spatial)` / `(batch, channels, *spatial, |G|)`).
        The layer knows which from the rank of its input.

    Output shape:
        `(batch, *new_spatial, |subgroup|, filters)` (`channels_first`:
        `(batch, filters, *new_spatial, |subgroup|)`).

    A layer plugin that changes how the kernel is made subclasses it and overrides
    `build_kernel` (the weights and `kernel_gather`) and `transformed_kernel`; the padding
    rule (`padding_rule`), input checks, output shape, call and configuration stay.

    Example:
        >>> import numpy as np
        >>> from keras import ops
        >>> from groco_core.toolkit import BaseGroupConv
        >>> class CentreConv2D(BaseGroupConv):
        ...     # A group convolution whose kernel is zero but at its centre point.
        ...     def __init__(self, filters, kernel_size, **kwargs):
        ...         super().__init__(2, filters, kernel_size, **kwargs)
        ...     def masked_kernel(self):
        ...         kernel = super().masked_kernel()
        ...         centre = np.zeros(self.kernel_size, "float32")
        ...         centre[tuple(k // 2 for k in self.kernel_size)] = 1.0
        ...         extra = (1,) * (len(kernel.shape) - 2)
        ...         return ops.multiply(kernel, centre.reshape(self.kernel_size + extra))
        >>> tuple(CentreConv2D(4, 3, group="P4M")(np.zeros((1, 9, 9, 2))).shape)
        (1, 7, 7, 8, 4)

    Raises:
        ValueError / TypeError: for arguments or inputs the layer cannot use, naming the
            argument, the value received and the fix.
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
        groups: int = 1,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            rank,
            filters,
            kernel_size,
            group,
            subgroup,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            **kwargs,
        )
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups must be a positive int. Received: groups={groups!r}")
        if self.filters % groups:
            raise ValueError(
                f"{type(self).__name__}: filters must be divisible by groups (each group of "
                f"input fields feeds filters / groups output fields). Received: "
                f"filters={filters}, groups={groups}"
            )
        self.groups = int(groups)
        self.init_lora(lora_rank, lora_alpha)
        self.output_elements = self.subgroup_elements
        self.padding_rule = PaddingRule(
            self.padding,
            self.kernel_size,
            self.strides,
            self.subgroup,
            type(self).__name__,
            dilation_rate=self.dilation_rate,
            allow_non_equivariance=self.allow_non_equivariance,
        )

    def build(self, input_shape: tuple) -> None:
        self.check_input_shape(input_shape, self.group, "group")
        # Refuses a size no padding makes equivariant before any weight is made.
        self.padding_rule.paddings(self.spatial_shape(input_shape))
        self.build_kernel()
        self.built = True  # `enable_lora` needs a built layer
        self.build_lora()

    def build_kernel(self) -> None:
        """Creates the kernel `(*kernel_size, [|G|,] in_channels / groups, filters)`, the bias
        `(filters,)` and `kernel_gather`, once `lifting` and `in_channels` are known. A
        subclass that makes another kernel overrides it (and `transformed_kernel`)."""
        group_axis_size = () if self.lifting else (self.group.order,)
        if self.in_channels % self.groups:
            raise ValueError(
                f"{type(self).__name__}: the input's fields must be divisible by groups. "
                f"Received: {self.in_channels} input fields, groups={self.groups}"
            )
        fields_per_group = self.in_channels // self.groups
        add_kernel_and_bias(
            self, self.kernel_size + group_axis_size + (fields_per_group, self.filters)
        )
        if self.groups > 1:
            # Block j·(C/groups)… × j·(F/groups)… of the dense kernel holds group j's kernel.
            rows = np.arange(self.in_channels) // fields_per_group
            columns = np.arange(self.filters) // (self.filters // self.groups)
            self._group_blocks = (rows[:, None] == columns[None, :]).astype("float32")
        # Kept in numpy: a backend tensor made here could belong to a graph being traced.
        self.kernel_gather = KernelGather(self.transformed_kernel_indices())

    def transformed_kernel_indices(self) -> np.ndarray:
        """Gather indices into the kernel's leading axes, `(|H|, kernel points[, |G|])`: row
        `h` lists, for every kernel point `r` (and input element `k`), where
        `ψ(M_h⁻¹ r[, h⁻¹k])` is stored (`group_kernel_indices`)."""
        return group_kernel_indices(
            self.group, self.output_elements, self.spatial_permutation, self.lifting
        )

    def masked_kernel(self) -> Any:
        """The untransformed kernel the layer uses, `(*kernel_size, [|G|,] in_channels,
        filters)`: `self.kernel` (with its LoRA update), zero outside the group's
        `kernel_support_mask` (a hexagonal lattice's corners), and with `groups > 1` spread
        into the block-diagonal kernel of all input fields."""
        kernel = super().masked_kernel()
        if self.groups > 1:
            tiles = (1,) * (len(kernel.shape) - 2) + (self.groups, 1)
            blocks = ops.cast(self._group_blocks, kernel.dtype)
            kernel = ops.multiply(ops.tile(kernel, tiles), blocks)
        return kernel

    def transformed_kernel(self) -> Any:
        """The kernel of the equivalent plain convolution,
        `(*kernel_size, [|G|·]in_channels, |H|·filters)`."""
        return self._expanded(self.kernel_gather, self.kernel_size)

    def _expanded(self, gather: KernelGather, kernel_size: tuple[int, ...]) -> Any:
        """The masked kernel gathered by `gather` (`kernel_gather`, or its rows for the taps
        of `kernel_size`), in the layout `(*kernel_size, [|G|·]in_channels, |H|·filters)`."""
        group_size = 1 if self.lifting else self.group.order
        points = math.prod(self.kernel_size) * group_size
        flat = reshape(self.masked_kernel(), (points, self.in_channels, self.filters))
        inputs = group_size * self.in_channels
        outputs = len(self.output_elements) * self.filters
        kernel = backend.call("transformed_kernel", gather, flat, kernel_size)
        if kernel is not NotImplemented:
            return kernel
        moved = gather.moved(flat, 1)  # (K[, |G|], C, |H|, F)
        return reshape(moved, kernel_size + (inputs, outputs))

    def _cropped_kernel(self, boxes: tuple[tuple[int, int], ...], training: Any) -> Any:
        """The transformed kernel's taps `first … stop − 1` per axis (`boxes`).

        In training, where the kernel is expanded on every call anyway, only those taps are
        gathered (when the layer makes its kernel as this class does); in inference the
        whole kernel, kept between calls by `cached_transformed_kernel`, is cut.
        """
        window = tuple(slice(first, stop) for first, stop in boxes)
        if not training or type(self).transformed_kernel is not BaseGroupConv.transformed_kernel:
            return cached_transformed_kernel(self, training)[window]
        gathers = self.__dict__.setdefault("_cropped_gathers", {})
        gather = gathers.get(boxes)
        if gather is None:
            indices = self.kernel_gather.indices  # (|H|, points[, |G|])
            tail = indices.shape[2:]
            taps = indices.reshape(indices.shape[0], *self.kernel_size, *tail)
            taps = taps[(slice(None), *window)]
            gather = gathers[boxes] = KernelGather(taps.reshape(indices.shape[0], -1, *tail))
        return self._expanded(gather, tuple(stop - first for first, stop in boxes))

    def call(self, inputs: Any, training: Any = None) -> Any:
        # channels_first is handled by moving channels last: TensorFlow's CPU conv only
        # supports channels_last, and the group axis must sit next to the channels anyway.
        channels_first = self.data_format == "channels_first"
        x = self.mask_input(ops.moveaxis(inputs, 1, -1) if channels_first else inputs)
        if not self.lifting:
            x = merge_group_axis(x)
        spatial = tuple(x.shape[1 : 1 + self.rank])
        elements = len(self.output_elements)
        bias = self.bias if self.use_bias else None
        taps = self.padding_rule.meeting_taps(spatial)
        if taps is not None and takes("cropped_kernel"):
            # An input smaller than the kernel: the taps that read only padding are dropped.
            boxes, paddings = taps
            kernel = self._cropped_kernel(boxes, training)
            extents = kernel_size = tuple(stop - first for first, stop in boxes)
            conv_padding = "valid"
            explicit = paddings if any(before or after for before, after in paddings) else None
        else:
            kernel = cached_transformed_kernel(self, training)
            kernel_size, extents = self.kernel_size, self.extents
            conv_padding, explicit = self.padding_rule.conv_padding(spatial)
            paddings = self.padding_rule.paddings(spatial)
        if backend.eager_torch() and takes("torch_channels_last_conv"):
            # The bias goes into the convolution, tiled over the group.
            y = backend.call(
                "channels_last_conv",
                x,
                kernel,
                self.strides,
                paddings,
                self.dilation_rate,
                bias=None if bias is None else tile_over_group(bias, elements),
            )
            return self.finish(y, elements, channels_first)
        if explicit is not None and None in explicit:
            explicit = self.padding_rule.resolve(x, explicit)
        if explicit is None and self._matmul_applies(kernel_size) and takes("pointwise_matmul"):
            # A kernel of one point: the convolution is a product with the kernel's matrix on
            # the input's points (every `stride`-th).
            if any(s > 1 for s in self.strides):
                x = x[(slice(None), *(slice(None, None, s) for s in self.strides))]
            y = ops.matmul(x, reshape(kernel, tuple(kernel.shape[-2:])))
            return self.finish(y, elements, channels_first, bias)
        if self._jax_conv_applies(conv_padding, extents) and takes("jax_padded_conv"):
            paddings = explicit if explicit is not None else ((0, 0),) * self.rank
            y = backend.call("conv", x, kernel, self.strides, paddings, self.dilation_rate)
            return self.finish(y, elements, channels_first, bias)
        if explicit is not None:
            x = ops.pad(x, [(0, 0), *explicit, (0, 0)])
        y = ops.conv(
            x,
            kernel,
            strides=self.strides,
            padding=conv_padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        return self.finish(y, elements, channels_first, bias)

    def _matmul_applies(self, kernel_size: tuple[int, ...]) -> bool:
        """Whether `call` computes the convolution with a kernel of `kernel_size` as a matrix
        product: a kernel of one point where the backend runs the product faster than its 1×1
        convolution (`groco_core.backend.<backend>.pointwise_matmul_applies`; figures:
        docs/performance.md)."""
        if any(k != 1 for k in kernel_size):
            return False
        return backend.call("pointwise_matmul_applies", self.rank, self.strides) is True

    def _jax_conv_applies(self, conv_padding: str, extents: tuple[int, ...]) -> bool:
        """Whether `call` convolves through `groco_core.backend.jax.conv` with a kernel of
        `extents` (dilated sizes): JAX on a CPU, 2D, no padding Keras's `same` gives, stride 1
        and a kernel of at least 2 points on each axis (where it was measured faster)."""
        return (
            conv_padding == "valid"
            and self.rank == 2
            and all(s == 1 for s in self.strides)
            and min(extents) >= 2
            and backend.on_jax_cpu()
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        spatial = self.padding_rule.output_spatial(self.spatial_shape(tuple(input_shape)))
        elements = len(self.output_elements)
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, elements, self.filters)
        return (input_shape[0], self.filters, *spatial, elements)

    def export_plain(self, inputs: Any) -> Any:
        """The same computation with stock Keras layers only (see `groco_core.export`)."""
        from groco_core.exporting import export_group_conv

        outputs = export_group_conv(self, self.plain_mask(inputs, "input"))
        return self.plain_mask(outputs, "output")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"groups": self.groups, **self.lora_config()})
        return config


@keras.saving.register_keras_serializable(package="groco")
class GroupConv1D(BaseGroupConv):
    """1D group convolution (groups of the line, e.g. `"LM"`).

    Args:
        filters: output fields (channels per element of the output group).
        kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
            use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint,
            lora_rank, lora_alpha: as in `keras.layers.Conv1D`, in the same order;
            `padding` also takes `"valid_equiv"` (the default) and `"same_equiv"`, and
            `groups` splits fields (see `BaseGroupConv`).
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        allow_non_equivariance: accept configurations that break equivariance.

    Example:
        >>> import numpy as np
        >>> from groco_core import GroupConv1D
        >>> GroupConv1D(4, 3, group="LM")(np.zeros((2, 9, 3))).shape
        (2, 7, 2, 4)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int],
        strides: int | tuple[int] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupConv.__init__(self, 1, **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupConv2D(BaseGroupConv):
    """2D group convolution, e.g. on `"P4M"`.

    Args:
        filters: output fields (channels per element of the output group).
        kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
            use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint,
            lora_rank, lora_alpha: as in `keras.layers.Conv2D`, in the same order;
            `padding` also takes `"valid_equiv"` (the default) and `"same_equiv"`, and
            `groups` splits fields (see `BaseGroupConv`).
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        allow_non_equivariance: accept configurations that break equivariance.

    Example:
        >>> import numpy as np
        >>> from groco_core import GroupConv2D
        >>> lifted = GroupConv2D(8, 3, group="P4M")(np.zeros((2, 9, 9, 3)))
        >>> lifted.shape
        (2, 7, 7, 8, 8)
        >>> GroupConv2D(4, 3, group="P4M", subgroup="P4")(lifted).shape
        (2, 5, 5, 4, 4)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupConv.__init__(self, 2, **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupConv3D(BaseGroupConv):
    """3D group convolution (cubic-lattice groups, e.g. `"Oh"`).

    Args:
        filters: output fields (channels per element of the output group).
        kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
            use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint,
            lora_rank, lora_alpha: as in `keras.layers.Conv3D`, in the same order;
            `padding` also takes `"valid_equiv"` (the default) and `"same_equiv"`, and
            `groups` splits fields (see `BaseGroupConv`).
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        allow_non_equivariance: accept configurations that break equivariance.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int, int],
        strides: int | tuple[int, int, int] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int, int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupConv.__init__(self, 3, **keyword_arguments(locals()))
