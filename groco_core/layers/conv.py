"""Group convolutions: lifting (image → signal on the group) and group (group → group).

`[f ⋆ ψ](p, h) = Σ_q Σ_c f_c(q) ψ_c(M_h⁻¹ (q − p))` (lifting) and
`[f ⋆ ψ](p, h) = Σ_q Σ_k Σ_c f_c(q, k) ψ_c(M_h⁻¹ (q − p), h⁻¹k)` (group). The kernel is
transformed by every output element with one gather (indices built in numpy at build time)
and handed to one `keras.ops.conv`, the group axis merged into the channel axis.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.groups import PointGroup
from groco_core.layers import arguments
from groco_core.layers.fast_paths import takes
from groco_core.layers.kernel_cache import cached_transformed_kernel
from groco_core.layers.lora import LoRAKernelMixin
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.registry import get_group

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
    """Whether this runs on PyTorch outside `torch.compile`, where the layers call `torch`
    directly in their hot path. Public for layer plugins."""
    return keras.backend.backend() == "torch" and not torch_compiling()


def reshape(x: Any, shape: tuple) -> Any:
    """`keras.ops.reshape`, except on PyTorch outside `torch.compile`, where it is the
    tensor's own `reshape`: there Keras's took about 16 µs a call and the tensor's 1 µs, and
    a group layer reshapes four to six times per call. Public for layer plugins."""
    if eager_torch() and takes("torch_tensor_reshape"):
        import torch

        if not isinstance(x, torch.Tensor):
            x = ops.convert_to_tensor(x)
        return x.reshape(shape)
    return ops.reshape(x, shape)


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


# Up to this many entries of the 0/1 matrix, `tile_over_group` tiles by a matrix product on JAX.
JAX_TILING_LIMIT = 2**20


@functools.lru_cache(maxsize=64)
def _tiling_matrix(elements: int, fields: int) -> np.ndarray:
    """`(elements·fields, fields)`: row `h·fields + c` is the unit vector `c`."""
    return np.tile(np.eye(fields, dtype="float32"), (elements, 1))


def tile_over_group(vector: Any, elements: int) -> Any:
    """`vector` `(fields,)` repeated `elements` times: the same per-field values (a bias, a
    batch norm's statistics) on the merged axis `(elements·fields,)`, channel
    `h·fields + c`. Public for layer plugins.

    On JAX (up to `JAX_TILING_LIMIT` entries of the matrix) this is a product with a constant
    0/1 matrix. XLA fuses whatever feeds an elementwise operation into its loop, so a tile
    made by broadcast and reshape is recomputed for every element of the tensor it is added
    to or multiplied with, an index modulo `fields` each, which keeps the loop from
    vectorizing; a matrix product it computes once. A multiply-add of `(32, 28, 28, 128)` with
    vectors of 16 values tiled 8 times took 0.82–0.98 ms tiled by broadcast, 0.33–0.41 ms
    tiled by the product, and 0.34–0.36 ms with vectors of 128 values (benchmarks/micro.py,
    two runs).
    """
    fields = vector.shape[0]
    if (
        keras.backend.backend() == "jax"
        and elements * fields * fields <= JAX_TILING_LIMIT
        and takes("jax_tiling_matmul")
    ):
        return ops.matmul(ops.cast(_tiling_matrix(elements, fields), vector.dtype), vector)
    return reshape(ops.broadcast_to(vector, (elements, fields)), (elements * fields,))


# Ranks whose convolutions on PyTorch sum their bias gradient apart (`torch_conv_channels_last`).
TORCH_BIAS_GRADIENT_APART_RANKS = frozenset({2, 3})
# Whether a 1D convolution on PyTorch that takes gradients gets its input as a contiguous copy.
TORCH_CONTIGUOUS_1D_INPUT_FOR_GRADIENTS = True


def torch_conv_channels_last(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    dilation_rate: tuple[int, ...],
    groups: int = 1,
    bias: Any = None,
) -> Any:
    """A channels-last convolution on PyTorch without Keras's layout round trip. Public for
    layer plugins.

    `keras.ops.conv` with `channels_last` copies the input to channels-first and then back to
    PyTorch's channels-last memory format before the convolution (two copies of the input
    per call, and their gradients). A channels-last tensor with its channel axis moved second
    already is channels-last memory, which PyTorch's convolution takes as it is, and its
    output moved back is again a plain channels-last tensor. PyTorch has no channels-last
    format for 1D, and its 1D convolution copies such a view to contiguous memory, in the
    forward pass and again in the backward pass; where gradients are taken, the input is
    copied once here instead (`TORCH_CONTIGUOUS_1D_INPUT_FOR_GRADIENTS`: the train step of
    the LM row of benchmarks/overhead.py 4–13% faster, benchmarks/micro.py `--only
    torch_conv1d`, two runs). Inference keeps the view: copied here, it was no faster.

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(*kernel_size, C / groups, F)`.
        strides, dilation_rate: per spatial axis.
        paddings: zeros `(before, after)` per spatial axis.
        groups: feature groups, as in `keras.ops.conv` (`C` for a depthwise convolution).
        bias: `(F,)` or None. Added by the convolution itself: oneDNN adds it while it writes
            the output, where a separate add is one more pass over it (inference,
            `(32, 28, 28, 128)`, 3×3: 20.3 against 22.6–22.8 ms; benchmarks/micro.py). Where
            it gets a gradient, in 2D and 3D (`TORCH_BIAS_GRADIENT_APART_RANKS`), that
            gradient is the upstream summed here (`_torch_biased_convolution`): PyTorch's 2D
            convolution backward took 0.7–1.1 ms longer when it computed the bias gradient
            too (P4 lifting row of benchmarks/overhead.py, 2.0–2.4 against 1.3–1.5 ms per
            step in `torch.profiler`). Summed apart, the train steps of four 2D rows were
            1–11% faster in 7 of 8 timings and 10% slower in one (benchmarks/micro.py
            `--only torch_bias_gradient`, two runs). In 3D, two runs of 61 repeats each
            (`--only torch_3d_bias_gradient --repeats 61`, 2026-12-04) had the lifting
            `same_equiv` rows 6–11% faster summed apart and the other six rows within
            −2.8% to +2.0%.

    Returns:
        `(batch, *out, F)`.
    """
    import torch
    import torch.nn.functional as tnn

    rank = len(strides)
    x = ops.convert_to_tensor(x)
    channels_first = x.permute(0, rank + 1, *range(1, rank + 1))
    weights = ops.convert_to_tensor(kernel).permute(rank + 1, rank, *range(rank))
    if all(before == after for before, after in paddings):
        padding = tuple(before for before, _ in paddings)
    else:  # torch.nn.functional.pad takes the last axis first
        flat = [side for pair in reversed(paddings) for side in pair]
        channels_first = tnn.pad(channels_first, flat)
        padding = 0
    if (
        rank == 1
        and TORCH_CONTIGUOUS_1D_INPUT_FOR_GRADIENTS
        and torch.is_grad_enabled()
        and (x.requires_grad or weights.requires_grad)
    ):
        channels_first = channels_first.contiguous()
    convolution = {1: tnn.conv1d, 2: tnn.conv2d, 3: tnn.conv3d}[rank]
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
    if (
        bias is not None
        and rank in TORCH_BIAS_GRADIENT_APART_RANKS
        and torch.is_grad_enabled()
        and bias.requires_grad
        and takes("torch_bias_gradient_apart")
    ):
        y = _torch_biased_convolution()(
            channels_first, weights, bias, strides, padding, dilation_rate, groups
        )
    else:
        y = convolution(
            channels_first,
            weights,
            bias,
            stride=strides,
            padding=padding,
            dilation=dilation_rate,
            groups=groups,
        )
    return y.permute(0, *range(2, rank + 2), 1)


@functools.cache
def _torch_biased_convolution() -> Any:
    """`apply(x, weight, bias, strides, padding, dilation_rate, groups)`: PyTorch's
    convolution with its bias, whose bias gradient is the upstream summed here instead of by
    the convolution's backward. Made on first use, so that importing this module needs no
    PyTorch."""
    import torch

    class BiasedConvolution(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, strides, padding, dilation_rate, groups):
            ctx.save_for_backward(x, weight)
            ctx.options = (strides, padding, dilation_rate, groups)
            convolution = {3: torch.conv1d, 4: torch.conv2d, 5: torch.conv3d}[x.dim()]
            return convolution(x, weight, bias, strides, padding, dilation_rate, groups)

        @staticmethod
        def backward(ctx, upstream):
            x, weight = ctx.saved_tensors
            strides, padding, dilation_rate, groups = ctx.options
            rank = x.dim() - 2
            if isinstance(padding, int):
                padding = (padding,) * rank
            mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False]
            input_gradient, kernel_gradient, _ = torch.ops.aten.convolution_backward(
                upstream, x, weight, None, strides, padding, dilation_rate, False,
                (0,) * rank, groups, mask
            )  # fmt: skip
            bias_gradient = upstream.sum((0, *range(2, rank + 2)))
            return input_gradient, kernel_gradient, bias_gradient, None, None, None, None

    return BiasedConvolution.apply


def on_jax_cpu() -> bool:
    """Whether this runs on JAX computing on the CPU, where some layers take gradients XLA's
    CPU backend runs faster than its own. Public for layer plugins."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def jax_conv(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    dilation_rate: tuple[int, ...],
) -> Any:
    """A channels-last convolution on JAX with explicit zero `paddings` handed to XLA, where
    at least one side is padded. Public for layer plugins.

    XLA's CPU backend runs a 2D convolution without any padding on a slower path than one
    with some. So where nothing is padded, this pads one zero row at the end of the first
    spatial axis and drops the output row it adds, if any (no window of the unpadded input
    reaches that row). Other paddings go to the convolution as they are, with no separate
    pad. `valid` convolutions of `(16, 28, 28, 128)`, forward pass / forward pass and
    gradients in ms, unpadded against this way (benchmarks/micro.py):

    | kernel, stride, dilation | unpadded | `jax_conv` |
    |---|---|---|
    | 3×3, 1, 1 | 37.8 / 53.8 | 10.2 / 24.7 |
    | 5×5, 1, 1 | 100.8 / 112.0 | 19.5 / 48.1 |
    | 3×3, 1, 2 | 33.1 / 49.5 | 8.5 / 26.4 |
    | 2×2, 1, 1 | 10.3 / 18.0 | 8.6 / 15.8 |
    | 3×3, 2, 1 | 4.7 / 9.3 | 3.5 / 9.3 |
    | 1×1, 1, 1 | 2.4 / 9.8 | 1.7 / 131.8 |

    and no gain in 1D (`(32, 256, 32)`, 3) or 3D (`(4, 12, 12, 12, 96)`, 3×3×3). So
    `BaseGroupConv` uses it in 2D at stride 1 with at least 2 kernel points per axis only.

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(*kernel_size, C, F)`.
        strides, dilation_rate: per spatial axis.
        paddings: zeros `(before, after)` per spatial axis.
    """
    from jax import lax

    rank = len(strides)
    names = "DHW"[-rank:]
    numbers = (f"N{names}C", f"{names}IO", f"N{names}C")
    paddings = [tuple(int(p) for p in pair) for pair in paddings]
    keep = None
    if not any(before or after for before, after in paddings):
        n, k = int(x.shape[1]), int(kernel.shape[0])
        s, d = strides[0], dilation_rate[0]
        keep = (n - d * (k - 1) - 1) // s + 1
        if (n - d * (k - 1)) // s + 1 == keep:
            keep = None  # the extra row adds no output
        paddings[0] = (0, 1)
    kernel = ops.convert_to_tensor(kernel)
    x = ops.convert_to_tensor(x, dtype=kernel.dtype)
    y = lax.conv_general_dilated(
        x,
        kernel,
        tuple(strides),
        paddings,
        rhs_dilation=tuple(dilation_rate),
        dimension_numbers=numbers,
    )
    return y if keep is None else y[:, :keep]


def torch_compiling() -> bool:
    """Whether this runs on PyTorch inside `torch.compile`, where code paths that call
    `torch` directly give way to Keras's own ops (which the compiler traces). Public for
    layer plugins."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return torch.compiler.is_compiling()


