"""SeparableGroupConv against GroupConv: parameters and train-step time, and the fastest
depthwise formulation on this backend.

2D: P4M, 32 fields in and out, 28×28, kernels 3×3 and 5×5: a group convolution
`(B, 28, 28, 8, 32) → (B, ·, ·, 8, 32)` (`padding="same_equiv"`) as `GroupConv2D` and as
`SeparableGroupConv2D` with the backend's depthwise formulation, and the floor: the same
separable layer with a 1×1 kernel, whose step is what every separable step pays besides its
spatial kernel (GroupConv's time over it bounds the speedup). 3D: the same on `O` (the
cube's rotations, when a plugin provides it) on a small volume. These three models of one
configuration train side by side in one process, steps interleaved (the order rotates every
repeat), and the median step times are compared.

Two positions of the layer (`--positions`):

- `inner`: the layer inside a network, where its input comes from trainable layers and the
  step computes the gradient of its input too. A signal on the group is always such an
  input: a network's first layer lifts an image. Here a one-parameter layer (`Scale`, the
  input times a trainable scalar) stands in for the layers before; both models pay for it.
  Only the backend's default formulation and the floor are timed.
- `first`: the layer's input is the model's input, so no step computes its gradient. This
  spares the full `GroupConv` its largest product (the input gradient, as many FLOPs as its
  forward pass), while the separable layer still needs the gradient of its pointwise part's
  input (for its depthwise kernel), so the ratio is lower than inside a network. Here every
  formulation (`depthwise_conv`, `grouped_conv`, `patches`, `shifts`) is also timed, side
  by side among themselves and apart from the three models above: some are ten times
  slower than the default, and interleaved with it they slowed its steps.

Run: `KERAS_BACKEND=jax python benchmarks/separable.py [--repeats 7] [--steps 2]
[--positions inner first] [--json]`

`KERAS_BACKEND=torch python benchmarks/separable.py --profile [--kernel 3]`: instead, a
`torch.profiler` table of ten inner-position train steps of the 2D separable layer (operators
by self time, grouped by input shape); with `KERAS_BACKEND=jax`, the operations of the
compiled gradient step (the loss's gradient through the model, without the optimizer) by
time over ten steps, from a `jax.profiler` trace, with their output shapes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import keras
import numpy as np
from groco_separable import SeparableGroupConv2D, SeparableGroupConv3D

from groco_core import GroupConv2D, GroupConv3D, get_group, list_groups
from groco_core.toolkit import DEPTHWISE_FORMULATIONS as FORMULATIONS
from groco_core.toolkit import fastest_depthwise_formulation

CONFIGS = {
    "2d": {"group": "P4M", "fields": 32, "size": 28, "kernels": (3, 5)},
    "3d": {"group": "O", "fields": 8, "size": 10, "kernels": (3,)},
}


POSITIONS = ("inner", "first")


class Scale(keras.layers.Layer):
    """The input times one trainable scalar: the cheapest trainable layer, placed in front of
    the benchmarked layer so that the train step needs that layer's input gradient."""

    def build(self, input_shape: tuple) -> None:
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, inputs):
        return inputs * self.scale


