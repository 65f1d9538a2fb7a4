"""The fixed filters the layers are made of, in numpy: sampled Gaussian derivatives (the
basis of `BasisGroupConv2D`) and binomial blurs (`GroupBlurPool2D`). No Keras here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.polynomial import hermite_e


def derivative_orders(order: int) -> list[tuple[int, int]]:
    """The `(row, col)` derivative orders of the basis up to total order `order`, by total
    order, then by column order: `(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2), ...`.

    Example:
        >>> derivative_orders(1)
        [(0, 0), (1, 0), (0, 1)]
    """
    return [(total - k, k) for total in range(order + 1) for k in range(total + 1)]


def gaussian_derivative(t: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """The `n`-th derivative of the Gaussian of scale `sigma` at `t`:
    `(-1/σ)ⁿ Heₙ(t/σ) g(t)`, `Heₙ` the probabilists' Hermite polynomial."""
    u = np.asarray(t, dtype="float64") / sigma
    gaussian = np.exp(-0.5 * u**2) / (math.sqrt(2 * math.pi) * sigma)
    return (-1.0 / sigma) ** n * hermite_e.hermeval(u, [0] * n + [1]) * gaussian


def check_order(order: Any) -> int:
    """`order` as an int ≥ 0, or a TypeError / ValueError naming it."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"order must be a non-negative int. Received: order={order!r}")
    if order < 0:
        raise ValueError(f"order must be a non-negative int. Received: order={order}")
    return int(order)


def check_sigma(sigma: Any) -> float:
    """`sigma` as a positive finite float, or a TypeError / ValueError naming it."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise TypeError(f"sigma must be a positive number. Received: sigma={sigma!r}")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number. Received: sigma={sigma!r}")
    return float(sigma)


def gaussian_derivative_basis(
    kernel_size: tuple[int, int],
    order: int = 2,
    sigma: float = 1.0,
    mask: np.ndarray | None = None,
    orthonormalize: bool = False,
) -> np.ndarray:
    """Gaussian derivatives up to total order `order`, sampled on a kernel grid.

    Filter `i` is `∂ᵃ_row ∂ᵇ_col g_σ` for `(a, b) = derivative_orders(order)[i]`, sampled at
    the grid's points, centred on the grid (half-integers on an even axis), zero outside
    `mask` (a lattice's `kernel_support_mask`), and scaled to unit norm. With
    `orthonormalize`, Gram–Schmidt in that order makes them orthonormal instead.

    Args:
        kernel_size: the grid's `(rows, cols)`.
        order: the largest total derivative order, ≥ 0.
        sigma: the Gaussian's scale, in grid steps.
        mask: boolean `kernel_size` array of the points the lattice uses, or None (all).
        orthonormalize: make the filters orthonormal (in the order above).

    Returns:
        float32 `(n_basis, rows, cols)`, `n_basis = (order + 1)(order + 2) / 2`.

    Raises:
        ValueError / TypeError: for a bad `order` or `sigma`, or filters that are linearly
            dependent on this grid (more of them than it has points, or too fine a sigma).

    Example:
        >>> basis = gaussian_derivative_basis((3, 3), order=1)
        >>> basis.shape, bool(np.allclose(basis[2], -basis[2][:, ::-1]))  # odd in col
        ((3, 3, 3), True)
    """
    order, sigma = check_order(order), check_sigma(sigma)
    rows, cols = (np.arange(k) - (k - 1) / 2 for k in kernel_size)
    basis = np.stack(
        [
            np.outer(gaussian_derivative(rows, a, sigma), gaussian_derivative(cols, b, sigma))
            for a, b in derivative_orders(order)
        ]
    )
    if mask is not None:
        basis = basis * np.asarray(mask, dtype="float64")
    matrix = basis.reshape(len(basis), -1).T  # (points, n_basis)
    rank = np.linalg.matrix_rank(matrix)
    if rank < len(basis):
        points = int(np.prod(kernel_size)) if mask is None else int(np.sum(mask))
        raise ValueError(
            f"order={order} gives {len(basis)} Gaussian derivative filters, but on a "
            f"kernel_size={tuple(kernel_size)} kernel ({points} points) with sigma={sigma} only "
            f"{rank} of them are linearly independent. Received: order={order}, "
            f"kernel_size={tuple(kernel_size)}, sigma={sigma}. Use a lower order, a larger "
            "kernel_size or a larger sigma."
        )
    if orthonormalize:
        q, r = np.linalg.qr(matrix)
        matrix = q * np.sign(np.diag(r))  # keeps each filter's sign: Gram–Schmidt
    else:
        matrix = matrix / np.linalg.norm(matrix, axis=0)
    return matrix.T.reshape(basis.shape).astype("float32")


def binomial_filter(size: int) -> np.ndarray:
    """The `size × size` binomial blur: the outer product of the binomial coefficients
    `C(size − 1, k)` with itself, summing to 1 (Zhang 2019: 2 is a box, 3 a triangle).

    Example:
        >>> (binomial_filter(3) * 16).tolist()
        [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    row = np.array([math.comb(size - 1, k) for k in range(size)], dtype="float64")
    blur = np.outer(row, row)
    return (blur / blur.sum()).astype("float32")
