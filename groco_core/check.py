"""The conformance kit behind `groco check`: does a group (and every layer) follow the rules?

For one group it checks, each as a `CheckRow` with its measured error:

- the group axioms on its matrices and Cayley table (identity first, determinants ±1, no
  repeats, closure, the Cayley table and the inverses against matrix products);
- its kernel index tables and support mask against its matrices, and its signal transform
  against an independent numpy gather;
- the equivariance of every registered layer kind that applies to its dimension (lifting,
  group conv, subgroup output, transposed, pooling onto a subgroup, global pooling, batch
  norm, and plugin layers through their `equivariance_cases` classmethod, see
  `groco_core.equivariance.EquivarianceCase`);
- a small network (`network`: two convolutions with biases and ReLU, max pooling, batch
  norm, global pooling) at two input sizes, even and odd (two odd ones on a lattice that
  refuses even arrays), invariant: layers that pass alone but not in a stack (a masked
  lattice whose layers leave values off its image support) fail here;
- a `.keras` round trip of a small model on it.

The same functions serve a plugin's own pytest suite (re-exported by `groco_core.testing`):

    >>> from groco_core.check import check_group
    >>> rows = check_group("P4", quick=True)  # doctest: +SKIP
    >>> all(row.passed for row in rows)  # doctest: +SKIP
    True

Large groups are sampled: equivariance is tested on a generating set of the group plus a few
other elements (all elements for groups of order ≤ 12; generators only with `quick=True`),
which is enough for a layer that is equivariant under its generators for every input.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from groco_core import registry
from groco_core.equivariance import EquivarianceCase, random_input, support_weights
from groco_core.groups import PointGroup
from groco_core.registry import get_group

ALL_ELEMENTS_UP_TO = 12
SAMPLED_EXTRA_ELEMENTS = 3
LAYER_TOLERANCE = 1e-4
ROUND_TRIP_TOLERANCE = 1e-5
_SIZES = {1: 9, 2: 7, 3: 5}  # input side per dimension: small, odd (hexagonal needs odd)
# The networks' input sides per dimension: one even, one odd; a lattice that refuses even
# arrays (hexagonal) gets two odd sides whose stride-2 pooling keeps a centre point.
NETWORK_SIZES = {1: (8, 9), 2: (6, 7), 3: (4, 5)}
ODD_NETWORK_SIZES = (9, 5)


@dataclasses.dataclass(frozen=True)
class CheckRow:
    """One line of `groco check`: a check on a group, its measured error, pass or fail.

    `max_error` is the largest deviation (or, for table checks, the number of wrong
    entries); None where the check did not run (`status` "skip") or raised ("FAIL", with the
    error in `detail`).
    """

    group: str
    check: str
    max_error: float | None
    passed: bool
    detail: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("ok" if self.passed else "FAIL")


def _row(group: PointGroup, check: str, run: Callable[[], float], tolerance: float) -> CheckRow:
    try:
        error = float(run())
    except Exception as exc:  # noqa: BLE001 - a check that raises is a failed row, not a crash
        return CheckRow(group.name, check, None, False, f"{type(exc).__name__}: {exc}")
    return CheckRow(group.name, check, error, bool(error <= tolerance))


# -- the group itself ---------------------------------------------------------------------


def _index_table(matrices: np.ndarray) -> dict[bytes, int]:
    return {m.astype(np.int64).tobytes(): i for i, m in enumerate(matrices)}


def _axiom_violations(group: PointGroup) -> int:
    matrices = np.asarray(group.matrices)
    order, dim = matrices.shape[0], matrices.shape[1]
    violations = int(not np.array_equal(matrices[0], np.eye(dim, dtype=matrices.dtype)))
    violations += int(np.sum(np.rint(np.abs(np.linalg.det(matrices))) != 1))
    index = _index_table(matrices)
    violations += order - len(index)
    cayley, inverses = np.asarray(group.cayley), np.asarray(group.inverses)
    for i in range(order):
        for j in range(order):
            product = index.get((matrices[i] @ matrices[j]).astype(np.int64).tobytes())
            violations += int(product is None or cayley[i, j] != product)
        violations += int(not np.array_equal(matrices[i] @ matrices[inverses[i]], np.eye(dim)))
    return violations


def check_group_axioms(group: str | PointGroup) -> CheckRow:
    """Identity first, determinants ±1, unique elements, closure, Cayley table and inverses
    equal to the matrix products; the error is the number of violations."""
    group = get_group(group)
    return _row(
        group, "axioms: matrices, Cayley table, inverses", lambda: _axiom_violations(group), 0
    )


def _centred(shape: tuple[int, ...]) -> np.ndarray:
    """Twice the centred coordinates of every point of a grid, `(points, d)`, C order."""
    axes = [2 * np.arange(n) - (n - 1) for n in shape]
    return np.stack([a.reshape(-1) for a in np.meshgrid(*axes, indexing="ij")], -1)


def _expected_source(shape: tuple[int, ...], inverse: np.ndarray) -> np.ndarray:
    """Flat index of `M⁻¹ p` for every grid point p (-1 off the grid), written afresh."""
    points = _centred(shape) @ inverse.T
    index = (points + (np.asarray(shape) - 1)) // 2
    on_grid = np.all((index >= 0) & (index < np.asarray(shape)), -1) & np.all(
        (points + np.asarray(shape) - 1) % 2 == 0, -1
    )
    flat = np.ravel_multi_index(tuple(np.clip(index, 0, np.asarray(shape) - 1).T), shape)
    return np.where(on_grid, flat, -1)


def _kernel_shapes(group: PointGroup) -> list[tuple[int, ...]]:
    shapes = [(3,) * group.dimension]
    if group.kernel_support_mask(shapes[0]) is None:
        shapes.append((2,) * group.dimension)  # half-integer centres too
    return shapes


def _kernel_table_errors(group: PointGroup) -> int:
    matrices = np.asarray(group.matrices)
    inverses = [np.rint(np.linalg.inv(m)).astype(np.int64) for m in matrices]
    wrong = 0
    for shape in _kernel_shapes(group):
        table = np.asarray(group.kernel_permutation(shape))
        points = int(np.prod(shape))
        if table.shape != (group.order, points):
            return points * group.order
        mask = group.kernel_support_mask(shape)
        mask = np.ones(points, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
        for h, inverse in enumerate(inverses):
            expected = np.where(mask, _expected_source(shape, inverse), np.arange(points))
            wrong += int(np.sum(table[h] != expected))
            # The support is mapped onto itself.
            moved = _expected_source(shape, matrices[h])[mask]
            wrong += int(np.sum((moved < 0) | ~mask[np.clip(moved, 0, None)]))
    return wrong


def check_kernel_tables(group: str | PointGroup) -> CheckRow:
    """`kernel_permutation` row h is `M_h⁻¹ r` for every supported tap r (the others stay),
    and `kernel_support_mask` is mapped onto itself; the error counts wrong entries."""
    group = get_group(group)
    return _row(group, "kernel index tables and support", lambda: _kernel_table_errors(group), 0)


def _transform_error(group: PointGroup, rng: np.random.Generator) -> float:
    from keras import ops

    shape = (_SIZES[group.dimension],) * group.dimension
    x = random_input((1, *shape, group.order, 2), group, rng)
    spatial = tuple(range(1, 1 + group.dimension))
    weights = support_weights(group, x.shape, spatial)
    worst = 0.0
    for element in elements_to_test(group):
        inverse = np.rint(np.linalg.inv(group.matrices[element])).astype(np.int64)
        source = _expected_source(shape, inverse)
        flat = x.reshape((1, -1, group.order, 2))
        expected = np.where((source >= 0)[None, :, None, None], flat[:, source], 0.0)
        expected = expected.reshape(x.shape)[..., group.cayley[group.inverses[element]], :]
        actual = ops.convert_to_numpy(group.transform(x, element, spatial, group.dimension + 1))
        worst = max(worst, float(np.max(np.abs(actual - expected) * weights)))
    return worst


def check_transform(group: str | PointGroup, rng: np.random.Generator | None = None) -> CheckRow:
    """`group.transform` of a signal on the group against a numpy gather from the matrices."""
    group = get_group(group)
    rng = rng or np.random.default_rng(0)
    return _row(group, "signal transform", lambda: _transform_error(group, rng), 1e-6)


# -- elements to test -----------------------------------------------------------------------


def generators(group: str | PointGroup) -> list[int]:
    """A small generating set (element indices), chosen greedily, largest orbit first."""
    group = get_group(group)
    cayley = np.asarray(group.cayley)

    def closure(elements: Iterable[int]) -> set[int]:
        found = {0, *elements}
        while True:
            larger = found | {int(cayley[a, b]) for a in found for b in found}
            if larger == found:
                return found
            found = larger

    chosen: list[int] = []
    generated = {0}
    while len(generated) < group.order:
        best = max(
            (e for e in range(group.order) if e not in generated),
            key=lambda e: (len(closure([*chosen, e])), -e),
        )
        chosen.append(best)
        generated = closure(chosen)
    return chosen


def elements_to_test(group: str | PointGroup, quick: bool = False) -> list[int]:
    """Every element for small groups; otherwise generators plus a few seeded others."""
    group = get_group(group)
    if group.order <= ALL_ELEMENTS_UP_TO and not quick:
        return list(range(group.order))
    chosen = generators(group)
    if quick:
        return chosen
    others = [e for e in range(1, group.order) if e not in chosen]
    extra = np.random.default_rng(group.order).choice(
        others, size=min(SAMPLED_EXTRA_ELEMENTS, len(others)), replace=False
    )
    return sorted({*chosen, *(int(e) for e in extra)})


# -- layers ---------------------------------------------------------------------------------


def _largest_proper_subgroup(group: PointGroup) -> str | None:
    subgroups = registry.subgroups_of(group)
    proper = [name for name, indices in subgroups.items() if len(indices) < group.order]
    return proper[0] if proper else None


def core_cases(group: str | PointGroup) -> list[EquivarianceCase]:
    """The kit's own cases for the core layers on a group."""
    from groco_core import layers

    group = get_group(group)
    d, order = group.dimension, group.order
    side = _SIZES[d]
    image, signal = (1, *(side,) * d, 2), (1, *(side,) * d, order, 2)
    masked = group.kernel_support_mask((3,) * d) is not None
    subgroup = _largest_proper_subgroup(group)
    conv = getattr(layers, f"GroupConv{d}D")
    transposed = getattr(layers, f"GroupConv{d}DTranspose")
    pool_size = 1 if masked else 2
    pool_side = side if masked else side - 1  # even for 2-pooling, odd for a mask
    pooled = (1, *(pool_side,) * d, order, 2)
    batch_norm = layers.GroupBatchNormalization(group=group)
    even = takes_even_sizes(group, side - 1)
    cases = [
        EquivarianceCase(f"{conv.__name__} lifting", conv(2, 3, group=group), image),
        EquivarianceCase(f"{conv.__name__} group", conv(2, 3, group=group), signal),
        EquivarianceCase(
            f"{transposed.__name__}", transposed(2, 3, group=group), (1, *(3,) * d, order, 2)
        ),
        EquivarianceCase(
            f"GroupAveragePooling{d}D",
            getattr(layers, f"GroupAveragePooling{d}D")(group=group, pool_size=pool_size),
            pooled,
        ),
        EquivarianceCase(
            f"GlobalGroupMaxPooling{d}D",
            getattr(layers, f"GlobalGroupMaxPooling{d}D")(group=group),
            signal,
        ),
        EquivarianceCase(
            "GroupBatchNormalization (training)",
            lambda x: batch_norm(x, training=True),
            signal,
        ),
    ]
    if even:
        # An even input too: the padding rule's half-integer centres.
        cases.insert(
            1,
            EquivarianceCase(
                f"{conv.__name__} lifting, even size {side - 1}",
                conv(2, 3, group=group, padding="same_equiv"),
                (1, *(side - 1,) * d, 2),
            ),
        )
    if subgroup is not None:
        cases[-4:-4] = [
            EquivarianceCase(
                f"{conv.__name__} onto {subgroup}",
                conv(2, 3, group=group, subgroup=subgroup),
                signal,
            ),
        ]
        cases.insert(
            -2,
            EquivarianceCase(
                f"GroupMaxPooling{d}D onto {subgroup}",
                getattr(layers, f"GroupMaxPooling{d}D")(
                    group=group, subgroup=subgroup, pool_size=pool_size
                ),
                pooled,
            ),
        )
    return cases


