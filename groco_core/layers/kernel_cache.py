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

from groco_core import backend
from groco_core.layers.fast_paths import takes

# TensorFlow keeps the transformed kernel only from this many pieces: its entries divided by
# the layer's `filters`, the runs of `filters` values its gather and transpose move one by
# one. Below, expanding costs no more than the check (a conditional and a comparison on
# TensorFlow's CPU executor); docs/performance.md.
TF_CACHE_MIN_PIECES = 2**15


def _source_variables(layer: keras.layers.Layer) -> list[Any]:
    """The weights `layer.transformed_kernel()` is computed from."""
    if getattr(layer, "lora_enabled", False):
        return [layer._kernel, layer.lora_kernel_a, layer.lora_kernel_b]
    return [layer.kernel]


def _same(key: tuple, other: tuple) -> bool:
    return len(key) == len(other) and all(
        value is other_value and version == other_version
        for (value, version), (other_value, other_version) in zip(key, other, strict=True)
    )


def cached_transformed_kernel(layer: keras.layers.Layer, training: Any = None) -> Any:
    """`layer.transformed_kernel()`, reused from the layer's last call when that call saw the
    same weights (see the module docstring for when that can be known); computed otherwise.
    `training` is the call's own (TensorFlow keeps the kernel only where it is False): a
    layer passes it on by accepting `training` in its `call`.

    TensorFlow keeps the kernel in the graph (`groco_core.backend.tensorflow.cached_kernel`).
    PyTorch and JAX key it in Python on `(value, version)` pairs, one per source weight
    (`weights_key` in their backend modules): the cache holds the values it was computed
    from, so their identities stay unique while it lives.

    Example:
        >>> import numpy as np
        >>> from keras import ops
        >>> from groco_core import GroupConv2D
        >>> from groco_core.toolkit import cached_transformed_kernel
        >>> layer = GroupConv2D(4, 3, group="P4")
        >>> layer.build((None, 9, 9, 2))
        >>> kernel = cached_transformed_kernel(layer, training=False)
        >>> tuple(kernel.shape)
        (3, 3, 2, 16)
        >>> expanded = layer.transformed_kernel()
        >>> np.allclose(ops.convert_to_numpy(kernel), ops.convert_to_numpy(expanded))
        True
    """
    if not takes("kernel_cache"):
        return layer.transformed_kernel()
    variables = _source_variables(layer)
    key = backend.call("weights_key", variables)
    if key is NotImplemented:
        kernel = backend.call("cached_kernel", layer, variables, training, TF_CACHE_MIN_PIECES)
        return layer.transformed_kernel() if kernel is NotImplemented else kernel
    cache = layer.__dict__.get("_groco_kernel_cache")
    if cache is not None and _same(cache[0], key):
        return cache[1]
    kernel = layer.transformed_kernel()
    layer.__dict__["_groco_kernel_cache"] = (key, kernel)
    return kernel
