"""The group axis next to the channels: merged into them for one plain operation, split off
again after it, and per-field vectors tiled over it."""

from __future__ import annotations

from typing import Any

from keras import ops

from groco_core import backend
from groco_core.layers.fast_paths import takes


def reshape(x: Any, shape: tuple) -> Any:
    """`keras.ops.reshape`, or the backend's quicker reshape (eager PyTorch's own, a fraction
    of Keras's cost per call).

    Example:
        >>> import numpy as np
        >>> from groco_core.toolkit import reshape
        >>> tuple(reshape(np.zeros((2, 6)), (2, 3, 2)).shape)
        (2, 3, 2)
    """
    y = backend.call("reshape", x, shape)
    return ops.reshape(x, shape) if y is NotImplemented else y


def merge_group_axis(x: Any) -> Any:
    """`x` `(batch, ..., elements, fields)` as `(batch, ..., elements·fields)`, channel
    `h·fields + c`: a signal on the group as the input of one plain operation.

    Example:
        >>> import numpy as np
        >>> from groco_core.toolkit import merge_group_axis
        >>> tuple(merge_group_axis(np.zeros((2, 5, 5, 8, 3))).shape)
        (2, 5, 5, 24)
    """
    shape = ops.shape(x)
    return reshape(x, (shape[0], *shape[1:-2], shape[-2] * shape[-1]))


def split_group_axis(y: Any, elements: int, fields: int, bias: Any = None) -> Any:
    """`y` `(batch, ..., elements·fields)` as `(batch, ..., elements, fields)`, plus `bias`
    `(fields,)` if given: the output of one plain operation as a signal on the group.

    The bias is tiled and added before the split, on the merged axis, as a plain layer adds
    its own: after the split it would broadcast over a short last axis, which PyTorch and
    TensorFlow run several times slower. Under `torch.compile` it is added after the split,
    which compiles (the tiled form trips its dynamic-shape checks) and costs nothing there.

    Example:
        >>> import numpy as np
        >>> from groco_core.toolkit import split_group_axis
        >>> y = split_group_axis(np.zeros((2, 5, 24)), 8, 3, bias=np.ones(3))
        >>> tuple(y.shape), float(y[0, 0, 7, 2])
        ((2, 5, 8, 3), 1.0)
    """
    shape = ops.shape(y)
    split_shape = (shape[0], *shape[1:-1], elements, fields)
    if bias is None:
        return reshape(y, split_shape)
    if backend.torch_compiling() or not takes("bias_on_merged_axis"):
        return ops.add(reshape(y, split_shape), bias)
    return reshape(ops.add(y, tile_over_group(bias, elements)), split_shape)


def tile_over_group(vector: Any, elements: int) -> Any:
    """`vector` `(fields,)` repeated `elements` times: the same per-field values (a bias, a
    batch norm's statistics) on the merged axis `(elements·fields,)`, channel
    `h·fields + c` (on JAX a product with a 0/1 matrix, see `groco_core.backend.jax.tile`).

    Example:
        >>> import numpy as np
        >>> from groco_core.toolkit import tile_over_group
        >>> [float(v) for v in tile_over_group(np.array([1.0, 2.0]), 3)]
        [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    """
    y = backend.call("tile", vector, elements)
    if y is not NotImplemented:
        return y
    fields = vector.shape[0]
    return reshape(ops.broadcast_to(vector, (elements, fields)), (elements * fields,))