def takes_even_sizes(group: PointGroup, size: int) -> bool:
    """Whether the group's lattice takes arrays of this (even) side: False where its
    `image_support_mask` refuses the shape, or where its matrices are not signed
    permutations, so that an output grid needs a centre point (the hexagonal lattice)."""
    matrices = np.abs(np.asarray(group.matrices))
    if not (np.all(matrices.sum(axis=-2) == 1) and np.all(matrices <= 1)):
        return False
    try:
        group.image_support_mask((size,) * group.dimension)
    except ValueError:
        return False
    return True


def network_sizes(group: str | PointGroup) -> tuple[int, int]:
    """The two input sides `check_network` tries on a group: an even and an odd one, or two
    odd ones where the lattice refuses even arrays (see `takes_even_sizes`)."""
    group = get_group(group)
    sizes = NETWORK_SIZES[group.dimension]
    return sizes if takes_even_sizes(group, sizes[0]) else ODD_NETWORK_SIZES


def network(group: str | PointGroup, size: int, seed: int = 0) -> Callable[[Any], Any]:
    """The small network `check_network` runs on a group, for inputs of side `size`: a
    lifting convolution and a group convolution (non-zero biases, ReLU, `same_equiv`), a
    stride-2 max pooling between them and batch normalization in training mode (non-zero
    `beta`), then global average pooling: an invariant output `(batch, filters)`.

    Each layer on its own can pass while the stack does not: on a masked lattice a value a
    layer leaves off the image support (a bias, `beta`) is read by the next one.
    """
    import keras

    from groco_core import layers

    group = get_group(group)
    d = group.dimension
    masked = group.kernel_support_mask((3,) * d) is not None
    conv = getattr(layers, f"GroupConv{d}D")

    def convolution(index: int) -> Any:
        bias = keras.initializers.RandomNormal(stddev=0.5, seed=seed + index)
        return conv(
            3, 3, group=group, padding="same_equiv", activation="relu", bias_initializer=bias
        )

    pool_size = 1 if masked else (2 if size % 2 == 0 else 3)
    beta = keras.initializers.RandomNormal(stddev=0.5, seed=seed + 2)
    stack = [
        convolution(1),
        getattr(layers, f"GroupMaxPooling{d}D")(
            pool_size, strides=2, padding="same_equiv", group=group
        ),
        layers.GroupBatchNormalization(group=group, beta_initializer=beta),
        convolution(3),
        getattr(layers, f"GlobalGroupAveragePooling{d}D")(group=group),
    ]

    def run(batch: Any) -> Any:
        # Called layer by layer: tracing a keras.Model first would cost more than the check.
        for layer in stack:
            if isinstance(layer, layers.GroupBatchNormalization):
                batch = layer(batch, training=True)
            else:
                batch = layer(batch)
        return batch

    return run


