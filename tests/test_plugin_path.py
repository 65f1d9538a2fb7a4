"""No silent failure on the plugin path: each mistake a plugin author makes gets a message.

Installed plugins are temporary distributions on `sys.path` (see `test_registry.site`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import test_registry
from test_registry import GroupsPlugin, group_names, write_distribution

from groco_core import registry
from groco_core.cli import main
from groco_core.groups import MatrixGroup
from groco_core.hookspecs import hookimpl
from groco_core.registry import GrocoPluginWarning, PluginError
from groco_core.testing import registered_plugin

site = test_registry.site  # the fixture: temporary distributions on sys.path

IDENTITY = [[1, 0], [0, 1]]
HALF_TURN = [[-1, 0], [0, -1]]
QUARTER_TURN = [[0, -1], [1, 0]]

MISSPELLED_HOOK = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_group(register):
    register(MatrixGroup("TmpMisspelled", [[[1, 0], [0, 1]]]))
"""

UNMARKED_HOOK = """
from groco_core import MatrixGroup


def groco_register_groups(register):
    register(MatrixGroup("TmpUnmarked", [[[1, 0], [0, 1]]]))
"""

RETURNING_HOOK = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("TmpKept", [[[1, 0], [0, 1]]]))
    return [MatrixGroup("TmpReturned", [[[1, 0], [0, 1]]])]
"""

CLASS_PLUGIN = """
from groco_core import MatrixGroup, hookimpl


class Plugin:
    @hookimpl
    def groco_register_groups(self, register):
        register(MatrixGroup("TmpFromClass", [[[1, 0], [0, 1]]]))
"""


def clash_plugin(unique: str) -> str:
    return f"""
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("TmpClash", [[[1, 0], [0, 1]], [[-1, 0], [0, -1]]]))
    register(MatrixGroup("P4m", [[[1, 0], [0, 1]]]))
    register(MatrixGroup({unique!r}, [[[1, 0], [0, 1]], [[1, 0], [0, -1]]]))
