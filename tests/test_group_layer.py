"""The `GroupLayer` protocol: every registered layer follows it, its groups are the ones its
tensors live on, and the registry refuses a plugin layer that does not follow it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import test_registry
from test_registry import write_distribution

from groco_core import GroupLayer, PointGroup, get_group, hookimpl, registry
from groco_core.check import elements_to_test
from groco_core.group_layer import REQUIRED_MEMBERS, missing_members
from groco_core.registry import GrocoPluginWarning, PluginError

site = test_registry.site  # the fixture: temporary distributions on sys.path

# One small layer of every built-in class, on a group and onto a subgroup where it takes one,
# with an input it takes (channels last): (keyword arguments, input shape, input group,
# output group); None for a group: the tensor has no group axis of the layer's group.
BUILT_IN = {
    "GroupConv1D": (dict(filters=2, kernel_size=3, group="LM", subgroup="L1"), (1, 7, 2, 3)),
    "GroupConv1DTranspose": (
        dict(filters=2, kernel_size=3, group="LM", subgroup="L1"),
        (1, 5, 1, 3),
    ),
    "GroupMaxPooling1D": (dict(group="LM", subgroup="L1"), (1, 6, 2, 3)),
    "GroupAveragePooling1D": (dict(group="LM"), (1, 6, 2, 3)),
    "GlobalGroupMaxPooling1D": (dict(group="LM"), (1, 5, 2, 3)),
    "GlobalGroupAveragePooling1D": (dict(), (1, 5, 2, 3)),
    "GroupConv2D": (dict(filters=2, kernel_size=3, group="P4M", subgroup="P4"), (1, 5, 5, 8, 2)),
    "GroupConv2DTranspose": (
        dict(filters=2, kernel_size=3, group="P4M", subgroup="P4"),
        (1, 3, 3, 4, 2),
    ),
    "GroupMaxPooling2D": (dict(group="P4M", subgroup="P4"), (1, 4, 4, 8, 2)),
    "GroupAveragePooling2D": (dict(group="P4M", subgroup="P4"), (1, 4, 4, 8, 2)),
    "GlobalGroupMaxPooling2D": (dict(group="P4M"), (1, 3, 3, 8, 2)),
    "GlobalGroupAveragePooling2D": (dict(group="P4M"), (1, 3, 3, 8, 2)),
    "GroupBatchNormalization": (dict(group="P4M"), (2, 3, 3, 8, 2)),
    "GroupDense": (dict(units=3, group="P4M", subgroup="P4"), (1, 8, 2)),
    "GroupReduce": (dict(group="P4M", subgroup="P4"), (1, 3, 3, 8, 2)),
    "DepthwiseGroupConv2D": (dict(kernel_size=3, group="P4M", subgroup="P4"), (1, 5, 5, 8, 2)),
    "SeparableGroupConv2D": (
        dict(filters=2, kernel_size=3, group="P4M", subgroup="P4"),
        (1, 5, 5, 8, 2),
    ),
    "GroupConv3D": (
        dict(filters=2, kernel_size=3, group="C4v", subgroup="C4"),
        (1, 3, 3, 3, 8, 1),
    ),
    "GroupConv3DTranspose": (
        dict(filters=2, kernel_size=3, group="C4v", subgroup="C4"),
        (1, 2, 2, 2, 4, 1),
    ),
    "GroupMaxPooling3D": (dict(group="C4v", subgroup="C4"), (1, 2, 2, 2, 8, 1)),
    "GroupAveragePooling3D": (dict(group="C4v"), (1, 2, 2, 2, 8, 1)),
    "GlobalGroupMaxPooling3D": (dict(group="C4v"), (1, 2, 2, 2, 8, 1)),
    "GlobalGroupAveragePooling3D": (dict(group="C4v"), (1, 2, 2, 2, 8, 1)),
    "DepthwiseGroupConv3D": (
        dict(kernel_size=3, group="C4v", subgroup="C4"),
        (1, 3, 3, 3, 8, 1),
    ),
    "SeparableGroupConv3D": (
        dict(filters=2, kernel_size=3, group="C4v", subgroup="C4"),
        (1, 3, 3, 3, 8, 1),
    ),
}
BUILT_IN_PLUGINS = (registry.CORE_PLUGIN_NAME, "separable")


def test_every_registered_layer_class_follows_the_protocol():
    layers = registry.list_layers()
    assert layers
    for layer_class in layers:
        assert missing_members(layer_class) == [], layer_class
        assert issubclass(layer_class, GroupLayer), layer_class
    built_in = {
        layer.__name__
        for layer in layers
        if registry.layer_plugin(layer.__name__) in BUILT_IN_PLUGINS
    }
    assert built_in == set(BUILT_IN), "give every built-in layer a row in BUILT_IN"


def test_what_is_not_a_group_layer():
    assert not isinstance(keras.layers.Dense(2), GroupLayer)
    assert missing_members(keras.layers.Dense) == [
        "group",
        "input_group",
        "output_group",
        "data_format",
    ]
    assert missing_members(object) == list(REQUIRED_MEMBERS)
    with pytest.raises(TypeError, match=r"checks a class.*Pass type\(layer\)"):
        missing_members(keras.layers.Dense(2))


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_instance_groups_are_those_its_tensors_live_on(name):
    kwargs, input_shape = BUILT_IN[name]
    layer = registry.get_layer(name)(**kwargs)
    assert isinstance(layer, GroupLayer)
    assert layer.data_format == "channels_last"
    for group in (layer.group, layer.input_group):
        assert group is None or isinstance(group, PointGroup)
    assert layer.input_group is not None or "group" not in kwargs
    y = layer(np.zeros(input_shape, "float32"))
    if layer.input_group is not None:
        assert input_shape[-2] == layer.input_group.order
    if layer.output_group is None:  # no group axis: an invariant output
        assert len(y.shape) == 2 and name.startswith("GlobalGroup")
    else:
        assert isinstance(layer.output_group, PointGroup)
        assert y.shape[-2] == layer.output_group.order
    config = layer.get_config()
    assert not any(isinstance(value, PointGroup) for value in config.values())
    assert config["group"] == kwargs.get("group")
    assert config.get("subgroup") in (None, kwargs.get("subgroup"))
    restored = type(layer).from_config(config)
    for attribute in ("group", "input_group", "output_group"):
        assert getattr(restored, attribute) == getattr(layer, attribute), attribute


@pytest.mark.parametrize(
    "name, kwargs, groups",
    [
        ("GroupConv2D", dict(filters=2, kernel_size=3, group="P4M", subgroup="P4"), "P4M P4"),
        ("GroupConv2D", dict(filters=2, kernel_size=3, group="P4M"), "P4M P4M"),
        (
            "GroupConv2DTranspose",
            dict(filters=2, kernel_size=3, group="P4M", subgroup="P4"),
            "P4 P4M",
        ),
        ("GroupReduce", dict(group="P4M", subgroup="P4"), "P4M P4"),
        ("GroupMaxPooling2D", dict(group="P4M", subgroup="P2MM"), "P4M P2MM"),
        ("GroupDense", dict(units=2, group="P4M", subgroup="P4"), "P4M P4"),
        (
            "SeparableGroupConv2D",
            dict(filters=2, kernel_size=3, group="P4M", subgroup="P4"),
            "P4M P4",
        ),
        ("GroupBatchNormalization", dict(group="P4M"), "P4M P4M"),
        ("GroupBatchNormalization", dict(), "None None"),
        ("GlobalGroupMaxPooling2D", dict(group="P4M"), "P4M None"),
        ("GlobalGroupAveragePooling2D", dict(), "None None"),
    ],
)
def test_input_and_output_groups(name, kwargs, groups):
    layer = registry.get_layer(name)(**kwargs)
    names = [getattr(group, "name", "None") for group in (layer.input_group, layer.output_group)]
    assert " ".join(names) == groups


def test_data_format():
    conv = registry.get_layer("GroupConv2D")
    assert conv(2, 3, group="P4", data_format="channels_first").data_format == "channels_first"
    batch_norm = registry.get_layer("GroupBatchNormalization")
    assert batch_norm(axis=1).data_format == "channels_first"
    assert batch_norm(axis=-1).data_format == "channels_last"
    built = batch_norm(axis=-4)  # axis 1 of a rank-5 input: known once built on one
    built(np.zeros((2, 3, 5, 5, 4), "float32"))
    assert built.data_format == "channels_first"


def test_get_config_stores_a_group_object_by_name():
    p4m = get_group("P4M")
    config = registry.get_layer("GroupConv2D")(
        2, 3, group=p4m, subgroup=get_group("P4")
    ).get_config()
    assert (config["group"], config["subgroup"]) == ("P4M", "P4")


@pytest.mark.parametrize("group", ["P4", "C4"])
def test_equivariance_cases_where_present(group):
    group = get_group(group)
    classes = [c for c in registry.list_layers() if hasattr(c, "equivariance_cases")]
    assert {c.__name__ for c in classes} >= {"DepthwiseGroupConv2D", "SeparableGroupConv3D"}
    ran = 0
    for layer_class in classes:
        for case in layer_class.equivariance_cases(group):
            assert isinstance(case.layer, GroupLayer), case.label
            error = case.max_error(group, elements=elements_to_test(group, quick=True))
            assert error <= case.tolerance, (layer_class.__name__, case.label, error)
            ran += 1
    assert ran >= 4


# -- the registry refuses a layer that does not follow it ----------------------------------


class Halver(keras.layers.Layer):
    """Sets its group in the constructor but declares nothing: not a GroupLayer."""

    def __init__(self, group=None, **kwargs):
        super().__init__(**kwargs)
        self.group = group

    def call(self, x):
        return 0.5 * x


class HalfDeclared(keras.layers.Layer):
    group: PointGroup | None
    data_format = "channels_last"

    @property
    def input_group(self):
        return self.group


class AnyGroup(keras.layers.Layer):
    """Follows the protocol without the mixin: a pointwise layer on any group."""

    group = input_group = output_group = None
    data_format = "channels_last"

    def call(self, x):
        return -x


class LayerPlugin:
    def __init__(self, *layers):
        self.layers = layers

    @hookimpl
    def groco_register_layers(self, register):
        for layer in self.layers:
            register(layer)


def test_missing_members_names_each_member():
    assert missing_members(Halver) == ["group", "input_group", "output_group", "data_format"]
    assert missing_members(HalfDeclared) == ["output_group"]
    assert missing_members(AnyGroup) == [] and isinstance(AnyGroup(), GroupLayer)


@pytest.mark.parametrize("strict", ["0", "1"])
def test_registering_a_layer_that_does_not_follow_it_is_refused(
    register_plugin, monkeypatch, strict
):
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", strict)  # a plugin registered in code: an error
    with pytest.raises(PluginError) as error:
        register_plugin(LayerPlugin(AnyGroup, HalfDeclared), name="half_declared")
    assert str(error.value) == (
        "plugin 'half_declared' registered the layer 'HalfDeclared', which does not follow the "
        "groco_core.GroupLayer protocol: it lacks output_group. Define each on the class (a "
        "property, a method, a class attribute) or declare it with an annotation when the "
        "constructor sets it (`group: PointGroup | None`); with "
        "groco_core.layers.serialization.RegisteredGroupsMixin first among the bases, only "
        "`self.group` is left to set."
    )
    # Nothing changed: not registered, not made Keras-serializable, the plugin not listed.
    assert "half_declared" not in {plugin.name for plugin in registry.list_plugins()}
    with pytest.raises(ValueError, match="Unknown layer 'AnyGroup'"):
        registry.get_layer("AnyGroup")
    assert keras.saving.get_registered_object("test_group_layer>HalfDeclared") is None
    register_plugin(LayerPlugin(AnyGroup), name="any_group")
    assert registry.get_layer("AnyGroup") is AnyGroup


NON_CONFORMING_PLUGIN = """
from groco_core import hookimpl