def _model(layer: keras.layers.Layer, shape: tuple[int, ...], position: str) -> keras.Model:
    inputs = keras.Input(shape)
    x = Scale()(inputs) if position == "inner" else inputs
    model = keras.Model(inputs, layer(x))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def _page_faults() -> int | None:
    """The process's minor page faults so far (first writes to freshly mapped memory), or
    None where the platform does not count them."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _time_steps(
    model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int
) -> tuple[float, float | None]:
    """Seconds and minor page faults per step."""
    faults = _page_faults()
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = (time.perf_counter() - start) / steps
    after = _page_faults()
    return seconds, None if faults is None else (after - faults) / steps


def _medians(
    models: dict[str, keras.Model], x, y, repeats: int, steps: int
) -> tuple[dict[str, float], dict[str, float | None]]:
    """Median step time and median minor page faults per step of each model, steps
    interleaved (the order rotates every repeat, so drifts in machine load hit every model
    alike)."""
    for model in models.values():  # compile and warm up
        for _ in range(2):
            model.train_on_batch(x, y)
    times: dict[str, list[float]] = {name: [] for name in models}
    faults: dict[str, list[float | None]] = {name: [] for name in models}
    names = list(models)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, count = _time_steps(models[name], x, y, steps)
            times[name].append(seconds)
            faults[name].append(count)
    medians = {name: statistics.median(values) for name, values in times.items()}
    fault_medians = {
        name: None if None in values else statistics.median(values)
        for name, values in faults.items()
    }
    return medians, fault_medians


def compare(rank: int, kernel: int, batch: int, repeats: int, steps: int, position: str) -> dict:
    """Median train-step times of GroupConv, of SeparableGroupConv with the backend's
    formulation and of the floor, side by side; in the `first` position also of every
    formulation, side by side among themselves.

    The formulations are timed apart: some are ten times slower than the default, and
    interleaved with the headline models their steps' memory traffic slowed the default's
    next step (docs/separable.md)."""
    config = CONFIGS[f"{rank}d"]
    group, fields, size = config["group"], config["fields"], config["size"]
    order = get_group(group).order
    shape = (size,) * rank + (order, fields)
    full_class = GroupConv2D if rank == 2 else GroupConv3D
    separable_class = SeparableGroupConv2D if rank == 2 else SeparableGroupConv3D
    chosen = fastest_depthwise_formulation(rank)
    options = {"group": group, "padding": "same_equiv"}

    def separable(formulation: str) -> keras.Model:
        layer = separable_class(fields, kernel, formulation=formulation, **options)
        return _model(layer, shape, position)

    default = f"Separable[{chosen}]"
    models = {
        "GroupConv": _model(full_class(fields, kernel, **options), shape, position),
        default: separable(chosen),
        # What every separable step pays whatever its kernel: the pointwise part, the loss,
        # the optimizer and Keras's step. GroupConv's time over it bounds the speedup any
        # depthwise formulation can reach.
        "Floor": _model(separable_class(fields, 1, **options), shape, position),
    }
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype("float32")
    y = rng.normal(size=(batch, *shape)).astype("float32")
    medians, faults = _medians(models, x, y, repeats, steps)
    formulations = {chosen: medians[default]}
    if position == "first":
        candidates = FORMULATIONS if rank == 2 else FORMULATIONS[1:]
        each = {formulation: separable(formulation) for formulation in candidates}
        formulations, _ = _medians(each, x, y, repeats, steps)
    return {
        "backend": keras.backend.backend(),
        "position": position,
        "group": group,
        "kernel": kernel,
        "batch": batch,
        "params_group_conv": models["GroupConv"].layers[-1].count_params(),
        "params_separable": models[default].layers[-1].count_params(),
        "step_ms": {name: 1e3 * t for name, t in medians.items()},
        "page_faults_per_step": faults,
        "formulation_ms": {name: 1e3 * t for name, t in formulations.items()},
        "fastest_formulation": min(formulations, key=formulations.get),
        "default_formulation": chosen,
        "speedup_default": medians["GroupConv"] / medians[default],
        "floor_ms": 1e3 * medians["Floor"],
        "speedup_bound": medians["GroupConv"] / medians["Floor"],
    }


def profile(kernel: int, batch: int) -> None:
    """Print the operations of ten inner-position train steps of the 2D separable layer by
    time: a `torch.profiler` table on PyTorch; on JAX, the compiled gradient step's operations
    from a `jax.profiler` trace, with their output shapes."""
    if keras.backend.backend() == "jax":
        _profile_jax(kernel, batch)
        return
    import torch

    config = CONFIGS["2d"]
    shape = (config["size"],) * 2 + (get_group(config["group"]).order, config["fields"])
    layer = SeparableGroupConv2D(
        config["fields"], kernel, group=config["group"], padding="same_equiv"
    )
    model = _model(layer, shape, "inner")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype("float32")
    y = rng.normal(size=(batch, *shape)).astype("float32")
    for _ in range(3):
        model.train_on_batch(x, y)
    with torch.profiler.profile(record_shapes=True) as profiler:
        for _ in range(10):
            model.train_on_batch(x, y)
    averages = profiler.key_averages(group_by_input_shape=True)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=15, max_shapes_column_width=80))


def _profile_jax(kernel: int, batch: int) -> None:
    import collections
    import gzip
    import pathlib
    import re
    import tempfile

    import jax
    import jax.numpy as jnp

    config = CONFIGS["2d"]
    shape = (config["size"],) * 2 + (get_group(config["group"]).order, config["fields"])
    layer = SeparableGroupConv2D(
        config["fields"], kernel, group=config["group"], padding="same_equiv"
    )
    model = _model(layer, shape, "inner")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, *shape)).astype("float32"))
    y = jnp.asarray(rng.normal(size=(batch, *shape)).astype("float32"))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(trainable, non_trainable, x, y):
        prediction, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return jnp.mean(jnp.mean(jnp.square(prediction - y), axis=-1))  # Keras's "mse"

    step = jax.jit(jax.grad(loss)).lower(trainable, non_trainable, x, y).compile()
    shapes = dict(re.findall(r"^\s*(?:ROOT )?%(\S+) = (\S+\[[^\]]*\])", step.as_text(), re.M))
    for _ in range(3):
        jax.block_until_ready(step(trainable, non_trainable, x, y))
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            for _ in range(10):
                jax.block_until_ready(step(trainable, non_trainable, x, y))
        trace = next(pathlib.Path(directory).rglob("*.trace.json.gz"))
        events = json.loads(gzip.decompress(trace.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    times: collections.Counter = collections.Counter()
    for event in events:  # the compiled step's operations: the names its HLO gives them
        if event.get("ph") == "X" and event["name"] in shapes:
            times[event["name"]] += event.get("dur", 0)
    print(f"jax separable {kernel}x{kernel}, inner, gradient step, ms per step (a loop listed")
    print("with the operations inside it; their times overlap):")
    for name, microseconds in times.most_common(15):
        print(f"{microseconds / 1e4:8.2f}  {name:40} {shapes[name]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-3d", type=int, default=2)
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--positions", nargs="+", default=list(POSITIONS), choices=POSITIONS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true", help="operations by time (torch, jax)")
    parser.add_argument("--kernel", type=int, default=3, help="kernel size for --profile")
    args = parser.parse_args()
    if args.profile:
        if keras.backend.backend() not in ("torch", "jax"):
            parser.error("--profile needs KERAS_BACKEND=torch or jax")
        profile(args.kernel, args.batch)
        return
    results = []
    for rank in args.ranks:
        config = CONFIGS[f"{rank}d"]
        if config["group"] not in {g.name for g in list_groups(rank)}:
            print(f"skipped {rank}D: no plugin provides group {config['group']}")
            continue
        batch = args.batch if rank == 2 else args.batch_3d
        for position in args.positions:
            for kernel in config["kernels"]:
                results.append(compare(rank, kernel, batch, args.repeats, args.steps, position))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        steps = ", ".join(f"{name} {ms:.1f}" for name, ms in r["step_ms"].items())
        line = (
            f"{r['backend']:<10} {r['position']:<5} {r['group']:<3} "
            f"{r['kernel']}x{r['kernel']}: params "
            f"{r['params_group_conv']} / {r['params_separable']} = "
            f"{r['params_group_conv'] / r['params_separable']:.1f}x; train step (ms, median, "
            f"batch {r['batch']}): {steps}; GroupConv / Separable = "
            f"{r['speedup_default']:.1f}x with the default {r['default_formulation']}; "
            f"kernel-1 floor {r['floor_ms']:.1f} ms, bound {r['speedup_bound']:.1f}x"
        )
        if None not in r["page_faults_per_step"].values():
            faults = ", ".join(f"{n} {c:.0f}" for n, c in r["page_faults_per_step"].items())
            line += f"; minor page faults per step (median): {faults}"
        if r["position"] == "first":
            each = ", ".join(f"{name} {ms:.1f}" for name, ms in r["formulation_ms"].items())
            line += f"; each formulation, timed apart (ms): {each}"
        print(line)


if __name__ == "__main__":
    main()