"""


def warnings_of(action) -> list[str]:
    with pytest.warns(GrocoPluginWarning) as record:
        action()
    return [str(warning.message) for warning in record]


def skipped() -> dict[str, registry.SkippedPlugin]:
    return {plugin.name: plugin for plugin in registry.skipped_plugins()}


def plugins() -> dict[str, registry.PluginInfo]:
    return {plugin.name: plugin for plugin in registry.list_plugins()}


# -- hooks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, source, message",
    [
        (
            "tmp_groco_misspelled",
            MISSPELLED_HOOK,
            r"unknown hook\(s\) groco_register_group: .*\(Closest match: 'groco_register_groups'\)",
        ),
        (
            "tmp_groco_unmarked",
            UNMARKED_HOOK,
            r"groco_register_groups not marked with @groco_core.hookimpl",
        ),
    ],
)
def test_plugin_without_a_known_hook_is_skipped_with_the_reason(
    site, monkeypatch, module, source, message
):
    write_distribution(site, module, source, "bad")
    registry.reload_plugins()
    messages = warnings_of(group_names)
    assert any("plugin 'bad'" in m and "was skipped" in m for m in messages)
    assert "bad" not in plugins()
    assert "no hook implementations" in skipped()["bad"].reason
    assert __import__("re").search(message, skipped()["bad"].reason)
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()
    with pytest.raises(PluginError, match=f"plugin 'bad'.*{message}"):
        registry.list_groups()


def test_hook_returning_values_is_warned_about_and_its_value_ignored(site, monkeypatch):
    write_distribution(site, "tmp_groco_returning", RETURNING_HOOK, "returning")
    registry.reload_plugins()
    messages = warnings_of(group_names)
    assert any(
        "plugin 'returning'" in m
        and "returned [<MatrixGroup TmpReturned" in m
        and "instead of calling register(group)" in m
        for m in messages
    )
    assert "TmpKept" in group_names() and "TmpReturned" not in group_names()
    assert plugins()["returning"].groups == ["TmpKept"]
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()
    with pytest.raises(PluginError, match="plugin 'returning'.*returned"):
        registry.list_groups()


def test_entry_point_group_typo_and_class_entry_point_are_reported(site):
    info = site / "tmp_groco_typo-0.1.dist-info"
    (site / "tmp_groco_typo.py").write_text(RETURNING_HOOK)
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmp_groco_typo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[grocco]\ntypo = tmp_groco_typo\n")
    write_distribution(site, "tmp_groco_class", CLASS_PLUGIN, "classy")
    text = (site / "tmp_groco_class-0.1.dist-info" / "entry_points.txt").read_text()
    (site / "tmp_groco_class-0.1.dist-info" / "entry_points.txt").write_text(
        text.replace("= tmp_groco_class", "= tmp_groco_class:Plugin")
    )
    registry.reload_plugins()
    messages = warnings_of(group_names)
    assert len(messages) == 2
    reasons = skipped()
    assert "entry-point group 'grocco', which GroCo does not read" in reasons["typo"].reason
    assert "must be exactly 'groco'" in reasons["typo"].reason
    assert "names the class 'tmp_groco_class:Plugin'; name a module" in reasons["classy"].reason
    assert "or an instance" in reasons["classy"].reason
    assert "TmpKept" not in group_names() and "TmpFromClass" not in group_names()

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["list-plugins"]) == 0
    listing = output.getvalue()
    assert "Skipped plugins (not loaded):" in listing
    assert "typo (entry point of distribution 'tmp_groco_typo' in group 'grocco'" in listing
    assert "classy (entry point of distribution 'tmp_groco_class'" in listing


def test_register_plugin_refuses_a_class():
    class Plugin:
        @hookimpl
        def groco_register_groups(self, register):
            register(MatrixGroup("Never", [IDENTITY]))

    with pytest.raises(PluginError, match="is the class Plugin; register an instance"):
        registry.register_plugin(Plugin, name="classy")
    assert "classy" not in plugins()


def test_hook_arguments_are_checked_by_pluggy_and_the_plugin_refused():
    class WrongArgument:
        @hookimpl
        def groco_register_groups(self, registry):
            registry(MatrixGroup("Never", [IDENTITY]))

    with pytest.raises(
        PluginError,
        match=r"plugin 'wrong': pluggy refused its hooks \(.*\{'registry'\}.*\); each of GroCo's "
        r"hooks, groco_register_groups and groco_register_layers, takes one argument, `register`",
    ):
        registry.register_plugin(WrongArgument(), name="wrong")

    @dataclasses.dataclass
    class Unhashable:
        @hookimpl
        def groco_register_groups(self, register):
            register(MatrixGroup("Never", [IDENTITY]))

    with pytest.raises(PluginError, match=r"plugin 'data': .*not hashable.*eq=False"):
        registry.register_plugin(Unhashable(), name="data")
    assert not {"wrong", "data"} & set(plugins())
    assert "Never" not in group_names()


# -- clashes ------------------------------------------------------------------------------


@pytest.mark.parametrize("first, second", [("aaa", "zzz"), ("zzz", "aaa")])
def test_clash_skips_only_the_offending_objects_whatever_the_order(site, first, second):
    # Two third-party plugins claim TmpClash and the built-in P4M: only those are skipped.
    write_distribution(site, "tmp_groco_one", clash_plugin("TmpOne"), first)
    write_distribution(site, "tmp_groco_two", clash_plugin("TmpTwo"), second)
    registry.reload_plugins()
    messages = warnings_of(group_names)
    names = group_names()
    assert {"TmpOne", "TmpTwo", "TmpTurn"} <= names and "TmpClash" not in names
    assert registry.get_group("P4M").order == 8 and registry.group_plugin("P4M") == "p4m"
    for plugin in (first, second):
        problems = plugins()[plugin].problems
        assert any(
            "plugins 'aaa' and 'zzz' all register 'TmpClash'; none of them is used" in p
            for p in problems
        ), problems
        assert any(
            "'aaa', 'p4m' and 'zzz' all register 'P4m'; the built-in plugin 'p4m' keeps it" in p
            for p in problems
        ), problems
    assert len(messages) == 4
    assert plugins()["aaa"].groups == ["TmpOne" if first == "aaa" else "TmpTwo"]


def test_every_listing_agrees_whichever_is_asked_first(site):
    write_distribution(
        site,
        "tmp_groco_half",
        """
import keras
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    raise RuntimeError("groups hook broken")


@hookimpl
def groco_register_layers(register):
    @keras.saving.register_keras_serializable(package="tmp_groco_half")
    class TmpHalfLayer(keras.layers.Layer):
        group = input_group = output_group = None  # any group (groco_core.GroupLayer)
        data_format = "channels_last"

    register(TmpHalfLayer)
""",
        "half",
    )
    registry.reload_plugins()
    before = registry.get_layer("TmpHalfLayer")  # only the layers hook has run: no warning
    with pytest.warns(GrocoPluginWarning, match="plugin 'half'.*groups hook broken"):
        registry.list_groups()
    assert registry.get_layer("TmpHalfLayer") is before
    assert "TmpHalfLayer" in [layer.__name__ for layer in registry.list_layers()]
    assert plugins()["half"].layers == ["TmpHalfLayer"] and plugins()["half"].groups == []


# -- the fixture ----------------------------------------------------------------------------


def test_fixture_re_registers_an_installed_plugin_and_restores_it(site):
    assert registry.group_plugin("TmpTurn") == "tmp"
    module = sys.modules["tmp_groco_plugin"]
    with pytest.raises(PluginError, match="already registered as 'tmp'.*registered_plugin"):
        registry.register_plugin(module, name="again")
    with registered_plugin(module, name="again") as name:
        assert name == "again" and registry.group_plugin("TmpTurn") == "again"
        assert "tmp" not in plugins()
    assert registry.group_plugin("TmpTurn") == "tmp"


# -- saving and loading -------------------------------------------------------------------


def run(script: str, site_dir=None, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROCO_")}
    env["KERAS_BACKEND"] = "jax"  # the quickest to import; .keras files are backend-neutral
    env.update(env_extra)
    if site_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site_dir), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


PLAIN_LAYER_PLUGIN = """
from groco_core import hookimpl


