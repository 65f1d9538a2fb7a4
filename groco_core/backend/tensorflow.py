"""TensorFlow fast paths: the kernel gather with a gather for its gradient. Figures:
docs/performance.md."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from groco_core.layers.fast_paths import takes

# Kernel rows shorter than this many bytes are gathered as `int64` entries (`run_gather`).
WIDE_ROW_BYTES = 32


def gather(kernel_gather: Any, flat: Any) -> Any:
    """`KernelGather`'s gather where its rows are permutations: one `run_gather` of whole
    kernel rows."""
    if not kernel_gather.permutes(flat.shape[0]) or not takes("tensorflow_run_gather"):
        return NotImplemented
    import tensorflow as tf

    indices, cache = kernel_gather.indices, kernel_gather.backend_cache("tensorflow")
    elements, n = kernel_gather.inverse.shape
    tail = tuple(flat.shape[1:])
    prepared = cache.get("rows")
    if prepared is None:
        # Upstream row `h·n + i` is output `(h, i)`; kernel row `j` went to `inverse[h, j]`.
        inverse = kernel_gather.inverse + n * np.arange(elements, dtype="int32")[:, None]
        prepared = cache["rows"] = (indices.reshape(-1, 1), inverse[..., None])
    gathered = run_gather(tf.reshape(flat, (n, math.prod(tail))), *prepared)
    return tf.reshape(gathered, (*indices.shape, *tail))


def gather_moved(kernel_gather: Any, flat: Any, lead: int) -> Any:
    """`KernelGather.moved` where the rows are permutations: the table is `flat` as runs of
    `D[lead:]`'s values, one per kernel row and `D[:lead]` entry, and output run `(i, d, h)`
    is table run `indices[h, i]·|D[:lead]| + d`: one `run_gather` straight into the layout,
    with no transpose after it."""
    if not kernel_gather.permutes(flat.shape[0]) or not takes("tensorflow_run_gather"):
        return NotImplemented
    import tensorflow as tf

    indices, cache = kernel_gather.indices, kernel_gather.backend_cache("tensorflow")
    elements, n = indices.shape[0], flat.shape[0]
    lead_shape, tail_shape = tuple(flat.shape[1 : 1 + lead]), tuple(flat.shape[1 + lead :])
    lead_size, tail = math.prod(lead_shape), math.prod(tail_shape)
    out_shape = (*indices.shape[1:], *lead_shape, elements, *tail_shape)
    key = (n, lead_size)
    prepared = cache.get(key)
    if prepared is None:
        by_element = indices.reshape(elements, n)
        # rows[i, d, h] = indices[h, i]·lead_size + d
        rows = by_element.T[:, None, :] * lead_size + np.arange(lead_size)[None, :, None]
        rows = rows.reshape(-1, elements)  # (n·lead_size, |H|)
        inverse = np.empty((elements, n * lead_size), dtype="int32")
        for h in range(elements):
            inverse[h, rows[:, h]] = np.arange(n * lead_size) * elements + h
        prepared = cache[key] = (rows.reshape(-1, 1).astype("int32"), inverse[..., None])
    rows, inverse = prepared
    table = tf.reshape(flat, (n * lead_size, tail))
    return tf.reshape(run_gather(table, rows, inverse), out_shape)


def run_gather(table: Any, rows: np.ndarray, inverse: np.ndarray) -> Any:
    """`table[rows[:, 0]]`, `table` `(R, L)`, where `inverse` `(|H|, R, 1)` lists for each `h`
    where each table row went in the output (`rows[inverse[h, j, 0], 0] == j`); both carry
    `tf.gather_nd`'s trailing index axis. The gradient gathers the upstream rows with
    `inverse` and sums over `h`, instead of TensorFlow's slower scatter-add
    (`UnsortedSegmentSum`). Rows of fewer than `WIDE_ROW_BYTES` bytes are read as `int64`
    entries where their length allows (two `float32` as one), so `GatherNd` makes half as
    many copies; XLA accepts these bitcasts, so `jit_compile=True` runs them too.
    """
    import tensorflow as tf

    length, dtype = table.shape[1], table.dtype
    width = tf.int64.size // dtype.size
    wide = length * dtype.size < WIDE_ROW_BYTES and width > 1 and length % width == 0

    def gather_rows(values: Any, index: Any) -> Any:
        if not wide:
            return tf.gather_nd(values, index)
        shape = (values.shape[0], length // width, width)
        gathered = tf.gather_nd(tf.bitcast(tf.reshape(values, shape), tf.int64), index)
        return tf.reshape(tf.bitcast(gathered, dtype), (*index.shape[:-1], length))

    @tf.custom_gradient
    def gathered(table: Any) -> Any:
        def gradient(upstream: Any) -> Any:
            upstream = tf.reshape(upstream, (rows.shape[0], length))
            return tf.reduce_sum(gather_rows(upstream, inverse), axis=0)

        return gather_rows(table, rows), gradient

    return gathered(tf.identity(table))  # a variable is read outside the custom gradient


def assert_at_run_time(ok: Any, message: str, size: Any, value: Any) -> Any:
    """`value` once `ok` holds, checked when the graph runs: `ok` may depend on a size known
    only then. Fails with `message` and `size` (an `InvalidArgumentError`)."""
    import tensorflow as tf

    with tf.control_dependencies([tf.debugging.Assert(ok, [message, size])]):
        return tf.identity(value)


def pointwise_matmul_applies(rank: int, strides: tuple[int, ...]) -> bool:
    """Whether a one-point convolution runs as a matrix product here: on a CPU at stride 1
    (at stride 2 the strided slice and its gradient cost more than the product saves)."""
    import tensorflow as tf

    return all(s == 1 for s in strides) and not tf.config.list_logical_devices("GPU")


def pools_in_float32(rank: int, mode: str, dtype: Any) -> bool:
    """Whether a pooling of this rank, mode and dtype runs in `float32`: TensorFlow has no
    `float16` 3D pooling on the CPU (`keras.layers.MaxPooling3D` / `AveragePooling3D` fail
    the same way)."""
    if rank != 3:
        return False
    import keras

    return keras.backend.standardize_dtype(dtype) == "float16"


def cached_kernel(layer: Any, variables: list[Any], training: Any, min_pieces: int) -> Any:
    """`layer.transformed_kernel()` kept in the graph for inference (see
    `groco_core.layers.kernel_cache`): variables outside the layer's weights hold the bits of
    `variables` the kept expansion was made from and that expansion, which the graph makes
    again only when the bits differ, so any way of changing a weight is seen.

    The kept bits start as those of zeros and the kept kernel as the expansion of zero
    weights, computed when the call is traced, so the two always agree: each call costs
    one comparison per source weight and a conditional, with no flag to read.

    Returns:
        The kernel, or `NotImplemented` where nothing is kept: in training, under a
        distribution strategy (whose replicas would each write), for weights that are not
        floating point, and for kernels of fewer than `min_pieces` runs of `filters` values
        (whose expansion costs no more than the check).
    """
    import keras
    import tensorflow as tf

    if training is not False or tf.distribute.has_strategy():
        return NotImplemented
    sources = [tf.convert_to_tensor(variable.value) for variable in variables]
    if any(not source.dtype.is_floating for source in sources):
        return NotImplemented
    caches = layer.__dict__.setdefault("_groco_tf_kernel_cache", {})
    key = tuple(source.dtype.name for source in sources)
    if key not in caches:
        # The expansion's shape, from a trace that is never run (nothing is read here:
        # inside a `keras.StatelessScope` the values belong to the graph being traced).
        spec = tf.function(layer.transformed_kernel).get_concrete_function().structured_outputs
        caches[key] = None
        if spec.shape.num_elements() // getattr(layer, "filters", 1) >= min_pieces:
            with tf.init_scope():  # made once, eagerly, outside any graph being traced
                zeros = [tf.zeros(s.shape, s.dtype) for s in sources]
                kept = [tf.Variable(_bits(z), trainable=False) for z in zeros]
                mapping = [(v, tf.zeros(v.shape, v.dtype)) for v in variables]
                with keras.StatelessScope(state_mapping=mapping):
                    start = tf.cast(layer.transformed_kernel(), spec.dtype)
                expanded = tf.Variable(start, trainable=False)
                caches[key] = (kept, expanded)
    if caches[key] is None:
        return NotImplemented
    kept, expanded = caches[key]

    pairs = list(zip(sources, kept, strict=True))
    same = [tf.reduce_all(tf.equal(_bits(s), k.value())) for s, k in pairs]
    unchanged = same[0] if len(same) == 1 else tf.reduce_all(same)

    def expand() -> Any:
        kernel = layer.transformed_kernel()
        writes = [expanded.assign(kernel), *(k.assign(_bits(s)) for s, k in pairs)]
        with tf.control_dependencies(writes):
            return tf.identity(kernel)

    value = tf.cond(unchanged, expanded.read_value, expand)

    @tf.custom_gradient
    def with_gradient(value, *sources):
        def gradient(upstream):
            # The expansion's gradient, recomputed from the values the call read.
            with tf.GradientTape() as tape:
                tape.watch(sources)
                mapping = list(zip(variables, sources, strict=True))
                with keras.StatelessScope(state_mapping=mapping):
                    kernel = layer.transformed_kernel()
            return (None, *tape.gradient(kernel, sources, output_gradients=upstream))

        return value, gradient

    return with_gradient(value, *sources)


def _bits(x: Any) -> Any:
    """`x`'s bits as integers of its width: equal bits are equal values, and a flipped sign
    of zero or another NaN payload counts as a change."""
    import tensorflow as tf

    return tf.bitcast(x, {2: tf.int16, 4: tf.int32, 8: tf.int64}[x.dtype.size])


def fastest_depthwise_formulation(rank: int) -> Any:
    """The depthwise formulation (`groco_core.layers.depthwise_ops`) TensorFlow runs fastest
    on a CPU: `depthwise_conv` in 2D, `shifts` in 3D (benchmarks/separable.py);
    `NotImplemented` (unmeasured) for another number of spatial axes."""
    return {2: "depthwise_conv", 3: "shifts"}.get(rank, NotImplemented)


def depthwise_conv2d(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    bias: Any = None,
) -> Any:
    """`depthwise_correlation` in its `depthwise_conv` formulation, whose kernel gradient is
    itself a depthwise correlation with the roles swapped: `dψ(r, c) = Σ_n Σ_p x(n, p + r, c)
    g(n, p, c)` is the correlation of the input, with batch and channels merged into `N·C`
    channels of one image, with the output gradient as an `(H', W')` kernel; summed over `n`.

    TensorFlow's own kernel gradient of a 3×3 depthwise convolution is fast; above it, two to
    four times as slow as this one. So this runs (`_swapped_kernel_gradient_applies`) in 2D,
    for kernels of more than 3×3 points, strides and dilation 1, `depth_multiplier` 1.

    Returns:
        The correlation, or `NotImplemented` where it does not run.
    """
    if not _swapped_kernel_gradient_applies(kernel, strides, dilation_rate) or not takes(
        "tensorflow_depthwise_kernel_gradient"
    ):
        return NotImplemented
    import tensorflow as tf
    from keras import ops

    from groco_core.layers.depthwise_ops import pad

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

    x = pad(x, paddings)
    y = depthwise(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))
    return y if bias is None else ops.add(y, bias)


def _swapped_kernel_gradient_applies(kernel: Any, strides: tuple, dilation_rate: tuple) -> bool:
    """Whether `depthwise_conv2d` runs: 2 spatial axes, a kernel of more than 3×3 points,
    strides and dilation 1, `depth_multiplier` 1."""
    return (
        len(strides) == 2
        and int(np.prod(kernel.shape[:2])) > 9
        and kernel.shape[-1] == 1
        and all(s == 1 for s in strides)
        and all(d == 1 for d in dilation_rate)
    )


def shifts(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    paddings: tuple[tuple[int, int], ...],
    bias: Any = None,
) -> Any:
    """`depthwise_correlation` in its `shifts` formulation (strides and dilation 1, spatial
    sizes known) with its own gradient.

    TensorFlow differentiates each shifted window, a slice of the input, into a zero tensor
    the size of the input (`StridedSliceGrad`), `k^d` of them summed, which made the
    separable train step inside a network several times slower than as a first layer. Here
    the input's gradient is the same shifted sum on the output gradient, zero-padded by
    `k - 1` on each side, with the kernel flipped (reversing the flattened kernel points
    flips every axis); the kernel's gradient is, per kernel point, the sum over batch and
    positions of its window times the output gradient.

    Returns:
        The correlation, or `NotImplemented` where it does not run.
    """
    if (
        any(s != 1 for s in strides)
        or any(d != 1 for d in dilation_rate)
        or None in tuple(x.shape[1:-1])
        or not takes("tensorflow_shifts_gradient")
    ):
        return NotImplemented
    import tensorflow as tf
    from keras import ops

    from groco_core.layers.depthwise_ops import kernel_windows, pad, shift_operands, sum_of_shifts

    x, flat_kernel, geometry = shift_operands(pad(x, paddings), kernel, strides, dilation_rate)
    kernel_size = geometry[0]
    rank = len(kernel_size)
    spatial = tuple(int(n) for n in x.shape[1:-1])
    padding = [(0, 0), *[(k - 1, k - 1) for k in kernel_size], (0, 0)]
    transposed = (kernel_size, spatial, geometry[2], geometry[3])

    @tf.custom_gradient
    def correlation(x, kernel):
        def gradient(upstream):
            input_gradient = sum_of_shifts(
                tf.pad(upstream, padding), tf.reverse(kernel, [0]), transposed
            )
            kernel_gradient = tf.stack(
                [
                    tf.reduce_sum(window * upstream, axis=tuple(range(rank + 1)))
                    for window in kernel_windows(x, geometry)
                ]
            )
            return input_gradient, kernel_gradient

        return sum_of_shifts(x, kernel, geometry), gradient

    y = correlation(tf.convert_to_tensor(x), tf.convert_to_tensor(flat_kernel))
    return y if bias is None else ops.add(y, bias)
