"""The plugin registry: groups and layers provided by plugins, found by name.

Plugins are loaded lazily, on the first use of the registry, never at import time. Entry
points of the `groco` group are loaded one by one: one that fails to import or registers
something invalid is skipped with a `GrocoPluginWarning` naming it, and the rest still load.

Environment switches:
    GROCO_STRICT_PLUGINS=1: a failing plugin raises `PluginError` instead of warning.
    GROCO_DISABLE_PLUGIN_AUTOLOAD=1: only the built-in plugins (those of the `groco`
        distribution itself) are loaded from entry points.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import importlib_metadata
import pluggy

from groco_core import hookspecs
from groco_core.groups import PointGroup
from groco_core.validation import validate_group_definition

ENTRY_POINT_GROUP = "groco"
BUILTIN_DISTRIBUTION = "groco"
CORE_PLUGIN_NAME = "groco_core"
_PHASES = ("groups", "layers")


class PluginError(ValueError):
    """A plugin could not be loaded or registered something invalid."""


class GrocoPluginWarning(UserWarning):
    """A plugin was skipped; the message names it and says why."""


@dataclasses.dataclass
class PluginInfo:
    """What `list_plugins()` reports about one plugin."""

    name: str
    source: str
    version: str | None = None
    groups: list[str] = dataclasses.field(default_factory=list)
    layers: list[str] = dataclasses.field(default_factory=list)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.groups: dict[str, tuple[PointGroup, str]] = {}
        self.layers: dict[str, tuple[type, str]] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.phases_done: dict[str, set[str]] = {}
        self.autoloaded = False
        self.version = 0

    # -- loading -------------------------------------------------------------------------

    def ensure_loaded(self, phase: str) -> None:
        with self._lock:
            if not self.autoloaded:
                self.autoloaded = True
                try:
                    self._autoload()
                except PluginError:
                    # Strict mode: forget the half-done load, so every use fails the same way
                    # instead of the next one quietly working without the broken plugin.
                    self.reset()
                    raise
            for name in list(self.plugins):
                if phase not in self.phases_done[name]:
                    try:
                        self._run_phase(name, phase)
                    except Exception as error:  # noqa: BLE001 - fault isolation is the point
                        self._skip(name, error)

    def _autoload(self) -> None:
        # Not `from groco_core import core_plugin`: that form first asks the package's lazy
        # `__getattr__`, which imports the layers, hence Keras, on every registry use.
        core_plugin = importlib.import_module("groco_core.core_plugin")
        self._add(core_plugin, CORE_PLUGIN_NAME, "built-in (groco_core)", None)
        entry_points = sorted(
            importlib_metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: (_distribution_name(ep) != BUILTIN_DISTRIBUTION, ep.name),
        )
        skip_third_party = _flag("GROCO_DISABLE_PLUGIN_AUTOLOAD")
        for entry_point in entry_points:
            distribution = _distribution_name(entry_point)
            builtin = distribution == BUILTIN_DISTRIBUTION
            if skip_third_party and not builtin:
                continue
            source = "built-in" if builtin else f"entry point of distribution {distribution!r}"
            try:
                if entry_point.name in self.plugins:
                    raise PluginError(
                        f"plugin name {entry_point.name!r} is already used by "
                        f"{self.plugins[entry_point.name].source}"
                    )
                plugin = entry_point.load()
                self._add(plugin, entry_point.name, source, _distribution_version(entry_point))
            except Exception as error:  # noqa: BLE001 - one broken plugin must not stop the rest
                self._fail(f"{entry_point.name!r} ({source}, {entry_point.value})", error)

    def _add(self, plugin: Any, name: str, source: str, version: str | None) -> None:
        self.manager.register(plugin, name=name)
        self.plugins[name] = PluginInfo(name=name, source=source, version=version)
        self.phases_done[name] = set()
        self.version += 1

    def _fail(self, description: str, error: Exception) -> None:
        message = f"groco plugin {description} was skipped: {error}"
        if _flag("GROCO_STRICT_PLUGINS"):
            raise PluginError(message) from error
        warnings.warn(message, GrocoPluginWarning, stacklevel=4)

    def _skip(self, name: str, error: Exception) -> None:
        info = self.plugins[name]
        if not _flag("GROCO_STRICT_PLUGINS"):
            self.remove(name)
        # In strict mode the plugin stays, its phase not done: the next use raises again.
        self._fail(f"{name!r} ({info.source})", error)

    def _run_phase(self, name: str, phase: str) -> None:
        """Calls one plugin's hook for one phase; registers everything or nothing."""
        plugin = self.manager.get_plugin(name)
        staged: list[Any] = []
        caller = getattr(self.manager.hook, f"groco_register_{phase}")
        for implementation in caller.get_hookimpls():
            if implementation.plugin is plugin:
                implementation.function(register=staged.append)
        if phase == "groups":
            self._commit_groups(name, staged)
        else:
            self._commit_layers(name, staged)
        self.phases_done[name].add(phase)
        self.version += 1

    def _commit_groups(self, plugin_name: str, staged: list[Any]) -> None:
        new: dict[str, PointGroup] = {}
        for group in staged:
            if not isinstance(group, PointGroup):
                raise PluginError(
                    f"plugin {plugin_name!r} registered {group!r}, which is not a PointGroup; "
                    "register groco_core.MatrixGroup instances (or a PointGroup subclass)"
                )
            try:
                validate_group_definition(
                    group.name, group.matrices, group.lattice, getattr(group, "description", "")
                )
            except ValueError as error:
                raise PluginError(
                    f"plugin {plugin_name!r} registered an invalid group: {error}"
                ) from error
            key = group.name.lower()
            if key in self.groups or key in new:
                owner = self.groups[key][1] if key in self.groups else plugin_name
                existing = self.groups[key][0].name if key in self.groups else new[key].name
                raise PluginError(
                    f"group name clash: plugin {plugin_name!r} registers {group.name!r}, but "
                    f"plugin {owner!r} already registers {existing!r}; nothing was overwritten. "
                    "Rename one of them (names are case-insensitive)."
                )
            new[key] = group
        for key, group in new.items():
            self.groups[key] = (group, plugin_name)
        self.plugins[plugin_name].groups.extend(group.name for group in new.values())

    def _commit_layers(self, plugin_name: str, staged: list[Any]) -> None:
        if not staged:
            return  # a groups-only plugin must not cost a Keras import
        import keras

        new: dict[str, type] = {}
        for layer in staged:
            if not (isinstance(layer, type) and issubclass(layer, keras.layers.Layer)):
                raise PluginError(
                    f"plugin {plugin_name!r} registered {layer!r}, which is not a "
                    "keras.layers.Layer subclass"
                )
            name = layer.__name__
            if name in self.layers or name in new:
                owner = self.layers[name][1] if name in self.layers else plugin_name
                raise PluginError(
                    f"layer name clash: plugin {plugin_name!r} registers {name!r}, but plugin "
                    f"{owner!r} already registers it; nothing was overwritten."
                )
            new[name] = layer
        for name, layer in new.items():
            self.layers[name] = (layer, plugin_name)
        self.plugins[plugin_name].layers.extend(new)

    def remove(self, name: str) -> None:
        if name not in self.plugins:
            raise ValueError(
                f"No plugin named {name!r} is registered. Registered: {', '.join(self.plugins)}"
            )
        plugin = self.manager.get_plugin(name)
        if plugin is not None:
            self.manager.unregister(plugin, name=name)
        self.groups = {k: v for k, v in self.groups.items() if v[1] != name}
        self.layers = {k: v for k, v in self.layers.items() if v[1] != name}
        del self.plugins[name]
        del self.phases_done[name]
        self.version += 1


