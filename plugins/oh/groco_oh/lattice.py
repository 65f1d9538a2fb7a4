"""The subgroup lattice of Oh, computed from the 48 signed permutation matrices.

Nothing here is typed in by hand: the subgroups are found by closure, sorted into conjugacy
classes under Oh, named by their Schoenflies symbol (read off from the elements) and, where
the same symbol occurs for several classes, an orientation tag (read off from the axes).
Numpy only, no Keras: `groco list-groups` imports this.

Directions in the cube (of a rotation axis, or the normal of a mirror) are of three kinds:
`a`, along a coordinate axis (`[100]`: depth, row or col); `f`, along a face diagonal
(`[110]`, e.g. row+col); body diagonals (`[111]`) carry the 3-fold axes.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

DEPTH = np.array([1, 0, 0])
MAIN_DIAGONAL = np.array([1, 1, 1])
AXIS_NAMES = ("d", "r", "c")

# The rotation group of each improper group G, G+ = {M : M in G proper} ∪ {-M : M improper},
# with its proper part P, determines G (Schoenflies' classification); inside Oh every pair
# below occurs, and no other.
_ROTATION_GROUPS = {1: "C1", 2: "C2", 3: "C3", 6: "D3", 8: "D4", 12: "T", 24: "O"}
_CENTROSYMMETRIC = {
    "C1": "Ci",
    "C2": "C2h",
    "C3": "S6",
    "C4": "C4h",
    "D2": "D2h",
    "D3": "D3d",
    "D4": "D4h",
    "T": "Th",
    "O": "Oh",
}
_IMPROPER = {
    ("C2", "C1"): "Cs",
    ("C4", "C2"): "S4",
    ("D2", "C2"): "C2v",
    ("D3", "C3"): "C3v",
    ("D4", "C4"): "C4v",
    ("D4", "D2"): "D2d",
    ("O", "T"): "Td",
}


def signed_permutation_matrices() -> np.ndarray:
    """The 48 elements of Oh, `(48, 3, 3)`: the 24 rotations first (identity first), then
    their negatives in the same order (element `i + 24` is `-M_i`)."""
    rotations = []
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3), dtype=np.int64)
            matrix[np.arange(3), permutation] = signs
            if round(np.linalg.det(matrix)) == 1:
                rotations.append(matrix)
    rotations = np.stack(rotations)
    return np.concatenate([rotations, -rotations])


@dataclasses.dataclass(frozen=True)
class SubgroupClass:
    """One conjugacy class of subgroups of Oh and its chosen representative.

    Attributes:
        name: Schoenflies symbol, plus `_tag` where several classes share the symbol.
        symbol: the Schoenflies symbol.
        tag: orientation tag (`""` where the symbol is unique).
        elements: indices into `signed_permutation_matrices()` of the representative, sorted
            (identity first).
        class_size: the number of subgroups of Oh conjugate to it.
    """

    name: str
    symbol: str
    tag: str
    elements: tuple[int, ...]
    class_size: int


def axis_of(matrix: np.ndarray) -> np.ndarray | None:
    """The rotation axis of `matrix` (of `-matrix` when improper): a primitive integer vector
    with its first nonzero entry positive; None for the identity and the inversion."""
    rotation = matrix if round(np.linalg.det(matrix)) == 1 else -matrix
    if np.array_equal(rotation, np.eye(3, dtype=rotation.dtype)):
        return None
    if np.trace(rotation) == -1:  # a half turn: R + I projects onto the axis
        projector = rotation + np.eye(3, dtype=rotation.dtype)
        axis = projector[:, np.argmax(np.abs(projector).sum(axis=0))]
    else:
        axis = np.array(
            [
                rotation[2, 1] - rotation[1, 2],
                rotation[0, 2] - rotation[2, 0],
                rotation[1, 0] - rotation[0, 1],
            ]
        )
    axis = axis // np.gcd.reduce(np.abs(axis[axis != 0]))
    return axis if axis[np.nonzero(axis)[0][0]] > 0 else -axis


def direction_kind(axis: np.ndarray) -> str:
    """`"a"` (coordinate axis), `"f"` (face diagonal) or `"b"` (body diagonal)."""
    return "afb"[int(np.count_nonzero(axis)) - 1]


def direction_name(axis: np.ndarray) -> str:
    """A direction in the axis names, e.g. `d`, `r+c`, `d-r+c`."""
    terms = [("-" if v < 0 else "+") + name for v, name in zip(axis, AXIS_NAMES, strict=True) if v]
    return "".join(terms).lstrip("+")


def rotation_order(matrix: np.ndarray) -> int:
    """The order of the rotation `matrix` (of `-matrix` when improper): 1, 2, 3 or 4."""
    rotation = matrix if round(np.linalg.det(matrix)) == 1 else -matrix
    return {3: 1, -1: 2, 0: 3, 1: 4}[int(np.trace(rotation))]


class _Oh:
    """Oh's Cayley table, inverses and conjugation table, in plain Python lists."""

    def __init__(self) -> None:
        self.matrices = signed_permutation_matrices()
        index_of = {m.tobytes(): i for i, m in enumerate(self.matrices)}
        products = np.einsum("iab,jbc->ijac", self.matrices, self.matrices)
        cayley = np.array([[index_of[p.tobytes()] for p in row] for row in products])
        inverses = np.argmax(cayley == 0, axis=1)
        # conjugate[x, g]: index of x g x⁻¹
        self.conjugate = cayley[cayley, inverses[:, None]]
        self.cayley = cayley.tolist()
        self.bits = np.left_shift(np.int64(1), np.arange(48, dtype=np.int64))

    def closure(self, generators: list[int]) -> tuple[int, ...]:
        elements, frontier = {0}, [0]
        while frontier:
            new = []
            for a in frontier:
                row = self.cayley[a]
                for g in generators:
                    product = row[g]
                    if product not in elements:
                        elements.add(product)
                        new.append(product)
            frontier = new
        return tuple(sorted(elements))

    def conjugate_masks(self, elements: tuple[int, ...]) -> np.ndarray:
        """Bit masks of the conjugates `x H x⁻¹` for every x (repeats included)."""
        return np.bitwise_or.reduce(self.bits[self.conjugate[:, list(elements)]], axis=1)


