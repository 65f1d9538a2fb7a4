"""Whole networks: `GroupResNet18` on P4M against the plain ResNet-18 of the same expanded
widths, train step and inference, and inference of its `groco_core.export` against the same
plain network; with the peak memory of building and training each.

Input 32×32×3 (CIFAR-sized), batch 8, 10 classes: on two CPU cores a train step of the
channel-matched pair takes a few tenths of a second and one of the parameter-matched pair
about two seconds, so that interleaved repeats of both fit in minutes per backend (ImageNet's
224×224 would take 49 times as long per step).

- `channel-matched`: `GroupResNet18(group="P4M", base_filters=8)`: 8 fields, each with the
  8 elements of P4M, so 64 channels in the first stage as the plain ResNet-18 has (a
  CPU-sized base; `base_filters=64` would compute with 512 channels).
- `parameter-matched`: `base_filters=None` (23 fields, about the plain ResNet-18's 12.9
  million parameters), computing with 8·23 = 184 channels.

The plain network of each is `GroupResNet18(group="P1", base_filters=8·b)` (the same code on
the trivial group: a plain ResNet-18 with the channels the group network computes with)
rebuilt from stock Keras layers (`stock_keras`: `Conv2D`, `BatchNormalization`, …; the same
layers and parameters), so that the reference is Keras's own network, not GroCo's code on
P1; the P1 network itself is timed too (`p1`). The models run interleaved in one process
through `overhead.py`'s `_interleaved` (mean-square loss on the 10 softmax outputs, SGD,
`train_on_batch` / `predict_on_batch`), and for inference also the group network's
`groco_core.export`; each ratio (group, P1, export over the plain network) is the median of
the per-repeat ratios, with a distribution-free 95% interval for it.

Peak memory (`--memory`): each model in a fresh process, which imports the backend, then
builds the model and runs three train steps; the figure is how far the resident set rose
above the imported process at its peak (`VmHWM` − `VmRSS` before the build): weights,
gradients, activations, temporaries and the compiled step, by the operating system's count,
so the same figure on every backend (Linux only; elsewhere not reported).

Run: `KERAS_BACKEND=jax python benchmarks/networks.py [--quick] [--repeats 7]
[--configs channel-matched parameter-matched] [--memory] [--json]`; `--quick`: the
channel-matched pair only, 3 repeats, no memory (about two minutes on two cores).
`--profile CONFIG MODEL` (`group`, `plain`, `p1` or `export`): operators by self time of 5
train steps and 10 inference calls of one model (PyTorch). `--without FAST_PATH ...`: the
group network against itself computed with those fast paths' references, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # overhead.py, beside this file, when imported from elsewhere
    sys.path.insert(0, str(HERE))

import overhead  # noqa: E402

GROUP = "P4M"
INPUT_SHAPE = (32, 32, 3)
BATCH = 8
CLASSES = 10
CONFIGS = {"channel-matched": 8, "parameter-matched": None}


def _base_filters(config: str, base_filters: int | None = None) -> int:
    """The group network's first-stage fields for `config` (None resolved as
    `GroupResNet18` resolves it)."""
    from groco_core import get_group
    from groco_core.applications.building import parameter_matched_filters

    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}. Received: config={config!r}.")
    base = CONFIGS[config] if base_filters is None else base_filters
    return parameter_matched_filters(get_group(GROUP)) if base is None else base


def build(
    config: str,
    which: str,
    input_shape: tuple = INPUT_SHAPE,
    base_filters: int | None = None,
    network=None,
):
    """The compiled `which` model of `config`: `"group"` (P4M) or `"plain"` (P1 with |G|
    times the fields as channels).

    `network`: the constructor, `GroupResNet18` by default; any with its `group`,
    `input_shape`, `classes` and `base_filters` arguments (a smaller one runs the same
    measurement in seconds, for a smoke test)."""
    from groco_core import get_group
    from groco_core.applications import GroupResNet18

    constructor = network or GroupResNet18
    base = _base_filters(config, base_filters)
    if which not in ("group", "plain"):
        raise ValueError(f"which must be 'group' or 'plain'. Received: which={which!r}.")
    group, filters = (GROUP, base) if which == "group" else ("P1", get_group(GROUP).order * base)
    model = constructor(group=group, input_shape=input_shape, classes=CLASSES, base_filters=filters)
    return _compiled(model)


def stock_keras(model):
    """`model` built on P1 (a plain network written with GroCo's layers) rebuilt from stock
    Keras layers: `Conv2D` / `Conv3D` (`"same"`), `BatchNormalization`, `MaxPooling2D` /
    `3D`, `GlobalAveragePooling2D` / `3D` in place of the group layers, the rest cloned. The
    same layers, widths and parameters as the P1 network, so timing the group network
    against it measures against the plain Keras network itself, without GroCo's own code."""
    import keras

    from groco_core import layers as group_layers

    def clone(layer):
        config = layer.get_config()
        rank = len(layer.output.shape) - 3  # batch, spatial, group, channels
        if isinstance(layer, group_layers.GroupConv2D | group_layers.GroupConv3D):
            conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv3D
            return conv(
                config["filters"],
                config["kernel_size"],
                config["strides"],
                padding="same",
                use_bias=config["use_bias"],
                name=layer.name,
            )
        if isinstance(layer, group_layers.GroupBatchNormalization):
            return keras.layers.BatchNormalization(
                momentum=config["momentum"], epsilon=config["epsilon"], name=layer.name
            )
        if isinstance(layer, group_layers.GroupMaxPooling2D | group_layers.GroupMaxPooling3D):
            pooling = keras.layers.MaxPooling2D if rank == 2 else keras.layers.MaxPooling3D
            return pooling(config["pool_size"], config["strides"], "same", name=layer.name)
        if isinstance(
            layer,
            group_layers.GlobalGroupAveragePooling2D | group_layers.GlobalGroupAveragePooling3D,
        ):
            rank = len(layer.input.shape) - 3
            pooling = (
                keras.layers.GlobalAveragePooling2D
                if rank == 2
                else keras.layers.GlobalAveragePooling3D
            )
            return pooling(name=layer.name)
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def _compiled(model):
    import keras

    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def _inputs(input_shape: tuple, batch: int):
    import numpy as np

    return np.random.default_rng(0).normal(size=(batch, *input_shape)).astype("float32")


def measure(
    config: str,
    repeats: int,
    input_shape: tuple = INPUT_SHAPE,
    batch: int = BATCH,
    base_filters: int | None = None,
    network=None,
) -> list[dict]:
    """The train and inference rows of `config`: the group network, the P1 network
    (`p1_*`) and, for inference, the group network's export (`export_*`) against the plain
    Keras network (`stock_keras`), interleaved."""
    from groco_core import export, get_group

    group_model = build(config, "group", input_shape, base_filters, network)
    p1_model = build(config, "plain", input_shape, base_filters, network)
    plain_model = _compiled(stock_keras(p1_model))
    exported = _compiled(export(group_model))  # the group model's function, stock layers
    x = _inputs(input_shape, batch)
    base = _base_filters(config, base_filters)
    rows = []
    for mode in ("train", "inference"):
        extra = {"p1": p1_model}
        if mode == "inference":
            extra["export"] = exported
        result = overhead._interleaved(
            group_model, plain_model, x, len(input_shape) - 1, repeats, 1, mode, extra
        )
        rows.append(
            {
                "config": config,
                "mode": mode,
                "base_filters": base,
                "plain_base_filters": get_group(GROUP).order * base,
                "group_params": group_model.count_params(),
                "plain_params": plain_model.count_params(),
                "batch": batch,
                "input": list(input_shape),
                **result,
            }
        )
    return rows


class InReferenceFormulations:
    """`model` whose every step runs inside `reference_formulations(*names)`: eager PyTorch
    decides at every call, not once while a step is traced, so the block must hold for every
    step."""

    def __init__(self, model, names: list[str]):
        self.model, self.names = model, list(names)

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def _inside(self, step: str, *args, **kwargs):
        from groco_core.layers import fast_paths

        with fast_paths.reference_formulations(*self.names):
            return getattr(self.model, step)(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        return self._inside("train_on_batch", *args, **kwargs)

    def predict_on_batch(self, *args, **kwargs):
        return self._inside("predict_on_batch", *args, **kwargs)


def measure_fast_paths(
    config: str,
    names: list[str],
    repeats: int,
    input_shape: tuple = INPUT_SHAPE,
    batch: int = BATCH,
    base_filters: int | None = None,
    network=None,
) -> list[dict]:
    """The group network of `config` against itself with the fast paths `names` replaced by
    their references (`reference_formulations`), train step and inference, interleaved:
    what those fast paths save on a whole network (`ratio` below 1: they save time).

    Raises:
        ValueError: for a name that is not a fast path, or one the network does not take on
            this backend (the two would be the same network).
    """
    import numpy as np

    from groco_core.layers import fast_paths

    fast = build(config, "group", input_shape, base_filters, network)
    reference = InReferenceFormulations(
        build(config, "group", input_shape, base_filters, network), names
    )
    x = _inputs(input_shape, batch)
    y = np.zeros((batch, CLASSES), "float32")
    reference.train_on_batch(x, y)
    reference.predict_on_batch(x)
    fast.train_on_batch(x, y)
    fast.predict_on_batch(x)
    never = [name for name in names if name not in fast_paths.taken_fast_paths()]
    if never:
        import keras

        raise ValueError(
            f"The network never takes {never} on {keras.backend.backend()}, so it would be "
            f"timed against itself. Received: --without {' '.join(names)}. Name fast paths "
            "of this backend (groco_core.layers.fast_paths.FAST_PATHS)."
        )
    rows = []
    for mode in ("train", "inference"):
        result = overhead._interleaved(fast, reference, x, len(input_shape) - 1, repeats, 1, mode)
        rows.append({"config": config, "mode": mode, "without": names, **result})
    return rows


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def step_memory(
    config: str,
    which: str,
    input_shape: tuple = INPUT_SHAPE,
    batch: int = BATCH,
    base_filters: int | None = None,
) -> int | None:
    """Bytes the resident set rises by, at its peak, while one model (`"group"`, or
    `"plain"`: the stock Keras network) is built and trained for three steps, above the
    process with everything imported: weights, gradients, activations, temporaries and the
    compiled step, as the operating system counts them (None without `/proc/self/status`).
    A count that every backend gives on a CPU, where TensorFlow and PyTorch keep no
    allocator statistics."""
    import numpy as np

    if not Path("/proc/self/status").exists():
        return None
    import keras  # noqa: F401 (imported before the baseline: the backend's own memory)

    from groco_core.applications import GroupResNet18  # noqa: F401

    x = _inputs(input_shape, batch)
    y = np.random.default_rng(1).normal(size=(batch, CLASSES)).astype("float32")
    before = _memory_kib("VmRSS")
    model = build(config, "group" if which == "group" else "plain", input_shape, base_filters)
    if which != "group":
        model = _compiled(stock_keras(model))
    for _ in range(3):
        model.train_on_batch(x, y)
    return 1024 * max(0, _memory_kib("VmHWM") - before)


def memory(config: str, backend: str) -> dict:
    """`step_memory` of the group and the plain Keras model of `config`, each in its own
    process (so that neither reuses memory the other's steps left to the allocator)."""
    result = {}
    for which in ("group", "plain"):
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", config, which]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{done.stderr[-3000:]}")
        result[f"{which}_bytes"] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(configs: list[str], repeats: int, with_memory: bool) -> list[dict]:
    """Every row of `configs` on this process's backend, with memory where asked."""
    import keras

    rows = []
    for config in configs:
        config_rows = measure(config, repeats)
        if with_memory:
            found = memory(config, keras.backend.backend())
            for row in config_rows:
                row["memory"] = found
        rows += config_rows
    return rows


def profile(config: str, which: str) -> None:
    """Operators by self time over 5 train steps and 10 inference calls of one model of
    `config` (`group`, `plain`: the stock Keras network, `p1`, `export`), PyTorch's
    profiler."""
    import keras
    import numpy as np
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    from groco_core import export

    if keras.backend.backend() != "torch":
        raise ValueError(
            "--profile uses torch.profiler. Received: KERAS_BACKEND="
            f"{keras.backend.backend()}. Run it with KERAS_BACKEND=torch."
        )
    models = {
        "group": lambda: build(config, "group"),
        "p1": lambda: build(config, "plain"),
        "plain": lambda: _compiled(stock_keras(build(config, "plain"))),
        "export": lambda: _compiled(export(build(config, "group"))),
    }
    if which not in models:
        raise ValueError(f"MODEL must be one of {sorted(models)}. Received: {which!r}.")
    model = models[which]()
    x = _inputs(INPUT_SHAPE, BATCH)
    y = np.zeros((BATCH, CLASSES), "float32")
    for name, step, count in (
        ("train steps", lambda: model.train_on_batch(x, y), 5),
        ("inference calls", lambda: model.predict_on_batch(x), 10),
    ):
        for _ in range(3):
            step()
        with profiler(activities=[ProfilerActivity.CPU]) as recorded:
            for _ in range(count):
                step()
        print(f"{which}, {config}, {count} {name}:")
        print(recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def _format(row: dict) -> str:
    low, high = row["ratio_interval"]
    text = (
        f"{row['config']:<17} {row['mode']:<9} group {row['group_ms']:8.1f} ms  plain "
        f"{row['plain_ms']:8.1f} ms  ratio {row['ratio']:.3f} [{low:.3f}–{high:.3f}]"
    )
    low, high = row["p1_ratio_interval"]
    text += f"  P1 {row['p1_ms']:.1f} ms ratio {row['p1_ratio']:.3f} [{low:.3f}–{high:.3f}]"
    if "export_ratio" in row:
        low, high = row["export_ratio_interval"]
        text += f"  export {row['export_ms']:.1f} ms ratio {row['export_ratio']:.3f} "
        text += f"[{low:.3f}–{high:.3f}]"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="channel-matched, 3 repeats")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--memory", action="store_true", help="peak memory of training")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--memory-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--profile", nargs=2, metavar=("CONFIG", "MODEL"))
    parser.add_argument(
        "--without",
        nargs="+",
        metavar="FAST_PATH",
        help="time the group network against itself with these fast paths' references",
    )
    args = parser.parse_args(argv)
    if args.memory_worker:
        print(json.dumps(step_memory(*args.memory_worker)))
        return
    if args.profile:
        profile(*args.profile)
        return
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Received: {args.repeats}.")
    configs, repeats = args.configs, args.repeats
    if args.quick:
        configs, repeats = ["channel-matched"], 3
    if args.without:
        for config in configs:
            for row in measure_fast_paths(config, args.without, repeats):
                low, high = row["ratio_interval"]
                print(
                    f"{config:<17} {row['mode']:<9} with {row['group_ms']:8.1f} ms  without "
                    f"{' '.join(args.without)} {row['plain_ms']:8.1f} ms  ratio "
                    f"{row['ratio']:.3f} [{low:.3f}–{high:.3f}]"
                )
        return
    rows = run(configs, repeats, args.memory)
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(_format(row))
            if "memory" in row and row["mode"] == "train":
                found = row["memory"]
                if found["plain_bytes"]:
                    ratio = found["group_bytes"] / found["plain_bytes"]
                    print(
                        f"  peak memory of training: group {found['group_bytes'] / 2**20:.0f} "
                        f"MiB, plain {found['plain_bytes'] / 2**20:.0f} MiB, ratio "
                        f"{ratio:.2f}"
                    )


if __name__ == "__main__":
    main()
