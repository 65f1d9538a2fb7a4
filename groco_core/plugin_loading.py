"""Loading plugins: entry points one by one, their hooks through pluggy, what they register.

`PluginRegistry` holds the plugins and what each registered; `groco_core.registry` keeps
one and answers the lookups. Plugins load on its first use (`ensure_loaded`), never at
import time, each on its own: one that fails to import or registers something invalid is
skipped with a `GrocoPluginWarning` naming it (a `PluginError` in strict mode), and the rest
still load.

What pluggy does: the plugin manager (names, plugin objects, registering and unregistering),
the hookspecs and the checks against them (`PluginValidationError` at `register` for a hook
whose arguments the spec lacks, which we check first to say which name to write;
`check_pending` for a hook whose name no spec has), and the dispatch (`subset_hook_caller`:
one plugin's implementation at a time, so that one plugin's failure is its own). What is
ours, for want of it in pluggy: entry points are read one at a time, built-ins first, with
their distribution and the reason one was skipped (`load_setuptools_entrypoints` loads them
all or stops at the first failure); the `register` callback and the validation of what it
is given; clashes decided the same whatever the load order; names a clash withheld, so a
lookup can say so; the `GROCO_DISABLE_PLUGINS` off switch; and messages that name the plugin
and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import sys
import threading
import warnings
from typing import Any

import importlib_metadata
import pluggy

from groco_core import hookspecs
from groco_core.closest_match import closest_match_note
from groco_core.group_layer import missing_members
from groco_core.groups import PointGroup
from groco_core.validation import validate_group_definition

ENTRY_POINT_GROUP = "groco"
BUILTIN_DISTRIBUTION = "groco"
CORE_PLUGIN_NAME = "groco_core"
PHASES = ("groups", "layers")
HOOK_NAMES = tuple(f"groco_register_{phase}" for phase in PHASES)


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
    version: str | None = None


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def strict() -> bool:
    """Whether `GROCO_STRICT_PLUGINS` turns every plugin problem into a `PluginError`."""
    return _flag("GROCO_STRICT_PLUGINS")


DISABLE_VARIABLE = "GROCO_DISABLE_PLUGINS"


def disabled_names() -> list[str]:
    """The plugin names `GROCO_DISABLE_PLUGINS` lists (comma-separated), in order, once each."""
    names = (name.strip() for name in os.environ.get(DISABLE_VARIABLE, "").split(","))
    return list(dict.fromkeys(name for name in names if name))


def entry_point_names() -> list[str]:
    """The names of the installed plugins' entry points (the `groco` group), sorted; what
    `GROCO_DISABLE_PLUGINS` may name. Reads the installed metadata only, imports nothing."""
    return sorted({ep.name for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)})


def disable_problem(names: list[str]) -> str | None:
    """What is wrong with a list of plugin names to disable, or None: the core cannot be
    disabled (every layer plugin builds on its layers), and every other name must be an
    installed plugin's, so that a typo is not a silent no-op."""
    installed = entry_point_names()
    if CORE_PLUGIN_NAME in names:
        return (
            f"{CORE_PLUGIN_NAME!r}, GroCo's own layers, which every layer plugin builds on, "
            f"cannot be disabled; disable plugins by their entry-point names: "
            f"{', '.join(installed)}. Received: {DISABLE_VARIABLE}={','.join(names)}"
        )
    unknown = [name for name in names if name not in installed]
    if not unknown:
        return None
    closest = closest_match_note(unknown[0], installed)
    return (
        f"no installed plugin is named {', '.join(repr(name) for name in unknown)}, so "
        f"disabling it does nothing; installed plugins: {', '.join(installed)}.{closest} "
        f"Received: {DISABLE_VARIABLE}={','.join(names)}"
    )


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


