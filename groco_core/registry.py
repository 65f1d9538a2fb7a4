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
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import importlib_metadata
import numpy as np
import pluggy

from groco_core import hookspecs
from groco_core.group_layer import missing_members
from groco_core.groups import PointGroup
from groco_core.validation import validate_group_definition

ENTRY_POINT_GROUP = "groco"
BUILTIN_DISTRIBUTION = "groco"
CORE_PLUGIN_NAME = "groco_core"
_PHASES = ("groups", "layers")
_HOOK_NAMES = tuple(f"groco_register_{phase}" for phase in _PHASES)


class PluginError(ValueError):
    """A plugin could not be loaded or registered something invalid."""


class GrocoPluginWarning(UserWarning):
    """A plugin (or one thing it registered) was skipped; the message names it and says why."""


@dataclasses.dataclass
class PluginInfo:
    """What `list_plugins()` reports about one loaded plugin.

    `problems` lists what was skipped or ignored (each also warned about when it happened):
    an object that clashed or was invalid, a hook that raised or returned a value, an
    unknown hook name.
    """

    name: str
    source: str
    version: str | None = None
    groups: list[str] = dataclasses.field(default_factory=list)
    layers: list[str] = dataclasses.field(default_factory=list)
    distribution: str | None = None
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class SkippedPlugin:
    """An entry point that was not loaded, and why (`skipped_plugins()`)."""

    name: str
    source: str
    reason: str


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _strict() -> bool:
    return _flag("GROCO_STRICT_PLUGINS")


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
        self.skipped: dict[str, SkippedPlugin] = {}
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
            pending = [name for name in self.plugins if phase not in self.phases_done[name]]
            if pending:
                problems = self._run_phase(pending, phase, commit_with_problems=not _strict())
                if problems and _strict():
                    # Nothing committed, the phase stays to do: the next use raises again.
                    raise PluginError(
                        "; ".join(self._describe(name, message) for name, message in problems)
                    )
                for plugin_name, message in problems:
                    self._warn(plugin_name, message)

    def _autoload(self) -> None:
        # Not `from groco_core import core_plugin`: that form first asks the package's lazy
        # `__getattr__`, which imports the layers, hence Keras, on every registry use.
        core_plugin = importlib.import_module("groco_core.core_plugin")
        self._add(core_plugin, CORE_PLUGIN_NAME, "built-in (groco_core)", None, None)
        every_entry_point = importlib_metadata.entry_points()
        self._skip_misnamed_groups(every_entry_point)
        entry_points = sorted(
            every_entry_point.select(group=ENTRY_POINT_GROUP),
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
                self._load_entry_point(entry_point, source, distribution)
            except Exception as error:  # noqa: BLE001 - one broken plugin must not stop the rest
                self._skip_entry_point(entry_point.name, source, entry_point.value, error)

    def _load_entry_point(self, entry_point: Any, source: str, distribution: str | None) -> None:
        name = entry_point.name
        if name in self.plugins or name in self.skipped:
            taken = self.plugins[name].source if name in self.plugins else self.skipped[name].source
            raise PluginError(f"plugin name {name!r} is already used by {taken}")
        keras_before = "keras" in sys.modules
        plugin = entry_point.load()
        if isinstance(plugin, type):
            raise PluginError(
                f"the entry point names the class {entry_point.value!r}; name a module (e.g. "
                f"'{plugin.__module__}') or an instance (e.g. `plugin = {plugin.__name__}()` in "
                f"the module, and '{plugin.__module__}:plugin' as the entry point), so that "
                "pluggy calls its hooks as functions or bound methods"
            )
        self._add(plugin, name, source, _distribution_version(entry_point), distribution)
        try:
            self._check_hooks(plugin, name)
        except PluginError:
            self.remove(name)
            raise
        if not keras_before and "keras" in sys.modules:
            # Not fatal, even in strict mode: the plugin works, only slower to list.
            message = (
                "importing it imported Keras, which makes `groco list-groups` several times "
                "slower; import Keras inside groco_register_layers (and in the layer modules) "
                "instead of at the top of the plugin's package"
            )
            self.plugins[name].problems.append(message)
            warnings.warn(
                f"groco plugin {name!r} ({source}): {message}", GrocoPluginWarning, stacklevel=5
            )

    def _check_hooks(self, plugin: Any, name: str) -> None:
        """Warns about unknown hooks and unmarked hook functions; refuses a plugin with no
        hook implementation GroCo knows."""
        known, unknown = [], []
        for caller in self.manager.get_hookcallers(plugin) or []:
            (known if caller.name in _HOOK_NAMES else unknown).append(caller.name)
        unmarked = [
            attribute
            for attribute in dir(plugin)
            if attribute.startswith("groco_")
            and callable(getattr(plugin, attribute, None))
            and self.manager.parse_hookimpl_opts(plugin, attribute) is None
        ]
        notes = []
        if unknown:
            closest = closest_match_note(unknown[0], list(_HOOK_NAMES)).strip()
            notes.append(
                f"unknown hook(s) {', '.join(sorted(unknown))}: GroCo's hooks are "
                f"{' and '.join(_HOOK_NAMES)} ({closest[:-1]})"
            )
        if unmarked:
            notes.append(
                f"function(s) {', '.join(unmarked)} not marked with @groco_core.hookimpl, so "
                "never called"
            )
        if not known:
            notes.append(
                "no hook implementations: a plugin needs a function groco_register_groups or "
                "groco_register_layers marked with @groco_core.hookimpl"
            )
            raise PluginError("; ".join(notes))
        for note in notes:
            self._warn(name, note)
            self.plugins[name].problems.append(note)

    def _skip_misnamed_groups(self, every_entry_point: Any) -> None:
        """Entry points in a group whose name is close to `groco` are a typo: say so."""
        for group in sorted(every_entry_point.groups):
            lowered = group.lower()
            close = difflib.SequenceMatcher(None, lowered, ENTRY_POINT_GROUP).ratio() >= 0.8
            if group == ENTRY_POINT_GROUP or not (ENTRY_POINT_GROUP in lowered or close):
                continue
            for entry_point in every_entry_point.select(group=group):
                distribution = _distribution_name(entry_point)
                source = f"entry point of distribution {distribution!r} in group {group!r}"
                self._skip_entry_point(
                    entry_point.name,
                    source,
                    entry_point.value,
                    PluginError(
                        f"it is declared in the entry-point group {group!r}, which GroCo does "
                        f"not read; the group must be exactly {ENTRY_POINT_GROUP!r} "
                        f"([project.entry-points.{ENTRY_POINT_GROUP}] in pyproject.toml)"
                    ),
                )

    def _add(
        self, plugin: Any, name: str, source: str, version: str | None, distribution: str | None
    ) -> None:
        self.manager.register(plugin, name=name)
        self.plugins[name] = PluginInfo(
            name=name, source=source, version=version, distribution=distribution
        )
        self.phases_done[name] = set()
        self.version += 1

    def _skip_entry_point(self, name: str, source: str, value: str, error: Exception) -> None:
        reason = str(error)
        if name not in self.plugins:
            key = name if name not in self.skipped else f"{name} ({source})"
            self.skipped[key] = SkippedPlugin(name=name, source=f"{source}, {value}", reason=reason)
        message = f"groco plugin {name!r} ({source}, {value}) was skipped: {reason}"
        if _strict():
            raise PluginError(message) from error
        warnings.warn(message, GrocoPluginWarning, stacklevel=5)

    def _describe(self, name: str, message: str) -> str:
        return f"groco plugin {name!r} ({self.plugins[name].source}): {message}"

    def _warn(self, name: str, message: str) -> None:
        if _strict():
            raise PluginError(self._describe(name, message))
        warnings.warn(self._describe(name, message), GrocoPluginWarning, stacklevel=5)

    def _run_phase(
        self, names: list[str], phase: str, commit_with_problems: bool
    ) -> list[tuple[str, str]]:
        """Runs one phase's hook of several plugins together and commits what is valid.

        Plugins of one phase are committed together so that a clash is decided the same way
        whatever the order they load in: an object that clashes or is invalid is skipped on
        its own, the rest of its plugin still registers.

        Returns:
            `(plugin name, problem)` pairs. With `commit_with_problems=False` and any problem,
            nothing is committed and the phase stays to do (strict mode, direct registration).
        """
        kind = phase[:-1]
        hook_name = f"groco_register_{phase}"
        caller = getattr(self.manager.hook, hook_name)
        problems: list[tuple[str, str]] = []
        claims: dict[str, list[tuple[str, Any]]] = {}
        for name in sorted(names):
            plugin = self.manager.get_plugin(name)
            staged: list[Any] = []
            for implementation in caller.get_hookimpls():
                if implementation.plugin is not plugin:
                    continue
                try:
                    returned = implementation.function(register=staged.append)
                except Exception as error:  # noqa: BLE001 - fault isolation is the point
                    problems.append((name, f"{hook_name} raised {error}"))
                    staged = []
                    break
                if returned is not None:
                    problems.append(
                        (
                            name,
                            f"{hook_name} returned {returned!r} instead of calling "
                            f"register({kind}) for each {kind}; the returned value is ignored",
                        )
                    )
            seen: set[str] = set()
            for obj in staged:
                try:
                    key = self._validate(name, phase, obj)
                except PluginError as error:
                    problems.append((name, str(error)))
                    continue
                if key in seen:
                    problems.append((name, f"it registers the {kind} {key!r} twice"))
                    continue
                seen.add(key)
                claims.setdefault(key, []).append((name, obj))
        accepted: dict[str, tuple[Any, str]] = {}
        for key, claimants in claims.items():
            winner, messages = self._resolve_claim(phase, key, claimants)
            problems.extend(messages)
            if winner is not None:
                accepted[key] = winner
        if problems and not commit_with_problems:
            return problems
        table = self.groups if phase == "groups" else self.layers
        for key, (obj, name) in accepted.items():
            table[key] = (obj, name)
            getattr(self.plugins[name], phase).append(obj.name if phase == "groups" else key)
        for name in names:
            self.phases_done[name].add(phase)
        for name, message in problems:
            self.plugins[name].problems.append(message)
        self.version += 1
        return problems

    def _validate(self, plugin_name: str, phase: str, obj: Any) -> str:
        """The registry key of a valid object, or PluginError saying what is wrong."""
        if phase == "groups":
            if not isinstance(obj, PointGroup):
                raise PluginError(
                    f"plugin {plugin_name!r} registered {obj!r}, which is not a PointGroup; "
                    "register groco_core.MatrixGroup instances (or a PointGroup subclass)"
                )
            try:
                validate_group_definition(
                    obj.name, obj.matrices, obj.lattice, getattr(obj, "description", "")
                )
            except ValueError as error:
                raise PluginError(
                    f"plugin {plugin_name!r} registered an invalid group: {error}"
                ) from error
            return obj.name.lower()
        import keras

        if not (isinstance(obj, type) and issubclass(obj, keras.layers.Layer)):
            raise PluginError(
                f"plugin {plugin_name!r} registered {obj!r}, which is not a "
                "keras.layers.Layer subclass"
            )
        missing = missing_members(obj)
        if missing:
            raise PluginError(
                f"plugin {plugin_name!r} registered the layer {obj.__name__!r}, which does not "
                f"follow the groco_core.GroupLayer protocol: it lacks {', '.join(missing)}. "
                "Define each on the class (a property, a method, a class attribute) or "
                "declare it with an annotation when the constructor sets it (`group: "
                "PointGroup | None`); with groco_core.layers.serialization."
                "RegisteredGroupsMixin first among the bases, only `self.group` is left to set."
            )
        _make_serializable(plugin_name, obj)
        return obj.__name__

    def _resolve_claim(
        self, phase: str, key: str, claimants: list[tuple[str, Any]]
    ) -> tuple[tuple[Any, str] | None, list[tuple[str, str]]]:
        """Who gets a name: an existing owner keeps it; among newcomers a single claimant,
        else the one built-in claimant, else nobody (the same whichever order they load in)."""
        kind = phase[:-1]
        table = self.groups if phase == "groups" else self.layers

        def shown(obj: Any) -> str:
            return obj.name if phase == "groups" else obj.__name__

        if key in table:
            existing, owner = table[key]
            return None, [
                (
                    name,
                    f"{kind} name clash: plugin {name!r} registers {shown(obj)!r}, but plugin "
                    f"{owner!r} already registers {shown(existing)!r}; {name!r}'s was skipped, "
                    "nothing was overwritten. Rename one of them"
                    + (" (names are case-insensitive)." if phase == "groups" else "."),
                )
                for name, obj in claimants
            ]
        if len(claimants) == 1:
            name, obj = claimants[0]
            return (obj, name), []
        builtin = [(name, obj) for name, obj in claimants if self._is_builtin(name)]
        names = [repr(name) for name, _ in claimants]
        owners = f"{', '.join(names[:-1])} and {names[-1]}"
        if len(builtin) == 1:
            winner_name, winner = builtin[0]
            outcome = f"the built-in plugin {winner_name!r} keeps it"
            losers = [(n, o) for n, o in claimants if n != winner_name]
            result: tuple[Any, str] | None = (winner, winner_name)
        else:
            outcome = "none of them is used (a plugin's load order must not decide)"
            losers, result = claimants, None
        return result, [
            (
                name,
                f"{kind} name clash: plugins {owners} all register {shown(obj)!r}; {outcome}. "
                "Rename one of them"
                + (" (names are case-insensitive)." if phase == "groups" else "."),
            )
            for name, obj in losers
        ]

    def _is_builtin(self, name: str) -> bool:
        return self.plugins[name].source.startswith("built-in")

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


def _make_serializable(plugin_name: str, layer: type) -> None:
    """Registers a layer class with Keras under its top-level package's name when it is not
    registered yet, so that a saved model loads; refuses a name taken by another class."""
    import keras

    if keras.saving.get_registered_object(keras.saving.get_registered_name(layer)) is layer:
        return
    package = layer.__module__.split(".")[0]
    taken = keras.saving.get_registered_object(f"{package}>{layer.__name__}")
    if taken is not None and taken is not layer:
        raise PluginError(
            f"plugin {plugin_name!r} registered the layer {layer.__name__!r}, which is not "
            f"Keras-serializable, and the name '{package}>{layer.__name__}' is taken by "
            f"{taken!r}. Decorate the class with "
            "@keras.saving.register_keras_serializable(package='<your package>')."
        )
    keras.saving.register_keras_serializable(package=package)(layer)


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


def _extending(name: str, candidates: list[str]) -> list[str]:
    """The candidates that are `name` followed by `_` and a suffix (case-insensitive), sorted:
    for `"C2"`, `C2_a` and `C2_f`."""
    prefix = name.lower() + "_"
    return sorted(c for c in candidates if c.lower().startswith(prefix))


def _closest_matches(name: str, candidates: list[str], max_edits: int | None = None) -> list[str]:
    """Every candidate `name` could mean: those `_extending` it, then the one fewest edits
    away (if at most `max_edits`). Ties of edits go to the same length (a typo more often
    replaces a character than drops one: "P4N" means "P4M" rather than "P4"), then to the
    most similar."""
    if not candidates:
        return []
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
    extending = _extending(name, candidates)
    if best in extending or (
        max_edits is not None and _edit_distance(key, best.lower()) > max_edits
    ):
        return extending
    return [*extending, best]


def closest_match_note(
    name: str, candidates: list[str], among: str = "", max_edits: int | None = None
) -> str:
    """The end of a message about a name that does not fit: `" Closest match: 'P4M'."`, or
    with `among=" among them"` `" Closest matches among them: 'C2_a', 'C2_f', 'C1'."`:
    every candidate that is `name` followed by `_` and a suffix, and the one fewest edits
    away (if at most `max_edits`). Empty when there is none."""
    matches = _closest_matches(name, candidates, max_edits)
    if not matches:
        return ""
    label = "Closest match" if len(matches) == 1 else "Closest matches"
    return f" {label}{among}: {', '.join(repr(m) for m in matches)}."


# -- public API -------------------------------------------------------------------------


def get_group(name: str | PointGroup, *, subgroup_of: PointGroup | None = None) -> PointGroup:
    """Returns the registered group with this name (case-insensitive).

    A `PointGroup` object is returned as it is, so every `group=` argument takes either.

    Args:
        name: a group name or a group.
        subgroup_of: for a `subgroup=` argument, the group it is to be a subgroup of: an
            unknown name is then answered with that group's subgroups, and the closest
            matches among them first.

    Raises:
        TypeError: when `name` is neither a string nor a group.
        ValueError: when no plugin provides the name; lists the groups there are (the
            subgroups of `subgroup_of`) and every name it could mean (see
            `closest_match_note`).
    """
    if isinstance(name, PointGroup):
        return name
    if not isinstance(name, str):
        argument = "group" if subgroup_of is None else "subgroup"
        raise TypeError(
            f"{argument} must be a group name (str) or a PointGroup. Received: "
            f"{argument}={name!r} of type {type(name).__name__}"
        )
    _registry.ensure_loaded("groups")
    entry = _registry.groups.get(name.lower())
    if entry is None:
        available = [group.name for group, _ in _registry.groups.values()]
        unknown = (
            f"Unknown group {name!r}: no installed plugin provides it, and a plugin must "
            "provide every group."
        )
        if subgroup_of is None:
            raise ValueError(
                f"{unknown} Available groups: {', '.join(sorted(available))}."
                f"{closest_match_note(name, available)}"
            )
        subgroups = list(subgroup_of.subgroups)
        others = _extending(name, [g for g in available if g not in subgroups])
        elsewhere = ""
        if others:
            elsewhere = (
                f" Other groups it could mean, not subgroups of {subgroup_of.name}: "
                f"{', '.join(repr(m) for m in others)}."
            )
        raise ValueError(
            f"{unknown} Subgroups of {subgroup_of.name}: {', '.join(subgroups)}."
            f"{closest_match_note(name, subgroups, among=' among them')}{elsewhere}"
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
            f"{closest_match_note(name, available)}"
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
    """The loaded plugins with what each registered (and what was skipped, in `problems`)."""
    for phase in _PHASES:
        _registry.ensure_loaded(phase)
    return [
        dataclasses.replace(info, groups=list(info.groups), layers=list(info.layers))
        for info in _registry.plugins.values()
    ]


def skipped_plugins() -> list[SkippedPlugin]:
    """Entry points that were not loaded, with the reason (also warned about at load)."""
    _registry.ensure_loaded("groups")
    return list(_registry.skipped.values())


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


def registered_name(plugin: Any) -> str | None:
    """The name a plugin object is registered under, or None (loads the plugins first)."""
    _registry.ensure_loaded("groups")
    if not _registry.manager.is_registered(plugin):
        return None
    return _registry.manager.get_name(plugin)


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Registers a plugin object directly (no installation needed), e.g. in a test fixture.

    Its hooks run at once; anything invalid, a clash, a hook that raises or returns a value,
    an unknown hook, raises `PluginError` naming the plugin, and leaves the registry as it was.
    For a plugin that is already registered (an installed one, through its entry point), use
    `groco_core.testing.registered_plugin`, which takes it out first and restores it after.

    Returns:
        The plugin's name, for `unregister_plugin`.
    """
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    with _registry._lock:
        _registry.ensure_loaded("groups")
        if name in _registry.plugins:
            raise PluginError(f"A plugin named {name!r} is already registered.")
        if _registry.manager.is_registered(plugin):
            existing = _registry.manager.get_name(plugin)
            raise PluginError(
                f"The plugin object {plugin!r} is already registered as {existing!r} "
                f"({_registry.plugins[existing].source}). Use "
                "groco_core.testing.registered_plugin (or its pytest fixture register_plugin), "
                f"which takes it out and restores it afterwards, or unregister_plugin({existing!r})"
                " first."
            )
        if isinstance(plugin, type):
            raise PluginError(
                f"plugin {name!r} is the class {plugin.__name__}; register an instance "
                f"({plugin.__name__}()) or a module, so that its hooks are bound."
            )
        _registry._add(plugin, name, "registered directly", None, None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", GrocoPluginWarning)
                _registry._check_hooks(plugin, name)
            for phase in _PHASES:
                problems = _registry._run_phase([name], phase, commit_with_problems=False)
                if problems:
                    raise PluginError("; ".join(message for _, message in problems))
        except GrocoPluginWarning as warning:
            _registry.remove(name)
            raise PluginError(str(warning)) from None
        except PluginError as error:
            _registry.remove(name)
            message = str(error)
            if repr(name) not in message:
                message = f"plugin {name!r}: {message}"
            raise PluginError(message) from error
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
