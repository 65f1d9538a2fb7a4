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
from groco_core.backend import jax as jax_backend
from groco_core.backend import torch as torch_backend
from groco_core.groups import PointGroup
from groco_core.layers import arguments
from groco_core.layers.fast_paths import takes
from groco_core.layers.kernel_cache import cached_transformed_kernel
from groco_core.layers.lora import LoRAKernelMixin
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.registry import get_group


def jax_conv(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    dilation_rate: tuple[int, ...],
) -> Any:
    """The convolution `GroupConv2D` runs on JAX at stride 1 (`_jax_conv_applies`):
    `groco_core.backend.jax.conv`, explicit zero paddings handed to XLA."""
    return jax_backend.conv(x, kernel, strides, paddings, dilation_rate)


_EXAMPLE_GROUP = {1: "LM", 2: "P4M", 3: "Oh"}


def keyword_arguments(local_variables: dict[str, Any]) -> dict[str, Any]:
    """A public constructor's arguments (its `locals()`) as keywords for the base class:
    drops `self` and `__class__` and merges `**kwargs`."""
    named = {k: v for k, v in local_variables.items() if k not in ("self", "__class__")}
    extra = named.pop("kwargs", {})
    return {**named, **extra}


def resolve_group_pair(
    layer_name: str, group: Any, subgroup: Any, rank: int
) -> tuple[PointGroup, PointGroup, tuple[int, ...]]:
    """The layer's group, the subgroup its output lives on, and the subgroup's indices."""
    if group is None:
        raise ValueError(
            f"{layer_name} needs a `group`: the name of a registered point group acting on "
            f"{rank} dimension(s), e.g. {layer_name}(..., group={_EXAMPLE_GROUP[rank]!r}). "
            f"Received: group=None. See `groco list-groups --dimension {rank}`."
        )
    if isinstance(group, str) and not group:
        raise ValueError(f"group must be a non-empty group name. Received: group={group!r}")
    group = get_group(group)
    if group.dimension != rank:
        raise ValueError(
            f"{layer_name} needs a group acting on {rank} dimension(s); group {group.name} acts "
            f"on {group.dimension}. Received: group={group.name!r}. Groups of dimension {rank}: "
            f"see `groco list-groups --dimension {rank}`."
        )
    subgroup = group if subgroup is None else get_group(subgroup, subgroup_of=group)
    return group, subgroup, group.subgroup_indices(subgroup)


def add_kernel_and_bias(
    layer: keras.layers.Layer,
    kernel_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None = None,
) -> None:
    """Creates `layer.kernel` (untransformed) and `layer.bias` (one per output field, shared
    over the group; shape `bias_shape`, default the kernel's last axis) from the layer's
    initializers, regularizers and constraints. Public for layer plugins."""
    layer.kernel = layer.add_weight(
        name="kernel",
        shape=kernel_shape,
        initializer=layer.kernel_initializer,
        regularizer=layer.kernel_regularizer,
        constraint=layer.kernel_constraint,
    )
    layer.bias = None
    if layer.use_bias:
        layer.bias = layer.add_weight(
            name="bias",
            shape=kernel_shape[-1:] if bias_shape is None else bias_shape,
            initializer=layer.bias_initializer,
            regularizer=layer.bias_regularizer,
            constraint=layer.bias_constraint,
        )


def eager_torch() -> bool:
    """Whether this runs on PyTorch outside `torch.compile`, where layers may call `torch`
    directly. Public for layer plugins."""
    return backend.call("eager") is True


def reshape(x: Any, shape: tuple) -> Any:
    """`keras.ops.reshape`, or the backend's quicker reshape (eager PyTorch's own, a fraction
    of Keras's cost per call). Public for layer plugins."""
    y = backend.call("reshape", x, shape)
    return ops.reshape(x, shape) if y is NotImplemented else y


