"""Group actions written for the tests, independently of `groco_core`'s own transform.

`(g·f)(p) = f(M⁻¹ p)` on centred coordinates and on the group axis
`(g·f)(p, h) = f(M⁻¹ p, g⁻¹h)`. For a signed permutation matrix `M` only numpy flips and
transposes; for any other integer matrix (the hexagonal lattice's, in axial coordinates) an
index lookup on an odd-sized array, zero where `M⁻¹ p` falls outside it.
"""

from __future__ import annotations

import numpy as np


def hexagon_mask(size: int) -> np.ndarray:
    """`(size, size)` booleans: the points of an odd square array of axial coordinates (two
    unit vectors 60° apart) whose centred offset `(i, j)` lies within hexagonal distance
    `R = (size − 1) / 2` of the centre, i.e. `max(|i|, |j|, |i + j|) ≤ R`."""
    radius = (size - 1) // 2
    i, j = np.meshgrid(np.arange(size) - radius, np.arange(size) - radius, indexing="ij")
    return np.maximum(np.maximum(np.abs(i), np.abs(j)), np.abs(i + j)) <= radius


def _is_signed_permutation(matrix: np.ndarray) -> bool:
    matrix = np.asarray(matrix)
    return bool(np.all(np.sum(np.abs(matrix), axis=0) == 1) and np.all(np.abs(matrix) <= 1))


def _act_by_lookup(x: np.ndarray, matrix: np.ndarray, spatial_axes: tuple[int, ...]) -> np.ndarray:
    """out[p] = x[M⁻¹ p] for any integer matrix, zero where M⁻¹ p is outside the array."""
    sizes = np.array([x.shape[a] for a in spatial_axes])
    assert np.all(sizes % 2 == 1), f"the lookup needs odd sizes, got {tuple(sizes)}"
    centres = (sizes - 1) // 2
    inverse = np.rint(np.linalg.inv(matrix)).astype(int)
    ranges = [np.arange(n) - c for n, c in zip(sizes, centres, strict=True)]
    offsets = np.meshgrid(*ranges, indexing="ij")
    source = np.stack(offsets, axis=-1) @ inverse.T + centres  # (*sizes, d)
    inside = np.all((source >= 0) & (source < sizes), axis=-1)
    source = np.where(inside[..., None], source, 0)
    d = len(spatial_axes)
    moved = np.moveaxis(x, spatial_axes, tuple(range(d)))
    out = moved[tuple(source[..., k] for k in range(d))]
    out = out * inside.reshape(inside.shape + (1,) * (moved.ndim - d))
    return np.moveaxis(out, tuple(range(d)), spatial_axes)


def act_on_grid(x: np.ndarray, matrix: np.ndarray, spatial_axes: tuple[int, ...]) -> np.ndarray:
    """out[p] = x[M⁻¹ p] on centred coordinates of the given axes."""
    x = np.asarray(x)
    if not spatial_axes:  # a signal on the group only (GroupDense)
        return x
    if not _is_signed_permutation(matrix):
        return _act_by_lookup(x, matrix, spatial_axes)
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
    layer,
    x,
    acting_matrices,
    in_group=None,
    out_group=None,
    channels_last=True,
    spatial_dims=2,
    hexagonal=False,
):
    """max |L(g·x) − g·L(x)| over the acting matrices, with the transforms above.

    `in_group` / `out_group` are the matrices of the groups the input / output live on (None
    for a signal on the grid); an output of rank 2 is checked for invariance. `hexagonal`:
    the grid is the hexagonal lattice in axial coordinates, where the group maps only the
    inscribed hexagon (`hexagon_mask`) onto itself: `x` must be zero outside it, and the
    outputs are compared inside the output's hexagon.
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
        difference = np.abs(left - right)
        if hexagonal and y.ndim > 2 and out_axes:
            sizes = {left.shape[a] for a in out_axes}
            assert len(sizes) == 1, f"a hexagonal grid is square, got {left.shape}"
            mask = hexagon_mask(sizes.pop())
            shape = [1] * left.ndim
            for a in out_axes:
                shape[a] = left.shape[a]
            difference = difference * mask.reshape(shape)
        worst = max(worst, float(np.max(difference)))
    return worst
