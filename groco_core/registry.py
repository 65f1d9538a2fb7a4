"""The plugin registry: groups and layers provided by plugins, found by name.

Plugins are loaded lazily, on the first use of the registry, never at import time. Entry
points of the `groco` group are loaded one by one: one that fails to import or registers
something invalid is skipped with a `GrocoPluginWarning` naming it, and the rest still load
(see `groco_core.plugin_loading`).

Environment switches:
    GROCO_STRICT_PLUGINS=1: a failing plugin raises `PluginError` instead of warning, and
        every hook (the layers' too) runs on the first registry use.
    GROCO_DISABLE_PLUGINS=name1,name2: these plugins' entry points are not loaded (a name
        no installed plugin has is warned about; the core, `groco_core`, cannot be disabled).
    GROCO_DISABLE_PLUGIN_AUTOLOAD=1: only the built-in plugins (those of the `groco`
        distribution itself) are loaded from entry points.

Subgroups are the registry's business, not a group's: `subgroups_of(group)` finds them
among the registered groups, and `get_group(name, subgroup_of=group)` looks one up by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from groco_core.closest_match import closest_match_note, extending
from groco_core.groups import PointGroup
from groco_core.plugin_loading import (
    CORE_PLUGIN_NAME,
    DISABLE_VARIABLE,
    ENTRY_POINT_GROUP,
    PHASES,
    GrocoPluginWarning,
    PluginError,
    PluginInfo,
    PluginRegistry,
    SkippedPlugin,
    disable_problem,
    entry_point_names,
)

__all__ = [
    "CORE_PLUGIN_NAME",
    "ENTRY_POINT_GROUP",
    "GrocoPluginWarning",
    "PluginError",
    "PluginInfo",
    "SkippedPlugin",
    "closest_match_note",
    "disable_problem",
    "disabled_plugins",
    "entry_point_names",
    "get_group",
    "get_layer",
    "group_plugin",
    "group_provenance",
    "layer_plugin",
    "list_groups",
    "list_layers",
    "list_plugins",
    "register_plugin",
    "registered_name",
    "registry_version",
    "reload_plugins",
    "skipped_plugins",
    "subgroups_of",
    "unregister_plugin",
]

_registry = PluginRegistry()


# -- groups ---------------------------------------------------------------------------------


def get_group(name: str | PointGroup, *, subgroup_of: str | PointGroup | None = None) -> PointGroup:
    """Returns the registered group with this name (case-insensitive).

    A `PointGroup` object is returned as it is, so every `group=` argument takes either.

    Args:
        name: a group name or a group.
        subgroup_of: for a `subgroup=` argument, the group (or its name) it is to be a
            subgroup of: the group found must be one, and an unknown name is answered with
            that group's subgroups, and the closest matches among them first.

    Raises:
        TypeError: when `name` is neither a string nor a group.
        ValueError: when plugins that clash on the name withheld it, naming them; when no
            plugin provides the name; lists the groups there are (the
            subgroups of `subgroup_of`) and every name it could mean (see
            `closest_match_note`). With `subgroup_of`, also when the group is not a
            subgroup of it, listing its subgroups and a near miss among them.

    Example:
        >>> from groco_core import get_group
        >>> get_group("p4", subgroup_of="P4M").name
        'P4'
    """
    if subgroup_of is not None:
        subgroup_of = get_group(subgroup_of)
    if isinstance(name, PointGroup):
        group = name
    elif isinstance(name, str):
        _registry.ensure_loaded("groups")
        entry = _registry.groups.get(name.lower())
        if entry is None:
            raise ValueError(_unknown_group_message(name, subgroup_of))
        group = entry[0]
    else:
        argument = "group" if subgroup_of is None else "subgroup"
        raise TypeError(
            f"{argument} must be a group name (str) or a PointGroup. Received: "
            f"{argument}={name!r} of type {type(name).__name__}"
        )
    if subgroup_of is not None:
        try:
            subgroup_of.subgroup_indices(group)
        except ValueError as error:
            subgroups = list(subgroups_of(subgroup_of))
            # A registered name, so only a near miss is a suggestion ("C4" for "P4").
            closest = closest_match_note(group.name, subgroups, " among them", max_edits=1)
            raise ValueError(
                f"{group.name!r} is not a subgroup of {subgroup_of.name}. Subgroups of "
                f"{subgroup_of.name}: {', '.join(subgroups)}.{closest}"
            ) from error
    return group


def _withheld_message(kind: str, name: str, phase: str) -> str | None:
    """Why a name no plugin got is missing, when a clash withheld it: naming the plugins,
    and how to keep one of them, since the user asked for it by name."""
    withheld = _registry.withheld.get((phase, name.lower()))
    if withheld is None:
        return None
    shown, plugins = withheld
    owners = f"{', '.join(repr(p) for p in plugins[:-1])} and {plugins[-1]!r}"
    return (
        f"The {kind} {shown!r} is withheld: plugins {owners} all register it, so none of them "
        "gets it (a plugin's load order must not decide). To keep one, disable the others "
        f"({DISABLE_VARIABLE}={','.join(plugins[1:])} or `groco --disable-plugin "
        f"{plugins[1]}`), or rename it in all but one. Received: {kind}={name!r}"
    )


def _unknown_group_message(name: str, subgroup_of: PointGroup | None) -> str:
    withheld = _withheld_message("group", name, "groups")
    if withheld is not None:
        return withheld
    available = [group.name for group, _ in _registry.groups.values()]
    unknown = (
        f"Unknown group {name!r}: no installed plugin provides it, and a plugin must provide "
        "every group."
    )
    if subgroup_of is None:
        return (
            f"{unknown} Available groups: {', '.join(sorted(available))}."
            f"{closest_match_note(name, available)}"
        )
    subgroups = list(subgroups_of(subgroup_of))
    others = extending(name, [g for g in available if g not in subgroups])
    elsewhere = ""
    if others:
        elsewhere = (
            f" Other groups it could mean, not subgroups of {subgroup_of.name}: "
            f"{', '.join(repr(m) for m in others)}."
        )
    return (
        f"{unknown} Subgroups of {subgroup_of.name}: {', '.join(subgroups)}."
        f"{closest_match_note(name, subgroups, among=' among them')}{elsewhere}"
    )


# For each group asked about: the registry version its table was derived at, and the table.
_subgroup_tables: dict[tuple[str, str, bytes], tuple[int, dict[str, tuple[int, ...]]]] = {}


def subgroups_of(group: str | PointGroup) -> dict[str, tuple[int, ...]]:
    """The registered subgroups of a group: name → indices (into `group`) of the subgroup's
    elements, in the subgroup's own element order; largest first, then by name.

    Derived, not listed: every registered group on the same lattice whose matrices are
    among `group`'s (`group.subgroup_indices`), the group itself and its aliases (other
    names for the same elements) included. A plugin that registers a group thereby adds it
    as a subgroup of every larger registered group.

    Args:
        group: a group name or a group (registered or not).

    Example:
        >>> from groco_core import subgroups_of
        >>> subgroups_of("P4")
        {'P4': (0, 1, 2, 3), 'P2': (0, 2), 'P1': (0,)}
    """
    group = get_group(group)
    _registry.ensure_loaded("groups")
    key = (group.name, group.lattice, np.asarray(group.matrices).tobytes())
    cached = _subgroup_tables.get(key)
    if cached is None or cached[0] != _registry.version:
        found = {group.name: tuple(range(group.order))}
        for candidate, _ in _registry.groups.values():
            if candidate.lattice != group.lattice or group.order % candidate.order:
                continue  # Lagrange: a subgroup's order divides the group's
            try:
                found.setdefault(candidate.name, group.subgroup_indices(candidate))
            except ValueError:
                continue
        ordered = dict(sorted(found.items(), key=lambda item: (-len(item[1]), item[0])))
        cached = _subgroup_tables[key] = (_registry.version, ordered)
    return dict(cached[1])


def list_groups(dimension: int | None = None) -> list[PointGroup]:
    """Registered groups, largest first within each dimension; optionally one dimension."""
    if dimension is not None and dimension not in (1, 2, 3):
        raise ValueError(f"dimension must be 1, 2, 3 or None. Received: dimension={dimension!r}")
    _registry.ensure_loaded("groups")
    groups = [g for g, _ in _registry.groups.values()]
    if dimension is not None:
        groups = [g for g in groups if g.dimension == dimension]
    return sorted(groups, key=lambda g: (g.dimension, g.lattice, -g.order, g.name))


def group_plugin(name: str) -> str:
    """Name of the plugin that registered a group."""
    group = get_group(name)
    return _registry.groups[group.name.lower()][1]


def group_provenance(name: str | PointGroup) -> dict[str, str | None] | None:
    """Where a registered group comes from: `{"plugin", "distribution", "version"}`; None
    for a group object that is not the registered group of its name.

    A group object made before the registry was reloaded still counts as registered when
    the group now registered under its name has the same matrices.
    """
    group = get_group(name)
    entry = _registry.groups.get(group.name.lower())
    if entry is None or not (
        entry[0] is group
        or (entry[0].lattice == group.lattice and np.array_equal(entry[0].matrices, group.matrices))
    ):
        return None
    info = _registry.plugins[entry[1]]
    return {"plugin": info.name, "distribution": info.distribution, "version": info.version}


# -- layers ---------------------------------------------------------------------------------


def get_layer(name: str) -> type:
    """Returns the registered layer class with this name (case-insensitive, as group names
    are, so a name typed in any case finds it).

    Raises:
        ValueError: when plugins that clash on the name withheld it, naming them; when no
            plugin provides it, listing the layers there are and the closest.

    Example:
        >>> from groco_core import get_layer
        >>> get_layer("groupconv2d").__name__
        'GroupConv2D'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a layer class name (str). Received: name={name!r}")
    _registry.ensure_loaded("layers")
    entry = _registry.layers.get(name.lower())
    if entry is None:
        withheld = _withheld_message("layer", name, "layers")
        if withheld is not None:
            raise ValueError(withheld)
        available = sorted(layer.__name__ for layer, _ in _registry.layers.values())
        raise ValueError(
            f"Unknown layer {name!r}. Available layers: {', '.join(available)}."
            f"{closest_match_note(name, available)}"
        )
    return entry[0]