def split_group_axis(y: Any, elements: int, fields: int, bias: Any = None) -> Any:
    """`y` `(batch, ..., elements·fields)` as `(batch, ..., elements, fields)`, plus `bias`
    `(fields,)` if given. Public for layer plugins.

    The bias is tiled and added before the split, on the merged axis, as a plain layer adds
    its own: added after the split it broadcasts over a short last axis, which PyTorch runs
    about ten times slower (212 against 22 µs for `(4, 10, 10, 10, 24, 4)` plus `(4,)`
    against `(4, 10, 10, 10, 96)` plus `(96,)`) and TensorFlow about 1.5 times (328 against
    181 µs). Under `torch.compile` it is added after the split, which compiles (the tiled
    form trips its dynamic-shape checks) and whose cost the compiler removes.
    """
    shape = ops.shape(y)
    split_shape = (shape[0], *shape[1:-1], elements, fields)
    if bias is None:
        return reshape(y, split_shape)
    if torch_compiling() or not takes("bias_on_merged_axis"):
        return ops.add(reshape(y, split_shape), bias)
    return reshape(ops.add(y, tile_over_group(bias, elements)), split_shape)


def tile_over_group(vector: Any, elements: int) -> Any:
    """`vector` `(fields,)` repeated `elements` times: the same per-field values (a bias, a
    batch norm's statistics) on the merged axis `(elements·fields,)`, channel
    `h·fields + c` (on JAX as a product with a 0/1 matrix, see `groco_core.backend.jax`).
    Public for layer plugins."""
    y = backend.call("tile", vector, elements)
    if y is not NotImplemented:
        return y
    fields = vector.shape[0]
    return reshape(ops.broadcast_to(vector, (elements, fields)), (elements * fields,))


def torch_conv_channels_last(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    dilation_rate: tuple[int, ...],
    groups: int = 1,
    bias: Any = None,
) -> Any:
    """A channels-last convolution on eager PyTorch without Keras's layout copies
    (`groco_core.backend.torch.conv`), for a caller that checked `eager_torch()` and
    `takes("torch_channels_last_conv")`. Public for layer plugins.

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(*kernel_size, C / groups, F)`.
        strides, dilation_rate: per spatial axis.
        paddings: zeros `(before, after)` per spatial axis.
        groups: feature groups, as in `keras.ops.conv` (`C` for a depthwise convolution).
        bias: `(F,)` or None, added by the convolution.

    Returns:
        `(batch, *out, F)`.
    """
    return torch_backend.channels_last_conv(
        x, kernel, strides, paddings, dilation_rate, groups, bias
    )


def on_jax_cpu() -> bool:
    """Whether this runs on JAX computing on the CPU, where some layers take gradients XLA's
    CPU backend runs faster than its own. Public for layer plugins."""
    return backend.call("on_cpu") is True


def torch_compiling() -> bool:
    """Whether this runs on PyTorch inside `torch.compile`, where code paths that call
    `torch` directly give way to Keras's own ops (which the compiler traces). Public for
    layer plugins."""
    return backend.call("compiling") is True


class KernelGather:
    """The gather that transforms a kernel by every output element.

    `indices` is `(|H|, ...)`: row `h` lists, for every entry of the transformed kernel,
    which row of the flattened kernel it takes; usually each row, flattened, lists every
    kernel row once (a permutation). Calling it with the flattened kernel `(n, ...)` returns
    `flat[indices]`, `(*indices.shape, ...)`: `keras.ops.take`, or the backend's own gather
    (`groco_core.backend`), which keeps what it prepares from the indices in
    `backend_cache`. Public for layer plugins.
    """

    def __init__(self, indices: np.ndarray):
        self.indices = np.ascontiguousarray(indices, dtype="int32")
        rows = self.indices.reshape(self.indices.shape[0], -1)
        inverse = np.argsort(rows, axis=1)
        permutations = np.array_equal(
            np.take_along_axis(rows, inverse, axis=1),
            np.broadcast_to(np.arange(rows.shape[1]), rows.shape),
        )
        self.inverse = inverse.astype("int32") if permutations else None
        self._backend_caches: dict[str, dict] = {}

    def backend_cache(self, name: str) -> dict:
        """A dictionary for backend `name`'s tables made from the indices (made once)."""
        return self._backend_caches.setdefault(name, {})

    def __call__(self, flat: Any) -> Any:
        flat = ops.convert_to_tensor(flat)  # a variable is read once, as a tensor
        y = backend.call("gather", self, flat)
        return ops.take(flat, self.indices, axis=0) if y is NotImplemented else y

    def permutes(self, rows: int) -> bool:
        """Whether every row of `indices` lists each of `rows` kernel rows exactly once."""
        return self.inverse is not None and self.inverse.shape[1] == rows

    def moved(self, flat: Any, lead: int) -> Any:
        """`flat` `(n, *D)` gathered with the element axis placed after the first `lead` axes
        of `D`: `(*indices.shape[1:], *D[:lead], |H|, *D[lead:])`, the values of
        `moveaxis(self(flat), 0, indices.ndim - 1 + lead)`. A transformed kernel in the layout
        its convolution takes (for a convolution `lead=1`: `(K[, |G|], C, |H|, F)`); on
        TensorFlow one gather straight into that layout. Public for layer plugins."""
        flat = ops.convert_to_tensor(flat)  # a variable is read once, as a tensor
        y = backend.call("gather_moved", self, flat, lead)
        if y is not NotImplemented:
            return y
        return ops.moveaxis(self(flat), 0, self.indices.ndim - 1 + lead)


