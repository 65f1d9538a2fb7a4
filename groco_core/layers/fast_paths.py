"""Every backend-specific formulation the layers use, each named beside its plain reference.

A fast path computes what a plain `keras.ops` formulation computes, in a way a backend runs
faster (or, for `jax_max_gradient`, more robustly). Each one asks `takes(name)` where it
would be taken; inside `reference_formulations()` the answer is False and the layer computes
the reference instead, so a test can compare the two on the same layer, weights and input,
value and gradients, eager and compiled (tests/test_fast_paths.py). `FAST_PATHS` is the one
place that lists them: a fast path not listed here cannot ask `takes`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from keras import ops

BACKENDS = ("jax", "tensorflow", "torch")


@dataclass(frozen=True)
class FastPath:
    """One fast path: where it runs, what it is, and the reference it must equal.

    Attributes:
        name: what `takes` is asked with.
        backends: the backends where it can be taken.
        formulation: the function (module-qualified) that computes it.
        reference: the plain `keras.ops` formulation computed instead inside
            `reference_formulations()`.
    """

    name: str
    backends: tuple[str, ...]
    formulation: str
    reference: str


FAST_PATHS: dict[str, FastPath] = {
    path.name: path
    for path in (
        FastPath(
            "torch_tensor_reshape",
            ("torch",),
            "groco_core.backend.torch.reshape",
            "keras.ops.reshape",
        ),
        FastPath(
            "bias_on_merged_axis",
            BACKENDS,
            "groco_core.layers.group_axis.split_group_axis",
            "the bias added after the group axis is split off (keras.ops.add)",
        ),
        FastPath(
            "jax_tiling_matmul",
            ("jax",),
            "groco_core.backend.jax.tile",
            "keras.ops.broadcast_to and keras.ops.reshape",
        ),
        FastPath(
            "torch_channels_last_conv",
            ("torch",),
            "groco_core.backend.torch.conv",
            "keras.ops.conv (or the depthwise formulation asked for) plus keras.ops.add",
        ),
        FastPath(
            "torch_bias_gradient_apart",
            ("torch",),
            "groco_core.backend.torch._biased_convolution",
            "PyTorch's convolution with its own bias gradient",
        ),
        FastPath(
            "jax_padded_conv",
            ("jax",),
            "groco_core.backend.jax.conv",
            "keras.ops.pad and keras.ops.conv",
        ),
        FastPath(
            "pointwise_matmul",
            ("jax", "tensorflow"),
            "groco_core.layers.conv.BaseGroupConv._matmul_applies",
            "keras.ops.conv with the one-point kernel",
        ),
        FastPath(
            "cropped_kernel",
            BACKENDS,
            "groco_core.layers.conv.BaseGroupConv._cropped_kernel",
            "the whole transformed kernel, its taps that read only padding included",
        ),
        FastPath(
            "torch_index_select_gather",
            ("torch",),
            "groco_core.backend.torch.gather",
            "keras.ops.take",
        ),
        FastPath(
            "jax_in_bounds_gather",
            ("jax",),
            "groco_core.backend.jax.gather",
            "keras.ops.take",
        ),
        FastPath(
            "jax_permutation_gradient",
            ("jax",),
            "groco_core.backend.jax.permutation_gather",
            "keras.ops.take differentiated by JAX (a scatter-add)",
        ),
        FastPath(
            "tensorflow_run_gather",
            ("tensorflow",),
            "groco_core.backend.tensorflow.run_gather",
            "keras.ops.take and keras.ops.moveaxis",
        ),
        FastPath(
            "torch_output_major_kernel",
            ("torch",),
            "groco_core.backend.torch.output_major",
            "keras.ops.take, keras.ops.moveaxis and keras.ops.reshape",
        ),
        FastPath(
            "trivial_group_gather",
            BACKENDS,
            "groco_core.layers.kernels.KernelGather.reshapes",
            "the gather (keras.ops.take) of every kernel row, in order",
        ),
        FastPath(
            "kernel_cache",
            BACKENDS,
            "groco_core.layers.kernel_cache.cached_transformed_kernel",
            "the layer's transformed_kernel(), expanded on every call",
        ),
        FastPath(
            "jax_transposed_kernel_gradient",
            ("jax",),
            "groco_core.backend.jax.conv_transpose",
            "keras.ops.conv_transpose differentiated by JAX",
        ),
        FastPath(
            "merged_batch_norm",
            BACKENDS,
            "groco_core.layers.normalization.GroupBatchNormalization.call",
            "keras.layers.BatchNormalization.call",
        ),
        FastPath(
            "jax_max_gradient",
            ("jax",),
            "groco_core.backend.jax.reduce_max",
            "keras.ops.max differentiated by JAX",
        ),
        FastPath(
            "torch_tiled_depthwise_gradient",
            ("torch",),
            "groco_core.backend.torch.depthwise_conv2d",
            "PyTorch's grouped convolution with its own gradients",
        ),
        FastPath(
            "tensorflow_depthwise_kernel_gradient",
            ("tensorflow",),
            "groco_core.backend.tensorflow.depthwise_conv2d",
            "keras.ops.depthwise_conv differentiated by TensorFlow",
        ),
        FastPath(
            "jax_shifts_gradient",
            ("jax",),
            "groco_core.backend.jax.shifts",
            "the shifted windows times their kernel points (keras.ops), differentiated by JAX",
        ),
        FastPath(
            "tensorflow_shifts_gradient",
            ("tensorflow",),
            "groco_core.backend.tensorflow.shifts",
            "the shifted windows times their kernel points (keras.ops), differentiated by "
            "TensorFlow",
        ),
        FastPath(
            "jax_pointwise_gradient",
            ("jax",),
            "groco_core.backend.jax.pointwise",
            "keras.ops.matmul differentiated by JAX",
        ),
    )
}

_state = threading.local()
_taken: set[str] = set()


def _disabled() -> frozenset[str]:
    return getattr(_state, "disabled", frozenset())


@contextlib.contextmanager
def reference_formulations(*names: str) -> Iterator[None]:
    """Within the block, the named fast paths (all, when none are named) are not taken: the
    layers compute their plain `keras.ops` references. Layers decide while they are called
    or traced, so compile a function inside the block to compile the reference.

    Raises:
        ValueError: for a name `FAST_PATHS` does not list.
    """
    for name in names:
        _check_name(name)
    previous = _disabled()
    _state.disabled = previous | frozenset(names or FAST_PATHS)
    try:
        yield
    finally:
        _state.disabled = previous


def takes(name: str) -> bool:
    """Whether the fast path `name` may be taken now (its other conditions are the
    caller's): False inside `reference_formulations()` naming it. Records the path as taken
    (see `taken_fast_paths`)."""
    _check_name(name)
    if name in _disabled():
        return False
    _taken.add(name)
    return True


def taken_fast_paths() -> frozenset[str]:
    """The fast paths whose `takes` said yes in this process, so tests can show each one
    was exercised."""
    return frozenset(_taken)


def _check_name(name: str) -> None:
    if name not in FAST_PATHS:
        raise ValueError(
            f"Unknown fast path {name!r}: list it in groco_core.layers.fast_paths.FAST_PATHS "
            f"with its reference. Received: name={name!r}. Known: {', '.join(FAST_PATHS)}"
        )


def reduce_max(x: Any, axes: tuple[int, ...], keepdims: bool = False) -> Any:
    """`keras.ops.max(x, axes, keepdims)`, or the backend's (on JAX, one whose gradient cannot
    be NaN: see `groco_core.backend.jax.reduce_max`)."""
    from groco_core import backend

    y = backend.call("reduce_max", x, axes, keepdims)
    return ops.max(x, axis=axes, keepdims=keepdims) if y is NotImplemented else y
