"""What every group layer shares: the `GroupLayer` protocol's defaults, its groups saved by
plugin and checked on loading, and its input checked on every call."""

from __future__ import annotations

from typing import Any

from groco_core import registry
from groco_core.groups import PointGroup
from groco_core.layers.arguments import check_call_input
from groco_core.registry import get_group

_GROUP_KEYS = ("group", "subgroup")
PROVENANCE_KEY = "group_plugins"


class RegisteredGroupsMixin:
    """Makes a layer a `groco_core.GroupLayer`, saves where its groups come from, loads the
    layer only when they exist, and refuses an input of a kind the layer does not take.

    The protocol: the layer's constructor sets `group` (declared here); `input_group` is
    `group` and `output_group` is `subgroup` where the layer has one, else `group` (a layer
    whose groups go the other way, or whose output has no group axis, overrides them);
    `data_format` is `"channels_last"` until the constructor sets it.

    `get_config` adds `group_plugins`: for each group the layer uses, the plugin and the
    distribution that provided it. Keras turns any error raised by a constructor during
    loading into a `TypeError` about deserialization; a group that no plugin provides
    deserves its own `ValueError`, naming the group, saying that a plugin must provide it,
    and which plugin did when the model was saved.

    `__call__` first compares the input's shape with what the layer takes or was built on
    (`arguments.check_call_input`): an image given to a layer built on signals on the group,
    or the reverse, a changed number of channels or group axis, or an image given to a
    layer of signals only. Keras's own input-spec check and the backend come after it, and
    say less. Put the mixin first among the bases.

    Example:
        >>> import keras
        >>> from groco_core import GroupLayer, get_group
        >>> from groco_core.toolkit import RegisteredGroupsMixin
        >>> class Identity(RegisteredGroupsMixin, keras.layers.Layer):
        ...     def __init__(self, group, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.group = get_group(group)
        ...     def call(self, inputs):
        ...         return inputs
        ...     def get_config(self):
        ...         return {**super().get_config(), "group": self.group.name}
        >>> layer = Identity("P4M")
        >>> isinstance(layer, GroupLayer), layer.output_group.name
        (True, 'P4M')
    """

    group: PointGroup | None
    data_format: str = "channels_last"

    @property
    def input_group(self) -> PointGroup | None:
        """The group the input's group axis runs over (None: any group)."""
        return self.group

    @property
    def output_group(self) -> PointGroup | None:
        """The group the output's group axis runs over."""
        return getattr(self, "subgroup", None) or self.group

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        check_call_input(self, args[0] if args else kwargs.get("inputs"))
        return super().__call__(*args, **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        provenance = {}
        for key in _GROUP_KEYS:
            group = getattr(self, key, None)
            origin = None if group is None else registry.group_provenance(group)
            if origin is not None:
                provenance[group.name] = _describe(origin)
        config[PROVENANCE_KEY] = provenance
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        config = dict(config)
        provenance = config.pop(PROVENANCE_KEY, None) or {}
        for key in _GROUP_KEYS:
            name = config.get(key)
            if not isinstance(name, str):
                continue
            try:
                get_group(name)
            except ValueError as error:
                origin = provenance.get(name)
                if origin is None:
                    raise
                raise ValueError(
                    f"{error} The model was saved with {name} from {origin}; install that "
                    "plugin to load it."
                ) from None
        return super().from_config(config)


def _describe(provenance: dict[str, str | None]) -> str:
    """`plugin 'hexagonal' (distribution 'groco-hexagonal' 0.1.0)`."""
    text = f"plugin {provenance['plugin']!r}"
    if provenance["distribution"]:
        version = f" {provenance['version']}" if provenance["version"] else ""
        text += f" (distribution {provenance['distribution']!r}{version})"
    return text


def load_model(filepath: Any, custom_objects: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """`keras.saving.load_model` that first makes every registered layer known to Keras.

    `import groco_core` imports neither Keras nor any plugin, so a plain
    `keras.models.load_model` cannot yet know the classes of a file's groco and plugin layers.
    This loads the plugins' layers (registering each with Keras), then loads the file. After
    it (or any use of the layers), `keras.models.load_model` works too.

    Args:
        filepath: the `.keras` file.
        custom_objects: more objects for Keras, as in `keras.saving.load_model`.
        **kwargs: passed on (`compile`, `safe_mode`).

    Raises:
        ValueError: when a layer's group is not registered, naming the group and the plugin
            that provided it when the model was saved.
    """
    import keras

    known = {}
    for layer in registry.list_layers():
        known[keras.saving.get_registered_name(layer)] = layer
    known.update(custom_objects or {})
    return keras.saving.load_model(filepath, custom_objects=known, **kwargs)
