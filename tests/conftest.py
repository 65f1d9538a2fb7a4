"""Shared fixtures: a seeded random generator and direct plugin registration."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for the tests' own `transforms` helpers

if os.environ.get("KERAS_BACKEND") == "jax":
    import jax

    # The default (partitionable) threefry takes seconds to compile a random draw of each
    # new shape on CPU; every weight initializer draws one. The tests need no partitioning.
    jax.config.update("jax_threefry_partitionable", False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def register_plugin():
    """Registers plugin objects for one test and unregisters them afterwards."""
    from groco_core import registry

    names: list[str] = []

    def register(plugin, name=None):
        names.append(registry.register_plugin(plugin, name=name))
        return names[-1]

    yield register
    for name in reversed(names):
        registry.unregister_plugin(name)
