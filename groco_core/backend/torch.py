"""PyTorch fast paths, taken on eager PyTorch only: inside `torch.compile` the layers give
way to Keras's own ops, which the compiler traces. Figures: docs/performance.md."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from keras import ops

from groco_core.layers.fast_paths import takes

# Transformed kernels of up to this many entries are gathered entry by entry
# (`torch.take`), larger ones by rows (`_row_gather`), whichever moved them faster.
TAKE_MAX_ENTRIES = 2**16


def compiling() -> bool:
    """Whether this runs inside `torch.compile` or a TorchScript trace (`torch.onnx.export`),
    where the eager fast paths must step aside for the traceable `keras.ops` formulation."""
    import torch

    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def eager() -> bool:
    """Whether the layers may call `torch` directly (outside `torch.compile`)."""
    return not compiling()


def reshape(x: Any, shape: tuple) -> Any:
    """The tensor's own `reshape`: `keras.ops.reshape` costs about 15 µs more per call, and a
    group layer reshapes several times per call."""
    if compiling() or not takes("torch_tensor_reshape"):
        return NotImplemented
    import torch

    if not isinstance(x, torch.Tensor):
        x = ops.convert_to_tensor(x)
    return x.reshape(shape)


def conv(*arguments: Any, **options: Any) -> Any:
    """`channels_last_conv` where it applies: outside `torch.compile`, and taken."""
    if compiling() or not takes("torch_channels_last_conv"):
        return NotImplemented
    return channels_last_conv(*arguments, **options)


def channels_last_conv(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    dilation_rate: tuple[int, ...],
    groups: int = 1,
    bias: Any = None,
) -> Any:
    """A channels-last convolution (`keras.ops.conv`'s arguments, zero `paddings` per axis,
    `groups` feature groups, `bias` `(F,)` added by the convolution) without Keras's layout
    copies: a channels-last tensor with its channel axis moved second is channels-last
    memory, which PyTorch's convolution takes as it is, and its output moved back is again
    a plain channels-last tensor. A 1D input that takes gradients is made contiguous once
    here (PyTorch has no channels-last 1D format and would copy the view twice). The bias's
    gradient, in 2D and 3D, is the upstream summed here (`_biased_convolution`), which
    oneDNN's convolution backward computes more slowly.

    Returns:
        `(batch, *out, F)`. For a caller that has decided to take it; `conv` checks first.
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
    gradients = torch.is_grad_enabled()
    if rank == 1 and gradients and (x.requires_grad or weights.requires_grad):
        channels_first = channels_first.contiguous()
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
    if (
        bias is not None
        and rank > 1
        and gradients
        and bias.requires_grad
        and takes("torch_bias_gradient_apart")
    ):
        y = _biased_convolution()(
            channels_first, weights, bias, strides, padding, dilation_rate, groups
        )
    else:
        convolution = {1: tnn.conv1d, 2: tnn.conv2d, 3: tnn.conv3d}[rank]
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
def _biased_convolution() -> Any:
    """`apply(x, weight, bias, strides, padding, dilation_rate, groups)`: PyTorch's
    convolution with its bias, whose bias gradient is the upstream summed here instead of by
    the convolution's backward."""
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


def gather(kernel_gather: Any, flat: Any) -> Any:
    """`KernelGather`'s gather as one `torch.index_select` with an index tensor made once per
    device (`keras.ops.take` converts and checks the numpy indices on every call)."""
    if compiling() or not takes("torch_index_select_gather"):
        return NotImplemented
    import torch

    cache = kernel_gather.backend_cache("torch")
    index = cache.get(flat.device)
    if index is None:
        index = torch.from_numpy(kernel_gather.indices.reshape(-1).astype("int64"))
        index = cache[flat.device] = index.to(flat.device)
    taken = torch.index_select(flat, 0, index)
    return taken.view(*kernel_gather.indices.shape, *flat.shape[1:])


