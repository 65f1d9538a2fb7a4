"""Multi-device training scenarios on virtual CPU devices, one per backend, run in a fresh
process by `tests/test_distribution.py` (the device count must be set before the backend
starts). Prints one JSON line with what the test checks.

Run: `python tests/distributed_scenarios.py jax|tensorflow|torch`
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

BACKEND = sys.argv[1]
os.environ["KERAS_BACKEND"] = BACKEND
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import numpy as np  # noqa: E402

EPOCHS, BATCH, LEARNING_RATE = 3, 8, 0.05


def network():
    import keras

    from groco_core import GlobalGroupMaxPooling2D, GroupConv2D

    inputs = keras.Input((9, 9, 2))
    x = GroupConv2D(4, 3, activation="relu", group="P4M", name="lift")(inputs)
    x = GroupConv2D(4, 3, group="P4M", name="gconv")(x)
    x = GlobalGroupMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 9, 9, 2)).astype("float32")
    return x, rng.normal(size=(16, 2)).astype("float32")


def fit(model):
    import keras

    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    history = model.fit(*data(), epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0)
    return history.history["loss"]


def jax_scenario() -> dict:
    import jax
    import keras

    keras.utils.set_random_seed(1)
    single = network()
    weights = single.get_weights()
    result = {"devices": len(jax.devices()), "single": fit(single)}
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    data_parallel = network()
    data_parallel.set_weights(weights)
    result["data_parallel"] = fit(data_parallel)
    # Group-conv kernels sharded over their last axis, the filters.
    mesh = keras.distribution.DeviceMesh((2,), ["model"], devices)
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["lift/kernel"] = (None, None, None, "model")
    layout_map["gconv/kernel"] = (None, None, None, None, "model")
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name=None)
    )
    model_parallel = network()
    model_parallel.set_weights(weights)
    result["model_parallel"] = fit(model_parallel)
    kernel = model_parallel.get_layer("gconv").kernel.value
    result["kernel_spec"] = [str(axis) for axis in kernel.sharding.spec]
    result["kernel_shards"] = len(kernel.addressable_shards)
    result["shard_shape"] = list(kernel.addressable_shards[0].data.shape)
    return result


def tensorflow_scenario() -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    keras.utils.set_random_seed(1)
    single = network()
    weights = single.get_weights()
    result = {"single": fit(single)}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = network()
        mirrored.set_weights(weights)
        result["data_parallel"] = fit(mirrored)
    result["devices"] = strategy.num_replicas_in_sync
    result["variable"] = type(mirrored.get_layer("gconv").kernel.value).__name__
    return result


def torch_sgd(model, parameters, world: int = 1, rank: int = 0, steps: int = 5) -> list[float]:
    """Full-batch SGD on this process's share of the data; returns the losses."""
    import torch

    x, y = data()
    share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
    optimizer = torch.optim.SGD(parameters, lr=LEARNING_RATE)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.mean((model(torch.as_tensor(x[share])) - torch.as_tensor(y[share])) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def torch_worker(rank: int, world: int, weights_path: str, output: str, port: int) -> None:
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import keras

    model = network()
    model.load_weights(weights_path)
    replicated = torch.nn.parallel.DistributedDataParallel(model)
    losses = torch_sgd(replicated, [v.value for v in model.trainable_variables], world, rank)
    if rank == 0:
        weights = [keras.ops.convert_to_numpy(w) for w in model.get_weights()]
        np.savez(output, *weights, losses=np.asarray(losses))
    dist.destroy_process_group()


def torch_scenario() -> dict:
    import socket

    import keras
    import torch.multiprocessing as mp

    keras.utils.set_random_seed(1)
    model = network()
    folder = tempfile.mkdtemp()
    weights_path = os.path.join(folder, "start.weights.h5")
    model.save_weights(weights_path)
    single = torch_sgd(model, [v.value for v in model.trainable_variables])
    with socket.socket() as sock:  # a free port for the process group
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    output = os.path.join(folder, "ddp.npz")
    mp.spawn(torch_worker, args=(2, weights_path, output, port), nprocs=2, join=True)
    saved = np.load(output)
    difference = max(
        float(np.max(np.abs(saved[f"arr_{i}"] - keras.ops.convert_to_numpy(w))))
        for i, w in enumerate(model.get_weights())
    )
    return {
        "devices": 2,
        "single": single,
        "data_parallel": saved["losses"].tolist(),
        "weight_difference": difference,
    }


if __name__ == "__main__":
    scenario = {"jax": jax_scenario, "tensorflow": tensorflow_scenario, "torch": torch_scenario}
    print("RESULT " + json.dumps(scenario[BACKEND]()))