def list_layers() -> list[type]:
    """Registered layer classes, sorted by name."""
    _registry.ensure_loaded("layers")
    return sorted((layer for layer, _ in _registry.layers.values()), key=lambda c: c.__name__)


def layer_plugin(name: str) -> str:
    """Name of the plugin that registered a layer class (the name is case-insensitive)."""
    get_layer(name)
    return _registry.layers[name.lower()][1]


# -- plugins --------------------------------------------------------------------------------


def list_plugins() -> list[PluginInfo]:
    """The loaded plugins with what each registered (and what was skipped, in `problems`)."""
    for phase in PHASES:
        _registry.ensure_loaded(phase)
    return [
        dataclasses.replace(info, groups=list(info.groups), layers=list(info.layers))
        for info in _registry.plugins.values()
    ]


def skipped_plugins() -> list[SkippedPlugin]:
    """Entry points that were not loaded, with the reason (also warned about at load)."""
    _registry.ensure_loaded("groups")
    return list(_registry.skipped.values())


def disabled_plugins() -> list[SkippedPlugin]:
    """Entry points that `GROCO_DISABLE_PLUGINS` kept from loading (never imported)."""
    _registry.ensure_loaded("groups")
    return list(_registry.disabled.values())


def registered_name(plugin: Any) -> str | None:
    """The name a plugin object is registered under, or None (loads the plugins first)."""
    return _registry.registered_name(plugin)


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Registers a plugin object directly (no installation needed), e.g. in a test fixture.

    Its hooks run at once; anything invalid, a clash, a hook that raises or returns a value,
    an unknown hook, raises `PluginError` naming the plugin, and leaves the registry as it was.
    For a plugin that is already registered (an installed one, through its entry point), use
    `groco_core.testing.registered_plugin`, which takes it out first and restores it after.

    Returns:
        The plugin's name, for `unregister_plugin`.
    """
    return _registry.register_directly(plugin, name)


def unregister_plugin(name: str) -> None:
    """Removes a plugin and everything it registered."""
    _registry.unregister(name)


def reload_plugins() -> None:
    """Forgets every plugin; the next registry use loads them again (reads the environment
    switches anew)."""
    _registry.reset()


def registry_version() -> int:
    """A counter that changes whenever the registry does (for caches derived from it)."""
    return _registry.version