def transformed_kernel(kernel_gather: Any, flat: Any, kernel_size: tuple[int, ...]) -> Any:
    """A convolution's transformed kernel in Keras's layout `(*kernel_size, inputs, outputs)`
    from `flat` `(n, C, F)`: `output_major`'s gather, viewed in Keras's layout, so that it
    is handed to the convolution without a copy and the kernel gradient arrives in it.

    Returns:
        The kernel, or `NotImplemented` where `output_major` does not apply.
    """
    gathered = output_major(kernel_gather, flat)
    if gathered is NotImplemented:
        return NotImplemented
    rank = len(kernel_size)
    outputs = gathered.shape[0] * gathered.shape[1]
    weight = gathered.reshape(outputs, *kernel_size, -1)
    return weight.permute(*range(1, rank + 1), rank + 1, 0)


def output_major(kernel_gather: Any, flat: Any) -> Any:
    """`flat` `(n, C, F)` gathered as `(|H|, F, *indices.shape[1:], C)`, contiguous, where the
    rows are permutations: the memory layout PyTorch's convolution uses for its weight with
    a channels-last input. Small kernels are taken entry by entry
    (`torch.take`), larger ones by rows with a gradient that gathers the upstream rows with
    the inverse permutations (`_row_gather`; PyTorch's own is a slower scatter-add); on the
    trivial group the rows stay in order, and one transposed copy of `flat` is the kernel.

    Returns:
        The gathered kernel, or `NotImplemented` inside `torch.compile` or where the rows
        are not permutations.
    """
    if (
        compiling()
        or not kernel_gather.permutes(flat.shape[0])
        or not takes("torch_output_major_kernel")
    ):
        return NotImplemented
    import torch

    indices, cache = kernel_gather.indices, kernel_gather.backend_cache("torch")
    n, channels, fields = flat.shape
    if kernel_gather.reshapes(flat):  # the trivial group: one transposing copy, no gather
        return flat.permute(2, 0, 1).contiguous().view(1, fields, *indices.shape[1:], channels)
    if indices.size * channels * fields <= TAKE_MAX_ENTRIES:
        key = (flat.device, channels, fields, "take")
        index = cache.get(key)
        if index is None:
            # Entry `(h, f, i, c)` is `flat[indices[h, i], c, f]`, at `(j·C + c)·F + f`.
            rows = indices.reshape(indices.shape[0], 1, -1, 1)
            entries = (rows * channels + np.arange(channels)) * fields
            entries = entries + np.arange(fields)[None, :, None, None]
            shape = (indices.shape[0], fields, *indices.shape[1:], channels)
            index = torch.from_numpy(entries.reshape(shape).astype("int64")).to(flat.device)
            cache[key] = index
        return torch.take(flat, index)
    key = (flat.device, fields)
    prepared = cache.get(key)
    if prepared is None:
        # Table row `f·n + j` is `flat[j, :, f]`; per `h`, the rows and their inverse.
        elements, offsets = indices.shape[0], n * np.arange(fields)[None, :, None]
        rows = (indices.reshape(elements, 1, n) + offsets).reshape(elements, -1)
        inverse = (kernel_gather.inverse[:, None, :] + offsets).reshape(elements, -1)
        inverse = inverse + fields * n * np.arange(elements)[:, None]
        prepared = cache[key] = (
            torch.from_numpy(rows.reshape(-1).astype("int64")).to(flat.device),
            torch.from_numpy(inverse.reshape(-1).astype("int64")).to(flat.device),
        )
    table = flat.permute(2, 0, 1).reshape(fields * n, channels)  # (F·n, C), small
    gathered = _row_gather()(table, *prepared)
    return gathered.view(indices.shape[0], fields, *indices.shape[1:], channels)


@functools.cache
def _row_gather() -> Any:
    """`apply(table, rows, inverse)`: `table[rows]` whose gradient is the upstream gathered by
    `inverse` (`(|H|·n,)`: per `h`, where each of the `n` table rows went) and summed over
    `h`."""
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


def weights_key(variables: list[Any]) -> Any:
    """What identifies the values a layer reads from `variables` now, for
    `groco_core.layers.kernel_cache`: each value's tensor and its in-place version counter,
    which every assignment, optimizer update and `load_weights` bumps. `NotImplemented` under
    autograd or `torch.compile` (the expansion is then part of what is differentiated or
    compiled) and for a value that is not a tensor with data (a meta tensor)."""
    import torch

    if torch.is_grad_enabled() or compiling():
        return NotImplemented
    values = [variable.value for variable in variables]
    if any(not isinstance(v, torch.Tensor) or v.device.type == "meta" for v in values):
        return NotImplemented
    return tuple((v, v._version) for v in values)


