"""Multi-device training on Keras's own engines, on two virtual CPU devices: JAX's
`DataParallel` and `ModelParallel` (group-conv kernels sharded over their filters), TensorFlow's
`MirroredStrategy`, and PyTorch's `DistributedDataParallel` over two gloo processes. Each
backend's pass of the suite runs that backend's engine (`tests/distributed_scenarios.py`, in a
fresh process: the device count is fixed when the backend starts)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np

SCENARIOS = pathlib.Path(__file__).with_name("distributed_scenarios.py")


def _run(backend: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "KERAS_BACKEND")}
    result = subprocess.run(
        [sys.executable, str(SCENARIOS), backend],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_training_on_two_devices_matches_one_device():
    backend = keras.backend.backend()
    result = _run(backend)
    assert result["devices"] == 2
    single, parallel = np.array(result["single"]), np.array(result["data_parallel"])
    assert single[-1] < single[0] and parallel[-1] < parallel[0]  # the loss decreases
    if backend == "torch":
        # Each process sees half of the batch; the averaged gradients make the same update.
        assert result["weight_difference"] < 1e-5
        return
    np.testing.assert_allclose(parallel, single, rtol=1e-4)
    if backend == "jax":
        np.testing.assert_allclose(result["model_parallel"], single, rtol=1e-4)
        # (3, 3, 8, 4, 4) split over the filters: two shards of (3, 3, 8, 4, 2).
        assert result["kernel_spec"][-1] == "model"
        assert result["kernel_shards"] == 2 and result["shard_shape"] == [3, 3, 8, 4, 2]
    else:
        assert result["variable"] == "MirroredVariable"
