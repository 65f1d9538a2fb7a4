"""Reusing a layer's transformed kernel between calls while its weights are unchanged.

A group layer expands its kernel (one gather over the group's elements) on every call. In
training that is part of the step and must be: the gradient flows through it. In inference
the expanded kernel depends only on the weights, so it can be kept, provided a changed weight
is never served stale. This module keeps it only where the backend says for certain that a
weight is unchanged:

- PyTorch, outside autograd (`torch.no_grad()`, as in `predict`) and outside
  `torch.compile`: keyed on each weight's tensor and its in-place version counter, which
  every assignment, optimizer update and `load_weights` bumps.
- JAX, called eagerly (outside `jit`): keyed on the identity of each weight's array; JAX
  arrays are immutable, so an assignment installs a new array.
- TensorFlow, in inference (the call's `training` is False, as in `predict`; Keras passes
  it to every layer whose `call` accepts `training`), outside a distribution strategy, for
  kernels whose expansion costs more than the check (`TF_CACHE_MIN_PIECES`): in the graph
  itself. Variables outside the layer's weights hold the bits of the weights the expansion
  was last made from and that expansion; each call compares the weights' bits with the kept
  ones (a read of the small kernel) and expands only when they differ, so any way of
  changing a weight is seen. The kept kernel carries the expansion's gradient, so a
  gradient taken through an inference call is still right.
- Elsewhere (JAX inside `jit`, `torch.compile`, training calls, distribution strategies):
  recomputed every call, inside the compiled graph.

On PyTorch and JAX the key is what each weight's `value` returns, so a call inside a
`keras.StatelessScope` is keyed on the scope's values, and under mixed precision (a fresh
cast copy per read) nothing is reused. TensorFlow compares those values themselves.
"""

from __future__ import annotations

from typing import Any

import keras

from groco_core.layers.fast_paths import takes


def _source_variables(layer: keras.layers.Layer) -> list[Any]:
    """The weights `layer.transformed_kernel()` is computed from."""
    sources = [layer._kernel]
    if getattr(layer, "lora_enabled", False):
        sources += [layer.lora_kernel_a, layer.lora_kernel_b]
    return sources


def _weights_key(variables: list[Any]) -> tuple | None:
    """What identifies the values the layer reads from `variables` now, or None where it
    cannot be known for certain (then nothing is cached).

    The key holds what `variable.value` returns, which is what `transformed_kernel` reads:
    inside a `keras.StatelessScope` the scope's value, under mixed precision a cast copy (a
    new tensor on every read, so such calls never reuse the cache, and never a kernel of the
    wrong dtype)."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return None
        values = [variable.value for variable in variables]
        if any(not isinstance(v, torch.Tensor) or v.device.type == "meta" for v in values):
            return None
        return tuple((v, v._version) for v in values)
    if backend == "jax":
        import jax

        values = [variable.value for variable in variables]
        if any(not isinstance(v, jax.Array) or isinstance(v, jax.core.Tracer) for v in values):
            return None
        return tuple((v, 0) for v in values)
    return None


# The transformed kernel is kept only from this many pieces: its entries divided by the
# layer's `filters`, the runs of `filters` values its gather and transpose move one by one.
# Below, expanding costs no more than the check (a conditional and a comparison on
# TensorFlow's CPU executor); docs/performance.md.
TF_CACHE_MIN_PIECES = 2**15


def _bits(x: Any) -> Any:
    """`x`'s bits as integers of its width: equal bits are equal values, and a flipped sign
    of zero or another NaN payload counts as a change."""
    import tensorflow as tf

    return tf.bitcast(x, {2: tf.int16, 4: tf.int32, 8: tf.int64}[x.dtype.size])


def _tensorflow_cached(layer: keras.layers.Layer, training: Any) -> Any:
    """TensorFlow inference: the transformed kernel kept in variables, re-expanded in the
    graph when the bits of its source weights differ from the kept ones; None where no
    cache is used (training, or a distribution strategy, whose replicas would each write).

    The kept bits start as those of zeros and the kept kernel as the expansion of zero
    weights, computed when the call is traced, so the two always agree: each call costs
    one comparison per source weight and a conditional, with no flag to read."""
    import tensorflow as tf

    if training is not False or tf.distribute.has_strategy():
        return None
    variables = _source_variables(layer)
    sources = [tf.convert_to_tensor(variable.value) for variable in variables]
    if any(not source.dtype.is_floating for source in sources):
        return None
    caches = layer.__dict__.setdefault("_groco_tf_kernel_cache", {})
    key = tuple(source.dtype.name for source in sources)
    if key not in caches:
        # The expansion's shape, from a trace that is never run (nothing is read here:
        # inside a `keras.StatelessScope` the values belong to the graph being traced).
        spec = tf.function(layer.transformed_kernel).get_concrete_function().structured_outputs
        caches[key] = None
        if spec.shape.num_elements() // getattr(layer, "filters", 1) >= TF_CACHE_MIN_PIECES:
            with tf.init_scope():  # made once, eagerly, outside any graph being traced
                zeros = [tf.zeros(s.shape, s.dtype) for s in sources]
                kept = [tf.Variable(_bits(z), trainable=False) for z in zeros]
                mapping = [(v, tf.zeros(v.shape, v.dtype)) for v in variables]
                with keras.StatelessScope(state_mapping=mapping):
                    start = tf.cast(layer.transformed_kernel(), spec.dtype)
                expanded = tf.Variable(start, trainable=False)
                caches[key] = (kept, expanded)
    if caches[key] is None:
        return None
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


def _same(key: tuple, other: tuple) -> bool:
    return len(key) == len(other) and all(
        value is other_value and version == other_version
        for (value, version), (other_value, other_version) in zip(key, other, strict=True)
    )


def cached_transformed_kernel(layer: keras.layers.Layer, training: Any = None) -> Any:
    """`layer.transformed_kernel()`, reused from the layer's last call when that call saw the
    same weights (see the module docstring for when that can be known); computed otherwise.
    The cache holds the weight tensors it was computed from, so their identities stay
    unique while it lives. `training` is the call's own (TensorFlow keeps the kernel only
    where it is False): a layer passes it on by accepting `training` in its `call`."""
    if not takes("kernel_cache"):
        return layer.transformed_kernel()
    if keras.backend.backend() == "tensorflow":
        kernel = _tensorflow_cached(layer, training)
        return layer.transformed_kernel() if kernel is None else kernel
    key = _weights_key(_source_variables(layer))
    if key is None:
        return layer.transformed_kernel()
    cache = layer.__dict__.get("_groco_kernel_cache")
    if cache is not None and _same(cache[0], key):
        return cache[1]
    kernel = layer.transformed_kernel()
    layer.__dict__["_groco_kernel_cache"] = (key, kernel)
    return kernel