def check_network(
    group: str | PointGroup, quick: bool = False, rng: np.random.Generator | None = None
) -> list[CheckRow]:
    """The invariance of `network` on the group at both `network_sizes`: one row each."""
    group = get_group(group)
    rng = rng if rng is not None else np.random.default_rng(0)
    rows = []
    for size in network_sizes(group):
        label = (
            "network: 2 convolutions (bias, ReLU), max pooling, batch norm, global pooling; "
            f"size {size}"
        )
        try:
            model = network(group, size)
        except Exception as exc:  # noqa: BLE001 - reported as a failed row
            rows.append(CheckRow(group.name, label, None, False, f"{type(exc).__name__}: {exc}"))
            continue
        case = EquivarianceCase(label, model, (2, *(size,) * group.dimension, 2))
        rows.extend(_run_cases(group, [case], quick, rng))
    return rows


def plugin_layer_classes() -> list[type]:
    """Registered layer classes that do not come from the core."""
    return [
        layer
        for layer in registry.list_layers()
        if registry.layer_plugin(layer.__name__) != registry.CORE_PLUGIN_NAME
    ]


def check_layer_class(
    layer_class: type, group: str | PointGroup, quick: bool = False, rng: Any = None
) -> list[CheckRow]:
    """The rows of one (plugin) layer class on a group, from its `equivariance_cases`."""
    group = get_group(group)
    name = layer_class.__name__
    cases_of = getattr(layer_class, "equivariance_cases", None)
    if cases_of is None:
        return [
            CheckRow(
                group.name,
                f"{name} (plugin {registry.layer_plugin(name)})",
                None,
                True,
                "not checked: the class has no equivariance_cases classmethod",
                skipped=True,
            )
        ]
    try:
        cases = list(cases_of(group))
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        return [CheckRow(group.name, f"{name} cases", None, False, f"{type(exc).__name__}: {exc}")]
    return _run_cases(group, cases, quick, rng, prefix=f"{name}: ")