@hookimpl
def groco_register_layers(register):
    from tmp_groco_layers.layer import TmpScale

    register(TmpScale)
"""

PLAIN_LAYER = """
import keras


class TmpScale(keras.layers.Layer):
    group = input_group = output_group = None  # any group (groco_core.GroupLayer)
    data_format = "channels_last"

    def call(self, x):
        return 2.0 * x
"""


def test_plugin_layer_made_serializable_loads_after_bare_import(site, tmp_path):
    # One subprocess checks two things that need a fresh interpreter: loading a model after
    # a bare `import groco_core`, and the warning about a plugin that imports Keras.
    package = site / "tmp_groco_layers"
    package.mkdir()
    (package / "__init__.py").write_text(PLAIN_LAYER_PLUGIN)
    (package / "layer.py").write_text(PLAIN_LAYER)
    info = site / "tmp_groco_layers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmp_groco_layers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[groco]\nscale = tmp_groco_layers\n")
    write_distribution(site, "tmp_groco_heavy", "import keras\n" + HEAVY_PLUGIN, "heavy")
    import keras

    from groco_core import GroupConv2D

    registry.reload_plugins()
    scale = registry.get_layer("TmpScale")
    assert keras.saving.get_registered_name(scale) == "tmp_groco_layers>TmpScale"
    inputs = keras.Input((5, 5, 1))
    outputs = scale()(GroupConv2D(2, 3, group="P4")(inputs))
    path = tmp_path / "model.keras"
    keras.Model(inputs, outputs).save(path)
    loaded = run(
        f"""
        import sys
        import groco_core
        from groco_core.cli import main
        assert "keras" not in sys.modules
        main(["list-groups"])
        model = groco_core.load_model({str(path)!r})
        print(sorted(type(layer).__name__ for layer in model.layers))
        """,
        site,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines()[-1] == "['GroupConv2D', 'InputLayer', 'TmpScale']"
    assert "TmpHeavy" in loaded.stdout
    assert "groco: warning: groco plugin 'heavy'" in loaded.stderr
    assert "importing it imported Keras" in loaded.stderr


def test_unknown_group_on_loading_names_the_plugin_it_came_from(tmp_path):
    import keras

    from groco_core import GroupConv2D, load_model

    plugin = GroupsPlugin(
        ("RectMM", [IDENTITY, [[-1, 0], [0, 1]], [[1, 0], [0, -1]], HALF_TURN], "rect")
    )
    path = str(tmp_path / "rect.keras")
    with registered_plugin(plugin, name="rect"):
        inputs = keras.Input((5, 5, 1))
        model = keras.Model(inputs, GroupConv2D(2, 3, group="RectMM")(inputs))
        assert model.layers[1].get_config()["group_plugins"] == {"RectMM": "plugin 'rect'"}
        model.save(path)
        assert load_model(path).layers[1].group.name == "RectMM"
    with pytest.raises(ValueError, match="Unknown group 'RectMM'") as error:
        load_model(path)
    message = str(error.value)
    assert "a plugin must provide every group" in message
    assert "The model was saved with RectMM from plugin 'rect'; install that plugin" in message


HEAVY_PLUGIN = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("TmpHeavy", [[[1, 0], [0, 1]]]))
"""


def test_show_names_an_alias_as_an_alias(register_plugin):
    register_plugin(
        GroupsPlugin(("Turns", [IDENTITY, QUARTER_TURN, HALF_TURN, [[0, 1], [-1, 0]]], "square"))
    )
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["show", "Turns"]) == 0
    text = output.getvalue()
    assert "aliases (same elements, another name): P4" in text
    cosets = text.split("Left cosets")[1]
    assert "P4 " not in cosets and "P2 " in cosets
    assert np.array_equal(registry.get_group("Turns").matrices, registry.get_group("P4").matrices)


def test_group_on_another_lattice_without_a_support_mask_gets_a_clear_message(register_plugin):
    turn_60 = [[0, -1], [1, 1]]  # axial coordinates: not a signed permutation
    turns = [np.linalg.matrix_power(np.array(turn_60), k).tolist() for k in range(6)]
    register_plugin(GroupsPlugin(("NoMask6", turns, "axial")), name="no_mask")
    from groco_core import GroupConv2D

    with pytest.raises(
        ValueError,
        match=r"Group NoMask6 \(axial lattice\) has matrices that are not signed permutations.*"
        r"must override kernel_support_mask.*docs/plugins.md.*Received: kernel_size=\(3, 3\)",
    ):
        GroupConv2D(2, 3, group="NoMask6")
