"""Gradients with the backend's own autodiff, for tests of hand-written gradients."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np


def value_and_gradients(fn: Callable, *arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """`fn(*arrays)` (a scalar) and its gradient with respect to each array."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
        gradients = tape.gradient(value, tensors)
        return value.numpy(), [tf.convert_to_tensor(g).numpy() for g in gradients]
    if backend == "jax":
        import jax

        # Compiled as a training step is; run op by op, the shifts formulation's gradients
        # took several seconds per case to dispatch.
        step = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(len(arrays)))))
        value, gradients = step(*arrays)
        return np.asarray(value), [np.asarray(g) for g in gradients]
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    value = fn(*tensors)
    value.backward()
    return value.detach().numpy(), [t.grad.numpy() for t in tensors]
