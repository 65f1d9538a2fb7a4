"""The plugin registry: direct registration, real entry points, fault isolation, validation."""

from __future__ import annotations

import ast
import itertools
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from transforms import act

from groco_core import registry
from groco_core.groups import MatrixGroup
from groco_core.hookspecs import hookimpl
from groco_core.registry import GrocoPluginWarning, PluginError

IDENTITY = [[1, 0], [0, 1]]
QUARTER_TURN = [[0, -1], [1, 0]]
HALF_TURN = [[-1, 0], [0, -1]]
THREE_QUARTER_TURN = [[0, 1], [-1, 0]]
MIRROR_ROWS = [[-1, 0], [0, 1]]
MIRROR_COLS = [[1, 0], [0, -1]]

SQUARE_GROUP_NAMES = {"P4M", "P4", "P2MM", "CMM", "PMh", "PMv", "PMd", "PMa", "P2", "P1"}


class GroupsPlugin:
    """A plugin object registering the given groups (built when its hook runs)."""

    def __init__(self, *definitions: tuple) -> None:
        self.definitions = definitions

    @hookimpl
    def groco_register_groups(self, register) -> None:
        for name, matrices, lattice in self.definitions:
            register(MatrixGroup(name, matrices, lattice=lattice))


def group_names(dimension: int | None = None) -> set[str]:
    return {group.name for group in registry.list_groups(dimension)}


def element_indices(group, matrices) -> tuple[int, ...]:
    """Positions of `matrices` in `group.matrices`, found by comparing arrays."""
    return tuple(
        int(np.flatnonzero([np.array_equal(m, np.asarray(x)) for m in group.matrices])[0])
        for x in matrices
    )


# -- plugins registered directly (the fixture) --------------------------------------------


def test_registered_group_is_listed_and_found_case_insensitively(register_plugin):
    rect_mm = [IDENTITY, MIRROR_ROWS, MIRROR_COLS, HALF_TURN]
    name = register_plugin(GroupsPlugin(("RectMM", rect_mm, "rect")), name="rect_plugin")

    assert "RectMM" in group_names(2)
    group = registry.get_group("rectmm")
    assert group is registry.get_group("RECTMM")
    assert (group.name, group.order, group.lattice) == ("RectMM", 4, "rect")
    assert registry.group_plugin("rectMM") == name
    info = {plugin.name: plugin for plugin in registry.list_plugins()}[name]
    assert (info.groups, info.source) == (["RectMM"], "registered directly")
    # Same matrices as P2MM but another lattice: not a subgroup of the square groups.
    assert "RectMM" not in registry.subgroups_of("P4M")


def test_unregistered_plugin_takes_its_groups_away():
    name = registry.register_plugin(GroupsPlugin(("Shortlived", [IDENTITY], "rect")))
    assert "Shortlived" in group_names()
    registry.unregister_plugin(name)
    assert "Shortlived" not in group_names()
    with pytest.raises(ValueError, match="Unknown group 'Shortlived'"):
        registry.get_group("Shortlived")


def test_new_group_becomes_subgroup_of_every_larger_group(register_plugin):
    register_plugin(GroupsPlugin(("Rot180", [IDENTITY, HALF_TURN], "square")))
    p4m = registry.get_group("P4M")

    assert registry.subgroups_of(p4m)["Rot180"] == element_indices(p4m, [IDENTITY, HALF_TURN])
    assert p4m.cosets(registry.get_group("Rot180")) == p4m.cosets(registry.get_group("P2"))
    for larger in ("P4", "P2MM", "CMM", "P2"):
        assert "Rot180" in registry.subgroups_of(larger)
    for smaller in ("PMh", "PMd", "P1"):
        assert "Rot180" not in registry.subgroups_of(smaller)
    assert set(registry.subgroups_of("Rot180")) >= {"Rot180", "P2", "P1"}