class PluginRegistry:
    """The plugins, loaded on first use, and the groups and layers they registered.

    `groups` maps a lower-case group name, `layers` a lower-case class name, to `(object,
    plugin name)`; `withheld` maps `(phase, lower-case name)` to the plugins whose clash
    withheld it; `plugins`, `skipped` and `disabled` describe the loaded, the skipped and
    the disabled plugins; `version` changes whenever any of them does. Read those; change
    them only through the methods, which hold the registry's lock.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.version = 0
        self.reset()

    def reset(self) -> None:
        """Forgets every plugin; the next use loads them again (reads the switches anew)."""
        with self._lock:
            self.manager = _new_manager()
            self.groups: dict[str, tuple[PointGroup, str]] = {}
            self.layers: dict[str, tuple[type, str]] = {}
            self.plugins: dict[str, PluginInfo] = {}
            self.skipped: dict[str, SkippedPlugin] = {}
            self.disabled: dict[str, SkippedPlugin] = {}
            self.withheld: dict[tuple[str, str], tuple[str, list[str]]] = {}
            self._phases_done: dict[str, set[str]] = {}
            self._running: set[str] = set()
            self.autoloaded = False
            self.version += 1  # never back to an earlier value: caches keyed on it stay right

    # -- loading -------------------------------------------------------------------------

    def ensure_loaded(self, phase: str) -> None:
        """Loads the plugins (the first time) and runs every pending hook of one phase; in
        strict mode of every phase, so that a plugin's CI judges its layers hook even through
        a command that needs only groups (`GROCO_STRICT_PLUGINS=1 groco list-groups`)."""
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
            # Within a hook (one that looks something up), only the phase asked for.
            for each in PHASES if strict() and not self._running else (phase,):
                self._run_pending(each)

    def _run_pending(self, phase: str) -> None:
        if phase in self._running:
            return  # a hook of this phase looks something up: it sees what is committed
        pending = [name for name in self.plugins if phase not in self._phases_done[name]]
        if not pending:
            return
        self._running.add(phase)
        try:
            problems = self._run_phase(pending, phase, commit_with_problems=not strict())
        finally:
            self._running.discard(phase)
        if problems and strict():
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
        disabled = disabled_names()
        problem = disable_problem(disabled) if disabled else None
        if problem is not None and (strict() or CORE_PLUGIN_NAME in disabled):
            raise PluginError(f"{DISABLE_VARIABLE}: {problem}")
        if problem is not None:
            warnings.warn(f"{DISABLE_VARIABLE}: {problem}", GrocoPluginWarning, stacklevel=4)
        for entry_point in entry_points:
            distribution = _distribution_name(entry_point)
            builtin = distribution == BUILTIN_DISTRIBUTION
            if skip_third_party and not builtin:
                continue
            source = "built-in" if builtin else f"entry point of distribution {distribution!r}"
            if entry_point.name in disabled:
                dist = getattr(entry_point, "dist", None)
                self.disabled[entry_point.name] = SkippedPlugin(
                    name=entry_point.name,
                    source=f"{source}, {entry_point.value}",
                    reason=f"disabled by {DISABLE_VARIABLE}",
                    version=dist.version if dist is not None else None,
                )
                continue  # not even imported
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
        if inspect.isfunction(plugin):
            raise PluginError(_function_plugin_message(plugin, "the entry point names"))
        notes = _hook_notes(plugin, name)
        if notes and strict():
            raise PluginError("; ".join(notes))  # `_skip_entry_point` names the plugin
        dist = getattr(entry_point, "dist", None)
        self._add(plugin, name, source, dist.version if dist is not None else None, distribution)
        for note in notes:
            self._warn(name, note)
            self.plugins[name].problems.append(note)
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
        self._phases_done[name] = set()
        self.version += 1

    def _skip_entry_point(self, name: str, source: str, value: str, error: Exception) -> None:
        reason = str(error)
        if name not in self.plugins:
            key = name if name not in self.skipped else f"{name} ({source})"
            self.skipped[key] = SkippedPlugin(name=name, source=f"{source}, {value}", reason=reason)
        message = f"groco plugin {name!r} ({source}, {value}) was skipped: {reason}"
        if strict():
            raise PluginError(message) from error
        warnings.warn(message, GrocoPluginWarning, stacklevel=5)

    def _describe(self, name: str, message: str) -> str:
        return f"groco plugin {name!r} ({self.plugins[name].source}): {message}"

    def _warn(self, name: str, message: str) -> None:
        if strict():
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
        hook_name = HOOK_NAMES[PHASES.index(phase)]
        problems: list[tuple[str, str]] = []
        claims: dict[str, list[tuple[str, Any]]] = {}
        for name in sorted(names):
            plugin = self.manager.get_plugin(name)
            others = [other for other in self.manager.get_plugins() if other is not plugin]
            call_one_plugin = self.manager.subset_hook_caller(hook_name, remove_plugins=others)
            staged: list[Any] = []
            try:
                returned = call_one_plugin(register=staged.append)
            except Exception as error:  # noqa: BLE001 - fault isolation is the point
                problems.append((name, f"{hook_name} raised {error}"))
                staged, returned = [], []
            problems.extend(
                (
                    name,
                    f"{hook_name} returned {value!r} instead of calling register({kind}) for "
                    f"each {kind}; the returned value is ignored",
                )
                for value in returned
            )
            seen: set[str] = set()
            for obj in staged:
                try:
                    key = _validated_key(name, phase, obj)
                except PluginError as error:
                    problems.append((name, str(error)))
                    continue
                if key in seen:
                    problems.append((name, f"it registers the {kind} {key!r} twice"))
                    continue
                seen.add(key)
                claims.setdefault(key, []).append((name, obj))
        table = self.groups if phase == "groups" else self.layers
        accepted: dict[str, tuple[Any, str]] = {}
        withheld: dict[tuple[str, str], tuple[str, list[str]]] = {}
        for key, claimants in claims.items():
            builtin = [name for name, _ in claimants if self._is_builtin(name)]
            winner, messages = _resolve_claim(phase, claimants, table.get(key), builtin)
            problems.extend(messages)
            if winner is not None:
                accepted[key] = winner
            elif table.get(key) is None:  # newcomers clashed: nobody gets the name
                withheld[(phase, key)] = (
                    _shown(claimants[0][1]),
                    sorted(name for name, _ in claimants),
                )
        if problems and not commit_with_problems:
            return problems
        for key, (obj, name) in accepted.items():
            if phase == "layers":
                _make_serializable(obj)
            table[key] = (obj, name)
            getattr(self.plugins[name], phase).append(_shown(obj))
        self.withheld.update(withheld)
        for name in names:
            self._phases_done[name].add(phase)
        for name, message in problems:
            self.plugins[name].problems.append(message)
        self.version += 1
        return problems

    def _is_builtin(self, name: str) -> bool:
        return self.plugins[name].source.startswith("built-in")

    # -- registering and unregistering in code -------------------------------------------

    def register_directly(self, plugin: Any, name: str | None = None) -> str:
        """Registers a plugin object now (see `groco_core.registry.register_plugin`).

        Every phase the plugin has a hook for is first run for the plugins already there,
        so that a name it takes from them (a built-in layer's) is a clash now, not a
        silent win that the built-in loses later.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        with self._lock:
            self.ensure_loaded("groups")
            for phase, hook_name in zip(PHASES, HOOK_NAMES, strict=True):
                if callable(getattr(plugin, hook_name, None)):
                    self.ensure_loaded(phase)
            if name in self.plugins:
                raise PluginError(f"A plugin named {name!r} is already registered.")
            existing = self.manager.get_name(plugin)
            if existing is not None:
                raise PluginError(
                    f"The plugin object {plugin!r} is already registered as {existing!r} "
                    f"({self.plugins[existing].source}). Use "
                    "groco_core.testing.registered_plugin (or its pytest fixture "
                    f"register_plugin), which takes it out and restores it afterwards, or "
                    f"unregister_plugin({existing!r}) first."
                )
            if isinstance(plugin, type):
                raise PluginError(
                    f"plugin {name!r} is the class {plugin.__name__}; register an instance "
                    f"({plugin.__name__}()) or a module, so that its hooks are bound."
                )
            if inspect.isfunction(plugin):
                raise PluginError(f"plugin {name!r}: {_function_plugin_message(plugin, 'it is')}")
            try:
                notes = _hook_notes(plugin, name)
                if notes:
                    raise PluginError(
                        f"groco plugin {name!r} (registered directly): {'; '.join(notes)}"
                    )
                self._add(plugin, name, "registered directly", None, None)
                try:
                    for phase in PHASES:
                        problems = self._run_phase([name], phase, commit_with_problems=False)
                        if problems:
                            raise PluginError("; ".join(message for _, message in problems))
                except PluginError:
                    self.unregister(name)
                    raise
            except PluginError as error:
                message = str(error)
                if repr(name) not in message:
                    message = f"plugin {name!r}: {message}"
                raise PluginError(message) from error
        return name

    def unregister(self, name: str) -> None:
        """Removes a plugin and everything it registered."""
        with self._lock:
            if name not in self.plugins:
                raise ValueError(
                    f"No plugin named {name!r} is registered. Registered: {', '.join(self.plugins)}"
                )
            self.manager.unregister(name=name)
            self.groups = {k: v for k, v in self.groups.items() if v[1] != name}
            self.layers = {k: v for k, v in self.layers.items() if v[1] != name}
            self.withheld = {k: v for k, v in self.withheld.items() if name not in v[1]}
            del self.plugins[name]
            del self._phases_done[name]
            self.version += 1

    def registered_name(self, plugin: Any) -> str | None:
        """The name a plugin object is registered under, or None (loads the plugins first)."""
        self.ensure_loaded("groups")
        return self.manager.get_name(plugin)


# -- hooks ----------------------------------------------------------------------------------


def _hook_notes(plugin: Any, name: str) -> list[str]:
    """What is wrong with a plugin's hooks, for a warning each; raises PluginError when none
    of GroCo's hooks would run.

    pluggy checks them on a scratch manager, so that a plugin it refuses leaves the real
    one untouched: `register` refuses a hook whose arguments the hookspec lacks,
    `check_pending` a hook whose name no hookspec has.
    """
    try:
        hash(plugin)
    except TypeError:
        raise PluginError(
            f"the plugin object {plugin!r} is not hashable, and pluggy keeps plugins in sets; "
            "a dataclass needs @dataclasses.dataclass(eq=False)"
        ) from None
    probe = _new_manager()
    for hook_name in HOOK_NAMES:
        hook = getattr(plugin, hook_name, None)
        if callable(hook) and probe.parse_hookimpl_opts(plugin, hook_name) is not None:
            _check_hook_parameters(hook_name, hook)
    try:
        probe.register(plugin, name=name)
    except pluggy.PluginValidationError as error:
        details = "; ".join(str(error).splitlines()[1:])
        raise PluginError(
            f"pluggy refused its hooks ({details}); each of GroCo's hooks, "
            f"{' and '.join(HOOK_NAMES)}, takes one argument, `register`"
        ) from None
    callers = probe.get_hookcallers(plugin) or []
    notes = []
    try:
        probe.check_pending()
    except pluggy.PluginValidationError:
        unknown = sorted(
            caller.name
            for caller in callers
            if not caller.has_spec() and not all(i.optionalhook for i in caller.get_hookimpls())
        )
        closest = closest_match_note(unknown[0], list(HOOK_NAMES)).strip()
        notes.append(
            f"unknown hook(s) {', '.join(unknown)}: GroCo's hooks are "
            f"{' and '.join(HOOK_NAMES)} ({closest[:-1]})"
        )
    unmarked = [
        attribute
        for attribute in dir(plugin)
        if attribute.startswith("groco_")
        and callable(getattr(plugin, attribute, None))
        and probe.parse_hookimpl_opts(plugin, attribute) is None
    ]
    if unmarked:
        notes.append(
            f"function(s) {', '.join(unmarked)} not marked with @groco_core.hookimpl, so "
            "never called"
        )
    if not any(caller.has_spec() for caller in callers):
        notes.append(
            "no hook implementations: a plugin needs a function groco_register_groups or "
            "groco_register_layers marked with @groco_core.hookimpl"
        )
        raise PluginError("; ".join(notes))
    return notes


def _check_hook_parameters(hook_name: str, hook: Any) -> None:
    """Raises PluginError unless the hook takes exactly the parameter `register`, with the
    name to write: pluggy passes hook arguments by name, so another name would get nothing
    (pluggy refuses it, naming neither the plugin nor the fix), and a hook without the
    parameter has nothing to register with."""
    try:
        parameters = list(inspect.signature(hook).parameters)
    except (TypeError, ValueError):
        return  # no signature to read (a builtin): pluggy judges it
    if parameters == ["register"]:
        return
    bound = ["self"] if inspect.ismethod(hook) else []
    received = f"def {hook_name}({', '.join(bound + parameters)})"
    expected = f"def {hook_name}({', '.join([*bound, 'register'])})"
    takes = (
        f"the parameter(s) {', '.join(repr(p) for p in parameters)}" if parameters else "nothing"
    )
    raise PluginError(
        f"its hook {hook_name} takes {takes}, but GroCo calls each of its hooks "
        f"({' and '.join(HOOK_NAMES)}) with the one parameter 'register'; write "
        f"{expected}. Received: {received}"
    )


def _function_plugin_message(function: Any, named: str) -> str:
    """Why a function is not a plugin, and what to name instead: its module (or an object
    whose attributes are the hooks), because pluggy reads a plugin's hooks off its
    attributes."""
    module = function.__module__
    qualified = f"{module}:{function.__qualname__}"
    return (
        f"{named} the function {qualified!r}, not a plugin: a plugin is the module (or an "
        f"object) whose attributes are the hooks. Name the module that defines "
        f'{function.__name__}, {module!r} (in pyproject.toml: `NAME = "{module}"`), or an '
        "object with the hooks as attributes"
    )


# -- what a hook registers ------------------------------------------------------------------


def _validated_key(plugin_name: str, phase: str, obj: Any) -> str:
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
            f"plugin {plugin_name!r} registered {obj!r}, which is not a keras.layers.Layer subclass"
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
    _check_serializable(plugin_name, obj)
    return obj.__name__.lower()


def _shown(obj: Any) -> str:
    """The name a group or layer class is shown under (its own spelling)."""
    return obj.__name__ if isinstance(obj, type) else obj.name


def _resolve_claim(
    phase: str,
    claimants: list[tuple[str, Any]],
    existing: tuple[Any, str] | None,
    builtin: list[str],
) -> tuple[tuple[Any, str] | None, list[tuple[str, str]]]:
    """Who gets a name: its `existing` `(object, owner)` keeps it; among newcomers a single
    claimant, else the one `builtin` claimant, else nobody (the same whichever order they
    load in).

    Returns:
        The winner `(object, plugin name)` or None, and a `(plugin name, problem)` pair for
        each claimant that lost.
    """
    kind = phase[:-1]
    rename = "Rename one of them (names are case-insensitive)."
    shown = _shown

    if existing is not None:
        return None, [
            (
                name,
                f"{kind} name clash: plugin {name!r} registers {shown(obj)!r}, but plugin "
                f"{existing[1]!r} already registers {shown(existing[0])!r}; {name!r}'s was "
                f"skipped, nothing was overwritten. {rename}",
            )
            for name, obj in claimants
        ]
    if len(claimants) == 1:
        name, obj = claimants[0]
        return (obj, name), []
    names = [repr(name) for name, _ in claimants]
    owners = f"{', '.join(names[:-1])} and {names[-1]}"
    if len(builtin) == 1:
        winner = next((obj, name) for name, obj in claimants if name == builtin[0])
        outcome = f"the built-in plugin {builtin[0]!r} keeps it"
        losers = [(name, obj) for name, obj in claimants if name != builtin[0]]
    else:
        winner, losers = None, claimants
        outcome = "none of them is used (a plugin's load order must not decide)"
    return winner, [
        (
            name,
            f"{kind} name clash: plugins {owners} all register {shown(obj)!r}; {outcome}. {rename}",
        )
        for name, obj in losers
    ]


def _check_serializable(plugin_name: str, layer: type) -> None:
    """Raises PluginError when a layer class is not registered with Keras and the name
    `_make_serializable` would give it is taken by another class; changes nothing, so that a
    refused plugin leaves Keras as it was."""
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


def _make_serializable(layer: type) -> None:
    """Registers a layer class with Keras under its top-level package's name when it is not
    registered yet (`_check_serializable` has checked the name is free), so that a saved
    model loads."""
    import keras

    if keras.saving.get_registered_object(keras.saving.get_registered_name(layer)) is not layer:
        package = layer.__module__.split(".")[0]
        keras.saving.register_keras_serializable(package=package)(layer)


def _distribution_name(entry_point: Any) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else None