def _elements_of(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(48) if mask >> i & 1)


def _schoenflies(matrices: np.ndarray) -> str:
    determinants = np.rint(np.linalg.det(matrices)).astype(int)
    proper = matrices[determinants == 1]

    def rotation_group(rotations: np.ndarray) -> str:
        if len(rotations) == 4:
            has_quarter_turn = any(np.trace(r) == 1 for r in rotations)
            return "C4" if has_quarter_turn else "D2"
        return _ROTATION_GROUPS[len(rotations)]

    if len(proper) == len(matrices):
        return rotation_group(proper)
    if any(np.array_equal(m, -np.eye(3)) for m in matrices):
        return _CENTROSYMMETRIC[rotation_group(proper)]
    isomorphic_rotations = matrices * determinants[:, None, None]
    return _IMPROPER[(rotation_group(isomorphic_rotations), rotation_group(proper))]


def _orientation_tag(symbol: str, matrices: np.ndarray) -> str:
    """The kind (`a`/`f`) of the principal 2-fold axis (mirror normal for Cs), followed, where
    that does not tell the classes apart, by the kind of the secondary elements."""
    determinants = np.rint(np.linalg.det(matrices)).astype(int)
    traces = np.trace(matrices, axis1=1, axis2=2)
    half_turn_axes = [axis_of(m) for m in matrices[(determinants == 1) & (traces == -1)]]
    mirror_normals = [axis_of(m) for m in matrices[(determinants == -1) & (traces == 1)]]
    if symbol in ("C2", "C2h"):
        return direction_kind(half_turn_axes[0])
    if symbol == "Cs":
        return direction_kind(mirror_normals[0])
    if symbol == "C2v":
        principal = direction_kind(half_turn_axes[0])
        return principal + (direction_kind(mirror_normals[0]) if principal == "a" else "")
    if symbol in ("D2", "D2h"):
        kinds = sorted(direction_kind(axis) for axis in half_turn_axes)
        return kinds[0] + kinds[-1]  # "aa": three coordinate axes; "af": one and two diagonals
    if symbol == "D2d":
        # The S4 axis is a coordinate axis; the 2-fold axes perpendicular to it tell them apart.
        s4_axis = axis_of(matrices[(determinants == -1) & (traces == -1)][0])
        secondary = [axis for axis in half_turn_axes if np.dot(axis, s4_axis) == 0]
        return direction_kind(s4_axis) + direction_kind(secondary[0])
    raise ValueError(f"no orientation tag is defined for {symbol}")


