"""Train-step overhead of GroupConv2D over a plain Conv2D with the same expanded channels.

For P4 and P4M: batch 32, 28×28, 3×3 kernels, 16 fields in and out, i.e. a group convolution
`(32, 28, 28, |G|, 16) → (32, 26, 26, |G|, 16)` against `keras.layers.Conv2D(16·|G|)` on
`(32, 28, 28, 16·|G|)`. Both models are trained side by side in one process (steps
interleaved), and the ratio of the median step times is reported; likewise for the time to
build the layer.

Run: `KERAS_BACKEND=jax python benchmarks/overhead.py [--repeats 15] [--steps 5] [--json]`
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import keras
import numpy as np

from groco_core import GroupConv2D, get_group

BATCH, SIZE, KERNEL, FIELDS = 32, 28, 3, 16


def _models(group_name: str) -> tuple[keras.Model, keras.Model, np.ndarray, np.ndarray]:
    order = get_group(group_name).order
    group_input = keras.Input((SIZE, SIZE, order, FIELDS))
    group_model = keras.Model(
        group_input, GroupConv2D(FIELDS, KERNEL, group=group_name)(group_input)
    )
    plain_input = keras.Input((SIZE, SIZE, order * FIELDS))
    plain_model = keras.Model(plain_input, keras.layers.Conv2D(order * FIELDS, KERNEL)(plain_input))
    for model in (group_model, plain_model):
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, SIZE, SIZE, order, FIELDS)).astype("float32")
    return group_model, plain_model, x, rng


def _time_steps(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def train_step_ratio(group_name: str, repeats: int, steps: int) -> dict:
    group_model, plain_model, x, rng = _models(group_name)
    out = SIZE - KERNEL + 1
    order = x.shape[3]
    y_group = rng.normal(size=(BATCH, out, out, order, FIELDS)).astype("float32")
    x_plain, y_plain = x.reshape(BATCH, SIZE, SIZE, -1), y_group.reshape(BATCH, out, out, -1)
    for _ in range(3):  # compile and warm up both
        group_model.train_on_batch(x, y_group)
        plain_model.train_on_batch(x_plain, y_plain)
    group_times, plain_times = [], []
    for repeat in range(repeats):
        # Alternate which goes first so drifts in machine load hit both alike.
        pair = [
            (group_model, x, y_group, group_times),
            (plain_model, x_plain, y_plain, plain_times),
        ]
        for model, inputs, targets, times in pair if repeat % 2 == 0 else pair[::-1]:
            times.append(_time_steps(model, inputs, targets, steps))
    group_median, plain_median = statistics.median(group_times), statistics.median(plain_times)
    return {
        "group": group_name,
        "train_step_ratio": group_median / plain_median,
        "group_step_ms": 1e3 * group_median,
        "plain_step_ms": 1e3 * plain_median,
    }


def build_times(group_name: str, repeats: int) -> dict:
    order = get_group(group_name).order
    group_shape, plain_shape = (None, SIZE, SIZE, order, FIELDS), (None, SIZE, SIZE, order * FIELDS)
    group_times, plain_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        GroupConv2D(FIELDS, KERNEL, group=group_name).build(group_shape)
        group_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        keras.layers.Conv2D(order * FIELDS, KERNEL).build(plain_shape)
        plain_times.append(time.perf_counter() - start)
    return {
        "group_build_ms": 1e3 * statistics.median(group_times),
        "plain_build_ms": 1e3 * statistics.median(plain_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--groups", nargs="+", default=["P4", "P4M"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for name in args.groups:
        result = train_step_ratio(name, args.repeats, args.steps)
        result.update(build_times(name, args.repeats))
        result["backend"] = keras.backend.backend()
        results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['backend']:<10} {r['group']:<4} train step GroupConv2D/Conv2D = "
            f"{r['train_step_ratio']:.3f} (medians {r['group_step_ms']:.1f} / "
            f"{r['plain_step_ms']:.1f} ms); build {r['group_build_ms']:.2f} ms "
            f"(Conv2D {r['plain_build_ms']:.2f} ms)"
        )


if __name__ == "__main__":
    main()
