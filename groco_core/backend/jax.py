"""JAX fast paths: formulations XLA's CPU backend runs faster, and a maximum whose gradient
it cannot make NaN. Figures: docs/performance.md."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from keras import ops

from groco_core.layers.fast_paths import takes

# Up to this many entries of the 0/1 matrix, `tile` tiles by a matrix product.
TILING_LIMIT = 2**20


def on_cpu() -> bool:
    """Whether JAX computes on the CPU, where some formulations run faster than XLA's own."""
    import jax

    return jax.default_backend() == "cpu"


def gather(kernel_gather: Any, flat: Any) -> Any:
    """`KernelGather`'s gather with its indices promised in bounds (no masking in the compiled
    gather)."""
    if not takes("jax_in_bounds_gather"):
        return NotImplemented
    return flat.at[kernel_gather.indices].get(mode="promise_in_bounds")


@functools.lru_cache(maxsize=64)
def _tiling_matrix(elements: int, fields: int) -> np.ndarray:
    """`(elements·fields, fields)`: row `h·fields + c` is the unit vector `c`."""
    return np.tile(np.eye(fields, dtype="float32"), (elements, 1))


def tile(vector: Any, elements: int) -> Any:
    """`tile_over_group` as a product with a constant 0/1 matrix: XLA fuses a tile made by
    broadcast and reshape into the loop of whatever it feeds, recomputing an index modulo
    `fields` for every element, which keeps that loop from vectorizing; a product it
    computes once."""
    fields = vector.shape[0]
    if elements * fields * fields > TILING_LIMIT or not takes("jax_tiling_matmul"):
        return NotImplemented
    return ops.matmul(ops.cast(_tiling_matrix(elements, fields), vector.dtype), vector)


def conv(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    dilation_rate: tuple[int, ...],
) -> Any:
    """A channels-last convolution with explicit zero `paddings` handed to XLA, at least one
    side padded: XLA's CPU backend runs a 2D convolution without any padding on a slower
    path. Where nothing is padded, one zero row is padded at the end of the first spatial
    axis and the output row it adds, if any, dropped (no window of the unpadded input
    reaches it).

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


def conv_transpose(x: Any, kernel: Any, strides: tuple[int, ...], padding: str) -> Any:
    """`keras.ops.conv_transpose` (channels last) whose kernel gradient is taken as that of a
    strided convolution, which XLA's CPU backend runs far faster than its own kernel
    gradient of a transposed convolution (except with Keras's `same` window at stride 1).

    A transposed convolution `T_K` is the adjoint of the strided convolution `C_K` that is
    its input gradient: `<g, T_K x> = <C_K g, x>` for every kernel `K`, so the kernel
    gradient of `<g, T_K x>` is that of `K ↦ <C_K g, x>`, a convolution's kernel gradient.
    """
    xla_is_fast = padding == "same" and all(s == 1 for s in strides)
    if xla_is_fast or not on_cpu() or not takes("jax_transposed_kernel_gradient"):
        return NotImplemented
    import jax

    def transposed(x, kernel):
        return ops.conv_transpose(x, kernel, strides, padding, data_format="channels_last")

    @jax.custom_vjp
    def product(x, kernel):
        return transposed(x, kernel)

    def forward(x, kernel):
        return transposed(x, kernel), (x, kernel)

    def backward(residuals, gradient):
        x, kernel = residuals

        def input_gradient(kernel):  # C_K g
            _, input_vjp = jax.vjp(lambda x_: transposed(x_, kernel), x)
            return input_vjp(gradient)[0]

        x_gradient, kernel_vjp = jax.vjp(input_gradient, kernel)
        return x_gradient, kernel_vjp(x)[0]

    product.defvjp(forward, backward)
    return product(x, kernel)


def reduce_max(x: Any, axes: tuple[int, ...], keepdims: bool = False) -> Any:
    """`keras.ops.max(x, axes, keepdims)` whose gradient cannot be NaN.

    JAX differentiates a maximum by comparing its input with the result and dividing by the
    number of equal entries (ties share the gradient). Under `jit`, XLA's CPU backend may
    recompute the input inside the fusion that compares, with other rounding than the
    fusion that took the maximum (seen with a batch normalization before a global max
    pooling: the maximum matched no recomputed entry, the count was 0, and every gradient
    became NaN). Here the comparison also counts the position `argmax` found, so the count
    is at least 1; where nothing is recomputed (eagerly, or when XLA keeps the input) the
    gradient is JAX's own, ties shared equally.
    """
    if not takes("jax_max_gradient"):
        return NotImplemented
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x)
    axes = tuple(sorted(axis % x.ndim for axis in axes))
    kept = tuple(axis for axis in range(x.ndim) if axis not in axes)
    # The reduced axes moved last and merged into one.
    merged = jnp.transpose(x, (*kept, *axes)).reshape(*(x.shape[a] for a in kept), -1)

    @jax.custom_vjp
    def maximum(x):
        return jnp.max(x, axis=-1)

    def forward(x):
        result = jnp.max(x, axis=-1)
        return result, (x, result, jnp.argmax(x, axis=-1))

    def backward(residuals, upstream):
        x, result, position = residuals
        positions = jax.lax.broadcasted_iota(position.dtype, x.shape, x.ndim - 1)
        chosen = (x == result[..., None]) | (positions == position[..., None])
        chosen = chosen.astype(upstream.dtype)
        count = jnp.sum(chosen, axis=-1, keepdims=True)
        return (chosen * (upstream[..., None] / count),)

    maximum.defvjp(forward, backward)
    y = maximum(merged)
    if keepdims:
        y = jnp.expand_dims(y, axes)
    return y
