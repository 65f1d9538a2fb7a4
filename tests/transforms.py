"""Group actions written for the tests, independently of `groco_core`'s own transform.

Only numpy flips and transposes: for a signed permutation matrix `M`,
`(g·f)(p) = f(M⁻¹ p)` and on the group axis `(g·f)(p, h) = f(M⁻¹ p, g⁻¹h)`.
"""

from __future__ import annotations

import numpy as np


def act_on_grid(x: np.ndarray, matrix: np.ndarray, spatial_axes: tuple[int, ...]) -> np.ndarray:
    """out[p] = x[M⁻¹ p] on centred coordinates of the given axes (M a signed permutation)."""
    x = np.asarray(x)
    inverse = np.rint(np.linalg.inv(matrix)).astype(int)
    # (M⁻¹ p)_i = sign_i * p_{source_i}
    source = np.argmax(np.abs(inverse), axis=1)
    signs = inverse[np.arange(len(source)), source]
    flipped = x
    for i, axis in enumerate(spatial_axes):
        if signs[i] < 0:
            flipped = np.flip(flipped, axis=axis)
    # out axis spatial_axes[source_i] takes flipped axis spatial_axes[i]
    order = list(range(x.ndim))
    for i, axis in enumerate(spatial_axes):
        order[spatial_axes[source[i]]] = axis
    return np.transpose(flipped, order)


def act_on_group_axis(
    x: np.ndarray, matrices: np.ndarray, element_matrix: np.ndarray, group_axis: int
) -> np.ndarray:
    """out[..., h, ...] = x[..., index of M_g⁻¹ M_h, ...] for the listed group `matrices`."""
    inverse = np.rint(np.linalg.inv(element_matrix)).astype(int)
    keys = [m.tobytes() for m in np.asarray(matrices, dtype=np.int64)]
    source = [keys.index((inverse @ m).astype(np.int64).tobytes()) for m in matrices]
    return np.take(x, source, axis=group_axis)


def act(x, matrix, spatial_axes, group_matrices=None, group_axis=None):
    """The action on a signal on the grid, or on the group when `group_axis` is given."""
    out = act_on_grid(x, matrix, spatial_axes)
    if group_axis is not None:
        out = act_on_group_axis(out, group_matrices, matrix, group_axis)
    return out


def max_equivariance_error(
    layer, x, acting_matrices, in_group=None, out_group=None, channels_last=True, spatial_dims=2
):
    """max |L(g·x) − g·L(x)| over the acting matrices, with the transforms above.

    `in_group` / `out_group` are the matrices of the groups the input / output live on (None
    for a signal on the grid); an output of rank 2 is checked for invariance.
    """
    from keras import ops

    def layout(rank, on_group):
        if channels_last:
            return tuple(range(1, 1 + spatial_dims)), (rank - 2 if on_group else None)
        return tuple(range(2, 2 + spatial_dims)), (rank - 1 if on_group else None)

    x = np.asarray(x, dtype="float32")
    y = ops.convert_to_numpy(layer(x))
    in_axes, in_group_axis = layout(x.ndim, in_group is not None)
    out_axes, out_group_axis = layout(y.ndim, out_group is not None)
    worst = 0.0
    for matrix in acting_matrices:
        left = ops.convert_to_numpy(layer(act(x, matrix, in_axes, in_group, in_group_axis)))
        right = y if y.ndim == 2 else act(y, matrix, out_axes, out_group, out_group_axis)
        assert left.shape == right.shape, (left.shape, right.shape)
        worst = max(worst, float(np.max(np.abs(left - right))))
    return worst