def _run_cases(
    group: PointGroup,
    cases: Sequence[EquivarianceCase],
    quick: bool,
    rng: Any,
    prefix: str = "",
) -> list[CheckRow]:
    rng = rng if rng is not None else np.random.default_rng(0)
    elements = elements_to_test(group, quick)
    rows = []
    for case in cases:
        acting = get_group(case.acting_subgroup) if case.acting_subgroup is not None else None
        output_group = case.output_group or getattr(case.layer, "output_group", None)
        output_group = output_group or getattr(case.layer, "subgroup", None) or group
        acting = acting or get_group(output_group)
        tested = elements if acting.order == group.order else elements_to_test(acting, quick)
        rows.append(
            _row(
                group,
                f"{prefix}{case.label}",
                lambda case=case, tested=tested: case.max_error(group, rng, tested),
                case.tolerance,
            )
        )
    return rows


def check_layers(
    group: str | PointGroup, quick: bool = False, rng: np.random.Generator | None = None
) -> list[CheckRow]:
    """Equivariance rows of every registered layer kind that applies to the group."""
    group = get_group(group)
    try:
        cases = core_cases(group)
    except Exception as exc:  # noqa: BLE001 - a group the layers refuse fails here
        return [CheckRow(group.name, "core layers", None, False, f"{type(exc).__name__}: {exc}")]
    rows = _run_cases(group, cases, quick, rng)
    for layer_class in plugin_layer_classes():
        rows.extend(check_layer_class(layer_class, group, quick, rng))
    return rows


