"""Resampling between ordinary (square-pixel) images and hexagonal images in axial storage.

A hexagonal image is an odd square array whose entry at offset `(i, j)` from the centre is
the sample at the point `i·a_row + j·a_col` (`AXIAL_BASIS`, in pixels of the square image
times `spacing`, rows downward); entries outside the inscribed hexagon are zero.

Both directions are fixed linear maps, so each is described once by a table built here in
numpy: `square_to_hexagonal_taps` (four bilinear taps per lattice point) and
`nearest_lattice_indices` (one lattice point per pixel). The numpy functions
`square_to_hexagonal` / `hexagonal_to_square` apply the tables in numpy and are the
reference for the Keras layers of `groco_hexagonal.layers`, which apply the same tables with
`keras.ops`. Numpy only: nothing here imports Keras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from groco_hexagonal.groups import ROTATION, hexagon_mask

# Columns: a_row and a_col as (x right, y down) displacements, 60° apart.
AXIAL_BASIS = np.array([[0.5, 1.0], [np.sqrt(3.0) / 2.0, 0.0]])


def check_size(size: object, caller: str = "square_to_hexagonal") -> int:
    """`size` as an int, or a ValueError: a hexagonal image is an odd square array, so that
    its middle entry is a lattice point that every turn of the lattice keeps in place."""
    if (
        isinstance(size, bool)
        or not isinstance(size, (int, np.integer))
        or size < 1
        or size % 2 == 0
    ):
        raise ValueError(
            f"{caller}: size must be an odd positive int (a hexagonal image is an odd square "
            "array centred on a lattice point, so that the lattice's turns keep its centre). "
            f"Received: size={size!r}; use e.g. {_odd_neighbours(size)}."
        )
    return int(size)


def check_spacing(spacing: object, caller: str = "square_to_hexagonal") -> float:
    """`spacing` as a float, or a ValueError: the lattice step must be a positive number."""
    if (
        isinstance(spacing, bool)
        or not isinstance(spacing, (int, float, np.integer, np.floating))
        or not math.isfinite(spacing)
        or spacing <= 0
    ):
        raise ValueError(
            f"{caller}: spacing must be a positive number, the lattice step in square pixels. "
            f"Received: spacing={spacing!r}; use e.g. 1.0."
        )
    return float(spacing)


def check_shape(shape: object, caller: str = "hexagonal_to_square") -> tuple[int, int]:
    """`shape` as `(height, width)`, or a ValueError naming the value received."""
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 2
        or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in shape)
    ):
        raise ValueError(
            f"{caller}: shape must be (height, width), two positive ints: the square image to "
            f"draw. Received: shape={shape!r}; use e.g. (32, 32)."
        )
    return int(shape[0]), int(shape[1])


def _odd_neighbours(size: object) -> str:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 1:
        return f"{size - 1} or {size + 1}"
    return "15"


def hexagonal_positions(size: int, spacing: float = 1.0) -> np.ndarray:
    """(x, y) of every entry of a `size × size` hexagonal image, `(size, size, 2)`, relative
    to the centre, in square pixels."""
    size = check_size(size, "hexagonal_positions")
    spacing = check_spacing(spacing, "hexagonal_positions")
    radius = (size - 1) // 2
    i, j = np.meshgrid(
        np.arange(-radius, radius + 1), np.arange(-radius, radius + 1), indexing="ij"
    )
    return spacing * np.einsum("ab,ijb->ija", AXIAL_BASIS, np.stack([i, j], axis=-1))


def bilinear_taps(
    image_shape: Sequence[int], x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The four bilinear taps at pixel coordinates (x: column, y: row) of an image.

    Returns:
        `(indices, weights)`, each `x.shape + (4,)`: flat indices into the `(height, width)`
        pixels (row-major) and their weights; a tap off the image has weight zero (the image
        is zero outside), so its index is clipped onto the image only to stay valid.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    indices, weights = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            xs, ys = x0 + dx, y0 + dy
            inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
            weight = (1 - np.abs(x - xs)) * (1 - np.abs(y - ys))
            weights.append(np.where(inside, weight, 0.0))
            indices.append(np.clip(ys, 0, height - 1) * width + np.clip(xs, 0, width - 1))
    return np.stack(indices, axis=-1), np.stack(weights, axis=-1)


def bilinear_sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of `image` `(H, W, ...)` at pixel coordinates (x: column, y: row),
    `x.shape + image.shape[2:]`, float64; zero outside the image."""
    image = np.asarray(image, dtype=np.float64)
    indices, weights = bilinear_taps(image.shape, x, y)
    flat = image.reshape((-1,) + image.shape[2:])
    weights = weights.reshape(weights.shape + (1,) * (image.ndim - 2))
    return np.sum(flat[indices] * weights, axis=indices.ndim - 1)


