"""Depthwise group convolutions: one spatial kernel per input channel, transformed by each
group element, no mixing across channels or group elements.

`out(p, h, c·M + m) = Σ_q f_c(q, h) ψ_{c,m}(M_h⁻¹ (q − p))` (lifting: `f_c(q)`). Built on
the core's `BaseGroupConv` (arguments, padding rule, input checks, kernel mask, config): only
the kernel's shape, its transformation (spatial only) and the convolution differ.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.groups import PointGroup
from groco_core.layers.conv import (
    BaseGroupConv,
    KernelGather,
    add_kernel_and_bias,
    keyword_arguments,
    on_jax_cpu,
    split_group_axis,
    tile_over_group,
    torch_compiling,
    torch_conv_channels_last,
)
from groco_core.layers.fast_paths import takes
from groco_core.layers.kernel_cache import cached_transformed_kernel

FORMULATIONS = ("depthwise_conv", "grouped_conv", "patches", "shifts")

# The fastest correct formulation per backend on CPU, measured by benchmarks/separable.py
# (docs/performance.md has the figures). `depthwise_conv` exists for 1 and 2 spatial axes only.
FASTEST_FORMULATION = {
    "jax": {2: "shifts", 3: "shifts"},
    "tensorflow": {2: "depthwise_conv", 3: "shifts"},
    "torch": {2: "depthwise_conv", 3: "grouped_conv"},
}

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


def depthwise_correlation(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    formulation: str,
    paddings: tuple[tuple[int, int], ...] | None = None,
    bias: Any = None,
) -> Any:
    """Depthwise cross-correlation, channels last, with one of four formulations.

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(*kernel_size, C, M)`; output channel `c·M + m` uses `kernel[..., c, m]`.
        strides, dilation_rate: per spatial axis.
        paddings: zeros `(before, after)` added to each spatial axis first; None: none
            ('valid').
        bias: `(C·M,)` added to the output, or None.
        formulation: `"depthwise_conv"` (`keras.ops.depthwise_conv`, 1 or 2 spatial axes),
            `"grouped_conv"` (`keras.ops.conv` with `C` feature groups), `"patches"` (the
            shifted windows stacked on a new axis, contracted with the kernel by one einsum)
            or `"shifts"` (the shifted windows times their kernel point, summed).

    Returns:
        `(batch, *out_spatial, C·M)`.
    """
    if (
        formulation in ("depthwise_conv", "grouped_conv")
        and keras.backend.backend() == "torch"
        and not torch_compiling()
        and takes("torch_channels_last_conv")
    ):
        # One kernel on PyTorch: a grouped convolution on the channels-last memory as it is,
        # several times faster than through keras.ops's channels-first copy.
        rank = len(strides)
        channels, multiplier = kernel.shape[-2], kernel.shape[-1]
        grouped = ops.reshape(kernel, (*kernel.shape[:rank], 1, channels * multiplier))
        zero = ((0, 0),) * rank
        if _torch_tiled_kernel_gradient(kernel, strides, dilation_rate) and takes(
            "torch_tiled_depthwise_gradient"
        ):
            return _torch_depthwise(x, grouped, paddings or zero, channels, bias)
        return torch_conv_channels_last(
            x, grouped, strides, paddings or zero, dilation_rate, groups=channels, bias=bias
        )
    y = _depthwise_correlation(x, kernel, strides, dilation_rate, formulation, paddings)
    return y if bias is None else ops.add(y, bias)


def _depthwise_correlation(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    formulation: str,
    paddings: tuple[tuple[int, int], ...] | None,
) -> Any:
    rank = len(strides)
    kernel_size = tuple(kernel.shape[:rank])
    channels, multiplier = kernel.shape[-2], kernel.shape[-1]
    padded = paddings is not None and any(before or after for before, after in paddings)
    jax_shifts = formulation == "shifts" and on_jax_cpu() and takes("jax_shifts_gradient")
    if padded and not jax_shifts:
        x = ops.pad(x, [(0, 0), *paddings, (0, 0)])
        padded = False
    if formulation == "depthwise_conv":
        if _tf_swapped_kernel_gradient(kernel, strides, dilation_rate) and takes(
            "tensorflow_depthwise_kernel_gradient"
        ):
            return _tf_depthwise(x, kernel)
        return ops.depthwise_conv(
            x, kernel, strides, "valid", "channels_last", dilation_rate=dilation_rate
        )
    if formulation == "grouped_conv":
        grouped = ops.reshape(kernel, (*kernel_size, 1, channels * multiplier))
        return ops.conv(x, grouped, strides, "valid", "channels_last", dilation_rate)
    spatial = tuple(x.shape[1 : 1 + rank])
    if padded:
        spatial = tuple(n + sum(p) for n, p in zip(spatial, paddings, strict=True))
    out = tuple(
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate, strict=True)
    )
    geometry = (kernel_size, out, tuple(strides), tuple(dilation_rate))
    if formulation == "patches":
        patches = ops.stack(_windows(x, geometry), axis=-2)  # (batch, *out, K, C)
        flat_kernel = ops.reshape(kernel, (-1, channels, multiplier))
        y = ops.einsum("...kc,kcm->...cm", patches, flat_kernel)
        return ops.reshape(y, (-1, *out, channels * multiplier))
    # shifts: every output channel c·M + m is its own elementwise sum, so the input is
    # repeated M times along the channels first and everything stays one channel axis.
    if multiplier > 1:
        x = ops.repeat(x, multiplier, axis=-1)
    flat_kernel = ops.reshape(kernel, (-1, channels * multiplier))
    if jax_shifts:
        return _jax_shifts(x, flat_kernel, geometry, paddings if padded else None)
    if _tf_shifts_apply(x, geometry) and takes("tensorflow_shifts_gradient"):
        return _tf_shifts(x, flat_kernel, geometry)
    return _shifts(x, flat_kernel, geometry)


def _tf_swapped_kernel_gradient(kernel: Any, strides: tuple, dilation_rate: tuple) -> bool:
    """Whether `_tf_depthwise` runs this depthwise convolution: on TensorFlow, 2 spatial axes,
    a kernel of more than 3×3 points, strides and dilation 1, `depth_multiplier` 1. TensorFlow's
    kernel gradient of a 3×3 depthwise convolution is fast; above it is two to four times as
    slow as `_tf_depthwise`'s."""
    return (
        keras.backend.backend() == "tensorflow"
        and len(strides) == 2
        and int(np.prod(kernel.shape[:2])) > 9
        and kernel.shape[-1] == 1
        and all(s == 1 for s in strides)
        and all(d == 1 for d in dilation_rate)
    )


def _tf_depthwise(x: Any, kernel: Any) -> Any:
    """'valid' depthwise correlation of `x` `(N, H, W, C)` with `kernel` `(kh, kw, C, 1)` on
    TensorFlow, whose kernel gradient is itself a depthwise correlation with the roles swapped:
    `dψ(r, c) = Σ_n Σ_p x(n, p + r, c) g(n, p, c)` is the correlation of the input, with batch
    and channels merged into `N·C` channels of one image, with the output gradient as an
    `(H', W')` kernel; summed over `n`."""
    import tensorflow as tf

    @tf.custom_gradient
    def depthwise(x, kernel):
        def gradient(upstream):
            input_gradient = tf.compat.v1.nn.depthwise_conv2d_native_backprop_input(
                tf.shape(x), kernel, upstream, [1, 1, 1, 1], "VALID"
            )
            shape = tf.shape(x)
            batch, channels = shape[0], shape[3]
            up = tf.shape(upstream)
            # (N, H, W, C) → (1, H, W, N·C): only the batch axis moves; C stays contiguous.
            image = tf.reshape(tf.transpose(x, (1, 2, 0, 3)), (1, shape[1], shape[2], -1))
            filters = tf.reshape(tf.transpose(upstream, (1, 2, 0, 3)), (up[1], up[2], -1, 1))
            swapped = tf.nn.depthwise_conv2d(image, filters, [1, 1, 1, 1], "VALID")
            kernel_shape = tf.shape(kernel)
            per_sample = tf.reshape(swapped, (kernel_shape[0], kernel_shape[1], batch, channels))
            kernel_gradient = tf.reduce_sum(per_sample, axis=2)[..., None]
            return input_gradient, tf.cast(kernel_gradient, kernel.dtype)

        y = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")
        return y, gradient

    return depthwise(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


def _torch_tiled_kernel_gradient(kernel: Any, strides: tuple, dilation_rate: tuple) -> bool:
    """Whether `_torch_depthwise` runs this depthwise convolution: 2 spatial axes, a kernel of
    at least 3 points on each and more than 3×3 in all, strides and dilation 1. PyTorch's
    (oneDNN's) kernel gradient of a 3×3 depthwise convolution is fast, above it several times
    slower per kernel point."""
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
def _torch_depthwise_function() -> Any:
    """The `torch.autograd.Function` of `_torch_depthwise`, made on first use (importing this
    module needs no PyTorch): `apply(x, weight, bias, pads, groups)` with `x` channels-first
    (a view of channels-last memory), `weight` `(C·M, 1, kh, kw)`, `pads` as
    `torch.nn.functional.pad` takes them."""
    import torch
    import torch.nn.functional as tnn

    class Depthwise(torch.autograd.Function):
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

    return Depthwise


def _torch_depthwise(
    x: Any, kernel: Any, paddings: tuple[tuple[int, int], ...], channels: int, bias: Any
) -> Any:
    """Depthwise correlation on PyTorch (2 spatial axes, stride and dilation 1) whose kernel
    gradient is computed in 3×3 tiles: the gradient of kernel point `r` depends only on the
    input shifted by `r`, so the gradient of a `kh × kw` kernel is that of 3×3 kernels on the
    padded input shifted by each tile's offset, each on oneDNN's fast 3×3 path. A 5×5 kernel
    takes four tiles (their overlap computed twice). The shifted inputs are views of one
    buffer (see the autograd function's backward), not copies, and with symmetric padding and
    one kernel per channel the input's gradient is a forward pass with the flipped kernel;
    figures in docs/performance.md.

    Args:
        x: `(batch, H, W, C)`.
        kernel: `(kh, kw, 1, C·M)`.
        paddings: zeros `(before, after)` per spatial axis.
        channels: `C`.
        bias: `(C·M,)` or None.

    Returns:
        `(batch, H', W', C·M)`.
    """
    x = ops.convert_to_tensor(x).permute(0, 3, 1, 2)  # a view of the channels-last memory
    weight = ops.convert_to_tensor(kernel).permute(3, 2, 0, 1)
    pads = (*paddings[1], *paddings[0])  # torch.nn.functional.pad takes the last axis first
    bias = None if bias is None else ops.convert_to_tensor(bias)
    return _torch_depthwise_function().apply(x, weight, bias, pads, channels).permute(0, 2, 3, 1)


def _windows(x: Any, geometry: tuple) -> list[Any]:
    """The inputs under each kernel point `r`, `(batch, *out, C)` each, in kernel order."""
    kernel_size, out, strides, dilation_rate = geometry
    windows = []
    for offset in np.ndindex(*kernel_size):
        index = [slice(None)]
        for o, n, s, d in zip(offset, out, strides, dilation_rate, strict=True):
            index.append(slice(o * d, o * d + (n - 1) * s + 1, s))
        windows.append(x[tuple(index)])
    return windows


def _shifts(x: Any, flat_kernel: Any, geometry: tuple) -> Any:
    """`Σ_r window_r · ψ_r`, elementwise, with `flat_kernel` `(K, C)`: `(batch, *out, C)`."""
    return sum(
        ops.multiply(window, flat_kernel[r]) for r, window in enumerate(_windows(x, geometry))
    )


# From this many kernel points up, `_jax_shifts` takes the input's gradient per sample too.
JAX_PER_SAMPLE_INPUT_GRADIENT_POINTS = 10

# Whether `_jax_shifts`'s per-sample loop takes the kernel points one after another and
# writes the input's gradient into a buffer allocated late (see there).
JAX_LOW_MEMORY_GRADIENTS = True


def _jax_shifts(x: Any, flat_kernel: Any, geometry: tuple, paddings: tuple | None) -> Any:
    """`_shifts` (after zero `paddings`, if any) with gradients XLA runs well on CPU.

    Differentiated as it stands, each kernel point's gradient is its own reduction over the
    whole batch: `k^d` passes over memory. Here the kernel's gradient is taken one sample at
    a time (`lax.map`), every kernel point while the sample is in cache. The padding happens
    inside, so XLA fuses it into the sum instead of writing a padded copy.

    The input's gradient, where the step needs it:

    - At stride 1 with at least `JAX_PER_SAMPLE_INPUT_GRADIENT_POINTS` kernel points, it is
      taken in the same loop, as the correlation of the zero-padded output gradient with
      the flipped kernel, while the sample is in cache (faster for 5×5 and 3×3×3 kernels;
      for 3×3 it gained nothing, so 3×3 keeps the transpose).
    - Otherwise it is the transpose of the fused sum.
    - Where nothing asks for it (the input of a network), the loop leaves it out: the
      forward pass records whether the input is perturbed (`symbolic_zeros`).

    With `JAX_LOW_MEMORY_GRADIENTS`, where the loop takes the input's gradient too, it takes
    the kernel points of a sample one after another (XLA had kept up to 25 products of a
    sample's window and upstream alive at once) and writes the input's gradient into a
    buffer allocated only once the upstream exists: less temporary memory per compiled
    step, below the size above which glibc maps every step's block afresh and each of its
    pages faults on first write (docs/performance.md).
    """
    import jax
    import jax.numpy as jnp

    kernel_size, out_size, strides, dilation_rate = geometry
    rank = len(kernel_size)
    offsets = np.asarray(list(np.ndindex(*kernel_size)), dtype="int32")

    def pad(x):
        if paddings is None:
            return x
        return jnp.pad(x, [(0, 0), *paddings, (0, 0)])

    def padded_shifts(x, kernel):
        return _shifts(pad(x), kernel, geometry)

    @jax.custom_vjp
    def shifts(x, kernel):
        return padded_shifts(x, kernel)

    perturbed = {}

    def forward(x, kernel):
        perturbed["input"] = x.perturbed
        return padded_shifts(x.value, kernel.value), (x.value, kernel.value)

    per_sample_input = all(s == 1 for s in strides) and (
        math.prod(kernel_size) >= JAX_PER_SAMPLE_INPUT_GRADIENT_POINTS
    )
    if per_sample_input:
        # dx[i] = Σ_r g[i + before − r·d] ψ_r = Σ_r' g_padded[i + r'·d] ψ_{k−1−r'}, with g padded
        # by (k−1)·d − before and (k−1)·d − after (negative: cropped) per axis.
        sides = paddings if paddings is not None else ((0, 0),) * rank
        config = [(0, 0, 0)]
        for (before, after), k, d in zip(sides, kernel_size, dilation_rate, strict=True):
            config.append(((k - 1) * d - before, (k - 1) * d - after, 0))
        config.append((0, 0, 0))
        input_geometry = (kernel_size, tuple(x.shape[1 : 1 + rank]), (1,) * rank, dilation_rate)

    def backward(residuals, gradient):
        x, kernel = residuals
        if isinstance(gradient, jax.custom_derivatives.SymbolicZero):
            return jnp.zeros_like(x), jnp.zeros_like(kernel)
        in_loop = per_sample_input and perturbed["input"]
        if in_loop:
            flipped = jnp.flip(jnp.reshape(kernel, (*kernel_size, -1)), axis=tuple(range(rank)))
            flipped = jnp.reshape(flipped, kernel.shape)
        elif perturbed["input"]:
            _, input_vjp = jax.vjp(lambda x_: padded_shifts(x_, kernel), x)
            (input_gradient,) = input_vjp(gradient)
        else:
            input_gradient = jnp.zeros_like(x)

        def point_gradient(padded_sample, upstream, offset):
            """The gradient of kernel point `offset` from one sample: `(C,)`."""
            points = int(np.prod(upstream.shape[:-1]))
            starts = [o * d for o, d in zip(offset, dilation_rate, strict=True)] + [0]
            extents = [(n - 1) * s + 1 for n, s in zip(out_size, strides, strict=True)]
            window = jax.lax.dynamic_slice(padded_sample, starts, [*extents, upstream.shape[-1]])
            window = window[tuple(slice(None, None, s) for s in strides)]
            # Σ over positions as a product with ones: XLA's matrix-vector product runs
            # several times faster than its reduction over the leading axes here.
            ones = jnp.ones((points,), gradient.dtype)
            return ones @ jnp.reshape(window * upstream, (points, -1))

        def sample_gradients(sample):
            padded_sample = pad(sample[0][None])[0]

            def point(offset):
                return point_gradient(padded_sample, sample[1], offset)

            if JAX_LOW_MEMORY_GRADIENTS and in_loop:
                # One kernel point after another: one product alive at a time. (Without the
                # input's gradient in the loop, XLA kept no more alive than this needs.)
                kernel_gradient = jax.lax.map(point, offsets)
            else:
                kernel_gradient = jnp.stack([point(offset) for offset in offsets])
            if not in_loop:
                return kernel_gradient
            padded = jax.lax.pad(sample[1][None], jnp.zeros((), gradient.dtype), config)
            return kernel_gradient, _shifts(padded, flipped, input_geometry)[0]

        if not (in_loop and JAX_LOW_MEMORY_GRADIENTS):
            per_sample = jax.lax.map(sample_gradients, (x, gradient))
            if in_loop:
                per_sample, input_gradient = per_sample
            return input_gradient, jnp.sum(per_sample, axis=0).astype(kernel.dtype)

        def body(i, carry):
            total, input_gradient = carry
            sample = (
                jax.lax.dynamic_index_in_dim(x, i, keepdims=False),
                jax.lax.dynamic_index_in_dim(gradient, i, keepdims=False),
            )
            kernel_gradient, sample_input_gradient = sample_gradients(sample)
            input_gradient = jax.lax.dynamic_update_index_in_dim(
                input_gradient, sample_input_gradient, i, 0
            )
            return total + kernel_gradient, input_gradient

        # The loop writes every sample's slice of the input gradient, so the buffer's first
        # values never matter. As a broadcast of a constant, XLA allocated it at the start
        # of the step, alive through the whole backward pass; as a broadcast of a value read
        # from the upstream (times zero, which XLA keeps: NaN times zero is NaN), it is
        # allocated once the upstream exists.
        start = jnp.broadcast_to(0 * jnp.ravel(gradient)[0], x.shape).astype(gradient.dtype)
        zero = jnp.zeros(kernel.shape, gradient.dtype)
        total, input_gradient = jax.lax.fori_loop(0, x.shape[0], body, (zero, start))
        return input_gradient, total.astype(kernel.dtype)

    shifts.defvjp(forward, backward, symbolic_zeros=True)
    return shifts(x, flat_kernel)


def _tf_shifts_apply(x: Any, geometry: tuple) -> bool:
    """Whether `_tf_shifts` runs: TensorFlow, strides and dilation 1, spatial sizes known."""
    _, _, strides, dilation_rate = geometry
    return (
        keras.backend.backend() == "tensorflow"
        and all(s == 1 for s in strides)
        and all(d == 1 for d in dilation_rate)
        and None not in tuple(x.shape[1:-1])
    )


def _tf_shifts(x: Any, flat_kernel: Any, geometry: tuple) -> Any:
    """`_shifts` on TensorFlow (strides and dilation 1) with its own gradient.

    TensorFlow differentiates each shifted window, a slice of the input, into a zero tensor
    the size of the input (`StridedSliceGrad`), `k^d` of them summed, which made the O
    separable train step inside a network several times slower than as a first layer.
    Here the input's gradient is the same
    shifted sum on the output gradient, zero-padded by `k - 1` on each side, with the kernel
    flipped (reversing the flattened kernel points flips every axis); the kernel's gradient
    is, per kernel point, the sum over batch and positions of its window times the output
    gradient.
    """
    import tensorflow as tf

    kernel_size, _, strides, dilation_rate = geometry
    rank = len(kernel_size)
    spatial = tuple(int(n) for n in x.shape[1:-1])
    padding = [(0, 0), *[(k - 1, k - 1) for k in kernel_size], (0, 0)]
    transposed = (kernel_size, spatial, strides, dilation_rate)

    @tf.custom_gradient
    def shifts(x, kernel):
        def gradient(upstream):
            input_gradient = _shifts(tf.pad(upstream, padding), tf.reverse(kernel, [0]), transposed)
            kernel_gradient = tf.stack(
                [
                    tf.reduce_sum(window * upstream, axis=tuple(range(rank + 1)))
                    for window in _windows(x, geometry)
                ]
            )
            return input_gradient, kernel_gradient

        return _shifts(x, kernel, geometry), gradient

    return shifts(tf.convert_to_tensor(x), tf.convert_to_tensor(flat_kernel))


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
            `FASTEST_FORMULATION`), `"depthwise_conv"`, `"grouped_conv"`, `"patches"` or `"shifts"`.
            All give the same result.

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

    def _add_kernel_and_bias(self) -> None:
        add_kernel_and_bias(
            self,
            self.kernel_size + (self.in_channels, self.depth_multiplier),
            bias_shape=(self.output_channels,),
        )
        # Kept in numpy: a backend tensor made here could belong to a graph being traced.
        self._kernel_gather = KernelGather(self.transformed_kernel_indices())
        self._input_elements = None
        if not self.lifting and len(self._output_elements) != self.group.order:
            self._input_elements = np.asarray(self._output_elements, dtype="int32")
        self.built = True

    def transformed_kernel_indices(self) -> np.ndarray:
        """Gather indices `(|H|, kernel points)`: row `h` lists where `ψ(M_h⁻¹ r)` is stored.
        The group axis of the input is never mixed, so the kernel has no group part."""
        return self._spatial_permutation[np.asarray(self._output_elements)]

    def transformed_kernel(self) -> Any:
        """The kernel of the equivalent plain depthwise convolution, `(*kernel_size, C_in, M')`:
        lifting: `C_in = C`, `M' = |H|·M` (channel `c·|H|·M + h·M + m`); group input:
        `C_in = |H|·C` (input channel `h·C + c`), `M' = M`."""
        flat = ops.reshape(self.masked_kernel(), (-1, self.in_channels, self.depth_multiplier))
        elements = len(self._output_elements)
        if self.lifting:
            moved = self._kernel_gather.moved(flat, 1)  # (K, C, |H|, M)
            return ops.reshape(
                moved, self.kernel_size + (self.in_channels, elements * self.depth_multiplier)
            )
        moved = self._kernel_gather.moved(flat, 0)  # (K, |H|, C, M)
        return ops.reshape(
            moved, self.kernel_size + (elements * self.in_channels, self.depth_multiplier)
        )

    def _formulation(self) -> str:
        if self.formulation is not None:
            return self.formulation
        return FASTEST_FORMULATION.get(keras.backend.backend(), {}).get(self.rank, "grouped_conv")

    def call(self, inputs: Any, training: Any = None) -> Any:
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(inputs, 1, -1) if channels_first else inputs
        elements = len(self._output_elements)
        if not self.lifting:
            if self._input_elements is not None:
                x = ops.take(x, self._input_elements, axis=-2)
            shape = ops.shape(x)
            x = ops.reshape(x, (shape[0], *shape[1:-2], elements * self.in_channels))
        paddings = self._paddings(tuple(x.shape[1 : 1 + self.rank]))
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
        y = split_group_axis(y, elements, self.output_channels)  # channel h·C·M + c·M + m
        if self.activation is not None:
            y = self.activation(y)
        return ops.moveaxis(y, -1, 1) if channels_first else y

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        spatial = self._output_spatial(self._spatial_shape(input_shape))
        elements = len(self._output_elements)
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        channels = None if channels is None else channels * self.depth_multiplier
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, elements, channels)
        return (input_shape[0], channels, *spatial, elements)

    def export_plain(self, inputs: Any) -> Any:
        """The same computation with stock Keras layers only (see `groco_core.export`)."""
        from groco_separable.exporting import export_depthwise_group_conv

        return export_depthwise_group_conv(self, inputs)

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