def _round_trip_error(group: PointGroup, rng: np.random.Generator) -> float:
    import keras

    from groco_core import layers
    from groco_core.layers.serialization import load_model

    d = group.dimension
    conv = getattr(layers, f"GroupConv{d}D")
    inputs = keras.Input((*(_SIZES[d],) * d, 2))
    x = conv(2, 3, group=group.name)(inputs)
    x = conv(2, 3, group=group.name)(x)
    outputs = getattr(layers, f"GlobalGroupAveragePooling{d}D")(group=group.name)(x)
    model = keras.Model(inputs, outputs)
    data = random_input((1, *inputs.shape[1:]), group, rng)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        loaded = load_model(path)
    before = keras.ops.convert_to_numpy(model(data))
    after = keras.ops.convert_to_numpy(loaded(data))
    return float(np.max(np.abs(before - after)))


def check_round_trip(group: str | PointGroup, rng: np.random.Generator | None = None) -> CheckRow:
    """Saves a small model on the group (lifting, group conv, global pooling) to `.keras`,
    loads it with `groco_core.load_model`, and compares the outputs."""
    group = get_group(group)
    rng = rng or np.random.default_rng(0)
    return _row(
        group, ".keras round trip", lambda: _round_trip_error(group, rng), ROUND_TRIP_TOLERANCE
    )


