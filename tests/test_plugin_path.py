"""No silent failure on the plugin path: each mistake a plugin author makes gets a message.

Installed plugins are temporary distributions on `sys.path` (see `test_registry.site`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
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


def test_hook_arguments_are_checked_and_the_plugin_refused():
    class WrongArgument:
        @hookimpl
        def groco_register_groups(self, registry):
            registry(MatrixGroup("Never", [IDENTITY]))

    with pytest.raises(PluginError) as error:
        registry.register_plugin(WrongArgument(), name="wrong")
    assert str(error.value) == (
        "plugin 'wrong': its hook groco_register_groups takes the parameter(s) 'registry', but "
        "GroCo calls each of its hooks (groco_register_groups and groco_register_layers) with "
        "the one parameter 'register'; write def groco_register_groups(self, register). "
        "Received: def groco_register_groups(self, registry)"
    )

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


# -- issue 34: the plugin path, tried again -------------------------------------------------


class ImpostorPlugin:
    """Registers a layer class named like a built-in one (`GroupConv2D`)."""

    def __init__(self, class_name: str = "GroupConv2D") -> None:
        self.class_name = class_name

    @hookimpl
    def groco_register_layers(self, register):
        import keras

        attributes = {
            "group": None,
            "input_group": None,
            "output_group": None,
            "data_format": "channels_last",
        }
        register(type(self.class_name, (keras.layers.Layer,), attributes))


@pytest.mark.parametrize("strict", [False, True])
def test_direct_plugin_cannot_take_a_builtin_layer_name(monkeypatch, strict):
    import keras

    import groco_core

    if strict:
        monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()  # the layers hooks have not run yet: the case that went wrong
    with pytest.raises(PluginError) as error, registered_plugin(ImpostorPlugin(), "impostor"):
        pass
    assert str(error.value) == (
        "layer name clash: plugin 'impostor' registers 'GroupConv2D', but plugin 'groco_core' "
        "already registers 'GroupConv2D'; 'impostor''s was skipped, nothing was overwritten. "
        "Rename one of them (names are case-insensitive)."
    )
    # The registry is as it was: the built-in keeps its name, nothing is blamed on the core,
    # and the refused class was not registered with Keras either.
    assert registry.get_layer("GroupConv2D") is groco_core.GroupConv2D
    assert registry.layer_plugin("GroupConv2D") == "groco_core"
    assert "impostor" not in plugins() and plugins()["groco_core"].problems == []
    assert keras.saving.get_registered_object("types>GroupConv2D") is None
    # Names are case-insensitive: a class spelled `groupconv2d` clashes too.
    with pytest.raises(PluginError, match="registers 'groupconv2d', but plugin 'groco_core'"):
        registry.register_plugin(ImpostorPlugin("groupconv2d"), name="lower")
    assert registry.get_layer("GroupConv2D") is groco_core.GroupConv2D


def test_layer_names_are_case_insensitive():
    import groco_core

    assert registry.get_layer("groupconv2d") is groco_core.GroupConv2D
    assert registry.get_layer("GROUPCONV2D") is groco_core.GroupConv2D
    assert registry.layer_plugin("groupConv2d") == "groco_core"
    blur = registry.get_layer("groupblurpool2d")  # examples/groco-srf, through its entry point
    assert blur.__name__ == "GroupBlurPool2D" and registry.layer_plugin("GROUPBLURPOOL2D") == "srf"
    # Outputs keep the canonical spelling.
    assert "GroupConv2D" in plugins()["groco_core"].layers
    assert "GroupConv2D" in [layer.__name__ for layer in registry.list_layers()]
    with pytest.raises(
        ValueError, match=r"Unknown layer 'groupconv2e'.*Closest match: 'GroupConv2D'"
    ):
        registry.get_layer("groupconv2e")


def clash_distribution(unique: str) -> str:
    """A plugin registering the group `RectMM` and the layer `TmpWideBlur`, which another
    copy of it also registers, and one group of its own."""
    return f"""
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("RectMM", [[[1, 0], [0, 1]], [[-1, 0], [0, -1]]], lattice="rect"))
    register(MatrixGroup({unique!r}, [[[1, 0], [0, 1]]], lattice="rect"))


@hookimpl
def groco_register_layers(register):
    import keras

    @keras.saving.register_keras_serializable(package={unique!r})
    class TmpWideBlur(keras.layers.Layer):
        group = input_group = output_group = None
        data_format = "channels_last"

    register(TmpWideBlur)