def pools_in_float32(rank: int, mode: str, dtype: Any) -> bool:
    """Whether a pooling of this rank, mode and dtype runs in `float32`: PyTorch has no
    `float16` or `bfloat16` 3D average pooling on the CPU (`keras.layers.AveragePooling3D`
    fails the same way)."""
    if rank != 3 or mode != "average":
        return False
    import keras

    return keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16")


def average_pool(x: Any, pool_size: tuple, strides: tuple, padding: str) -> Any:
    """`keras.ops.average_pool` of channels-last `x` where PyTorch's refuses it: a 3D pooling
    with Keras's `"same"` whose window is longer than the volume along an axis. Keras hands
    `avg_pool3d` the padding, and `avg_pool3d` compares the window with the unpadded volume
    and raises ("input image ... smaller than kernel size"; `keras.layers.AveragePooling3D`
    fails the same way). Here it is a `"valid"` average of `x` zero-padded as Keras pads for
    `"same"`, divided by the same average of the padded ones: the mean over the window's
    points inside the input, as Keras's `"same"` average (which leaves the padding out of
    the count). `NotImplemented` elsewhere."""
    spatial = tuple(x.shape[1:-1])
    if (
        len(pool_size) != 3
        or padding != "same"
        or None in spatial
        or all(n >= p for n, p in zip(spatial, pool_size, strict=True))
    ):
        return NotImplemented
    from groco_core.layers.padding import keras_padding

    paddings = [
        keras_padding(int(n), p, s, "same")
        for n, p, s in zip(spatial, pool_size, strides, strict=True)
    ]

    def pooled(t: Any) -> Any:
        padded = ops.pad(t, [(0, 0), *paddings, (0, 0)])
        return ops.average_pool(padded, pool_size, strides, "valid", "channels_last")

    ones = ops.ones((1, *(int(n) for n in spatial), 1), dtype=x.dtype)
    return ops.divide(pooled(x), pooled(ones))


def fastest_depthwise_formulation(rank: int) -> Any:
    """The depthwise formulation (`groco_core.layers.depthwise_ops`) PyTorch runs fastest on
    a CPU: `depthwise_conv` in 2D, `grouped_conv` in 3D (benchmarks/separable.py; eagerly,
    either is `depthwise_conv` below); `NotImplemented` (unmeasured) for another number of
    spatial axes."""
    return {2: "depthwise_conv", 3: "grouped_conv"}.get(rank, NotImplemented)


def depthwise_conv(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    bias: Any = None,
) -> Any:
    """`depthwise_correlation` in its `depthwise_conv` or `grouped_conv` formulation, which on
    PyTorch are one grouped convolution: `channels_last_conv` with `C` feature groups, on the
    channels-last memory as it is (several times faster than through `keras.ops`'s
    channels-first copy), or `depthwise_conv2d` where its tiled kernel gradient applies.

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(*kernel_size, C, M)`.
        strides, dilation_rate: per spatial axis.
        paddings: zeros `(before, after)` per spatial axis.
        bias: `(C·M,)` or None, added by the convolution.

    Returns:
        `(batch, *out, C·M)`, or `NotImplemented` inside `torch.compile`.
    """
    if compiling() or not takes("torch_channels_last_conv"):
        return NotImplemented
    y = depthwise_conv2d(x, kernel, strides, dilation_rate, paddings, bias)
    if y is not NotImplemented:
        return y
    rank = len(strides)
    channels, multiplier = kernel.shape[-2], kernel.shape[-1]
    grouped = ops.reshape(kernel, (*kernel.shape[:rank], 1, channels * multiplier))
    return channels_last_conv(
        x, grouped, strides, paddings, dilation_rate, groups=channels, bias=bias
    )