def _alignment_scores(matrices: np.ndarray) -> np.ndarray:
    """Per element, `(keeps depth, proper turn about depth, improper about depth, about d+r+c)`
    as 0/1 columns: `_alignment` sums them over a candidate representative."""
    axes = [axis_of(m) for m in matrices]
    proper = np.rint(np.linalg.det(matrices)) == 1
    about = [[a is not None and np.array_equal(a, v) for a in axes] for v in (DEPTH, MAIN_DIAGONAL)]
    about_depth, about_diagonal = np.asarray(about)
    return np.stack(
        [
            np.abs(matrices[:, 0, 0]) == 1,
            about_depth & proper,
            about_depth & ~proper,
            about_diagonal,
        ],
        axis=1,
    ).astype(int)


def _alignment(scores: np.ndarray, elements: tuple[int, ...]) -> tuple:
    """Sort key: representatives aligned with the depth axis first.

    Keeping the depth axis on itself comes first (the group suits volumes with a distinct
    depth), then rotations about depth, then improper elements whose axis is depth; a 3-fold
    axis goes along the main diagonal d+r+c.
    """
    keeps_depth, proper_about_depth, improper_about_depth, about_diagonal = scores[
        list(elements)
    ].sum(axis=0)
    return (
        keeps_depth < len(elements),
        -proper_about_depth,
        -improper_about_depth,
        -about_diagonal,
    )


@functools.lru_cache(maxsize=1)
def subgroup_classes() -> tuple[SubgroupClass, ...]:
    """Every conjugacy class of subgroups of Oh, largest first, each with its representative.

    Every subgroup K ≠ 1 is generated by a maximal subgroup H and one more element, and a
    conjugate of K is generated by H's class representative and one element: extending the
    representatives found so far, one element at a time, reaches every class.
    """
    oh = _Oh()
    # canonical mask (the smallest over the class) → the elements and generators found
    trivial_key = int(oh.conjugate_masks((0,)).min())
    found, generators = {trivial_key: (0,)}, {trivial_key: [0]}
    pending = [trivial_key]
    while pending:
        key = pending.pop()
        elements = found[key]
        for g in range(48):
            if g in elements:
                continue
            extended = oh.closure(generators[key] + [g])
            new_key = int(oh.conjugate_masks(extended).min())
            if new_key not in found:
                found[new_key] = extended
                generators[new_key] = generators[key] + [g]
                pending.append(new_key)
    scores = _alignment_scores(oh.matrices)
    classes = []
    for elements in found.values():
        conjugates = sorted({int(mask) for mask in oh.conjugate_masks(elements)})
        candidates = [_elements_of(mask) for mask in conjugates]
        chosen = min(candidates, key=lambda c: (_alignment(scores, c), c))
        classes.append((chosen, _schoenflies(oh.matrices[list(chosen)]), len(conjugates)))
    symbol_count: dict[str, int] = {}
    for _, symbol, _ in classes:
        symbol_count[symbol] = symbol_count.get(symbol, 0) + 1
    result = []
    for elements, symbol, size in classes:
        tag = (
            _orientation_tag(symbol, oh.matrices[list(elements)])
            if symbol_count[symbol] > 1
            else ""
        )
        name = f"{symbol}_{tag}" if tag else symbol
        result.append(SubgroupClass(name, symbol, tag, elements, size))
    result.sort(key=lambda c: (-len(c.elements), c.name))
    names = [c.name for c in result]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two classes of subgroups of Oh got the same name: {names}")
    return tuple(result)


def principal_axis_name(matrices: np.ndarray) -> str:
    """The direction of the group's main axis, e.g. `d`: the axis of highest order (of a
    proper rotation where there is a choice, of a mirror's normal for Cs); `""` for C1, Ci."""
    best, best_key = "", None
    for matrix in matrices:
        axis = axis_of(matrix)
        if axis is None:
            continue
        key = (rotation_order(matrix), round(np.linalg.det(matrix)) == 1)
        if best_key is None or key > best_key:
            best, best_key = direction_name(axis), key
    return best


def axes_names(matrices: np.ndarray, determinant: int, trace: int) -> str:
    """The axes of the elements with this determinant and trace, e.g. `d, r+c, r-c` for the
    half turns (1, -1) or the mirror normals (-1, 1)."""
    names = [
        direction_name(axis_of(m))
        for m in matrices
        if round(np.linalg.det(m)) == determinant and np.trace(m) == trace
    ]
    return ", ".join(names)
