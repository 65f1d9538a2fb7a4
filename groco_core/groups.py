"""Point groups: the abstract protocol and the generic group defined by its matrices.

Conventions (see docs/groups.md): an element ``g`` with matrix ``M_g`` acts on lattice
coordinates in the order of the tensor's spatial axes, centred on the middle of the grid.
On a signal on the grid ``(g·f)(p) = f(M_g⁻¹ p)``; on a signal on the group
``(g·f)(p, h) = f(M_g⁻¹ p, g⁻¹h)``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from groco_core.validation import validate_group_definition


class PointGroup(abc.ABC):
    """The protocol every point group follows.

    A point group is a finite group of integer matrices (determinant ±1) acting on the
    lattice coordinates of a kernel or image grid. Concrete groups usually derive from
    `MatrixGroup`, which computes everything below from the matrices alone.
    """

    name: str
    lattice: str
    description: str

    @property
    @abc.abstractmethod
    def matrices(self) -> np.ndarray:
        """Integer array `(order, d, d)`; element 0 is the identity."""

    @property
    def order(self) -> int:
        return int(self.matrices.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.matrices.shape[1])

    @property
    @abc.abstractmethod
    def cayley(self) -> np.ndarray:
        """`cayley[i, j]` is the index of `matrices[i] @ matrices[j]`."""

    @property
    @abc.abstractmethod
    def inverses(self) -> np.ndarray:
        """`inverses[i]` is the index of the inverse of element `i`."""

    @abc.abstractmethod
    def subgroup_indices(self, subgroup: PointGroup) -> tuple[int, ...]:
        """Indices of a subgroup's elements, in the subgroup's own element order.

        A group knows only itself: the registered subgroups, by name, are
        `groco_core.subgroups_of(group)`, and a name is looked up with
        `groco_core.get_group(name, subgroup_of=group)`.

        Raises:
            ValueError: when `subgroup` is not a subgroup of this group.
        """

    @abc.abstractmethod
    def cosets(self, subgroup: PointGroup, side: str = "left") -> tuple[tuple[int, ...], ...]:
        """The cosets of a subgroup, each as a tuple of element indices."""

    @abc.abstractmethod
    def kernel_permutation(self, shape: Sequence[int]) -> np.ndarray:
        """Index table `(order, prod(shape))`: entry `[h, r]` is the flat index of `M_h⁻¹ r`."""

    @abc.abstractmethod
    def transform(
        self, x: Any, element: int, spatial_axes: Sequence[int], group_axis: int | None = None
    ) -> Any:
        """Applies one element to a tensor (a signal on the grid, or on the group)."""

    def kernel_support_mask(self, shape: Sequence[int]) -> np.ndarray | None:
        """Boolean mask `shape` of the array positions the lattice uses, or None when all are.

        None (the default) is the square and cubic lattices: every element maps the whole
        array onto itself. A lattice stored in part of a square array (hexagonal, in axial
        coordinates) returns the region that every element maps onto itself (a hexagon),
        and raises ValueError for shapes it cannot use. The mask serves kernels and signals
        alike: `kernel_permutation` moves only the taps inside it (the others stay in place
        and the layers zero them), `transform` keeps the array's shape and fills with zeros
        the points whose source lies off the array, and `groco_core.testing` draws inputs
        inside the mask and compares outputs there.
        """
        return None

    def image_support_mask(self, shape: Sequence[int]) -> np.ndarray | None:
        """Boolean mask `shape` of the points an image (or a signal on the group) of this
        spatial shape lives on, or None when it uses the whole array.

        Every GroCo layer reads its input as zero off this mask and writes zeros there, and
        global pooling and batch norm statistics use only its points: a value off it (a
        bias, a border effect) would not move with a turn of the lattice, and the next layer
        would read it. The default is `kernel_support_mask(shape)`: None on the square and
        cubic lattices (no mask, nothing added to a layer's graph), the largest hexagon of an
        odd square array on the hexagonal one. A lattice overrides it when its images use
        another region than its kernels; the mask must be mapped onto itself by every
        element, and it raises ValueError for shapes the lattice cannot use (saying which
        it can).

        Example:
            >>> from groco_core import get_group
            >>> get_group("P4M").image_support_mask((8, 8)) is None
            True
        """
        return self.kernel_support_mask(shape)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: order {self.order}, {self.lattice} lattice>"


def _doubled_coordinates(shape: Sequence[int]) -> np.ndarray:
    """Twice the centred coordinates of every grid point, `(prod(shape), d)`, C order.

    Doubling keeps half-integer centres (even sizes) integral.
    """
    axes = [2 * np.arange(n) - (n - 1) for n in shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=-1).astype(np.int64)


def _flat_index(doubled: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Flat C-order index of points given by doubled coordinates; -1 where off the grid."""
    shape_arr = np.asarray(shape)
    index = (doubled + (shape_arr - 1)) // 2
    on_grid = np.all((index >= 0) & (index < shape_arr) & ((doubled + shape_arr - 1) % 2 == 0), -1)
    flat = np.ravel_multi_index(tuple(np.clip(index, 0, shape_arr - 1).T), tuple(shape))
    return np.where(on_grid, flat, -1)


class MatrixGroup(PointGroup):
    """A point group given by its matrices; everything else is derived and cached.

    Args:
        name: canonical name, `^[A-Za-z][A-Za-z0-9_]*$` (lookups are case-insensitive).
        matrices: integer array-like `(order, d, d)`, identity first, closed under products,
            determinants ±1, acting on `(row, col)` (2D) or `(depth, row, col)` (3D).
        lattice: the lattice the matrices act on, e.g. `"square"`, `"cubic"`, `"line"`.
        description: one line for `groco list-groups` and `groco show`.

    Raises:
        ValueError: when the definition is not a valid group (message says what is wrong).

    Example:
        >>> import numpy as np
        >>> from groco_core import MatrixGroup
        >>> flip = MatrixGroup("Flip", [[[1, 0], [0, 1]], [[1, 0], [0, -1]]])
        >>> flip.order, flip.cayley.tolist()
        (2, [[0, 1], [1, 0]])
    """

    def __init__(self, name: str, matrices: Any, lattice: str = "square", description: str = ""):
        definition = validate_group_definition(name, matrices, lattice, description)
        self.name = definition.name
        self.lattice = definition.lattice
        self.description = definition.description
        self._matrices = np.asarray(definition.matrices, dtype=np.int64)
        self._matrices.setflags(write=False)
        self._index_of = {m.tobytes(): i for i, m in enumerate(self._matrices)}
        products = np.einsum("iab,jbc->ijac", self._matrices, self._matrices)
        self._cayley = np.array(
            [[self._index_of[p.tobytes()] for p in row] for row in products], dtype=np.int64
        )
        self._inverses = np.argmax(self._cayley == 0, axis=1).astype(np.int64)
        for table in (self._cayley, self._inverses):
            table.setflags(write=False)
        self._kernel_permutations: dict[tuple[int, ...], np.ndarray] = {}
        self._signal_sources: dict[tuple, tuple[tuple, np.ndarray]] = {}

    @property
    def matrices(self) -> np.ndarray:
        return self._matrices

    @property
    def cayley(self) -> np.ndarray:
        return self._cayley

    @property
    def inverses(self) -> np.ndarray:
        return self._inverses

    def index_of(self, matrix: Any) -> int | None:
        """Index of the element with this matrix, or None when it is not in the group."""
        return self._index_of.get(np.asarray(matrix, dtype=np.int64).tobytes())

    def subgroup_indices(self, subgroup: PointGroup) -> tuple[int, ...]:
        """Indices (into this group) of a subgroup's elements, in the subgroup's order.

        Args:
            subgroup: a group object on the same lattice whose matrices are all elements of
                this group. For a name use `groco_core.get_group(name, subgroup_of=group)`,
                which also lists the registered subgroups when the name is not one.

        Raises:
            TypeError: when `subgroup` is not a `PointGroup` (a name, say).
            ValueError: when it is not a subgroup, saying why.
        """
        if not isinstance(subgroup, PointGroup):
            lookup = ""
            if isinstance(subgroup, str):
                lookup = (
                    " A group does not look names up: use "
                    f"groco_core.get_group({subgroup!r}, subgroup_of={self.name!r})."
                )
            raise TypeError(
                f"subgroup must be a PointGroup. Received: subgroup={subgroup!r} of type "
                f"{type(subgroup).__name__}.{lookup}"
            )
        if (subgroup.lattice, subgroup.dimension) != (self.lattice, self.dimension):
            raise ValueError(
                f"{subgroup.name!r} is not a subgroup of {self.name}: it acts on the "
                f"{subgroup.lattice} lattice in {subgroup.dimension}D, {self.name} on the "
                f"{self.lattice} lattice in {self.dimension}D."
            )
        indices = [self.index_of(matrix) for matrix in subgroup.matrices]
        if None in indices:
            outside = indices.index(None)
            raise ValueError(
                f"{subgroup.name!r} is not a subgroup of {self.name}: its element {outside}, "
                f"{np.asarray(subgroup.matrices[outside]).tolist()}, is not in {self.name}."
            )
        return tuple(int(i) for i in indices if i is not None)

    def cosets(self, subgroup: PointGroup, side: str = "left") -> tuple[tuple[int, ...], ...]:
        """Cosets of a subgroup H: `g·H` (`side="left"`) or `H·g` (`side="right"`).

        Each coset lists `g·h` (or `h·g`) for `h` in H's element order, with `g` the
        smallest index in the coset, so the first entry is the representative. Cosets are
        sorted by representative; the first is H itself.

        Args:
            subgroup: H, a group object (see `subgroup_indices`).
            side: "left" or "right".
        """
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right'. Received: side={side!r}")
        members = self.subgroup_indices(subgroup)
        seen: set[int] = set()
        result = []
        for g in range(self.order):
            if g in seen:
                continue
            if side == "left":
                coset = tuple(int(self._cayley[g, h]) for h in members)
            else:
                coset = tuple(int(self._cayley[h, g]) for h in members)
            seen.update(coset)
            result.append(coset)
        return tuple(result)

    def _check_shape_invariant(self, shape: tuple[int, ...], what: str) -> None:
        if len(shape) != self.dimension:
            raise ValueError(
                f"{what} must have {self.dimension} spatial axes for group {self.name}. "
                f"Received: {what}={shape}"
            )
        if np.any(np.sum(np.abs(self._matrices), axis=-1) != 1):
            raise ValueError(
                f"Group {self.name} ({self.lattice} lattice) has matrices that are not signed "
                "permutations, so they do not map a square array onto itself, and the group "
                "defines no kernel_support_mask. A group on such a lattice must override "
                "kernel_support_mask (the part of the array it maps onto itself); see "
                f"docs/plugins.md, 'A group on another lattice'. Received: {what}={shape}"
            )
        for m in self._matrices:
            if not np.array_equal(np.abs(m) @ np.asarray(shape), np.asarray(shape)):
                raise ValueError(
                    f"{what} must be mapped onto itself by every element of {self.name}: "
                    f"its rotations need equal sizes on the axes they exchange. "
                    f"Received: {what}={shape}"
                )

    def _supported_mask(self, shape: tuple[int, ...], what: str) -> np.ndarray | None:
        """The flat support mask of a shape (None: all of it), checked to be invariant."""
        if len(shape) != self.dimension:
            raise ValueError(
                f"{what} must have {self.dimension} spatial axes for group {self.name}. "
                f"Received: {what}={shape}"
            )
        mask = self.kernel_support_mask(shape)
        if mask is None:
            self._check_shape_invariant(shape, what)
            return None
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError(
                f"Group {self.name}: kernel_support_mask({shape}) returned shape {mask.shape}; "
                "it must return a boolean array of the shape it is given."
            )
        return mask.reshape(-1)

    def kernel_permutation(self, shape: Sequence[int]) -> np.ndarray:
        """Index table `(order, prod(shape))` with entry `[h, r]` = flat index of `M_h⁻¹ r`.

        Gathering a flattened kernel `ψ` with row `h` gives `ψ(M_h⁻¹ r)`, the kernel
        transformed by `h`. Taps outside `kernel_support_mask(shape)` (if any) stay in place.
        Computed once per shape, in numpy, and cached.
        """
        shape = tuple(int(n) for n in shape)
        if shape not in self._kernel_permutations:
            mask = self._supported_mask(shape, "kernel_size")
            coordinates = _doubled_coordinates(shape)
            inverse_matrices = self._matrices[self._inverses]
            table = np.stack(
                [_flat_index(coordinates @ m.T, shape) for m in inverse_matrices]
            ).astype(np.int64)
            if mask is not None:
                table = np.where(mask, table, np.arange(table.shape[1]))
                if np.any(table[:, mask] < 0) or not np.all(mask[table[:, mask]]):
                    raise ValueError(
                        f"Group {self.name}: its kernel_support_mask for shape {shape} is not "
                        "mapped onto itself by every element; the mask must be the region the "
                        "group's matrices map onto itself."
                    )
            if np.any(table < 0):
                raise ValueError(
                    f"Group {self.name} does not map a grid of shape {shape} onto itself; "
                    "a group on an unusual lattice must override kernel_support_mask."
                )
            table.setflags(write=False)
            self._kernel_permutations[shape] = table
        return self._kernel_permutations[shape]

    def transform(
        self, x: Any, element: int, spatial_axes: Sequence[int], group_axis: int | None = None
    ) -> Any:
        """Applies element `g` to a tensor: `(g·f)(p) = f(M_g⁻¹ p)`, and on the group axis
        `(g·f)(p, h) = f(M_g⁻¹ p, g⁻¹h)`.

        Args:
            x: tensor (any backend, or numpy).
            element: index of `g` in this group.
            spatial_axes: the tensor axes holding the grid, in coordinate order.
            group_axis: the axis indexed by group elements, if `x` is a signal on the group.

        Returns:
            The transformed tensor (a backend tensor). Non-square grids are transformed
            too: a rotation exchanges the axis lengths.
        """
        from keras import ops

        if not 0 <= int(element) < self.order:
            raise ValueError(
                f"element must be an index in [0, {self.order}) for group {self.name}. "
                f"Received: element={element}"
            )
        x = ops.convert_to_tensor(x)
        rank = len(x.shape)
        axes = [a % rank for a in spatial_axes]
        if len(axes) != self.dimension:
            raise ValueError(
                f"spatial_axes must name {self.dimension} axes for group {self.name}. "
                f"Received: spatial_axes={tuple(spatial_axes)}"
            )
        shape = tuple(int(x.shape[a]) for a in axes)
        out_shape, source = self._signal_source(shape, int(element))
        others = [a for a in range(rank) if a not in axes]
        moved = ops.transpose(x, axes + others)
        flat = ops.reshape(moved, (-1,) + tuple(moved.shape[len(axes) :]))
        if np.any(source < 0):
            # Points whose source lies off the array are zero: one more, zero, row.
            zero = ops.zeros((1,) + tuple(flat.shape[1:]), dtype=flat.dtype)
            flat = ops.concatenate([flat, zero], axis=0)
            source = np.where(source < 0, flat.shape[0] - 1, source)
        gathered = ops.take(flat, ops.convert_to_tensor(source.astype("int32")), axis=0)
        unflat = ops.reshape(gathered, out_shape + tuple(moved.shape[len(axes) :]))
        result = ops.transpose(unflat, list(np.argsort(axes + others)))
        if group_axis is not None:
            permutation = self._cayley[self._inverses[element]].astype("int32")
            result = ops.take(result, ops.convert_to_tensor(permutation), axis=group_axis % rank)
        return result

    def _signal_source(self, shape: tuple[int, ...], element: int) -> tuple[tuple, np.ndarray]:
        """`(out_shape, source)`: `out[p] = x[source[p]]` (flat, C order; -1 for zero)."""
        key = (shape, element)
        if key not in self._signal_sources:
            matrix = self._matrices[element]
            # Square lattices: a rotation exchanges the axis lengths (non-square arrays are
            # fine). A lattice in part of the array keeps the array, zero where the source is
            # off it.
            mask = self.kernel_support_mask(shape)
            out_shape = (
                shape
                if mask is not None
                else tuple(int(n) for n in np.abs(matrix) @ np.asarray(shape))
            )
            inverse = self._matrices[self._inverses[element]]
            source = _flat_index(_doubled_coordinates(out_shape) @ inverse.T, shape)
            if mask is None and np.any(source < 0):
                raise ValueError(
                    f"Group {self.name} does not map a grid of shape {shape} onto a grid; "
                    "a group on an unusual lattice must override kernel_support_mask."
                )
            self._signal_sources[key] = (out_shape, source)
        return self._signal_sources[key]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MatrixGroup)
            and self.name == other.name
            and self.lattice == other.lattice
            and np.array_equal(self._matrices, other._matrices)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.lattice, self._matrices.tobytes()))
