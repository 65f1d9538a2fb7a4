"""Transposed group convolutions: upsampling in space and from a subgroup H to the group G.

With input `f` on `H ⊂ G` (or an image, for lifting) and output on `G`:
`out(p, g) = Σ_q Σ_{k∈H} Σ_c f_c(q, k) ψ_c(M_g⁻¹ (p − s·q), g⁻¹k)`, equivariant under H.
As in `BaseGroupConv`, the kernel is transformed by one gather (indices built in numpy at
build time) and handed to one `keras.ops.conv_transpose`, the group axes merged into the
channel axes.

The full transposed output (length `(n − 1)·s + extent` per axis, every point the kernel
reaches) is centred on the input grid scaled by the stride; an output is equivariant exactly
when it crops the full output equally on both sides.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core import backend
from groco_core.groups import PointGroup
from groco_core.layers import arguments
from groco_core.layers.arguments import keyword_arguments
from groco_core.layers.group_axis import merge_group_axis
from groco_core.layers.kernel_cache import cached_transformed_kernel
from groco_core.layers.kernel_layer import BaseGroupKernelLayer
from groco_core.layers.kernels import KernelGather, add_kernel_and_bias, group_kernel_indices


def keras_transposed_window(
    extent: int, stride: int, padding: str, output_padding: int | None
) -> tuple[int, int]:
    """Where Keras's transposed convolution output sits in the full transposed output.

    Returns `(start, trim)`: the output starts `start` points into the full output (length
    `L = (n − 1)·stride + extent`) and has length `L − trim`; negative values mean zeros
    beyond the full output. Follows Keras's rule for `padding` and `output_padding`.
    """
    if padding == "valid":
        extra = max(extent, stride) - extent if output_padding is None else output_padding
        left, right = extent - 1, extent - 1 + extra
    else:
        if output_padding is None:
            total = stride + extent - 2
        else:
            total = extent + extent % 2 - 2 + output_padding
        left = min(total // 2 + total % 2, extent - 1)
        right = total - left
    return extent - 1 - left, 2 * (extent - 1) - left - right


def transposed_window(
    extent: int,
    stride: int,
    padding: str,
    output_padding: int | None,
    allow_non_equivariance: bool,
    layer_name: str,
) -> tuple[int, int]:
    """`(start, trim)` of one spatial axis of an equivariant transposed convolution.

    `valid` / `same` are Keras's own windows, accepted when they crop the full output equally
    on both sides (`2·start == trim`). `valid_equiv` / `same_equiv` start from Keras's output
    length and take the smallest symmetric window at least that long (one point longer when
    the difference is odd).

    Raises:
        ValueError: when `valid` / `same` is not centred, unless `allow_non_equivariance`.
    """
    base = "same" if padding.startswith("same") else "valid"
    start, trim = keras_transposed_window(extent, stride, base, output_padding)
    if padding.endswith("_equiv"):
        half = trim // 2
        return half, 2 * half
    if 2 * start == trim or allow_non_equivariance:
        return start, trim
    padding_note = "" if output_padding is None else f" and output_padding {output_padding}"
    raise ValueError(
        f"{layer_name}: padding={padding!r} breaks equivariance for kernel extent {extent}, "
        f"stride {stride}{padding_note}: Keras crops {start} point(s) before and "
        f"{trim - start} after the full transposed output, so the output grid is not centred "
        f"on the input grid scaled by the stride. Received: padding={padding!r}, kernel "
        f"extent {extent}, strides={stride}, output_padding={output_padding}. Use "
        f"padding='{base}_equiv', which crops "
        "equally on both sides, or pass allow_non_equivariance=True."
    )


def conv_transpose(x: Any, kernel: Any, strides: tuple[int, ...], padding: str) -> Any:
    """`keras.ops.conv_transpose` (channels last), or the backend's (on JAX on a CPU, with
    the kernel gradient taken as that of a strided convolution; see
    `groco_core.backend.jax.conv_transpose`)."""
    y = backend.call("conv_transpose", x, kernel, strides, padding)
    if y is not NotImplemented:
        return y
    return ops.conv_transpose(x, kernel, strides, padding, data_format="channels_last")


class BaseGroupConvTranspose(BaseGroupKernelLayer):
    """Rank-generic transposed group convolution; `GroupConv{1,2,3}DTranspose` fix `rank`.
    A sibling of `BaseGroupConv` (both build on `BaseGroupKernelLayer`): its groups go the
    other way, and it has no `groups` or LoRA.

    The input lives on `subgroup` (default: `group`), or is an image (lifting); the output
    lives on `group`. `GroupConv2DTranspose(8, 3, group="P4M", subgroup="P4")` maps a P4
    signal to a P4M signal, equivariantly under P4.

    Args:
        rank: number of spatial axes.
        filters: number of output fields (per element of `group`).
        kernel_size, strides, output_padding, dilation_rate, activation, use_bias,
            *_initializer, *_regularizer, *_constraint, data_format: as in
            `keras.layers.Conv2DTranspose`.
        group: the point group the output lives on (name or object), of dimension `rank`.
        subgroup: name of a subgroup of `group` on which the input lives; default `group`.
        padding: `"valid_equiv"` (default) or `"same_equiv"`: Keras's `valid` / `same` output
            length, made the smallest window that crops the full transposed output equally
            on both sides (at most one point longer); `"valid"` / `"same"`: Keras's own,
            accepted only where equivariant.
        allow_non_equivariance: accept configurations that break equivariance.

    Input shape:
        Lifting: `(batch, *spatial, channels)`; otherwise `(batch, *spatial, |subgroup|,
        channels)` (`channels_first`: channels on axis 1, group axis last).

    Output shape:
        `(batch, *new_spatial, |group|, filters)` (`channels_first`: `(batch, filters,
        *new_spatial, |group|)`), `new_spatial = (n − 1)·strides + extent − trim` per axis,
        with `trim` set by `padding` and `output_padding` (0 for `valid_equiv` when
        `kernel_size ≥ strides`).

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
        output_padding: int | tuple[int, ...] | None = None,
        **kwargs: Any,
    ):
        super().__init__(rank, filters, kernel_size, group, subgroup, strides, padding, **kwargs)
        layer_name = type(self).__name__
        # `subgroup` is the group the input lives on; the output lives on the whole group.
        self.input_elements = self.subgroup_elements
        self.output_elements = tuple(range(self.group.order))
        if output_padding is None:
            self.output_padding = None
        else:
            self.output_padding = arguments.normalize_tuple(
                output_padding, rank, "output_padding", minimum=0
            )
            if any(p >= s for p, s in zip(self.output_padding, self.strides, strict=True)):
                raise ValueError(
                    "output_padding must be smaller than strides on every axis. Received: "
                    f"output_padding={self.output_padding}, strides={self.strides}. Lower "
                    "output_padding or leave it None."
                )
            arguments.check_invariant_under_group(self.group, self.output_padding, "output_padding")
        extra_padding = self.output_padding or (None,) * rank
        self._windows = tuple(
            transposed_window(e, s, self.padding, p, self.allow_non_equivariance, layer_name)
            for e, s, p in zip(self.extents, self.strides, extra_padding, strict=True)
        )

    @property
    def input_group(self) -> PointGroup:
        """The group the input lives on (when it is not an image)."""
        return self.subgroup

    @property
    def output_group(self) -> PointGroup:
        return self.group

    def output_spatial(self, spatial: tuple) -> tuple:
        """The output's spatial size for an input of spatial size `spatial`."""
        return tuple(
            None if n is None else (n - 1) * s + e - trim
            for n, e, s, (_, trim) in zip(
                spatial, self.extents, self.strides, self._windows, strict=True
            )
        )

    def plain_window(self) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """`(input_padding, cropping)`: per axis, zero rows added around the input (0 or 1)
        and points cropped from Keras's `valid` transposed output to get this layer's output.

        A zero input row adds `stride` output points that get the bias but no data, which is
        what a window reaching beyond the full output needs (it never reaches `stride` past).
        """
        input_padding, cropping = [], []
        for e, s, (start, trim) in zip(self.extents, self.strides, self._windows, strict=True):
            # Keras's `valid` output holds max(s − e, 0) zero points after the full output.
            tail = trim + max(s - e, 0) - start
            pad_before, pad_after = int(start < 0), int(tail < 0)
            input_padding.append((pad_before, pad_after))
            cropping.append((start + s * pad_before, tail + s * pad_after))
        return tuple(input_padding), tuple(cropping)

    def build(self, input_shape: tuple) -> None:
        self.check_input_shape(input_shape, self.subgroup, "subgroup")
        spatial = self.spatial_shape(tuple(input_shape))
        for n, m in zip(spatial, self.output_spatial(spatial), strict=True):
            if m is not None and m < 1:
                raise ValueError(
                    f"{type(self).__name__}: the output would be empty: input size {n} gives "
                    f"output size {m} with kernel extent(s) {self.extents}, strides "
                    f"{self.strides}, padding={self.padding!r} and output_padding="
                    f"{self.output_padding}. Received: input_shape={tuple(input_shape)}. Use "
                    "a larger input, padding='valid_equiv', or a larger output_padding."
                )
        group_axis_size = () if self.lifting else (self.group.order,)
        add_kernel_and_bias(
            self, self.kernel_size + group_axis_size + (self.in_channels, self.filters)
        )
        # Kept in numpy: a backend tensor made here could belong to a graph being traced.
        self.kernel_gather = KernelGather(self.transformed_kernel_indices())
        self.built = True

    def transformed_kernel_indices(self) -> np.ndarray:
        """Gather indices into the kernel's leading axes, `(|G|, extent points[, |H|])`.

        Row `g` lists, for every point `r` of the dilated kernel grid (and input element `k`
        of H), where `ψ(M_g⁻¹ r[, g⁻¹k])` is stored: the forward table over all of G,
        restricted to the input elements. Holes of a dilated kernel point one past the
        kernel, where `transformed_kernel` appends a zero: TensorFlow's CPU transposed
        convolution has no dilation, so the dilation is built into the kernel.
        """
        indices = group_kernel_indices(
            self.group, self.output_elements, self.spatial_permutation, self.lifting
        )
        if not self.lifting:
            indices = indices[:, :, list(self.input_elements)]
        if self.extents == self.kernel_size:
            return indices
        group_size = 1 if self.lifting else self.group.order
        hole = int(np.prod(self.kernel_size)) * group_size
        points = np.indices(self.kernel_size).reshape(self.rank, -1)
        dilated = np.ravel_multi_index(
            tuple(points * np.asarray(self.dilation_rate)[:, None]), self.extents
        )
        spread = np.full((indices.shape[0], int(np.prod(self.extents)), *indices.shape[2:]), hole)
        spread[:, dilated] = indices
        return spread

    def transformed_kernel(self) -> Any:
        """The kernel of the equivalent plain transposed convolution (dilation built in), in
        Keras's layout `(*extents, |G|·filters, [|H|·]in_channels)`."""
        points = int(np.prod(self.kernel_size))
        group_size = 1 if self.lifting else self.group.order
        flat = ops.reshape(
            self.masked_kernel(), (points * group_size, self.in_channels, self.filters)
        )
        if self.extents != self.kernel_size:
            zero = ops.zeros((1, self.in_channels, self.filters), dtype=flat.dtype)
            flat = ops.concatenate([flat, zero], axis=0)
        gathered = self.kernel_gather(flat)
        # (|G|, extent points[, |H|], C, F) → (extent points, |G|, F[, |H|], C)
        if self.lifting:
            moved = ops.transpose(gathered, (1, 0, 3, 2))
            in_size = self.in_channels
        else:
            moved = ops.transpose(gathered, (1, 0, 4, 2, 3))
            in_size = len(self.input_elements) * self.in_channels
        return ops.reshape(moved, self.extents + (self.group.order * self.filters, in_size))

    def call(self, inputs: Any, training: Any = None) -> Any:
        # channels_first is handled by moving channels last: TensorFlow's CPU convolutions
        # only support channels_last, and the group axis must sit next to the channels.
        channels_first = self.data_format == "channels_first"
        x = self.mask_input(ops.moveaxis(inputs, 1, -1) if channels_first else inputs)
        if not self.lifting:
            x = merge_group_axis(x)
        # Keras's `same` where this layer's window is that one, else `valid`, plus zero input
        # rows and a crop where needed: a crop that keeps everything still costs a copy of
        # the output's gradient on TensorFlow (StridedSliceGrad; docs/performance.md).
        same = all(
            keras_transposed_window(e, s, "same", None) == window
            for e, s, window in zip(self.extents, self.strides, self._windows, strict=True)
        )
        input_padding, cropping = self.plain_window()
        if same:
            input_padding = cropping = ()
        if any(before or after for before, after in input_padding):
            x = ops.pad(x, [(0, 0), *input_padding, (0, 0)])
        y = conv_transpose(
            x, cached_transformed_kernel(self, training), self.strides, "same" if same else "valid"
        )
        if any(before or after for before, after in cropping):
            y = y[(slice(None),) + tuple(slice(b, -a if a else None) for b, a in cropping)]
        bias = self.bias if self.use_bias else None
        return self.finish(y, self.group.order, channels_first, bias)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        spatial = self.output_spatial(self.spatial_shape(tuple(input_shape)))
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, self.group.order, self.filters)
        return (input_shape[0], self.filters, *spatial, self.group.order)

    def export_plain(self, inputs: Any) -> Any:
        """The same computation with stock Keras layers only (see `groco_core.export`)."""
        from groco_core.exporting import export_group_conv_transpose

        outputs = export_group_conv_transpose(self, self.plain_mask(inputs, "input"))
        return self.plain_mask(outputs, "output")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["output_padding"] = self.output_padding
        return config