def _distribution_name(entry_point: Any) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _distribution_version(entry_point: Any) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return dist.version if dist is not None else None


_registry = _Registry()


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _closest(name: str, candidates: list[str]) -> str:
    """The candidate fewest edits away; ties go to the same length (a typo more often
    replaces a character than drops one: "P4N" means "P4M" rather than "P4"), then to the
    most similar."""
    if not candidates:
        return ""
    key = name.lower()
    best = min(
        candidates,
        key=lambda c: (
            _edit_distance(key, c.lower()),
            abs(len(c) - len(key)),
            -difflib.SequenceMatcher(None, key, c.lower()).ratio(),
            c,
        ),
    )
    return f" Closest match: {best!r}."


# -- public API -------------------------------------------------------------------------


def get_group(name: str | PointGroup) -> PointGroup:
    """Returns the registered group with this name (case-insensitive).

    A `PointGroup` object is returned as it is, so every `group=` argument takes either.

    Raises:
        TypeError: when `name` is neither a string nor a group.
        ValueError: when no plugin provides the name; lists the groups there are and the
            closest match.
    """
    if isinstance(name, PointGroup):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"group must be a group name (str) or a PointGroup. Received: group={name!r} "
            f"of type {type(name).__name__}"
        )
    _registry.ensure_loaded("groups")
    entry = _registry.groups.get(name.lower())
    if entry is None:
        available = [group.name for group, _ in _registry.groups.values()]
        raise ValueError(
            f"Unknown group {name!r}: no installed plugin provides it, and a plugin must "
            f"provide every group. Available groups: {', '.join(sorted(available))}."
            f"{_closest(name, available)}"
        )
    return entry[0]


