"""What every group layer shares when it is loaded from a config."""

from __future__ import annotations

from typing import Any

from groco_core.registry import get_group


class RegisteredGroupsMixin:
    """Loads a layer only when the groups its config names are registered.

    Keras turns any error raised by a constructor during loading into a `TypeError` about
    deserialization; a group that no plugin provides deserves its own `ValueError`, naming
    the group and saying that a plugin must provide it. Put the mixin first among the bases.
    """

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        for key in ("group", "subgroup"):
            if isinstance(config.get(key), str):
                get_group(config[key])
        return super().from_config(config)
