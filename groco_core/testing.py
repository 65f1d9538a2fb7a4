"""The testing kit: equivariance checks for layers and any tensor function, the conformance
kit, and the fixture that registers a plugin for one test.

Everything a plugin's test suite needs, in one place: `check_equivariance`, `random_input`,
`support_weights` and `EquivarianceCase` (from `groco_core.equivariance`), `check_group`,
`assert_conforms` and the other checks of `groco check` (from `groco_core.check`), and
`registered_plugin` with its pytest fixture `register_plugin`.

Example:
    >>> import numpy as np
    >>> from groco_core import GroupConv2D
    >>> from groco_core.testing import check_equivariance
    >>> layer = GroupConv2D(4, 3, group="P4M")
    >>> x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype("float32")
    >>> check_equivariance(layer, x) < 1e-4
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from groco_core import registry
from groco_core.check import (  # the conformance kit, for a plugin's own tests
    CheckRow,
    assert_conforms,
    check_group,
    check_group_axioms,
    check_kernel_tables,
    check_layer_class,
    check_layers,
    check_plugin,
    check_round_trip,
    check_transform,
)
from groco_core.equivariance import (
    EquivarianceCase,
    check_equivariance,
    random_input,
    support_weights,
)

__all__ = [
    "CheckRow",
    "EquivarianceCase",
    "assert_conforms",
    "check_equivariance",
    "check_group",
    "check_group_axioms",
    "check_kernel_tables",
    "check_layer_class",
    "check_layers",
    "check_plugin",
    "check_round_trip",
    "check_transform",
    "random_input",
    "registered_plugin",
    "support_weights",
]


@contextlib.contextmanager
def registered_plugin(plugin: Any, name: str | None = None) -> Iterator[str]:
    """Registers a plugin object for the duration of a `with` block; yields its name.

    Works for an installed plugin too: when the object (e.g. the plugin's module) is already
    registered through its entry point, it is taken out first and the registry is reloaded
    from the entry points afterwards.

    Example:
        >>> from groco_core import MatrixGroup, get_group, hookimpl
        >>> class Plugin:
        ...     @hookimpl
        ...     def groco_register_groups(self, register):
        ...         register(MatrixGroup("Tiny", [[[1, 0], [0, 1]]]))
        >>> with registered_plugin(Plugin(), name="tiny"):
        ...     get_group("tiny").order
        1
    """
    existing = registry.registered_name(plugin)
    if existing is not None:
        registry.unregister_plugin(existing)
    try:
        registered = registry.register_plugin(plugin, name=name or existing)
    except BaseException:
        if existing is not None:
            registry.reload_plugins()
        raise
    try:
        yield registered
    finally:
        if existing is not None:
            registry.reload_plugins()
        else:
            registry.unregister_plugin(registered)


try:  # the fixture needs pytest, a test-time dependency only
    import pytest
except ImportError:  # pragma: no cover - without pytest there is nothing to fix up
    pytest = None

if pytest is not None:
    __all__.append("register_plugin")

    @pytest.fixture
    def register_plugin() -> Iterator[Callable[..., str]]:
        """A pytest fixture: `register_plugin(plugin, name=None)` registers a plugin object
        for one test (an installed one too, see `registered_plugin`) and returns its name.

        Use it in a plugin's test suite with `from groco_core.testing import register_plugin`
        in `conftest.py`.
        """
        with contextlib.ExitStack() as stack:

            def register(plugin: Any, name: str | None = None) -> str:
                return stack.enter_context(registered_plugin(plugin, name))

            yield register