def list_groups(dimension: int | None = None) -> list[PointGroup]:
    """Registered groups, largest first within each dimension; optionally one dimension."""
    if dimension is not None and dimension not in (1, 2, 3):
        raise ValueError(f"dimension must be 1, 2, 3 or None. Received: dimension={dimension!r}")
    _registry.ensure_loaded("groups")
    groups = [g for g, _ in _registry.groups.values()]
    if dimension is not None:
        groups = [g for g in groups if g.dimension == dimension]
    return sorted(groups, key=lambda g: (g.dimension, g.lattice, -g.order, g.name))


def iter_groups() -> Iterator[PointGroup]:
    _registry.ensure_loaded("groups")
    return iter([g for g, _ in _registry.groups.values()])


def group_plugin(name: str) -> str:
    """Name of the plugin that registered a group."""
    group = get_group(name)
    return _registry.groups[group.name.lower()][1]


def get_layer(name: str) -> type:
    """Returns the registered layer class with this name (e.g. `"GroupConv2D"`).

    Raises:
        ValueError: when no plugin provides it; lists the layers there are and the closest.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a layer class name (str). Received: name={name!r}")
    _registry.ensure_loaded("layers")
    entry = _registry.layers.get(name)
    if entry is None:
        available = sorted(_registry.layers)
        raise ValueError(
            f"Unknown layer {name!r}. Available layers: {', '.join(available)}."
            f"{_closest(name, available)}"
        )
    return entry[0]


def list_layers() -> list[type]:
    """Registered layer classes, sorted by name."""
    _registry.ensure_loaded("layers")
    return [_registry.layers[name][0] for name in sorted(_registry.layers)]


def layer_plugin(name: str) -> str:
    """Name of the plugin that registered a layer class."""
    get_layer(name)
    return _registry.layers[name][1]


def list_plugins() -> list[PluginInfo]:
    """The loaded plugins with what each registered."""
    for phase in _PHASES:
        _registry.ensure_loaded(phase)
    return [dataclasses.replace(info) for info in _registry.plugins.values()]


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Registers a plugin object directly (no installation needed), e.g. in a test fixture.

    Its hooks run at once; anything invalid (or any error in a hook) raises `PluginError`
    naming the plugin, and leaves the registry as it was.

    Returns:
        The plugin's name, for `unregister_plugin`.
    """
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    with _registry._lock:
        _registry.ensure_loaded("groups")
        if name in _registry.plugins:
            raise PluginError(f"A plugin named {name!r} is already registered.")
        _registry._add(plugin, name, "registered directly", None)
        try:
            for phase in _PHASES:
                _registry._run_phase(name, phase)
        except PluginError:
            _registry.remove(name)
            raise
        except Exception as error:
            # E.g. a MatrixGroup rejected inside the hook: say which plugin it came from.
            _registry.remove(name)
            raise PluginError(f"plugin {name!r} failed to register: {error}") from error
    return name


def unregister_plugin(name: str) -> None:
    """Removes a plugin and everything it registered."""
    with _registry._lock:
        _registry.remove(name)


def reload_plugins() -> None:
    """Forgets every plugin; the next registry use loads them again (reads the environment
    switches anew)."""
    with _registry._lock:
        _registry.reset()


def registry_version() -> int:
    """A counter that changes whenever the registry does (for caches derived from it)."""
    return _registry.version
