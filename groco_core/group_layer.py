"""The layer protocol, beside the group protocol `PointGroup`: what every group layer says
about the groups it maps between, so that the registry, `groco_core.testing`, `groco check`
and `groco_core.export` can use any layer, the core's or a plugin's, the same way.

The check is structural and made on the class, because the registry receives classes: a
member counts when the class defines it (a property, a method, a class attribute) or
declares it with an annotation (`group: PointGroup | None`, for an attribute its constructor
sets). `groco_core.toolkit.RegisteredGroupsMixin`, first among the bases of
every GroCo layer, declares `group` and provides the rest, so a layer built on it conforms.
"""

from __future__ import annotations

import abc
from typing import Any

from groco_core.groups import PointGroup

REQUIRED_MEMBERS = ("group", "input_group", "output_group", "data_format", "get_config")
OPTIONAL_MEMBERS = ("export_plain", "equivariance_cases")


class GroupLayer(abc.ABC):
    """The protocol every registered layer follows.

    Structural, like `collections.abc.Sized`: a layer class does not derive from it.
    `issubclass(layer_class, GroupLayer)` and `isinstance(layer, GroupLayer)` hold when
    `missing_members(layer_class)` is empty, and the registry refuses a layer class for which
    it is not.

    Attributes:
        group: the layer's group, a `PointGroup`; None only for a layer whose group is
            optional and was not given (`GroupBatchNormalization`, `GlobalGroup*Pooling`),
            which takes a signal on any group.
        input_group: the group the input's group axis runs over: `group`, or a transposed
            convolution's `subgroup`. A lifting layer called on an image has no input group
            axis; this is then the group a signal input would live on. None when the layer
            takes any group.
        output_group: the group the output's group axis runs over: `subgroup` where the
            layer has one, else `group` (a transposed convolution: `group`). None when the
            output has no group axis (global pooling: invariant) or the layer takes any
            group.
        data_format: `"channels_last"` or `"channels_first"`: channels on the last axis, the
            group axis just before them, or channels on axis 1 and the group axis last. A
            layer without spatial axes or a `data_format` argument (`GroupDense`) is
            `"channels_last"`.

    Methods:
        get_config(): Keras's, storing every group by name (a string, or None), never as an
            object, so that the config is plain data and a saved model finds its groups
            through the registry.
        export_plain(inputs) (optional): the same computation with stock Keras layers, for
            `groco_core.export`.
        equivariance_cases(group) (optional classmethod): small configurations of the layer
            on a group, as `groco_core.testing.EquivarianceCase` objects (`[]` where the class
            does not apply), run by `groco check`.

    Example:
        >>> from groco_core import GroupConv2D, GroupLayer
        >>> layer = GroupConv2D(4, 3, group="P4M", subgroup="P4")
        >>> isinstance(layer, GroupLayer), layer.input_group.name, layer.output_group.name
        (True, 'P4M', 'P4')
    """

    __slots__ = ()

    group: PointGroup | None
    input_group: PointGroup | None
    output_group: PointGroup | None
    data_format: str

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """The layer's configuration, groups by name."""

    @classmethod
    def __subclasshook__(cls, subclass: type) -> bool:
        if cls is not GroupLayer:
            return NotImplemented
        return not missing_members(subclass)


def missing_members(layer_class: type) -> list[str]:
    """The required members of `GroupLayer` that a class neither defines nor declares.

    Args:
        layer_class: a class (for a layer, pass `type(layer)`).

    Returns:
        Their names, in the order of `REQUIRED_MEMBERS`; empty when the class conforms.

    Raises:
        TypeError: when `layer_class` is not a class.
    """
    if not isinstance(layer_class, type):
        raise TypeError(
            "missing_members checks a class. Received: "
            f"layer_class={layer_class!r}. Pass type(layer) to check a layer."
        )
    return [name for name in REQUIRED_MEMBERS if not _has_member(layer_class, name)]


def _has_member(layer_class: type, name: str) -> bool:
    if name == "get_config":
        return callable(getattr(layer_class, name, None))
    return hasattr(layer_class, name) or any(
        name in vars(klass).get("__annotations__", {}) for klass in layer_class.__mro__
    )