def check_group(
    group: str | PointGroup,
    quick: bool = False,
    layers: bool = True,
    round_trip: bool = True,
    rng: np.random.Generator | None = None,
) -> list[CheckRow]:
    """Every check on one group: axioms, kernel tables, transform, layers, round trip.

    Args:
        group: a registered group's name or a group object.
        quick: test only a generating set of elements.
        layers: include the layer rows (and the plugin layers' rows) and the network rows
            (`check_network`).
        round_trip: include the `.keras` round trip.
        rng: random generator for the inputs (default: seeded).

    Returns:
        The rows; the group conforms when `all(row.passed for row in rows)`.
    """
    group = get_group(group)
    rng = rng or np.random.default_rng(0)
    rows = [check_group_axioms(group), check_kernel_tables(group)]
    if not all(row.passed for row in rows):
        return rows  # the layers would only repeat the failure
    rows.append(check_transform(group, rng))
    if layers:
        rows.extend(check_layers(group, quick, rng))
        rows.extend(check_network(group, quick, rng))
    if round_trip:
        rows.append(check_round_trip(group, rng))
    return rows


def check_plugin(name: str, quick: bool = False) -> list[CheckRow]:
    """Everything one plugin registered: its groups (`check_group`), and its layers on every
    registered group their `equivariance_cases` apply to."""
    info = {plugin.name: plugin for plugin in registry.list_plugins()}.get(name)
    if info is None:
        known = ", ".join(plugin.name for plugin in registry.list_plugins())
        raise ValueError(f"Unknown plugin {name!r}. Loaded plugins: {known}.")
    rows = [
        CheckRow(f"plugin {name}", "loads without problems", None, False, problem)
        for problem in info.problems
    ]
    for group in info.groups:
        rows.extend(check_group(group, quick=quick))
    rng = np.random.default_rng(0)
    for layer_name in info.layers:
        layer_class = registry.get_layer(layer_name)
        for group in registry.list_groups():
            rows.extend(row for row in check_layer_class(layer_class, group, quick, rng))
    return rows


def format_rows(rows: Sequence[CheckRow]) -> list[list[str]]:
    """Table cells for `groco check`: group, check, max error, result (and the detail)."""
    return [
        [
            row.group,
            row.check,
            "-" if row.max_error is None else f"{row.max_error:.2g}",
            row.status + (f": {row.detail}" if row.detail else ""),
        ]
        for row in rows
    ]


def assert_conforms(group: str | PointGroup, quick: bool = False) -> list[CheckRow]:
    """`check_group`, raising AssertionError listing the failing rows (for a plugin's tests).

    Returns:
        The rows, all passed.
    """
    rows = check_group(group, quick=quick)
    failed = [row for row in rows if not row.passed]
    if failed:
        lines = "\n".join("  ".join(cells) for cells in format_rows(failed))
        raise AssertionError(f"{get_group(group).name} does not conform:\n{lines}")
    return rows
