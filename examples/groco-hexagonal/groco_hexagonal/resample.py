"""Resampling between ordinary (square-pixel) images and hexagonal images in axial storage.

A hexagonal image is an odd square array whose entry at offset `(i, j)` from the centre is
the sample at the point `i·a_row + j·a_col` (`AXIAL_BASIS`, in pixels of the square image
times `spacing`, rows downward); entries outside the inscribed hexagon are zero. Numpy only.
"""

from __future__ import annotations

import numpy as np

from groco_hexagonal.groups import hexagon_mask

# Columns: a_row and a_col as (x right, y down) displacements, 60° apart.
AXIAL_BASIS = np.array([[0.5, 1.0], [np.sqrt(3.0) / 2.0, 0.0]])


def hexagonal_positions(size: int, spacing: float = 1.0) -> np.ndarray:
    """(x, y) of every entry of a `size × size` hexagonal image, `(size, size, 2)`, relative
    to the centre, in square pixels."""
    radius = (size - 1) // 2
    i, j = np.meshgrid(
        np.arange(-radius, radius + 1), np.arange(-radius, radius + 1), indexing="ij"
    )
    return spacing * np.einsum("ab,ijb->ija", AXIAL_BASIS, np.stack([i, j], axis=-1))


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples at pixel coordinates (x: column, y: row); zero outside."""
    height, width = image.shape[:2]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    result = np.zeros(x.shape + image.shape[2:], dtype=np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            xs, ys = x0 + dx, y0 + dy
            weight = (1 - np.abs(x - xs)) * (1 - np.abs(y - ys))
            inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
            values = image[np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)]
            weight = np.where(inside, weight, 0.0).reshape(weight.shape + (1,) * (image.ndim - 2))
            result += weight * values
    return result


def square_to_hexagonal(image: np.ndarray, size: int, spacing: float = 1.0) -> np.ndarray:
    """Samples a square-pixel image `(H, W[, C])` on the hexagonal lattice.

    Args:
        image: the image; its centre goes to the centre of the hexagonal image.
        size: odd side of the hexagonal image (the hexagon's radius is `(size − 1) / 2`).
        spacing: lattice step in square pixels.

    Returns:
        `(size, size[, C])` float32, bilinear samples inside the hexagon, zero outside.
    """
    image = np.asarray(image, dtype=np.float64)
    positions = hexagonal_positions(size, spacing)
    centre_x, centre_y = (image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2
    samples = _bilinear(image, centre_x + positions[..., 0], centre_y + positions[..., 1])
    mask = hexagon_mask((size, size)).reshape((size, size) + (1,) * (image.ndim - 2))
    return (samples * mask).astype(np.float32)


def hexagonal_to_square(
    hexagonal: np.ndarray, shape: tuple[int, int], spacing: float = 1.0
) -> np.ndarray:
    """Draws a hexagonal image `(n, n[, C])` on square pixels: each pixel takes the value of
    the nearest lattice point (zero outside the hexagon).

    Returns:
        `(*shape[, C])` float32, centred like `square_to_hexagonal` expects.
    """
    hexagonal = np.asarray(hexagonal)
    size = hexagonal.shape[0]
    radius = (size - 1) // 2
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    offsets = np.stack([cols - (shape[1] - 1) / 2, rows - (shape[0] - 1) / 2], -1) / spacing
    axial = offsets @ np.linalg.inv(AXIAL_BASIS).T  # fractional (i, j)
    # Nearest lattice point: round the cube coordinates (i, j, −i−j), fix the worst one.
    cube = np.stack([axial[..., 0], axial[..., 1], -axial.sum(-1)], -1)
    rounded = np.rint(cube)
    worst = np.argmax(np.abs(rounded - cube), axis=-1)
    for k in range(3):
        others = [m for m in range(3) if m != k]
        fixed = -rounded[..., others[0]] - rounded[..., others[1]]
        rounded[..., k] = np.where(worst == k, fixed, rounded[..., k])
    i, j = rounded[..., 0].astype(int), rounded[..., 1].astype(int)
    inside = (np.abs(i) <= radius) & (np.abs(j) <= radius) & (np.abs(i + j) <= radius)
    values = hexagonal[np.clip(i + radius, 0, size - 1), np.clip(j + radius, 0, size - 1)]
    inside = inside.reshape(inside.shape + (1,) * (hexagonal.ndim - 2))
    return np.where(inside, values, 0).astype(np.float32)