def depthwise_conv2d(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    bias: Any = None,
) -> Any:
    """The depthwise correlation of `depthwise_conv` (2 spatial axes, stride and dilation 1,
    a kernel of at least 3 points on each axis and more than 3×3 in all) whose kernel
    gradient is computed in 3×3 tiles. PyTorch's (oneDNN's) kernel gradient of a 3×3
    depthwise convolution is fast, above it several times slower per kernel point; the
    gradient of kernel point `r` depends only on the input shifted by `r`, so the gradient of
    a `kh × kw` kernel is that of 3×3 kernels on the padded input shifted by each tile's
    offset, each on oneDNN's fast 3×3 path. A 5×5 kernel takes four tiles (their overlap
    computed twice). The shifted inputs are views of one buffer (see the autograd function's
    backward), not copies, and with symmetric padding and one kernel per channel the input's
    gradient is a forward pass with the flipped kernel. Taken inside
    `torch_channels_last_conv`: it is that convolution, with its own gradients.

    Args:
        x: `(batch, H, W, C)`.
        kernel: `(kh, kw, C, M)`.
        strides, dilation_rate: per spatial axis.
        paddings: zeros `(before, after)` per spatial axis.
        bias: `(C·M,)` or None.

    Returns:
        `(batch, H', W', C·M)`, or `NotImplemented` where it does not apply.
    """
    if (
        compiling()
        or not _tiled_kernel_gradient_applies(kernel, strides, dilation_rate)
        or not takes("torch_channels_last_conv")
        or not takes("torch_tiled_depthwise_gradient")
    ):
        return NotImplemented
    channels, multiplier = kernel.shape[-2], kernel.shape[-1]
    grouped = ops.reshape(kernel, (*kernel.shape[:2], 1, channels * multiplier))
    x = ops.convert_to_tensor(x).permute(0, 3, 1, 2)  # a view of the channels-last memory
    weight = ops.convert_to_tensor(grouped).permute(3, 2, 0, 1)
    pads = (*paddings[1], *paddings[0])  # torch.nn.functional.pad takes the last axis first
    bias = None if bias is None else ops.convert_to_tensor(bias)
    y = _tiled_depthwise_function().apply(x, weight, bias, pads, channels)
    return y.permute(0, 2, 3, 1)


def _tiled_kernel_gradient_applies(kernel: Any, strides: tuple, dilation_rate: tuple) -> bool:
    """Whether `depthwise_conv2d` runs this depthwise convolution: 2 spatial axes, a kernel of
    at least 3 points on each and more than 3×3 in all, strides and dilation 1."""
    size = tuple(kernel.shape[:2])
    return (
        len(strides) == 2
        and min(size) >= 3
        and size != (3, 3)
        and all(s == 1 for s in strides)
        and all(d == 1 for d in dilation_rate)
    )


def _tile_starts(extent: int) -> list[int]:
    """Where 3-point windows start so that together they cover `0 … extent - 1`."""
    return sorted(set(range(0, extent - 3, 3)) | {extent - 3})