def square_to_hexagonal_taps(
    image_shape: Sequence[int], size: int, spacing: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The table of `square_to_hexagonal`: `(indices, weights)`, each `(size, size, 4)`.

    Entry `(i, j)` of the hexagonal image is `Σ_k weights[i, j, k] · pixels[indices[i, j, k]]`
    over the image's pixels flattened row-major; the weights are zero outside the hexagon.
    """
    size = check_size(size)
    spacing = check_spacing(spacing)
    height, width = int(image_shape[0]), int(image_shape[1])
    positions = hexagonal_positions(size, spacing)
    indices, weights = bilinear_taps(
        (height, width), (width - 1) / 2 + positions[..., 0], (height - 1) / 2 + positions[..., 1]
    )
    return indices, weights * hexagon_mask((size, size))[..., None]


def square_to_hexagonal(image: np.ndarray, size: int, spacing: float = 1.0) -> np.ndarray:
    """Samples a square-pixel image `(H, W, ...)` on the hexagonal lattice.

    Args:
        image: the image; its centre goes to the centre of the hexagonal image. Axes after
            the first two (channels) are carried along.
        size: odd side of the hexagonal image (the hexagon's radius is `(size − 1) / 2`).
        spacing: lattice step in square pixels.

    Returns:
        `(size, size, ...)` float32, bilinear samples inside the hexagon, zero outside.

    Raises:
        ValueError: for an even or non-positive `size`, a non-positive `spacing`, or an
            image with fewer than two axes.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim < 2:
        raise ValueError(
            "square_to_hexagonal: image must have at least two axes, (height, width, ...). "
            f"Received: image.shape={image.shape}"
        )
    indices, weights = square_to_hexagonal_taps(image.shape, size, spacing)
    flat = image.reshape((-1,) + image.shape[2:])
    weights = weights.reshape(weights.shape + (1,) * (image.ndim - 2))
    return np.sum(flat[indices] * weights, axis=2).astype(np.float32)


def nearest_lattice_indices(size: int, shape: Sequence[int], spacing: float = 1.0) -> np.ndarray:
    """The table of `hexagonal_to_square`: for each pixel of a `shape` image, the flat index
    (row-major) of the nearest lattice point of a `size × size` hexagonal image, or
    `size · size` where that point is outside the hexagon (the pixel is drawn as zero).

    Returns:
        `shape`, int64.
    """
    size = check_size(size, "hexagonal_to_square")
    height, width = check_shape(shape)
    spacing = check_spacing(spacing, "hexagonal_to_square")
    radius = (size - 1) // 2
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    offsets = np.stack([cols - (width - 1) / 2, rows - (height - 1) / 2], -1) / spacing
    axial = offsets @ np.linalg.inv(AXIAL_BASIS).T  # fractional (i, j)
    # Nearest lattice point: round the cube coordinates (i, j, −i−j), fix the worst one.
    cube = np.stack([axial[..., 0], axial[..., 1], -axial.sum(-1)], -1)
    rounded = np.rint(cube)
    worst = np.argmax(np.abs(rounded - cube), axis=-1)
    for k in range(3):
        others = [m for m in range(3) if m != k]
        fixed = -rounded[..., others[0]] - rounded[..., others[1]]
        rounded[..., k] = np.where(worst == k, fixed, rounded[..., k])
    i, j = rounded[..., 0].astype(np.int64), rounded[..., 1].astype(np.int64)
    inside = (np.abs(i) <= radius) & (np.abs(j) <= radius) & (np.abs(i + j) <= radius)
    return np.where(inside, (i + radius) * size + (j + radius), size * size)


def hexagonal_to_square(
    hexagonal: np.ndarray, shape: tuple[int, int], spacing: float = 1.0
) -> np.ndarray:
    """Draws a hexagonal image `(n, n, ...)` on square pixels: each pixel takes the value of
    the nearest lattice point (zero outside the hexagon).

    Returns:
        `(*shape, ...)` float32, centred like `square_to_hexagonal` expects.

    Raises:
        ValueError: for a hexagonal image that is not an odd square, or a bad `shape` or
            `spacing`.
    """
    hexagonal = np.asarray(hexagonal)
    if hexagonal.ndim < 2 or hexagonal.shape[0] != hexagonal.shape[1]:
        raise ValueError(
            "hexagonal_to_square: hexagonal must be (n, n, ...) with the same odd n on both "
            f"axes. Received: hexagonal.shape={hexagonal.shape}"
        )
    size = hexagonal.shape[0]
    indices = nearest_lattice_indices(size, shape, spacing)
    flat = hexagonal.reshape((size * size,) + hexagonal.shape[2:])
    flat = np.concatenate([flat, np.zeros((1,) + flat.shape[1:], flat.dtype)])
    return flat[indices].astype(np.float32)


def turn_hexagonal(hexagonal: np.ndarray, turns: int) -> np.ndarray:
    """Turns a hexagonal image `(n, n, ...)` by `turns · 60°` counter-clockwise as displayed,
    exactly, by index arithmetic on the axial coordinates: `out[p] = in[R⁻ᵏ p]` with `R`
    the lattice's 60° turn (`groups.ROTATION`). The hexagon maps onto itself; the two
    corners outside it are zero in the result.

    Used to test invariance under the lattice's own turns, with no interpolation.
    """
    hexagonal = np.asarray(hexagonal)
    size = check_size(hexagonal.shape[0], "turn_hexagonal")
    radius = (size - 1) // 2
    inverse = np.rint(np.linalg.matrix_power(np.linalg.inv(ROTATION), int(turns) % 6))
    i, j = np.meshgrid(*2 * [np.arange(-radius, radius + 1)], indexing="ij")
    source_i = (inverse[0, 0] * i + inverse[0, 1] * j).astype(np.int64)
    source_j = (inverse[1, 0] * i + inverse[1, 1] * j).astype(np.int64)
    inside = hexagon_mask((size, size))
    turned = hexagonal[
        np.where(inside, source_i + radius, 0), np.where(inside, source_j + radius, 0)
    ]
    return np.where(inside.reshape(inside.shape + (1,) * (hexagonal.ndim - 2)), turned, 0)
