"""The hexagonal point groups, acting on axial coordinates stored as array indices.

Basis: the lattice point at array offset `(i, j)` from the centre of an odd square array is
`i·a_row + j·a_col`, with two unit vectors 60° apart. Drawn with rows downward (as an image
is displayed), `a_col = (1, 0)` points right and `a_row = (1/2, √3/2)` down-right, so every
row is shifted half a step from the previous one (`groco_hexagonal.resample.AXIAL_BASIS`).

Matrices act on `(i, j)` as column vectors, so `(g·f)(p) = f(M_g⁻¹ p)` holds with the same
convention as every other GroCo group:

- `ROTATION = [[0, -1], [1, 1]]` maps `a_row` to `a_col` and `a_col` to `a_col − a_row`:
  the 60° turn, counter-clockwise as displayed (the turn of `numpy.rot90` on square images).
- `MIRROR = [[1, 1], [0, -1]]` fixes `a_row` and maps `a_col` to `a_row − a_col`: the mirror
  in the line along `a_row`. `ROTATION^k @ MIRROR` is the mirror in the line at `30·k`°
  from `a_row` (towards `a_col`); lines at 0°, 60°, 120° run along lattice vectors, lines at
  30°, 90°, 150° between them.

The groups (P6M lists `ROTATION^k` for k = 0…5, then `ROTATION^k @ MIRROR`):

| name | elements | order |
|------|----------|-------|
| P6M | all 6 turns and 6 mirrors | 12 |
| P6 | turns by multiples of 60° | 6 |
| P31M | turns by 120°, mirrors along the lattice vectors (0°, 60°, 120°) | 6 |
| P3M1 | turns by 120°, mirrors between them (30°, 90°, 150°) | 6 |
| P3 | turns by multiples of 120° | 3 |
| HexP2 | the half turn | 2 |
| HexM0 … HexM150 | one mirror, in the line at that angle | 2 |
| HexP1 | identity | 1 |

(P3M1 and P31M follow Hermann–Mauguin: in p3m1 the mirrors are perpendicular to the lattice
vectors, in p31m they contain them.) Every name is distinct from the square-lattice and
cubic-lattice names, case-insensitively; `HexP2` has the same matrix as the square `P2` but
lives on another lattice, so neither is a subgroup of the other's groups.

Kernels and images are odd squares whose two corners outside the hexagon are masked
(`HexagonalGroup.kernel_support_mask`, which is also the image support: every layer reads and
writes only the hexagon, see docs/plugins.md, "A group on another lattice").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from groco_core import MatrixGroup

LATTICE = "hexagonal"
ROTATION = np.array([[0, -1], [1, 1]])
MIRROR = np.array([[1, 1], [0, -1]])


def hexagon_mask(shape: Sequence[int]) -> np.ndarray:
    """The hexagon inscribed in an odd square array of axial coordinates.

    The point at offset `(i, j)` from the centre is in when `|i|, |j|, |i + j| ≤ R`,
    `R = (n − 1) / 2`: the two corners where `i` and `j` have the same sign are out.

    Raises:
        ValueError: for a shape that is not an odd square.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] % 2 == 0:
        raise ValueError(
            "A hexagonal-lattice group needs arrays of the same odd size on both axes (an odd "
            "square array in axial coordinates holds the hexagon centred on its middle point). "
            f"Received: shape={shape} (a kernel_size, pool_size or a signal's spatial shape); "
            "use e.g. 3, 5 or 7."
        )
    radius = (shape[0] - 1) // 2
    i, j = np.meshgrid(
        np.arange(-radius, radius + 1), np.arange(-radius, radius + 1), indexing="ij"
    )
    return np.abs(i + j) <= radius


class HexagonalGroup(MatrixGroup):
    """A point group of the hexagonal lattice: a `MatrixGroup` with the hexagon as support.

    Only `kernel_support_mask` is added; `groco_core` derives from it the kernel index
    table (taps outside the hexagon stay in place, and the layers zero them), the signal
    transform (the array keeps its shape; points whose source lies off the array are zero)
    and the image support (`image_support_mask`, by default the same hexagon): every layer
    reads and writes only the hexagon of its array, so stacks of layers stay exactly
    equivariant.
    """

    def __init__(self, name: str, matrices: np.ndarray, description: str = "") -> None:
        super().__init__(name, matrices, lattice=LATTICE, description=description)

    def kernel_support_mask(self, shape: Sequence[int]) -> np.ndarray:
        return hexagon_mask(shape)


def _power(matrix: np.ndarray, k: int) -> np.ndarray:
    return np.linalg.matrix_power(matrix, k).astype(np.int64)


def hexagonal_groups() -> list[HexagonalGroup]:
    """Every hexagonal group this plugin registers, largest first."""
    turns = [_power(ROTATION, k) for k in range(6)]
    mirrors = [turns[k] @ MIRROR for k in range(6)]  # mirrors[k]: the line at 30·k degrees
    identity = turns[0]

    def group(name: str, elements: list[np.ndarray], description: str) -> HexagonalGroup:
        return HexagonalGroup(name, np.stack(elements), description=description)

    groups = [
        group("P6M", turns + mirrors, "hexagonal: 6 turns by 60°, 6 mirrors"),
        group("P6", turns, "hexagonal: turns by multiples of 60°"),
        group(
            "P31M",
            turns[::2] + mirrors[::2],
            "hexagonal: turns by 120°, mirrors along the lattice vectors",
        ),
        group(
            "P3M1",
            turns[::2] + mirrors[1::2],
            "hexagonal: turns by 120°, mirrors between the lattice vectors",
        ),
        group("P3", turns[::2], "hexagonal: turns by multiples of 120°"),
        group("HexP2", [identity, turns[3]], "hexagonal: the half turn"),
    ]
    groups += [
        group(
            f"HexM{30 * k}", [identity, mirrors[k]], f"hexagonal: mirror in the line at {30 * k}°"
        )
        for k in range(6)
    ]
    groups.append(group("HexP1", [identity], "hexagonal: identity only"))
    return groups