@hookimpl
def groco_register_layers(register):
    import keras

    class TmpHalver(keras.layers.Layer):
        def __init__(self, group=None, **kwargs):
            super().__init__(**kwargs)
            self.group = group

    class TmpNegate(keras.layers.Layer):
        group = input_group = output_group = None
        data_format = "channels_last"

    register(TmpHalver)
    register(TmpNegate)
"""


def test_entry_point_layer_that_does_not_follow_it_is_skipped_with_a_warning(site):
    write_distribution(site, "tmp_groco_halver", NON_CONFORMING_PLUGIN, "halver")
    registry.reload_plugins()
    with pytest.warns(GrocoPluginWarning) as record:
        names = [layer.__name__ for layer in registry.list_layers()]
    (message,) = [str(warning.message) for warning in record]
    assert message.startswith(
        "groco plugin 'halver' (entry point of distribution 'tmp_groco_halver'): plugin 'halver' "
        "registered the layer 'TmpHalver', which does not follow the groco_core.GroupLayer "
        "protocol: it lacks group, input_group, output_group, data_format. "
    )
    assert "TmpNegate" in names and "TmpHalver" not in names and "GroupConv2D" in names
    info = {plugin.name: plugin for plugin in registry.list_plugins()}["halver"]
    assert info.layers == ["TmpNegate"] and "TmpHalver" in info.problems[0]


def test_strict_mode_turns_it_into_an_error(site, monkeypatch):
    write_distribution(site, "tmp_groco_halver", NON_CONFORMING_PLUGIN, "halver")
    monkeypatch.setenv("GROCO_STRICT_PLUGINS", "1")
    registry.reload_plugins()
    for _ in range(2):  # not only once: a later use must not quietly go without the plugin
        with pytest.raises(
            PluginError, match=r"plugin 'halver'.*'TmpHalver'.*lacks group, input_group"
        ):
            registry.list_layers()
