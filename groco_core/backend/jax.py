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
    gather); where every row of the indices permutes the kernel's rows, with the gradient
    `permutation_gather` gives it."""
    if not takes("jax_in_bounds_gather"):
        return NotImplemented
    if kernel_gather.permutes(flat.shape[0]) and takes("jax_permutation_gradient"):
        return permutation_gather(kernel_gather)(flat)
    return flat.at[kernel_gather.indices].get(mode="promise_in_bounds")


def permutation_gather(kernel_gather: Any) -> Any:
    """`flat ↦ flat[indices]` whose gradient gathers the upstream of each element `h` with
    the inverse permutation of row `h` and sums over `h`: the gradient of a gather is
    otherwise XLA's scatter-add, which its CPU backend runs entry by entry, several times
    slower than a gather of the same size. Made once per `KernelGather`."""
    cache = kernel_gather.backend_cache("jax")
    found = cache.get("permutation_gather")
    if found is not None:
        return found
    import jax

    indices, inverse = kernel_gather.indices, kernel_gather.inverse
    elements = indices.shape[0]

    @jax.custom_vjp
    def gathered(flat):
        return flat.at[indices].get(mode="promise_in_bounds")

    def forward(flat):
        return gathered(flat), None

    def backward(_, upstream):
        rows = upstream.reshape(elements, -1, *upstream.shape[indices.ndim :])  # (|H|, n, …)
        total = rows[0].at[inverse[0]].get(mode="promise_in_bounds")
        for h in range(1, elements):
            total = total + rows[h].at[inverse[h]].get(mode="promise_in_bounds")
        return (total,)

    gathered.defvjp(forward, backward)
    cache["permutation_gather"] = gathered
    return gathered


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


def pointwise_matmul_applies(rank: int, strides: tuple[int, ...]) -> bool:
    """Whether a one-point convolution runs as a matrix product here: on a CPU in 2D and 3D
    at any stride (in 1D it gained nothing)."""
    return rank >= 2 and on_cpu()


def weights_key(variables: list[Any]) -> Any:
    """What identifies the values a layer reads from `variables` now, for
    `groco_core.layers.kernel_cache`: each value's array, with version 0 (JAX arrays are
    immutable, so an assignment installs a new one). `NotImplemented` inside `jit`, where a
    value is a tracer and the expansion belongs to the compiled graph."""
    import jax

    values = [variable.value for variable in variables]
    if any(not isinstance(v, jax.Array) or isinstance(v, jax.core.Tracer) for v in values):
        return NotImplemented
    return tuple((v, 0) for v in values)


def fastest_depthwise_formulation(rank: int) -> Any:
    """The depthwise formulation (`groco_core.layers.depthwise_ops`) XLA's CPU backend runs
    fastest: `shifts` in 2D and 3D (benchmarks/separable.py); `NotImplemented` (unmeasured)
    for another number of spatial axes."""
    return "shifts" if rank in (2, 3) else NotImplemented


def shifts(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    bias: Any = None,
) -> Any:
    """`depthwise_correlation` in its `shifts` formulation on a CPU, with gradients XLA runs
    well there.

    Differentiated as it stands, each kernel point's gradient is its own reduction over the
    whole batch: `k^d` passes over memory. Here the kernel's gradient is taken one sample at
    a time (`lax.map`), every kernel point while the sample is in cache. The padding happens
    inside, so XLA fuses it into the sum instead of writing a padded copy.

    The input's gradient, where the step needs it:

    - At stride 1 with more than 9 kernel points, it is taken in the same loop, as the
      correlation of the zero-padded output gradient with the flipped kernel, while the
      sample is in cache (faster for 5×5 and 3×3×3 kernels; for 3×3 it gained nothing, so
      3×3 keeps the transpose). The loop then takes the kernel points of a sample one after
      another (XLA had kept up to 25 products of a sample's window and upstream alive at
      once) and writes the input's gradient into a buffer allocated only once the upstream
      exists: less temporary memory per compiled step, below the size above which glibc
      maps every step's block afresh and each of its pages faults on first write.
    - Otherwise it is the transpose of the fused sum.
    - Where nothing asks for it (the input of a network), the loop leaves it out: the
      forward pass records whether the input is perturbed (`symbolic_zeros`).

    Returns:
        The correlation, or `NotImplemented` off the CPU.
    """
    if not on_cpu() or not takes("jax_shifts_gradient"):
        return NotImplemented
    import jax
    import jax.numpy as jnp

    from groco_core.layers.depthwise_ops import shift_operands, sum_of_shifts

    x, flat_kernel, geometry = shift_operands(x, kernel, strides, dilation_rate, paddings)
    kernel_size, out_size, _, _ = geometry
    rank = len(kernel_size)
    offsets = np.asarray(list(np.ndindex(*kernel_size)), dtype="int32")
    padded = any(before or after for before, after in paddings)

    def pad(x):
        return jnp.pad(x, [(0, 0), *paddings, (0, 0)]) if padded else x

    def padded_shifts(x, kernel):
        return sum_of_shifts(pad(x), kernel, geometry)

    @jax.custom_vjp
    def correlation(x, kernel):
        return padded_shifts(x, kernel)

    perturbed = {}

    def forward(x, kernel):
        perturbed["input"] = x.perturbed
        return padded_shifts(x.value, kernel.value), (x.value, kernel.value)

    per_sample_input = all(s == 1 for s in strides) and int(np.prod(kernel_size)) > 9
    if per_sample_input:
        # dx[i] = Σ_r g[i + before − r·d] ψ_r = Σ_r' g_padded[i + r'·d] ψ_{k−1−r'}, with g padded
        # by (k−1)·d − before and (k−1)·d − after (negative: cropped) per axis.
        config = [(0, 0, 0)]
        for (before, after), k, d in zip(paddings, kernel_size, dilation_rate, strict=True):
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

            if not in_loop:  # XLA keeps no more products alive than this needs
                return jnp.stack([point(offset) for offset in offsets])
            # One kernel point after another: one product alive at a time.
            kernel_gradient = jax.lax.map(point, offsets)
            padded = jax.lax.pad(sample[1][None], jnp.zeros((), gradient.dtype), config)
            return kernel_gradient, sum_of_shifts(padded, flipped, input_geometry)[0]

        if not in_loop:
            per_sample = jax.lax.map(sample_gradients, (x, gradient))
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

    correlation.defvjp(forward, backward, symbolic_zeros=True)
    y = correlation(x, flat_kernel)
    return y if bias is None else ops.add(y, bias)


def pointwise(x: Any, kernel: Any, bias: Any, elements: int) -> Any:
    """A one-point group convolution's product `x @ kernel`, plus `bias` `(F,)` tiled over
    `elements`, with gradients that all read the upstream gradient as one `(rows, channels)`
    array.

    Differentiated by JAX, the product's train step on a CPU held the upstream gradient three
    times: XLA wrote it once for the input's gradient, once transposed for the kernel's and
    once more for the bias's, each time recomputing it from the loss. Here the kernel's
    gradient contracts the rows of both operands, so no transposed copy is made, and the
    three read the same array: less temporary memory per compiled train step, which keeps
    it below the size above which glibc's malloc maps every step's block afresh (and each
    page faults on first write).

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(1, …, 1, C, elements·F)`.
        bias: `(F,)` or None.
        elements: the output's group elements.

    Returns:
        `(batch, *spatial, elements·F)`.
    """
    if not takes("jax_pointwise_gradient"):
        return NotImplemented
    import jax
    import jax.numpy as jnp

    from groco_core.layers.group_axis import tile_over_group

    if bias is not None:
        bias = tile_over_group(bias, elements)

    @jax.custom_vjp
    def product(x, kernel, bias):
        y = jnp.matmul(x, kernel)
        return y if bias is None else y + bias

    def forward(x, kernel, bias):
        return product(x, kernel, bias), (x, kernel)

    def backward(residuals, upstream):
        x, kernel = residuals
        rows = jnp.reshape(upstream, (-1, upstream.shape[-1]))
        inputs = jnp.reshape(x, (-1, x.shape[-1]))
        input_gradient = jnp.reshape(rows @ kernel.T, x.shape)
        kernel_gradient = jax.lax.dot_general(inputs, rows, (((0,), (0,)), ((), ())))
        bias_gradient = None if bias is None else jnp.sum(rows, axis=0)
        return input_gradient, kernel_gradient, bias_gradient

    product.defvjp(forward, backward)
    return product(x, ops.reshape(kernel, kernel.shape[-2:]), bias)
