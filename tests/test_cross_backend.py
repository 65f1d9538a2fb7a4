"""The same network, from the same weights and data, trains the same on JAX, TensorFlow and
PyTorch: four SGD steps of `tests/cross_backend_training.py` (lifting conv, batch norm, max
pooling onto a subgroup, conv, separable conv, transposed conv, batch norm, global max pooling,
Dense), compiled as `Model.compile` compiles by default, in a fresh process per backend.

The test starts all three backends itself, so it runs once per `make test`: in the JAX pass.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import keras
import pytest

SCRIPT = pathlib.Path(__file__).with_name("cross_backend_training.py")
BACKENDS = ("jax", "tensorflow", "torch")
RELATIVE_TOLERANCE = 2e-3


def train(backend: str) -> list[float]:
    """The losses of `cross_backend_training.py` run with `KERAS_BACKEND=backend`."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
        timeout=600,
    )
    assert result.returncode == 0, f"{backend} failed:\n{result.stderr[-4000:]}"
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))["losses"]


def labels(count: int) -> list[str]:
    """What each loss is: one per training step, then the trained network's (inference)."""
    return [f"step {step}" for step in range(1, count)] + ["trained"]


def table(losses: dict[str, list[float]]) -> str:
    """The losses, one row per backend."""
    count = len(next(iter(losses.values())))
    rows = [" " * 12 + "".join(f"{label:>14}" for label in labels(count))]
    for backend, values in losses.items():
        rows.append(f"  {backend:<10}" + "".join(f"{value:14.7g}" for value in values))
    return "\n".join(rows)


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns one process per backend; runs in the JAX pass",
)
def test_training_agrees_across_backends():
    # Two at a time: the machines this suite runs on have two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        losses = dict(zip(BACKENDS, pool.map(train, BACKENDS), strict=True))

    not_finite = [b for b, ls in losses.items() if not all(math.isfinite(v) for v in ls)]
    assert not not_finite, f"non-finite losses on {', '.join(not_finite)}\n{table(losses)}"
    disagreeing = [
        f"{a} and {b} at {label}"
        for i, a in enumerate(BACKENDS)
        for b in BACKENDS[i + 1 :]
        for label, u, v in zip(labels(len(losses[a])), losses[a], losses[b], strict=True)
        if not math.isclose(u, v, rel_tol=RELATIVE_TOLERANCE)
    ]
    assert not disagreeing, (
        f"losses differ beyond rtol {RELATIVE_TOLERANCE}: {'; '.join(disagreeing)}\n{table(losses)}"
    )
    for backend, values in losses.items():  # it does train: the last step beats the first
        assert values[-2] < values[0], f"{backend} does not train\n{table(losses)}"
