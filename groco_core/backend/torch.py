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
    """Whether this runs inside `torch.compile`."""
    import torch

    return torch.compiler.is_compiling()


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
    the inverse permutations (`_row_gather`; PyTorch's own is a slower scatter-add).

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
