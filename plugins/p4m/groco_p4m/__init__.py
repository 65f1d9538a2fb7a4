"""Built-in plugin: the point groups of the square lattice (P4M and all its subgroups), and
the two point groups of the line.

Matrices act on `(row, col)` coordinates centred on the grid. The rotation `r` is a quarter
turn counter-clockwise as an image is displayed (rows downward), the same turn as
`numpy.rot90(image)`: `M_r = [[0, -1], [1, 0]]`.

| name | elements | order |
|------|----------|-------|
| P4M  | quarter turns and all four mirrors | 8 |
| P4   | quarter turns | 4 |
| P2MM | both axis mirrors and the half turn | 4 |
| CMM  | both diagonal mirrors and the half turn | 4 |
| PMh  | mirror line horizontal: rows flipped, `diag(-1, 1)` | 2 |
| PMv  | mirror line vertical: columns flipped, `diag(1, -1)` | 2 |
| PMd  | mirror in the main diagonal: rows and columns swapped | 2 |
| PMa  | mirror in the anti-diagonal | 2 |
| P2   | half turn | 2 |
| P1   | identity only | 1 |
| L1   | (line) identity only | 1 |
| LM   | (line) reflection `x -> -x` | 2 |
"""

from __future__ import annotations

from collections.abc import Callable

from groco_core import MatrixGroup
from groco_core.hookspecs import hookimpl

IDENTITY = [[1, 0], [0, 1]]
QUARTER_TURN = [[0, -1], [1, 0]]
HALF_TURN = [[-1, 0], [0, -1]]
THREE_QUARTER_TURN = [[0, 1], [-1, 0]]
MIRROR_ROWS = [[-1, 0], [0, 1]]  # mirror line horizontal
MIRROR_COLS = [[1, 0], [0, -1]]  # mirror line vertical
MIRROR_MAIN_DIAGONAL = [[0, 1], [1, 0]]
MIRROR_ANTI_DIAGONAL = [[0, -1], [-1, 0]]

SQUARE_GROUPS = {
    "P4M": (
        [
            IDENTITY,
            QUARTER_TURN,
            HALF_TURN,
            THREE_QUARTER_TURN,
            MIRROR_ROWS,
            MIRROR_COLS,
            MIRROR_MAIN_DIAGONAL,
            MIRROR_ANTI_DIAGONAL,
        ],
        "quarter turns and the four mirrors (rows, columns, both diagonals)",
    ),
    "P4": ([IDENTITY, QUARTER_TURN, HALF_TURN, THREE_QUARTER_TURN], "quarter turns"),
    "P2MM": (
        [IDENTITY, HALF_TURN, MIRROR_ROWS, MIRROR_COLS],
        "mirrors in both axes and the half turn",
    ),
    "CMM": (
        [IDENTITY, HALF_TURN, MIRROR_MAIN_DIAGONAL, MIRROR_ANTI_DIAGONAL],
        "mirrors in both diagonals and the half turn",
    ),
    "PMh": ([IDENTITY, MIRROR_ROWS], "mirror line horizontal (rows flipped)"),
    "PMv": ([IDENTITY, MIRROR_COLS], "mirror line vertical (columns flipped)"),
    "PMd": ([IDENTITY, MIRROR_MAIN_DIAGONAL], "mirror in the main diagonal (transpose)"),
    "PMa": ([IDENTITY, MIRROR_ANTI_DIAGONAL], "mirror in the anti-diagonal"),
    "P2": ([IDENTITY, HALF_TURN], "half turn"),
    "P1": ([IDENTITY], "identity only: a plain convolution"),
}

LINE_GROUPS = {
    "LM": ([[[1]], [[-1]]], "reflection of the line, x -> -x"),
    "L1": ([[[1]]], "identity only on the line: a plain 1D convolution"),
}


@hookimpl
def groco_register_groups(register: Callable[[object], None]) -> None:
    for name, (matrices, description) in SQUARE_GROUPS.items():
        register(MatrixGroup(name, matrices, lattice="square", description=description))
    for name, (matrices, description) in LINE_GROUPS.items():
        register(MatrixGroup(name, matrices, lattice="line", description=description))