@keras.saving.register_keras_serializable(package="groco")
class GroupConv1DTranspose(BaseGroupConvTranspose):
    """1D transposed group convolution (groups of the line, e.g. `"LM"`).

    Args:
        filters: output fields (channels per element of `group`).
        kernel_size, strides, padding, output_padding, data_format, dilation_rate,
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as in
            `keras.layers.Conv1DTranspose`, in the same order; `padding` also takes
            `"valid_equiv"` (the default) and `"same_equiv"` (see `BaseGroupConvTranspose`).
        group: the point group the output lives on, by name or object; keyword only,
            required.
        subgroup: the subgroup the input lives on; default `group`.
        allow_non_equivariance: accept configurations that break equivariance.

    Example:
        >>> import numpy as np
        >>> from groco_core.layers.conv_transpose import GroupConv1DTranspose
        >>> GroupConv1DTranspose(4, 2, group="LM", strides=2)(np.zeros((2, 5, 2, 3))).shape
        (2, 10, 2, 4)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int],
        strides: int | tuple[int] = 1,
        padding: str = "valid_equiv",
        output_padding: int | tuple[int] | None = None,
        data_format: str | None = None,
        dilation_rate: int | tuple[int] = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupConvTranspose.__init__(self, 1, **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupConv2DTranspose(BaseGroupConvTranspose):
    """2D transposed group convolution.

    Args:
        filters: output fields (channels per element of `group`).
        kernel_size, strides, padding, output_padding, data_format, dilation_rate,
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as in
            `keras.layers.Conv2DTranspose`, in the same order; `padding` also takes
            `"valid_equiv"` (the default) and `"same_equiv"` (see `BaseGroupConvTranspose`).
        group: the point group the output lives on, by name or object; keyword only,
            required.
        subgroup: the subgroup the input lives on; default `group`.
        allow_non_equivariance: accept configurations that break equivariance.

    Example:
        >>> import numpy as np
        >>> from groco_core.layers.conv_transpose import GroupConv2DTranspose
        >>> on_p4 = np.zeros((2, 5, 5, 4, 3), dtype="float32")
        >>> layer = GroupConv2DTranspose(6, 2, group="P4M", subgroup="P4", strides=2)
        >>> layer(on_p4).shape
        (2, 10, 10, 8, 6)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid_equiv",
        output_padding: int | tuple[int, int] | None = None,
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupConvTranspose.__init__(self, 2, **keyword_arguments(locals()))


@keras.saving.register_keras_serializable(package="groco")
class GroupConv3DTranspose(BaseGroupConvTranspose):
    """3D transposed group convolution (cubic-lattice groups).

    Args:
        filters: output fields (channels per element of `group`).
        kernel_size, strides, padding, data_format, output_padding, dilation_rate,
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as in
            `keras.layers.Conv3DTranspose`, in the same order; `padding` also takes
            `"valid_equiv"` (the default) and `"same_equiv"` (see `BaseGroupConvTranspose`).
        group: the point group the output lives on, by name or object; keyword only,
            required.
        subgroup: the subgroup the input lives on; default `group`.
        allow_non_equivariance: accept configurations that break equivariance.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int, int],
        strides: int | tuple[int, int, int] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        output_padding: int | tuple[int, int, int] | None = None,
        dilation_rate: int | tuple[int, int, int] = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        BaseGroupConvTranspose.__init__(self, 3, **keyword_arguments(locals()))