"""


WITHHELD_GROUP = (
    "The group 'RectMM' is withheld: plugins 'rect_a' and 'rect_b' all register it, so none "
    "of them gets it (a plugin's load order must not decide). To keep one, disable the others "
    "(GROCO_DISABLE_PLUGINS=rect_b or `groco --disable-plugin rect_b`), or rename it in all "
    "but one. Received: group="
)


def test_name_withheld_by_a_clash_says_so_and_the_off_switch_resolves_it(site, monkeypatch):
    write_distribution(site, "tmp_groco_rect_a", clash_distribution("TmpRectA"), "rect_a")
    write_distribution(site, "tmp_groco_rect_b", clash_distribution("TmpRectB"), "rect_b")
    registry.reload_plugins()
    with pytest.warns(GrocoPluginWarning, match="'rect_a' and 'rect_b' all register 'RectMM'"):
        registry.list_groups()
    with pytest.raises(ValueError) as error:
        registry.get_group("rectmm")
    assert str(error.value) == WITHHELD_GROUP + "'rectmm'"
    with pytest.warns(GrocoPluginWarning, match="all register 'TmpWideBlur'"):
        registry.list_layers()
    with pytest.raises(
        ValueError,
        match=r"The layer 'TmpWideBlur' is withheld: plugins 'rect_a' "
        r"and 'rect_b' all register it.*Received: layer='tmpwideblur'",
    ):
        registry.get_layer("tmpwideblur")

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        assert main(["show", "RectMM"]) == 2
    assert errors.getvalue() == f"groco: error: {WITHHELD_GROUP}'RectMM'\n"
    assert "RectMh" not in errors.getvalue()

    # The off switch, as an option: rect_b is not loaded, so rect_a's RectMM is found.
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["--disable-plugin", "rect_b", "show", "RectMM", "--json"]) == 0
    assert json.loads(output.getvalue())["plugin"] == "rect_a"
    # main restored the registry it found, clash included.
    assert len(warnings_of(lambda: plugins()["rect_b"])) == 4
    # ... and from the environment, where the disabled plugin is listed as disabled.
    del sys.modules["tmp_groco_rect_a"]
    monkeypatch.setenv("GROCO_DISABLE_PLUGINS", "rect_a")
    registry.reload_plugins()
    assert registry.group_plugin("RectMM") == "rect_b"
    assert registry.layer_plugin("TmpWideBlur") == "rect_b"
    assert "rect_a" not in plugins() and "TmpRectA" not in group_names()
    assert [(p.name, p.reason, p.version) for p in registry.disabled_plugins()] == [
        ("rect_a", "disabled by GROCO_DISABLE_PLUGINS", "0.1")
    ]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["list-plugins"]) == 0
    rows = [line.split() for line in output.getvalue().splitlines()]
    assert ["rect_a", "entry", "point", "of", "0.1", "disabled", "-", "-"] in rows
    assert "tmp_groco_rect_a" not in sys.modules  # never imported


def test_disabling_an_unknown_plugin_or_the_core_is_not_a_silent_no_op(site, monkeypatch):
    unknown = (
        "GROCO_DISABLE_PLUGINS: no installed plugin is named 'tnp', so disabling it does "
        "nothing; installed plugins: "
    )
    monkeypatch.setenv("GROCO_DISABLE_PLUGINS", "tnp")
    registry.reload_plugins()
    with pytest.warns(GrocoPluginWarning) as record:
        assert "TmpTurn" in group_names()
    (message,) = [str(warning.message) for warning in record]
    assert message.startswith(unknown)
    assert message.endswith("Closest match: 'tmp'. Received: GROCO_DISABLE_PLUGINS=tnp")
    installed = message[len(unknown) :].split(".")[0].split(", ")
    assert {"p4m", "oh", "separable", "tmp"} <= set(installed)
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()
    with pytest.raises(PluginError, match=unknown):
        registry.list_groups()
    monkeypatch.delenv("GROCO_STRICT_PLUGINS")
    monkeypatch.setenv("GROCO_DISABLE_PLUGINS", "p4m, groco_core")
    registry.reload_plugins()
    with pytest.raises(
        PluginError,
        match="'groco_core', GroCo's own layers, which every layer "
        "plugin builds on, cannot be disabled",
    ):
        registry.list_groups()
    # A built-in plugin can be disabled.
    monkeypatch.setenv("GROCO_DISABLE_PLUGINS", "p4m")
    registry.reload_plugins()
    assert "P4M" not in group_names() and "TmpTurn" in group_names()
    monkeypatch.delenv("GROCO_DISABLE_PLUGINS")

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert main(["--disable-plugin", "tnp", "list-groups"]) == 2
    assert errors.getvalue().startswith(
        "groco: error: --disable-plugin: no installed plugin is named 'tnp', so disabling it "
        "does nothing; installed plugins: "
    )
    assert errors.getvalue().endswith("Closest match: 'tmp'. Received: --disable-plugin tnp\n")


HOOK_FUNCTION_ENTRY_POINT = (
    "groco plugin 'fn' (entry point of distribution 'tmp_groco_fn', "
    "tmp_groco_fn:groco_register_groups) was skipped: the entry point names the function "
    "'tmp_groco_fn:groco_register_groups', not a plugin: a plugin is the module (or an object) "
    "whose attributes are the hooks. Name the module that defines groco_register_groups, "
    "'tmp_groco_fn' (in pyproject.toml: `NAME = \"tmp_groco_fn\"`), or an object with the "
    "hooks as attributes"
)


def test_entry_point_naming_the_hook_function_says_to_name_the_module(site):
    write_distribution(
        site, "tmp_groco_fn", RETURNING_HOOK.replace("    return [", "    [", 1), "fn"
    )
    entry_points = site / "tmp_groco_fn-0.1.dist-info" / "entry_points.txt"
    entry_points.write_text("[groco]\nfn = tmp_groco_fn:groco_register_groups\n")
    registry.reload_plugins()
    assert warnings_of(group_names) == [HOOK_FUNCTION_ENTRY_POINT]
    assert "no hook implementations" not in skipped()["fn"].reason
    with pytest.raises(PluginError, match="plugin 'hook': it is the function"):
        registry.register_plugin(sys.modules["tmp_groco_fn"].groco_register_groups, name="hook")


LAYERS_HOOK_BROKEN = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("TmpHalfFine", [[[1, 0], [0, 1]]]))


@hookimpl
def groco_register_layers(register):
    raise RuntimeError("layers hook broken")
"""