@functools.cache
def _tiled_depthwise_function() -> Any:
    """The `torch.autograd.Function` of `depthwise_conv2d`: `apply(x, weight, bias, pads,
    groups)` with `x` channels-first (a view of channels-last memory), `weight`
    `(C·M, 1, kh, kw)`, `pads` as `torch.nn.functional.pad` takes them."""
    import torch
    import torch.nn.functional as tnn

    class TiledDepthwise(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, pads, groups):
            left, right, top, bottom = pads
            batch, channels, height, width = x.shape
            rows, columns = height + top + bottom, width + left + right
            kh, kw = weight.shape[2:]
            # The zero-padded input, channels last, in a buffer with spare zero rows at its
            # end, which the kernel gradient's shifted views of it read past the last sample.
            spare = kh - 3 + (kw > 3)
            buffer = x.new_zeros(batch * rows + spare, columns, channels)
            samples = buffer[: batch * rows].view(batch, rows, columns, channels)
            samples[:, top : top + height, left : left + width] = x.permute(0, 2, 3, 1)
            padded = samples.permute(0, 3, 1, 2)
            ctx.save_for_backward(buffer, weight)
            ctx.pads, ctx.groups, ctx.has_bias = pads, groups, bias is not None
            ctx.shape = (batch, channels, rows, columns)
            return tnn.conv2d(padded, weight, bias, groups=groups)

        @staticmethod
        def backward(ctx, upstream):
            buffer, weight = ctx.saved_tensors
            batch, channels, rows, columns = ctx.shape
            left, right, top, bottom = ctx.pads
            kh, kw = weight.shape[2:]
            upstream = upstream.contiguous(memory_format=torch.channels_last)
            common = ([1, 1], [0, 0], [1, 1], False, [0, 0], ctx.groups)
            input_gradient = None
            flippable = top == bottom and left == right and weight.shape[0] == ctx.groups
            if ctx.needs_input_grad[0] and flippable:
                # With symmetric padding and one kernel per channel, the correlation of the
                # upstream with the flipped kernel: a depthwise forward pass at the input's
                # size, which oneDNN runs faster than its input gradient.
                padding = (kh - 1 - top, kw - 1 - left)
                input_gradient = tnn.conv2d(
                    upstream, weight.flip(2, 3), padding=padding, groups=ctx.groups
                )
            elif ctx.needs_input_grad[0]:
                padded = buffer[: batch * rows].view(batch, rows, columns, channels)
                padded = padded.permute(0, 3, 1, 2)
                input_gradient = torch.ops.aten.convolution_backward(
                    upstream, padded, weight, None, *common, [True, False, False]
                )[0]
                input_gradient = input_gradient[:, :, top : rows - bottom, left : columns - right]
            kernel_gradient = None
            if ctx.needs_input_grad[1]:
                # The samples stacked into one tall image, row `n·rows + i` of the buffer being
                # row `i` of sample `n`, and the upstream in a zero frame stacked alike (a 3×3
                # kernel's output width): one 3×3 kernel gradient over the stack sums every
                # sample's own windows. The tile at offset (a, b) reads the buffer from
                # `a·columns + b` points on, a view of it (no copy) whose reads past the end of
                # a row meet only zeros of the frame.
                stack = batch * rows
                outputs, out_h, out_w = upstream.shape[1:]
                frame = upstream.new_zeros(stack, columns - 2, outputs)
                per_sample = frame.view(batch, rows, columns - 2, outputs)
                per_sample[:, :out_h, :out_w] = upstream.permute(0, 2, 3, 1)
                framed = frame[: stack - 2].unsqueeze(0).permute(0, 3, 1, 2)
                kernel_gradient = torch.empty_like(weight)
                tile = weight[:, :, :3, :3]
                for a in _tile_starts(kh):
                    for b in _tile_starts(kw):
                        view = buffer.as_strided(
                            (1, stack, columns, channels),
                            (buffer.numel(), columns * channels, channels, 1),
                            (a * columns + b) * channels,
                        ).permute(0, 3, 1, 2)
                        kernel_gradient[:, :, a : a + 3, b : b + 3] = (
                            torch.ops.aten.convolution_backward(
                                framed, view, tile, None, *common, [False, True, False]
                            )[1]
                        )
            bias_gradient = upstream.sum((0, 2, 3)) if ctx.has_bias else None
            return input_gradient, kernel_gradient, bias_gradient, None, None

    return TiledDepthwise


def pointwise(x: Any, kernel: Any, bias: Any, elements: int) -> Any:
    """A one-point group convolution's product `x @ kernel`, plus `bias` `(F,)` tiled over
    `elements`, as a 1×1 `channels_last_conv`: oneDNN's 1×1 convolution on channels-last
    memory runs faster than MKL's matrix product (on JAX the product's train step is the
    faster of the two).

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(1, …, 1, C, elements·F)`.
        bias: `(F,)` or None.
        elements: the output's group elements.

    Returns:
        `(batch, *spatial, elements·F)`, or `NotImplemented` inside `torch.compile`.
    """
    if compiling() or not takes("torch_channels_last_conv"):
        return NotImplemented
    from groco_core.layers.group_axis import tile_over_group

    rank = len(kernel.shape) - 2
    zero, ones = ((0, 0),) * rank, (1,) * rank
    bias = None if bias is None else tile_over_group(bias, elements)
    return channels_last_conv(x, kernel, ones, zero, ones, bias=bias)