def test_alias_with_new_name_is_allowed(register_plugin):
    register_plugin(
        GroupsPlugin(("Turns", [IDENTITY, QUARTER_TURN, HALF_TURN, THREE_QUARTER_TURN], "square"))
    )
    turns, p4 = registry.get_group("Turns"), registry.get_group("P4")
    assert turns is not p4
    np.testing.assert_array_equal(turns.matrices, p4.matrices)
    subgroups = registry.subgroups_of("P4M")
    assert subgroups["Turns"] == subgroups["P4"]


def test_duplicate_group_name_is_an_error_naming_both_plugins(register_plugin):
    original = registry.get_group("P4M")
    clash = GroupsPlugin(("p4m", [IDENTITY, HALF_TURN], "square"))
    with pytest.raises(PluginError, match="clash") as error:
        register_plugin(clash, name="clashing_plugin")
    assert "'clashing_plugin'" in str(error.value) and "'p4m'" in str(error.value)
    assert registry.get_group("P4M") is original
    assert registry.get_group("P4M").order == 8
    assert "clashing_plugin" not in {plugin.name for plugin in registry.list_plugins()}


def test_invalid_registration_names_the_plugin_and_changes_nothing(register_plugin):
    before = group_names()

    class NotAGroup:
        @hookimpl
        def groco_register_groups(self, register) -> None:
            register("P4M")

    with pytest.raises(PluginError, match="'not_a_group'.*not a PointGroup"):
        register_plugin(NotAGroup(), name="not_a_group")
    open_set = GroupsPlugin(("Open", [IDENTITY, QUARTER_TURN], "square"))
    with pytest.raises(PluginError, match="'open_set'.*not closed under multiplication"):
        register_plugin(open_set, name="open_set")
    assert group_names() == before


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, matrices, problem",
    [
        ("Open", [IDENTITY, QUARTER_TURN], "not closed under multiplication"),
        ("Late", [HALF_TURN, IDENTITY], r"first matrix \(element 0\) must be the identity"),
        ("Twice", [IDENTITY, HALF_TURN, HALF_TURN], r"unique; matrices\[2\] repeats"),
        ("Stretch", [IDENTITY, [[2, 0], [0, 1]]], r"determinant \+1 or -1.*determinant 2"),
        ("Half", [IDENTITY, [[0.5, 0], [0, 1]]], "integer entries"),
        ("4P", [IDENTITY, HALF_TURN], "name: String should match pattern"),
        ("Flat", [[1, 0], [0, 1]], r"shape \(order, d, d\)"),
    ],
)
def test_invalid_group_definition_names_the_problem(name, matrices, problem):
    with pytest.raises(ValueError, match=f"Invalid group definition '{name}'.*{problem}"):
        MatrixGroup(name, matrices)


# -- lookups ------------------------------------------------------------------------------


def test_unknown_group_lists_groups_and_closest_match():
    with pytest.raises(ValueError, match="Unknown group 'P4N'") as error:
        registry.get_group("P4N")
    message = str(error.value)
    assert "Closest match: 'P4M'" in message
    available = message.split("Available groups: ")[1].split(".")[0].split(", ")
    assert set(available) >= SQUARE_GROUP_NAMES | {"LM", "L1"}


def test_lookup_argument_types():
    with pytest.raises(TypeError, match="Received: group=3"):
        registry.get_group(3)
    p4 = registry.get_group("P4")
    assert registry.get_group(p4) is p4
    with pytest.raises(ValueError, match="Received: dimension=4"):
        registry.list_groups(4)
    assert group_names(2) >= SQUARE_GROUP_NAMES
    assert group_names(1) >= {"LM", "L1"}


def test_import_is_lazy_and_list_groups_and_show_do_not_import_keras():
    script = textwrap.dedent(
        """
        import contextlib, io, json, sys
        import groco_core
        from groco_core import registry
        state = {
            "keras_after_import": "keras" in sys.modules,
            "p4m_after_import": "groco_p4m" in sys.modules,
            "autoloaded_after_import": registry._registry.autoloaded,
            "plugins_after_import": list(registry._registry.plugins),
        }
        from groco_core.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            codes = [main(["list-groups"]), main(["show", "P4M"])]
        state.update(codes=codes, keras_after_cli="keras" in sys.modules,
                     p4m_after_cli="p4m" in registry._registry.plugins)
        print(json.dumps(state))
        """
    )
    state = json.loads(run_python(["-c", script]).stdout)
    assert state == {
        "keras_after_import": False,
        "p4m_after_import": False,
        "autoloaded_after_import": False,
        "plugins_after_import": [],
        "codes": [0, 0],
        "keras_after_cli": False,
        "p4m_after_cli": True,
    }