def test_strict_list_groups_loads_and_judges_the_layers_hook_too(site, monkeypatch):
    write_distribution(site, "tmp_groco_halffine", LAYERS_HOOK_BROKEN, "halffine")
    registry.reload_plugins()
    output, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
        assert main(["list-groups"]) == 0  # not strict: the layers are not even loaded
    assert "TmpHalfFine" in output.getvalue() and errors.getvalue() == ""
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()
    output, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
        assert main(["list-groups"]) == 1
    assert output.getvalue() == ""
    assert errors.getvalue() == (
        "groco: error: groco plugin 'halffine' (entry point of distribution "
        "'tmp_groco_halffine'): groco_register_layers raised layers hook broken\n"
    )


MIXED_HOOKS = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(register):
    register(MatrixGroup("TmpMixed", [[[1, 0], [0, 1]]]))


@hookimpl
def groco_register_layer(register):
    pass
"""

MISNAMED_PARAMETER = """
from groco_core import MatrixGroup, hookimpl


@hookimpl
def groco_register_groups(reg):
    reg(MatrixGroup("TmpNever", [[[1, 0], [0, 1]]]))
"""


def test_unknown_hook_next_to_a_valid_one_is_named_once_in_strict_mode(site, monkeypatch):
    write_distribution(site, "tmp_groco_mixed", MIXED_HOOKS, "mixed")
    unknown = (
        "unknown hook(s) groco_register_layer: GroCo's hooks are groco_register_groups and "
        "groco_register_layers (Closest match: 'groco_register_layers')"
    )
    registry.reload_plugins()
    assert warnings_of(group_names) == [
        f"groco plugin 'mixed' (entry point of distribution 'tmp_groco_mixed'): {unknown}"
    ]
    assert "TmpMixed" in group_names()  # the valid hook still counts
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()
    with pytest.raises(PluginError) as error:
        registry.list_groups()
    assert str(error.value) == (
        "groco plugin 'mixed' (entry point of distribution 'tmp_groco_mixed', tmp_groco_mixed) "
        f"was skipped: {unknown}"
    )


def test_misnamed_hook_parameter_gets_the_expected_name(site):
    write_distribution(site, "tmp_groco_param", MISNAMED_PARAMETER, "param")
    registry.reload_plugins()
    assert warnings_of(group_names) == [
        "groco plugin 'param' (entry point of distribution 'tmp_groco_param', tmp_groco_param) "
        "was skipped: its hook groco_register_groups takes the parameter(s) 'reg', but GroCo "
        "calls each of its hooks (groco_register_groups and groco_register_layers) with the one "
        "parameter 'register'; write def groco_register_groups(register). Received: "
        "def groco_register_groups(reg)"
    ]
    assert "declared in the hookimpl" not in skipped()["param"].reason

    class NoParameter:
        @hookimpl
        def groco_register_layers(self):
            pass

    with pytest.raises(PluginError) as error:
        registry.register_plugin(NoParameter(), name="bare")
    assert str(error.value) == (
        "plugin 'bare': its hook groco_register_layers takes nothing, but GroCo calls each of "
        "its hooks (groco_register_groups and groco_register_layers) with the one parameter "
        "'register'; write def groco_register_layers(self, register). Received: "
        "def groco_register_layers(self)"
    )
