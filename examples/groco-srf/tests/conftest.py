"""The plugin's test fixtures: GroCo's `register_plugin` fixture, a seeded generator, and
this suite's own action of a group on square grids (`srf_actions`)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from groco_core.testing import register_plugin  # noqa: F401 - the fixture

sys.path.insert(0, os.path.dirname(__file__))  # for `srf_actions`

if os.environ.get("KERAS_BACKEND") == "jax":
    import jax

    # The partitionable threefry compiles a random draw per weight shape for seconds on CPU.
    jax.config.update("jax_threefry_partitionable", False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)
