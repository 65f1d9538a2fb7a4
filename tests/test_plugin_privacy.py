"""Plugins (plugins/, examples/) use groco_core's public surface only.

A plugin imports from groco_core the top-level package, `groco_core.toolkit`,
`groco_core.testing` and `groco_core.hookspecs`, no name starting with `_` from them, and
reads or writes no `obj._name` attribute unless the plugin itself defines `_name` (a
function or class of that name, a module-level name, or an attribute it assigns on `self`
or `cls`). Everything else in groco_core may change in any release (see
`groco_core.toolkit`). A plugin's tests (under `tests/`, `test_*.py`, `conftest.py`) may
also import other modules of groco_core whose names have no `_` part (the registry, to
check what a plugin registered), and otherwise follow the same rules. The checker parses
the sources with `ast`; a planted violation of each kind shows it reports them, with file
and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = frozenset(
    {"groco_core", "groco_core.toolkit", "groco_core.testing", "groco_core.hookspecs"}
)
SKIPPED_DIRECTORIES = frozenset(
    {".venv", "venv", "build", "dist", "__pycache__", ".git", ".tox", "node_modules"}
)


def core_submodules() -> frozenset[str]:
    """The names `from groco_core import <name>` would import as a module."""
    core = ROOT / "groco_core"
    return frozenset(
        path.stem if path.suffix == ".py" else path.name
        for path in core.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    )


def plugin_sources() -> dict[str, dict[str, str]]:
    """Each plugin's Python files, `{"plugins/separable": {relative path: source}}`: the
    directories directly under plugins/ and examples/."""
    plugins: dict[str, dict[str, str]] = {}
    for top in ("plugins", "examples"):
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if any(
                part in SKIPPED_DIRECTORIES or part.endswith(".egg-info") for part in relative.parts
            ):
                continue
            plugin = "/".join(relative.parts[:2])
            plugins.setdefault(plugin, {})[str(relative)] = path.read_text(encoding="utf-8")
    return plugins


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def defined_names(tree: ast.AST) -> set[str]:
    """The names a module defines: functions, classes, assigned names, and attributes it
    assigns on `self` or `cls`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for part in ast.walk(target):
                    if isinstance(part, ast.Name):
                        names.add(part.id)
                    elif (
                        isinstance(part, ast.Attribute)
                        and isinstance(part.value, ast.Name)
                        and part.value.id in ("self", "cls")
                    ):
                        names.add(part.attr)
    return names


def is_test(path: str) -> bool:
    """Whether `path` is test code: under a `tests` directory, `test_*.py` or `conftest.py`."""
    parts = Path(path).parts
    return "tests" in parts[:-1] or parts[-1].startswith("test_") or parts[-1] == "conftest.py"


def _module_problem(module: str, test: bool = False) -> str | None:
    if not (module == "groco_core" or module.startswith("groco_core.")):
        return None
    if test and not any(part.startswith("_") for part in module.split(".")):
        return None
    if module not in PUBLIC_MODULES:
        return f"imports {module} (public: {', '.join(sorted(PUBLIC_MODULES))})"
    return None


def _reaches(
    tree: ast.AST, own: set[str], submodules: frozenset[str], test: bool = False
) -> Iterator[tuple]:
    """`(line, what)` for each reach into groco_core's private surface (`test`: of test
    code, which may import any module without a private part)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                problem = _module_problem(alias.name, test)
                if problem:
                    yield node.lineno, problem
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if not (module == "groco_core" or module.startswith("groco_core.")):
                continue
            problem = _module_problem(module, test)
            if problem:
                yield node.lineno, problem
            for alias in node.names:
                if alias.name.startswith("_"):
                    yield node.lineno, f"imports the private name {module}.{alias.name}"
                elif module == "groco_core" and alias.name in submodules:
                    problem = _module_problem(f"groco_core.{alias.name}", test)
                    if problem:
                        yield node.lineno, problem
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else None
            name = function.id if isinstance(function, ast.Name) else name
            argument = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(argument, ast.Constant)
                and isinstance(argument.value, str)
            ):
                problem = _module_problem(argument.value, test)
                if problem:
                    yield node.lineno, problem
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not _is_dunder(node.attr)
            and node.attr not in own
        ):
            yield node.lineno, f"reaches {ast.unparse(node)}, which the plugin does not define"


def private_reaches(sources: dict[str, str], submodules: frozenset[str]) -> list[str]:
    """`file:line: what` for every reach of one plugin's sources (`{path: source}`) into
    groco_core's private surface; the plugin's own underscore names are its own."""
    trees = {path: ast.parse(source, path) for path, source in sources.items()}
    own = set().union(*(defined_names(tree) for tree in trees.values()))
    return [
        f"{path}:{line}: {what}"
        for path, tree in trees.items()
        for line, what in sorted(_reaches(tree, own, submodules, is_test(path)))
    ]


def test_plugins_and_examples_use_only_the_public_toolkit():
    plugins = plugin_sources()
    assert "plugins/separable" in plugins and "examples/groco-hexagonal" in plugins
    assert "plugins/separable/groco_separable/depthwise.py" in plugins["plugins/separable"]
    submodules = core_submodules()
    problems = [
        problem for sources in plugins.values() for problem in private_reaches(sources, submodules)
    ]
    assert not problems, "Reaches into groco_core's private surface:\n" + "\n".join(problems)


PLANTED = """\
import groco_core.layers.conv
from groco_core import exporting, get_group
from groco_core.layers.conv import BaseGroupConv
from groco_core.toolkit import _private, split_group_axis
import importlib

backend = importlib.import_module("groco_core.backend")


class Layer:
    def build(self):
        self._mine = 1
        return self._mine, self.__dict__, self._output_elements


def export(layer):
    return layer._paddings((3, 3)), layer._mine, _helper()


def _helper():
    return 0
"""


def test_the_checker_reports_each_planted_violation_with_its_line():
    problems = private_reaches({"planted.py": PLANTED}, frozenset({"exporting", "layers"}))
    expected = [
        ("planted.py:1:", "imports groco_core.layers.conv"),
        ("planted.py:2:", "imports groco_core.exporting"),
        ("planted.py:3:", "imports groco_core.layers.conv"),
        ("planted.py:4:", "private name groco_core.toolkit._private"),
        ("planted.py:7:", "imports groco_core.backend"),
        ("planted.py:13:", "reaches self._output_elements"),
        ("planted.py:17:", "reaches layer._paddings"),
    ]
    assert len(problems) == len(expected), problems
    for problem, (place, what) in zip(problems, expected, strict=True):
        assert problem.startswith(place) and what in problem, (problem, place, what)


def test_the_plugin_s_own_private_names_are_its_own_across_its_files():
    sources = {
        "a.py": "class Part:\n    def build(self):\n        self._cache = {}\n",
        "b.py": "def read(part):\n    return part._cache, part._other\n",
    }
    problems = private_reaches(sources, frozenset())
    assert problems == ["b.py:2: reaches part._other, which the plugin does not define"]


def test_a_plugin_s_tests_may_import_the_registry_but_nothing_private():
    source = (
        "from groco_core import registry\n"
        "from groco_core.registry import _registry, subgroups_of\n"
        "import groco_core.layers.conv\n"
    )
    submodules = frozenset({"registry", "layers"})
    assert private_reaches({"tests/test_it.py": source}, submodules) == [
        "tests/test_it.py:2: imports the private name groco_core.registry._registry"
    ]
    assert len(private_reaches({"plugin.py": source}, submodules)) == 4
