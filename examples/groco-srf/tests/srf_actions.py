"""This suite's own action of a point group on square grids, in numpy: index arithmetic
from the matrices alone (no `groco_core` transform), checked against `np.rot90` and
`np.flip` in `test_srf_actions_match_numpy_rotations_and_flips`."""

from __future__ import annotations

import keras
import numpy as np


def act(x: np.ndarray, matrix: np.ndarray, group_matrices: np.ndarray | None = None):
    """`(g·x)(p) = x(M⁻¹ p)` on axes 1, 2 (coordinates centred on the grid, half-integers on
    an even axis); on a signal on the group (`group_matrices` given) also
    `(g·x)(p, h) = x(M⁻¹ p, g⁻¹h)` on axis -2. Channels last."""
    x = np.asarray(x)
    rows, cols = x.shape[1], x.shape[2]
    inverse = np.rint(np.linalg.inv(matrix)).astype(int)
    # Doubled centred coordinates are integers on any grid.
    i, j = np.meshgrid(
        2 * np.arange(rows) - (rows - 1), 2 * np.arange(cols) - (cols - 1), indexing="ij"
    )
    source = np.einsum("ab,bij->aij", inverse, np.stack([i, j]))
    source_rows = (source[0] + rows - 1) // 2
    source_cols = (source[1] + cols - 1) // 2
    out = x[:, source_rows, source_cols]
    if group_matrices is not None:
        group_matrices = np.asarray(group_matrices)
        keys = [m.astype(np.int64).tobytes() for m in group_matrices]
        source_elements = [
            keys.index((inverse @ m).astype(np.int64).tobytes()) for m in group_matrices
        ]
        out = out[..., source_elements, :]
    return out


def equivariance_error(layer, x, input_matrices=None, output_matrices=None, acting=None):
    """max over the acting matrices of |L(g·x) − g·L(x)|, with `act` on both sides."""
    acting = output_matrices if acting is None else acting
    y = keras.ops.convert_to_numpy(layer(x))
    worst = 0.0
    for matrix in acting:
        left = keras.ops.convert_to_numpy(layer(act(x, matrix, input_matrices)))
        right = act(y, matrix, output_matrices)
        assert left.shape == right.shape
        worst = max(worst, float(np.max(np.abs(left - right))))
    return worst


def correlate(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """Plain 'valid' cross-correlation of `x` `(batch, H, W, C)` with `kernel`
    `(kh, kw, C, F)`, one kernel point at a time."""
    kh, kw = kernel.shape[:2]
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
    for u in range(kh):
        for v in range(kw):
            window = x[
                :,
                u : u + stride * (out_h - 1) + 1 : stride,
                v : v + stride * (out_w - 1) + 1 : stride,
            ]
            out += np.einsum("bijc,cf->bijf", window, kernel[u, v])
    return out
