"""A group layer's kernel: its weights, and the gather that transforms it by every output
element (indices made in numpy when the layer is built)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core import backend
from groco_core.groups import PointGroup
from groco_core.layers.fast_paths import takes


def add_kernel_and_bias(
    layer: keras.layers.Layer,
    kernel_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None = None,
) -> None:
    """Creates `layer.kernel` (untransformed) and `layer.bias` (one per output field, shared
    over the group; shape `bias_shape`, default the kernel's last axis, or None without
    `use_bias`) from the layer's `kernel_*` and `bias_*` initializers, regularizers and
    constraints.

    Example:
        >>> import keras
        >>> from groco_core.toolkit import add_kernel_and_bias
        >>> class Scale(keras.layers.Layer):
        ...     kernel_initializer = keras.initializers.get("ones")
        ...     bias_initializer = keras.initializers.get("zeros")
        ...     kernel_regularizer = bias_regularizer = None
        ...     kernel_constraint = bias_constraint = None
        ...     use_bias = True
        ...     def build(self, input_shape):
        ...         add_kernel_and_bias(self, (input_shape[-1],))
        >>> layer = Scale()
        >>> layer.build((None, 4))
        >>> tuple(layer.kernel.shape), tuple(layer.bias.shape)
        ((4,), (4,))
    """
    layer.kernel = layer.add_weight(
        name="kernel",
        shape=kernel_shape,
        initializer=layer.kernel_initializer,
        regularizer=layer.kernel_regularizer,
        constraint=layer.kernel_constraint,
    )
    layer.bias = None
    if layer.use_bias:
        layer.bias = layer.add_weight(
            name="bias",
            shape=kernel_shape[-1:] if bias_shape is None else bias_shape,
            initializer=layer.bias_initializer,
            regularizer=layer.bias_regularizer,
            constraint=layer.bias_constraint,
        )


def group_kernel_indices(
    group: PointGroup,
    elements: tuple[int, ...],
    spatial_permutation: np.ndarray,
    lifting: bool,
) -> np.ndarray:
    """Gather indices into a kernel's leading axes, `(|H|, kernel points[, |G|])`, for the
    output elements `elements` (indices into `group`).

    Row `h` lists, for every kernel point `r` (and, unless `lifting`, input element `k`),
    where `ψ(M_h⁻¹ r[, h⁻¹k])` is stored in the kernel `(points[, |G|], ...)` flattened over
    those axes: `spatial_permutation` is `group.kernel_permutation(kernel_size)`.

    Example:
        >>> from groco_core import get_group
        >>> from groco_core.toolkit import group_kernel_indices
        >>> p4 = get_group("P4")
        >>> group_kernel_indices(p4, (0, 1, 2, 3), p4.kernel_permutation((3, 3)), False).shape
        (4, 9, 4)
    """
    elements_array = np.asarray(elements)
    spatial = spatial_permutation[elements_array]  # (|H|, K)
    if lifting:
        return spatial
    order = group.order
    group_part = group.cayley[group.inverses[elements_array]]  # (|H|, |G|): h⁻¹k
    return spatial[:, :, None] * order + group_part[:, None, :]


class KernelGather:
    """The gather that transforms a kernel by every output element.

    `indices` is `(|H|, ...)`: row `h` lists, for every entry of the transformed kernel,
    which row of the flattened kernel it takes; usually each row, flattened, lists every
    kernel row once (a permutation). Calling it with the flattened kernel `(n, ...)` returns
    `flat[indices]`, `(*indices.shape, ...)`: `keras.ops.take` on `flat` viewed as a matrix
    (on PyTorch an embedding lookup, which exports to ONNX as one `Gather`; its take on other
    shapes adds a `Squeeze` that `onnx.checker` rejects), or the backend's own gather
    (`groco_core.backend`), with its own gradient where that is quicker; the backend keeps
    what it prepares from the indices in `backend_cache`.

    Example:
        >>> import numpy as np
        >>> from groco_core.toolkit import KernelGather
        >>> gather = KernelGather(np.array([[0, 1, 2], [2, 0, 1]]))
        >>> np.asarray(gather(np.array([10.0, 20.0, 30.0]))).tolist()
        [[10.0, 20.0, 30.0], [30.0, 10.0, 20.0]]
    """

    def __init__(self, indices: np.ndarray):
        self.indices = np.ascontiguousarray(indices, dtype="int32")
        rows = self.indices.reshape(self.indices.shape[0], -1)
        inverse = np.argsort(rows, axis=1)
        permutations = np.array_equal(
            np.take_along_axis(rows, inverse, axis=1),
            np.broadcast_to(np.arange(rows.shape[1]), rows.shape),
        )
        self.inverse = inverse.astype("int32") if permutations else None
        self._identity = rows.shape[0] == 1 and np.array_equal(rows[0], np.arange(rows.shape[1]))
        self._backend_caches: dict[str, dict] = {}

    def backend_cache(self, name: str) -> dict:
        """A dictionary for backend `name`'s tables made from the indices (made once)."""
        return self._backend_caches.setdefault(name, {})

    def reshapes(self, flat: Any) -> bool:
        """Whether gathering `flat` takes each of its rows once, in order, for one element (a
        kernel on the trivial group): then the gather is a reshape, and no gather is run."""
        return (
            self._identity and flat.shape[0] == self.indices.size and takes("trivial_group_gather")
        )

    def __call__(self, flat: Any) -> Any:
        flat = ops.convert_to_tensor(flat)  # a variable is read once, as a tensor
        if self.reshapes(flat):
            return ops.reshape(flat, (*self.indices.shape, *flat.shape[1:]))
        y = backend.call("gather", self, flat)
        if y is not NotImplemented:
            return y
        shape = tuple(flat.shape[1:])
        if len(shape) == 1:
            return ops.take(flat, self.indices, axis=0)
        rows = ops.reshape(flat, (-1, math.prod(shape)))
        return ops.reshape(ops.take(rows, self.indices, axis=0), (*self.indices.shape, *shape))

    def permutes(self, rows: int) -> bool:
        """Whether every row of `indices` lists each of `rows` kernel rows exactly once."""
        return self.inverse is not None and self.inverse.shape[1] == rows

    def moved(self, flat: Any, lead: int) -> Any:
        """`flat` `(n, *D)` gathered with the element axis placed after the first `lead` axes
        of `D`: `(*indices.shape[1:], *D[:lead], |H|, *D[lead:])`, the values of
        `moveaxis(self(flat), 0, indices.ndim - 1 + lead)`. A transformed kernel in the layout
        its convolution takes (for a convolution `lead=1`: `(K[, |G|], C, |H|, F)`); on
        TensorFlow one gather straight into that layout."""
        flat = ops.convert_to_tensor(flat)  # a variable is read once, as a tensor
        if self.reshapes(flat):  # the element axis has size one: moving it moves no entry
            tail = tuple(flat.shape[1:])
            return ops.reshape(flat, (*self.indices.shape[1:], *tail[:lead], 1, *tail[lead:]))
        y = backend.call("gather_moved", self, flat, lead)
        if y is not NotImplemented:
            return y
        return ops.moveaxis(self(flat), 0, self.indices.ndim - 1 + lead)