# -- real (temporary) distributions on sys.path -------------------------------------------

GOOD_PLUGIN = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("TmpTurn", [[[1, 0], [0, 1]], [[-1, 0], [0, -1]]],
                         description="half turn, from a temporary distribution"))
"""

IMPORT_ERROR_PLUGIN = """
import groco_dependency_that_is_not_installed
"""

NON_CLOSED_PLUGIN = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("TmpOpen", [[[1, 0], [0, 1]], [[0, -1], [1, 0]]]))
"""


def write_distribution(site, module: str, source: str, entry_point: str) -> None:
    """An installed distribution as pip leaves it: the module plus its `.dist-info`."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[groco]\n{entry_point} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path holding the temporary `tmp_groco_plugin` distribution.

    The registry is reloaded before (to pick the distributions up) and after (to forget them).
    """
    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, "tmp_groco_plugin", GOOD_PLUGIN, "tmp")
    monkeypatch.delenv("GROCO_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("GROCO_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.syspath_prepend(str(site))
    registry.reload_plugins()
    yield site
    monkeypatch.undo()
    for module in [name for name in sys.modules if name.startswith("tmp_groco_")]:
        del sys.modules[module]
    registry.reload_plugins()
    assert "TmpTurn" not in group_names()


def run_python(arguments: list[str], site=None) -> subprocess.CompletedProcess:
    """`python ARGUMENTS` with the JAX backend (quickest import) and `site` on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROCO_")}
    env["KERAS_BACKEND"] = "jax"
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


def test_entry_point_plugin_loads_in_process(site):
    p4m = registry.get_group("P4M")
    turn = registry.get_group("tmpturn")
    assert (turn.name, turn.order, turn.description) == (
        "TmpTurn",
        2,
        "half turn, from a temporary distribution",
    )
    assert registry.group_plugin("TmpTurn") == "tmp"
    info = {plugin.name: plugin for plugin in registry.list_plugins()}["tmp"]
    assert (info.source, info.version, info.groups) == (
        "entry point of distribution 'tmp_groco_plugin'",
        "0.1",
        ["TmpTurn"],
    )
    assert registry.subgroups_of(p4m)["TmpTurn"] == element_indices(p4m, [IDENTITY, HALF_TURN])


def test_disable_autoload_keeps_only_builtin_plugins(site, monkeypatch):
    monkeypatch.setenv("GROCO_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry.reload_plugins()
    assert "TmpTurn" not in group_names()
    assert "P4M" in group_names()
    names = {plugin.name for plugin in registry.list_plugins()}
    assert "tmp" not in names and {"groco_core", "p4m"} <= names
    assert all(plugin.source.startswith("built-in") for plugin in registry.list_plugins())


def test_broken_plugins_are_skipped_with_a_warning(site):
    write_distribution(site, "tmp_groco_broken", IMPORT_ERROR_PLUGIN, "broken")
    write_distribution(site, "tmp_groco_open", NON_CLOSED_PLUGIN, "open")
    registry.reload_plugins()
    with pytest.warns(GrocoPluginWarning) as record:
        names = group_names()
    messages = [str(warning.message) for warning in record]
    assert len(messages) == 2
    assert any("'broken'" in m and "groco_dependency_that_is_not_installed" in m for m in messages)
    assert any("'open'" in m and "TmpOpen" in m and "not closed" in m for m in messages)
    assert {"TmpTurn", "P4M"} <= names and "TmpOpen" not in names
    # The plugin that imported is listed with what went wrong; the other is listed as skipped.
    plugins = {plugin.name: plugin for plugin in registry.list_plugins()}
    assert {"groco_core", "p4m", "tmp", "open"} <= set(plugins) and "broken" not in plugins
    assert plugins["open"].groups == [] and "not closed" in plugins["open"].problems[0]
    skipped = {plugin.name: plugin for plugin in registry.skipped_plugins()}
    assert "groco_dependency_that_is_not_installed" in skipped["broken"].reason


@pytest.mark.parametrize(
    "module, source, problem",
    [
        ("tmp_groco_broken", IMPORT_ERROR_PLUGIN, "No module named"),
        ("tmp_groco_open", NON_CLOSED_PLUGIN, "not closed under multiplication"),
    ],
)
def test_strict_mode_turns_a_broken_plugin_into_an_error(
    site, monkeypatch, module, source, problem
):
    write_distribution(site, module, source, "bad")
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()
    for _ in range(2):  # not only once: a later use must not quietly go without the plugin
        with pytest.raises(PluginError, match=f"plugin 'bad'.*{problem}"):
            registry.list_groups()


def test_entry_point_plugin_seen_by_the_cli_in_a_subprocess(site):
    result = run_python(["-m", "groco_core.cli", "list-groups", "--json"], site=site)
    records = {record["name"]: record for record in json.loads(result.stdout)}
    assert records["TmpTurn"] == {
        "name": "TmpTurn",
        "order": 2,
        "dimension": 2,
        "lattice": "square",
        "plugin": "tmp",
        # P2 has the same elements: an alias, not a proper subgroup.
        "subgroups": ["P1"],
    }
    assert "TmpTurn" in records["P4M"]["subgroups"]


def test_entry_point_group_used_by_a_layer_in_a_subprocess(site, tmp_path, rng):
    image = rng.normal(size=(1, 5, 5, 1)).astype("float32")
    turned = act(image, np.array(HALF_TURN), (1, 2))
    np.save(tmp_path / "images.npy", np.concatenate([image, turned]))
    script = textwrap.dedent(
        f"""
        import numpy as np
        from groco_core.layers.conv import GroupConv2D
        layer = GroupConv2D(2, 3, group="tmpturn")
        outputs = np.asarray(layer(np.load({str(tmp_path / "images.npy")!r})))
        np.save({str(tmp_path / "outputs.npy")!r}, outputs)
        print(layer.group.name)
        """
    )
    assert run_python(["-c", script], site=site).stdout.split() == ["TmpTurn"]
    outputs = np.load(tmp_path / "outputs.npy")
    assert outputs.shape == (2, 3, 3, 2, 2)
    group_matrices = np.array([IDENTITY, HALF_TURN])
    expected = act(outputs[:1], np.array(HALF_TURN), (1, 2), group_matrices, group_axis=3)
    np.testing.assert_allclose(outputs[1:], expected, atol=1e-5)
    assert np.abs(outputs[0]).max() > 1e-3


# -- layering -------------------------------------------------------------------------------


def core_imports() -> dict[str, set[str]]:
    """Each module of groco_core → the groco_core modules it imports, anywhere in its code
    (at the top, in a function, through `importlib.import_module("...")`).

    `from package import module` imports the module; the package itself, which Python
    imports first whatever the form, counts only for a name that is not a module.
    """
    package = pathlib.Path(registry.__file__).parent
    paths = {
        ".".join(("groco_core", *path.relative_to(package).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): path
        for path in package.rglob("*.py")
    }
    imports = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(paths)
                found |= submodules or {node.module}
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
        imports[name] = (found & set(paths)) - {name, "groco_core"}
    return imports


def test_no_two_core_modules_import_each_other():
    imports = core_imports()
    assert "groco_core.check" in imports["groco_core.testing"]  # the analysis sees imports
    assert [
        (a, b)
        for a, b in itertools.combinations(sorted(imports), 2)
        if b in imports[a] and a in imports[b]
    ] == []
    # Groups know nothing of the registry, the testing kit is built on the conformance kit.
    assert "groco_core.registry" not in imports["groco_core.groups"]
    assert "groco_core.testing" not in imports["groco_core.check"]