class BaseGroupConv(LoRAKernelMixin, RegisteredGroupsMixin, keras.layers.Layer):
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
        self.group, self.subgroup, self._output_elements = resolve_group_pair(
            layer_name, group, subgroup, rank
        )
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)):
            raise TypeError(f"filters must be a positive int. Received: filters={filters!r}")
        if filters <= 0:
            raise ValueError(f"filters must be a positive int. Received: filters={filters}")
        self.filters = int(filters)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups must be a positive int. Received: groups={groups!r}")
        if self.filters % groups:
            raise ValueError(
                f"{layer_name}: filters must be divisible by groups (each group of input "
                f"fields feeds filters / groups output fields). Received: filters={filters}, "
                f"groups={groups}"
            )
        self.groups = int(groups)
        self._init_lora(lora_rank, lora_alpha)
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
        self._spatial_permutation = self.group.kernel_permutation(self.kernel_size)
        self._kernel_mask = self.group.kernel_support_mask(self.kernel_size)
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
        self._padding_cache: dict[tuple, tuple[tuple[int, int], ...]] = {}

    # -- shapes ---------------------------------------------------------------------------

    @property
    def _extents(self) -> tuple[int, ...]:
        return tuple(
            d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation_rate, strict=True)
        )

    def _spatial_shape(self, shape: tuple) -> tuple:
        if self.data_format == "channels_last":
            return tuple(shape[1 : 1 + self.rank])
        return tuple(shape[2 : 2 + self.rank])

    def _paddings(self, spatial: tuple) -> tuple[tuple[int, int], ...]:
        key = tuple(None if n is None else int(n) for n in spatial)
        if key not in self._padding_cache:
            self._padding_cache[key] = tuple(
                arguments.equivariant_padding(
                    n,
                    e,
                    s,
                    self.padding,
                    self.allow_non_equivariance,
                    type(self).__name__,
                    window_size=k,
                    dilation=d,
                    rank=self.rank,
                )
                for n, e, s, k, d in zip(
                    key,
                    self._extents,
                    self.strides,
                    self.kernel_size,
                    self.dilation_rate,
                    strict=True,
                )
            )
            if not self.allow_non_equivariance:
                arguments.check_centre_point(
                    type(self).__name__,
                    self.subgroup,
                    key,
                    self._padding_cache[key],
                    self._extents,
                    self.strides,
                )
        return self._padding_cache[key]

    def _conv_padding(self, spatial: tuple) -> tuple[str, tuple[tuple[int, int], ...] | None]:
        """`(padding for ops.conv, explicit padding or None)`.

        Where the equivariant padding is Keras's own `"same"` (e.g. an odd kernel extent at
        stride 1) the convolution pads by itself, which is quicker than a separate `ops.pad`
        (its gradient is a slice) on every backend; otherwise the input is padded explicitly.
        """
        paddings = self._paddings(spatial)
        if None in paddings:  # decided when the computation runs (see `arguments.runtime_paddings`)
            return "valid", paddings
        if not any(before or after for before, after in paddings):
            return "valid", None
        # With an unknown size the stride is 1, where "same" does not depend on the size.
        sizes = [e if n is None else int(n) for n, e in zip(spatial, self._extents, strict=True)]
        same = [
            arguments.keras_padding(n, e, s, "same")
            for n, e, s in zip(sizes, self._extents, self.strides, strict=True)
        ]
        if list(paddings) == same:
            return "same", None
        return "valid", paddings

    def _output_spatial(self, spatial: tuple) -> tuple:
        result = []
        for n, e, s, padding in zip(
            spatial, self._extents, self.strides, self._paddings(spatial), strict=True
        ):
            result.append(None if n is None else (n + sum(padding) - e) // s + 1)
        return tuple(result)

    def build(self, input_shape: tuple) -> None:
        self._check_input_shape(input_shape, self.group, "group")
        self._paddings(self._spatial_shape(input_shape))  # refuse bad configurations early
        self._add_kernel_and_bias()
        self._build_lora()

    def _check_input_shape(self, input_shape: tuple, input_group: PointGroup, argument: str):
        """Sets `lifting` and `in_channels` from the input shape, or says what is wrong."""
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

    def _add_kernel_and_bias(self) -> None:
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
        self._kernel_gather = KernelGather(self.transformed_kernel_indices())
        self.built = True

    def transformed_kernel_indices(self) -> np.ndarray:
        """Gather indices into the kernel's leading axes, `(|H|, kernel points[, |G|])`.

        Row `h` lists, for every kernel point `r` (and input element `k`), where
        `ψ(M_h⁻¹ r[, h⁻¹k])` is stored: `h` is transformed into the kernel in one gather.
        """
        output_elements = np.asarray(self._output_elements)
        spatial = self._spatial_permutation[output_elements]  # (|H|, K)
        if self.lifting:
            return spatial
        order = self.group.order
        inverse_of_h = self.group.inverses[output_elements]
        group_part = self.group.cayley[inverse_of_h]  # (|H|, |G|): h⁻¹k
        return spatial[:, :, None] * order + group_part[:, None, :]

    def masked_kernel(self) -> Any:
        """The untransformed kernel the layer uses, `(*kernel_size, [|G|,] in_channels,
        filters)`: `self.kernel` (with its LoRA update), zero outside the group's
        `kernel_support_mask` (a hexagonal lattice's corners), and with `groups > 1` spread
        into the block-diagonal kernel of all input fields."""
        kernel = self.kernel
        if self._kernel_mask is not None:
            extra = (1,) * (len(kernel.shape) - self.rank)
            mask = self._kernel_mask.reshape(self.kernel_size + extra)
            kernel = ops.multiply(kernel, ops.cast(mask, kernel.dtype))
        if self.groups > 1:
            tiles = (1,) * (len(kernel.shape) - 2) + (self.groups, 1)
            blocks = ops.cast(self._group_blocks, kernel.dtype)
            kernel = ops.multiply(ops.tile(kernel, tiles), blocks)
        return kernel

    def transformed_kernel(self) -> Any:
        """The kernel of the equivalent plain convolution,
        `(*kernel_size, [|G|·]in_channels, |H|·filters)`."""
        points = math.prod(self.kernel_size)
        group_size = 1 if self.lifting else self.group.order
        flat = reshape(self.masked_kernel(), (points * group_size, self.in_channels, self.filters))
        inputs, outputs = group_size * self.in_channels, len(self._output_elements) * self.filters
        kernel = backend.call("transformed_kernel", self._kernel_gather, flat, self.kernel_size)
        if kernel is not NotImplemented:
            return kernel
        moved = self._kernel_gather.moved(flat, 1)  # (K[, |G|], C, |H|, F)
        return reshape(moved, self.kernel_size + (inputs, outputs))

    def call(self, inputs: Any, training: Any = None) -> Any:
        # channels_first is handled by moving channels last: TensorFlow's CPU conv only
        # supports channels_last, and the group axis must sit next to the channels anyway.
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(inputs, 1, -1) if channels_first else inputs
        if not self.lifting:
            shape = ops.shape(x)
            x = reshape(x, (shape[0], *shape[1:-2], shape[-2] * shape[-1]))
        spatial = tuple(x.shape[1 : 1 + self.rank])
        if eager_torch() and takes("torch_channels_last_conv"):
            paddings = self._paddings(spatial)
            bias = None
            if self.use_bias:
                bias = tile_over_group(self.bias, len(self._output_elements))
            y = torch_conv_channels_last(
                x,
                cached_transformed_kernel(self, training),
                self.strides,
                paddings,
                self.dilation_rate,
                bias=bias,
            )
            return self._finish(y, channels_first, bias_added=True)
        conv_padding, explicit = self._conv_padding(spatial)
        if explicit is not None and None in explicit:
            explicit = arguments.runtime_paddings(
                x,
                explicit,
                self._extents,
                self.strides,
                self.padding,
                self.allow_non_equivariance,
                type(self).__name__,
            )
        if explicit is None and self._matmul_applies() and takes("pointwise_matmul"):
            # A kernel of one point: the convolution is a product with the kernel's matrix on
            # the input's points (every `stride`-th).
            if any(s > 1 for s in self.strides):
                x = x[(slice(None), *(slice(None, None, s) for s in self.strides))]
            kernel = cached_transformed_kernel(self, training)
            y = ops.matmul(x, reshape(kernel, tuple(kernel.shape[-2:])))
            return self._finish(y, channels_first)
        if self._jax_conv_applies(conv_padding) and takes("jax_padded_conv"):
            paddings = explicit if explicit is not None else ((0, 0),) * self.rank
            kernel = cached_transformed_kernel(self, training)
            y = jax_conv(x, kernel, self.strides, paddings, self.dilation_rate)
            return self._finish(y, channels_first)
        if explicit is not None:
            x = ops.pad(x, [(0, 0), *explicit, (0, 0)])
        y = ops.conv(
            x,
            cached_transformed_kernel(self, training),
            strides=self.strides,
            padding=conv_padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        return self._finish(y, channels_first)

    def _matmul_applies(self) -> bool:
        """Whether `call` computes the convolution as a matrix product: a kernel of one point,
        on JAX on a CPU in 2D and 3D at any stride, and on TensorFlow on a CPU at stride 1.

        Elsewhere the convolution stays: JAX in 1D gained nothing, TensorFlow at stride 2
        lost (its strided slice and the slice's gradient), and PyTorch's oneDNN 1×1
        convolution on channels-last memory is faster than its matrix product. Figures:
        docs/performance.md.
        """
        if any(k != 1 for k in self.kernel_size):
            return False
        backend = keras.backend.backend()
        if backend == "jax":
            return self.rank >= 2 and on_jax_cpu()
        if backend == "tensorflow":
            import tensorflow as tf

            return all(s == 1 for s in self.strides) and not tf.config.list_logical_devices("GPU")
        return False

    def _jax_conv_applies(self, conv_padding: str) -> bool:
        """Whether `call` convolves through `jax_conv`: JAX on a CPU, 2D, no padding Keras's
        `same` gives, stride 1 and a kernel of at least 2 points on each axis (where it was
        measured faster; see `jax_conv`)."""
        return (
            conv_padding == "valid"
            and self.rank == 2
            and all(s == 1 for s in self.strides)
            and min(self._extents) >= 2
            and on_jax_cpu()
        )

    def _finish(self, y: Any, channels_first: bool, bias_added: bool = False) -> Any:
        """Bias (unless `bias_added`), group axis split off, activation and data format of the
        conv's output."""
        bias = self.bias if self.use_bias and not bias_added else None
        y = split_group_axis(y, len(self._output_elements), self.filters, bias)
        if self.activation is not None:
            y = self.activation(y)
        return ops.moveaxis(y, -1, 1) if channels_first else y

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        spatial = self._output_spatial(self._spatial_shape(tuple(input_shape)))
        elements = len(self._output_elements)
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, elements, self.filters)
        return (input_shape[0], self.filters, *spatial, elements)

    def export_plain(self, inputs: Any) -> Any:
        """The same computation with stock Keras layers only (see `groco_core.export`)."""
        from groco_core.exporting import export_group_conv

        return export_group_conv(self, inputs)

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
                "groups": self.groups,
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
                **self.lora_config(),
            }
        )
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
