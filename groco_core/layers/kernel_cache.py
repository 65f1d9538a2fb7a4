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
- Elsewhere (TensorFlow, any traced or compiled call): recomputed every call, inside the
  compiled graph, as before.

The key is what each weight's `value` returns, so a call inside a `keras.StatelessScope` is
keyed on the scope's values, and under mixed precision (a fresh cast copy per read) nothing
is reused.
"""

from __future__ import annotations

from typing import Any

import keras


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


def _same(key: tuple, other: tuple) -> bool:
    return len(key) == len(other) and all(
        value is other_value and version == other_version
        for (value, version), (other_value, other_version) in zip(key, other, strict=True)
    )


def cached_transformed_kernel(layer: keras.layers.Layer) -> Any:
    """`layer.transformed_kernel()`, reused from the layer's last call when that call saw the
    same weights (see the module docstring for when that can be known); computed otherwise.
    The cache holds the weight tensors it was computed from, so their identities stay
    unique while it lives."""
    key = _weights_key(_source_variables(layer))
    if key is None:
        return layer.transformed_kernel()
    cache = layer.__dict__.get("_groco_kernel_cache")
    if cache is not None and _same(cache[0], key):
        return cache[1]
    kernel = layer.transformed_kernel()
    layer.__dict__["_groco_kernel_cache"] = (key, kernel)
    return kernel
