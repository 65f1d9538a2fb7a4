"""Train-step overhead of a group convolution over a plain convolution with the same expanded
channels, in 2D and 3D, with `valid_equiv` and `same_equiv` padding.

- 2D, P4 and P4M: batch 32, 28×28, 3×3 kernels, 16 fields in and out: `GroupConv2D` on
  `(32, 28, 28, |G|, 16)` against `keras.layers.Conv2D(16·|G|)` on `(32, 28, 28, 16·|G|)`.
- 3D, O and Oh: batch 4, 12×12×12, 3×3×3 kernels, 4 fields in and out: `GroupConv3D` on
  `(4, 12, 12, 12, |G|, 4)` against `keras.layers.Conv3D(4·|G|)`.

The plain layer uses Keras's `"valid"` / `"same"` for `valid_equiv` / `same_equiv` (the same
output size at stride 1). Both models are trained side by side in one process (steps
interleaved, alternating which goes first), and the ratio of the median step times is
reported; likewise for the time to build the layer (its kernel tables are cached on the group
after the first build, as in any model with several layers on one group).

Run: `KERAS_BACKEND=jax python benchmarks/overhead.py [--repeats 15] [--steps 5]
[--groups P4 P4M O Oh] [--paddings valid_equiv same_equiv] [--json]`
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import keras
import numpy as np

from groco_core import GroupConv2D, GroupConv3D, get_group


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark shape: the rank and the sizes of the input."""

    rank: int
    batch: int
    size: int
    fields: int
    kernel: int = 3

    def group_layer(self, group: str, padding: str) -> keras.layers.Layer:
        layer_class = {2: GroupConv2D, 3: GroupConv3D}[self.rank]
        return layer_class(self.fields, self.kernel, group=group, padding=padding)

    def plain_layer(self, channels: int, padding: str) -> keras.layers.Layer:
        layer_class = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[self.rank]
        return layer_class(channels, self.kernel, padding=padding.removesuffix("_equiv"))


SHAPES = {
    "P4": Shape(rank=2, batch=32, size=28, fields=16),
    "P4M": Shape(rank=2, batch=32, size=28, fields=16),
    "O": Shape(rank=3, batch=4, size=12, fields=4),
    "Oh": Shape(rank=3, batch=4, size=12, fields=4),
}


def _models(group_name: str, padding: str) -> tuple[keras.Model, keras.Model, np.ndarray]:
    shape = SHAPES[group_name]
    order = get_group(group_name).order
    spatial = (shape.size,) * shape.rank
    group_input = keras.Input((*spatial, order, shape.fields))
    group_model = keras.Model(group_input, shape.group_layer(group_name, padding)(group_input))
    plain_input = keras.Input((*spatial, order * shape.fields))
    plain_model = keras.Model(
        plain_input, shape.plain_layer(order * shape.fields, padding)(plain_input)
    )
    for model in (group_model, plain_model):
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    x = np.random.default_rng(0).normal(size=(shape.batch, *spatial, order, shape.fields))
    return group_model, plain_model, x.astype("float32")


def _time_steps(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def train_step_ratio(group_name: str, padding: str, repeats: int, steps: int) -> dict:
    group_model, plain_model, x = _models(group_name, padding)
    batch = x.shape[0]
    y_group = np.random.default_rng(1).normal(size=(batch, *group_model.output_shape[1:]))
    y_group = y_group.astype("float32")
    spatial = x.shape[1:-2]
    x_plain = x.reshape(batch, *spatial, -1)
    y_plain = y_group.reshape(batch, *y_group.shape[1:-2], -1)
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
        "padding": padding,
        "train_step_ratio": group_median / plain_median,
        "group_step_ms": 1e3 * group_median,
        "plain_step_ms": 1e3 * plain_median,
    }


def build_times(group_name: str, repeats: int) -> dict:
    shape = SHAPES[group_name]
    order = get_group(group_name).order
    spatial = (shape.size,) * shape.rank
    group_shape = (None, *spatial, order, shape.fields)
    plain_shape = (None, *spatial, order * shape.fields)
    group_times, plain_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        shape.group_layer(group_name, "valid_equiv").build(group_shape)
        group_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        shape.plain_layer(order * shape.fields, "valid").build(plain_shape)
        plain_times.append(time.perf_counter() - start)
    return {
        "group_build_ms": 1e3 * statistics.median(group_times),
        "plain_build_ms": 1e3 * statistics.median(plain_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--groups", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument(
        "--paddings",
        nargs="+",
        default=["valid_equiv", "same_equiv"],
        choices=["valid_equiv", "same_equiv"],
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for name in args.groups:
        builds = build_times(name, args.repeats)
        for padding in args.paddings:
            result = train_step_ratio(name, padding, args.repeats, args.steps)
            result.update(builds)
            result["backend"] = keras.backend.backend()
            results.append(result)
            if not args.json:
                rank = SHAPES[name].rank
                print(
                    f"{result['backend']:<10} {name:<4} {padding:<11} train step "
                    f"GroupConv{rank}D/Conv{rank}D = {result['train_step_ratio']:.3f} "
                    f"(medians {result['group_step_ms']:.1f} / {result['plain_step_ms']:.1f} "
                    f"ms); build {result['group_build_ms']:.2f} ms "
                    f"(Conv{rank}D {result['plain_build_ms']:.2f} ms)",
                    flush=True,
                )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