# `KernelGather` on TensorFlow reads kernel rows shorter than this many bytes as `int64`
# entries (see `_tensorflow_run_gather`).
TF_WIDE_ROW_BYTES = 32
# `KernelGather.torch_output_major` takes transformed kernels of up to this many entries one
# entry at a time (`torch.take`), larger ones by rows.
TORCH_TAKE_MAX_ENTRIES = 2**16


class KernelGather:
    """The gather that transforms a kernel by every output element, prepared per backend.

    `indices` is `(|H|, ...)`: row `h` lists, for every entry of the transformed kernel,
    which row of the flattened kernel it takes; usually each row, flattened, lists every
    kernel row once (a permutation). Calling it with the flattened kernel `(n, ...)` returns
    `flat[indices]`, `(*indices.shape, ...)`. Public for layer plugins.

    Per backend, the cheapest formulation measured (benchmarks/overhead.py's shapes):

    - PyTorch: one `torch.index_select` with an index tensor made once per device, instead
      of `keras.ops.take`, which converts the numpy indices and checks their signs on every
      call (about 30 extra operations per train step, a fixed cost that shows on small steps).
    - TensorFlow: where the rows are permutations, the gradient is a gather with the inverse
      permutations summed over `h` instead of TensorFlow's scatter-add
      (`UnsortedSegmentSum`): the kernel transformation's forward and backward went from
      1.24 to 0.92 ms (O) and 2.24 to 1.53 ms (Oh).
    - JAX: a gather with the indices promised in bounds (no masking in the compiled gather).
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
        self._torch_indices: dict[Any, Any] = {}
        self._torch_output_major: dict[Any, Any] = {}
        self._tensorflow_tables: dict[Any, Any] = {}

    def __call__(self, flat: Any) -> Any:
        flat = ops.convert_to_tensor(flat)  # a variable is read once, as a tensor
        backend = keras.backend.backend()
        if backend == "torch" and not torch_compiling() and takes("torch_index_select_gather"):
            return self._torch(flat)
        if (
            backend == "tensorflow"
            and self.permutes(flat.shape[0])
            and takes("tensorflow_run_gather")
        ):
            return self._tensorflow(flat)
        if backend == "jax" and takes("jax_in_bounds_gather"):
            return flat.at[self.indices].get(mode="promise_in_bounds")
        return ops.take(flat, self.indices, axis=0)

    def _torch(self, flat: Any) -> Any:
        """`__call__` on eager PyTorch (torch.compile traces Keras's own take)."""
        import torch

        index = self._torch_indices.get(flat.device)
        if index is None:
            index = torch.from_numpy(self.indices.reshape(-1).astype("int64")).to(flat.device)
            self._torch_indices[flat.device] = index
        taken = torch.index_select(flat, 0, index)
        return taken.view(*self.indices.shape, *flat.shape[1:])

    def permutes(self, rows: int) -> bool:
        """Whether every row of `indices` lists each of `rows` kernel rows exactly once."""
        return self.inverse is not None and self.inverse.shape[1] == rows

    def torch_output_major(self, flat: Any) -> Any:
        """Eager PyTorch, where `permutes(flat.shape[0])`: `flat` `(n, C, F)` gathered as
        `(|H|, F, *indices.shape[1:], C)`, contiguous. Public for layer plugins.

        That is a transformed kernel `(|H|·F, K[, |G|]·C)` with its output axis first and
        its input axis last: the memory layout PyTorch's convolution uses for its weight with
        a channels-last input. Permuted into Keras's layout, it is handed to the convolution
        without a copy, and the convolution's kernel gradient arrives in it. The gather runs
        over rows of `C` values, its index made once per device; its gradient gathers the
        upstream rows with the inverse permutations and sums over `h` (PyTorch's own, a
        scatter-add, was slower). For `Oh` (3×3×3 kernel, 4 fields in and out, input
        `(4, 12, 12, 12, 192)`), the kernel transformation and the convolution, forward and
        kernel gradient, were faster this way than as a gather followed by a copy into
        Keras's layout in each of six runs of benchmarks/micro.py, by 0.2–1.8 ms of 39–47 ms.

        A transformed kernel of up to `TORCH_TAKE_MAX_ENTRIES` entries is instead taken
        entry by entry with one `torch.take` (its gradient PyTorch's own accumulating `put_`):
        for the lifting kernels of `benchmarks/overhead.py` that is one operation forward and
        one backward where the row gather makes several, with a Python backward. 20 calls with
        the kernel gradient, by rows against entry by entry, in ms (`KERAS_BACKEND=torch
        python benchmarks/micro.py --only torch_take`, two runs): 9 216 entries (P4 lifting)
        5.04 / 3.20 and 6.84 / 4.50; 20 736 (Oh lifting) 6.46 / 4.51 and 7.30 / 5.08; 62 208
        (O on a group input, 2 fields) 9.75 / 8.03 and 11.78 / 11.30; 82 944 (P4M, 12
        fields) 8.12 / 9.84 and 10.72 / 12.57.
        """
        import torch

        n, channels, fields = flat.shape
        size = self.indices.size * channels * fields
        if size <= TORCH_TAKE_MAX_ENTRIES:
            index = self._torch_output_major.get((flat.device, channels, fields, "take"))
            if index is None:
                # Entry `(h, f, i, c)` is `flat[indices[h, i], c, f]`, at `(j·C + c)·F + f`.
                rows = self.indices.reshape(self.indices.shape[0], 1, -1, 1)
                entries = (rows * channels + np.arange(channels)) * fields
                entries = entries + np.arange(fields)[None, :, None, None]
                shape = (self.indices.shape[0], fields, *self.indices.shape[1:], channels)
                index = torch.from_numpy(entries.reshape(shape).astype("int64")).to(flat.device)
                self._torch_output_major[(flat.device, channels, fields, "take")] = index
            return torch.take(flat, index)
        prepared = self._torch_output_major.get((flat.device, fields))
        if prepared is None:
            # Table row `f·n + j` is `flat[j, :, f]`; per `h`, the rows and their inverse.
            elements, offsets = self.indices.shape[0], n * np.arange(fields)[None, :, None]
            rows = (self.indices.reshape(elements, 1, n) + offsets).reshape(elements, -1)
            inverse = (self.inverse[:, None, :] + offsets).reshape(elements, -1)
            inverse = inverse + fields * n * np.arange(elements)[:, None]
            prepared = (
                torch.from_numpy(rows.reshape(-1).astype("int64")).to(flat.device),
                torch.from_numpy(inverse.reshape(-1).astype("int64")).to(flat.device),
            )
            self._torch_output_major[(flat.device, fields)] = prepared
        table = flat.permute(2, 0, 1).reshape(fields * n, channels)  # (F·n, C), small
        gathered = _torch_row_gather()(table, *prepared)
        return gathered.view(*self.indices.shape[:1], fields, *self.indices.shape[1:], channels)

    def _tensorflow(self, flat: Any) -> Any:
        """`__call__` on TensorFlow with permutation rows: one `_tensorflow_run_gather` of
        whole kernel rows."""
        import tensorflow as tf

        elements, n = self.inverse.shape
        tail = tuple(flat.shape[1:])
        prepared = self._tensorflow_tables.get("rows")
        if prepared is None:
            # Upstream row `h·n + i` is output `(h, i)`; kernel row `j` went to `inverse[h, j]`.
            inverse = self.inverse + n * np.arange(elements, dtype="int32")[:, None]
            prepared = (self.indices.reshape(-1, 1), inverse[..., None])
            self._tensorflow_tables["rows"] = prepared
        gathered = _tensorflow_run_gather(tf.reshape(flat, (n, math.prod(tail))), *prepared)
        return tf.reshape(gathered, (*self.indices.shape, *tail))

    def moved(self, flat: Any, lead: int) -> Any:
        """`flat` `(n, *D)` gathered with the element axis placed after the first `lead` axes
        of `D`: `(*indices.shape[1:], *D[:lead], |H|, *D[lead:])`, the values of
        `moveaxis(self(flat), 0, indices.ndim - 1 + lead)`. A transformed kernel in the layout
        its convolution takes (for a convolution `lead=1`: `(K[, |G|], C, |H|, F)`). Public
        for layer plugins.

        On TensorFlow, where the rows are permutations, this is one gather of runs of
        `D[lead:]` values straight into that layout, with no transpose after it
        (`_tensorflow_moved`); elsewhere the gather and a transpose, which JAX fuses into one
        loop (PyTorch's convolutions take `torch_output_major`).
        """
        flat = ops.convert_to_tensor(flat)  # a variable is read once, as a tensor
        if (
            keras.backend.backend() == "tensorflow"
            and self.permutes(flat.shape[0])
            and takes("tensorflow_run_gather")
        ):
            return self._tensorflow_moved(flat, lead)
        return ops.moveaxis(self(flat), 0, self.indices.ndim - 1 + lead)

    def _tensorflow_moved(self, flat: Any, lead: int) -> Any:
        """`moved` on TensorFlow with permutation rows: the table is `flat` as runs of
        `D[lead:]`'s values, one per kernel row and `D[:lead]` entry, and output run
        `(i, d, h)` is table run `indices[h, i]·|D[:lead]| + d`: one `_tensorflow_run_gather`
        straight into the layout, with no transpose. Its gradient gathers the upstream's runs
        back with the inverse permutations and sums over the elements."""
        import tensorflow as tf

        elements, n = self.indices.shape[0], flat.shape[0]
        lead_shape, tail_shape = tuple(flat.shape[1 : 1 + lead]), tuple(flat.shape[1 + lead :])
        lead_size, tail = math.prod(lead_shape), math.prod(tail_shape)
        out_shape = (*self.indices.shape[1:], *lead_shape, elements, *tail_shape)
        key = (n, lead_size)
        prepared = self._tensorflow_tables.get(key)
        if prepared is None:
            by_element = self.indices.reshape(elements, n)
            # rows[i, d, h] = indices[h, i]·lead_size + d
            rows = by_element.T[:, None, :] * lead_size + np.arange(lead_size)[None, :, None]
            rows = rows.reshape(-1, elements)  # (n·lead_size, |H|)
            inverse = np.empty((elements, n * lead_size), dtype="int32")
            for h in range(elements):
                inverse[h, rows[:, h]] = np.arange(n * lead_size) * elements + h
            prepared = (rows.reshape(-1, 1).astype("int32"), inverse[..., None])
            self._tensorflow_tables[key] = prepared
        rows, inverse = prepared
        table = tf.reshape(flat, (n * lead_size, tail))
        return tf.reshape(_tensorflow_run_gather(table, rows, inverse), out_shape)


def _tensorflow_run_gather(table: Any, rows: np.ndarray, inverse: np.ndarray) -> Any:
    """`table[rows[:, 0]]` on TensorFlow, `table` `(R, L)`, where `inverse` `(|H|, R, 1)`
    lists for each `h` where each table row went in the output
    (`rows[inverse[h, j, 0], 0] == j`); both carry `tf.gather_nd`'s trailing index axis. The
    gradient gathers the upstream rows with `inverse` and sums over `h`, instead of
    TensorFlow's scatter-add (`UnsortedSegmentSum`).

    Both gathers are `tf.gather_nd`, which moved the rows of the kernel transformations of
    `benchmarks/overhead.py` as fast as `tf.gather` or faster (`KERAS_BACKEND=tensorflow
    python benchmarks/micro.py --only tf_expansion` times both). Rows of fewer than
    `TF_WIDE_ROW_BYTES` bytes are read as `int64` entries where their length allows (two
    `float32` as one): `GatherNd` then makes half as many copies. Longer rows are gathered
    as they are; read as wide entries, their gradient was slower. (`complex128` entries, four
    `float32` as one, were faster still, but XLA refuses complex bitcasts, so a model
    compiled with `jit_compile=True` could not run them.)
    """
    import tensorflow as tf

    length, dtype = table.shape[1], table.dtype
    width = tf.int64.size // dtype.size
    wide = length * dtype.size < TF_WIDE_ROW_BYTES and width > 1 and length % width == 0

    def gather(values: Any, index: Any) -> Any:
        if not wide:
            return tf.gather_nd(values, index)
        shape = (values.shape[0], length // width, width)
        gathered = tf.gather_nd(tf.bitcast(tf.reshape(values, shape), tf.int64), index)
        return tf.reshape(tf.bitcast(gathered, dtype), (*index.shape[:-1], length))

    @tf.custom_gradient
    def run_gather(table: Any) -> Any:
        def gradient(upstream: Any) -> Any:
            upstream = tf.reshape(upstream, (rows.shape[0], length))
            return tf.reduce_sum(gather(upstream, inverse), axis=0)

        return gather(table, rows), gradient

    return run_gather(tf.identity(table))  # a variable is read outside the custom gradient


@functools.cache
def _torch_row_gather() -> Any:
    """`apply(table, rows, inverse)`: `table[rows]` whose gradient is the upstream gathered by
    `inverse` (`(|H|·n,)`: per `h`, where each of the `n` table rows went) and summed over
    `h`. Made on first use, so that importing this module needs no PyTorch."""
    import torch

    class RowGather(torch.autograd.Function):
        @staticmethod
        def forward(ctx, table, rows, inverse):
            ctx.save_for_backward(inverse)
            ctx.table_rows = table.shape[0]
            return torch.index_select(table, 0, rows)

        @staticmethod
        def backward(ctx, upstream):
            (inverse,) = ctx.saved_tensors
            upstream = upstream.reshape(-1, upstream.shape[-1])
            per_element = torch.index_select(upstream, 0, inverse)
            return per_element.view(-1, ctx.table_rows, upstream.shape[-1]).sum(0), None, None

    return RowGather.apply


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

    @property
    def input_group(self) -> PointGroup:
        """The group a non-lifting input lives on."""
        return self.group

    @property
    def output_group(self) -> PointGroup:
        """The group the output lives on."""
        return self.subgroup

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
        if (
            eager_torch()
            and self._kernel_gather.permutes(flat.shape[0])
            and takes("torch_output_major_kernel")
        ):
            # (|H|, F, K[, |G|], C) in memory, returned as a view in Keras's layout.
            gathered = self._kernel_gather.torch_output_major(flat)
            weight = gathered.view(outputs, *self.kernel_size, inputs)
            return weight.permute(*range(1, self.rank + 1), self.rank + 1, 0)
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

        Two train steps of a `GroupConv` with kernel 1 inside a network, convolution against
        product, in ms, two runs each (`KERAS_BACKEND=jax` or `tensorflow` `python
        benchmarks/micro.py --only pointwise`; P4M with 32 fields on `(8, 28, 28, 8, 32)`,
        O with 8 on `(4, 11, 11, 11, 24, 8)`, LM with 64 on `(32, 255, 2, 64)`):

        | backend, stride | P4M | O | LM (1D) |
        |---|---|---|---|
        | JAX, 1 | 68.4 / 38.7; 56.6 / 28.2 | 30.1 / 20.9; 25.7 / 21.1 | 17.3 / 18.2; 12.9 / 14.4 |
        | JAX, 2 | 27.0 / 14.5; 21.8 / 12.2 | 30.5 / 6.2; 33.7 / 6.0 | 13.4 / 14.9; 9.9 / 10.1 |
        | TF, 1 | 39.4 / 35.3; 34.2 / 27.3 | 22.9 / 21.4; 19.2 / 18.7 | 20.6 / 19.8; 13.9 / 13.5 |
        | TF, 2 | 19.8 / 27.6; 16.3 / 23.1 | 12.0 / 16.5; 9.6 / 12.7 | 17.6 / 27.0; 12.7 / 18.2 |

        Elsewhere the convolution stays: JAX in 1D gained nothing, TensorFlow at stride 2
        lost (its strided slice and the slice's gradient), and PyTorch's oneDNN 1×1
        convolution on channels-last memory is faster than its matrix product
        (`KERAS_BACKEND=torch python benchmarks/micro.py`, the pointwise case).
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
