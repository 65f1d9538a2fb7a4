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
