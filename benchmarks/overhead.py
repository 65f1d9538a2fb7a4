"""Train-step overhead of a group convolution over a plain convolution with the same expanded
channels, in 2D and 3D, with `valid_equiv` and `same_equiv` padding.

- 2D, P4 and P4M: batch 32, 28×28, 3×3 kernels, 16 fields in and out: `GroupConv2D` on
  `(32, 28, 28, |G|, 16)` against `keras.layers.Conv2D(16·|G|)` on `(32, 28, 28, 16·|G|)`.
- 3D, O and Oh: batch 4, 12×12×12, 3×3×3 kernels, 4 fields in and out: `GroupConv3D` on
  `(4, 12, 12, 12, |G|, 4)` against `keras.layers.Conv3D(4·|G|)`.

The plain layer uses Keras's `"valid"` / `"same"` for `valid_equiv` / `same_equiv` (the same
output size at stride 1). The group model ends in a `Reshape` that merges the group axis
into the channels, so that the mean-square loss runs on the plain layer's layout; the plain
model ends in a `Reshape` to its own shape, so that both pay for one such layer. Both
models are trained side by side in one process (steps
interleaved, alternating which goes first; each timing runs `--steps` steps, more where they
take less than `--min-timing-ms` in all); the ratio reported is the median over repeats of
each repeat's group / plain ratio (the two times of a repeat are taken back to back, so a
change in machine load between repeats cancels out of it), with its quartiles, a 95%
interval for the median (`median_interval`) and the two median step times; likewise for the
time to build the layer (its kernel tables are cached on the group after the first build, as
in any model with several layers on one group). With `--max-repeats`, a row whose interval
still contains `--goal` after `--repeats` repeats gets more, two at a time, until it does
not or `--max-repeats` are done.

Rows: each group × padding × input (`--inputs group lifting`: a signal on the group, or an
image with 16 (3D: 4) channels against the plain layer on the same image) × stride
(`--strides 1 2`; stride 2 uses an odd input one point smaller, 27 / 11) × mode (`--modes
train inference`: `train_on_batch` / `predict_on_batch`). The default is the group-input
train-step rows at stride 1.

Run: `KERAS_BACKEND=jax python benchmarks/overhead.py [--repeats 15] [--max-repeats 45]
[--goal 1.03] [--steps 5] [--min-timing-ms 30] [--groups P4 P4M O Oh]
[--paddings valid_equiv same_equiv] [--inputs group lifting] [--strides 1 2]
[--modes train inference] [--floor] [--bound] [--json]`
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import time

import keras
import numpy as np

from groco_core import (
    GroupBatchNormalization,
    GroupConv1D,
    GroupConv2D,
    GroupConv2DTranspose,
    GroupConv3D,
    GroupMaxPooling2D,
    get_group,
)
from groco_core.toolkit import KernelGather, add_kernel_and_bias


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark shape: the rank and the sizes of the input."""

    rank: int
    batch: int
    size: int
    fields: int
    kernel: int = 3

    def group_layer(
        self, group: str, padding: str, stride: int = 1, layer_class: type | None = None
    ) -> keras.layers.Layer:
        layer_class = layer_class or {2: GroupConv2D, 3: GroupConv3D}[self.rank]
        return layer_class(self.fields, self.kernel, stride, padding, group=group)

    def plain_layer(self, channels: int, padding: str, stride: int = 1) -> keras.layers.Layer:
        layer_class = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[self.rank]
        return layer_class(channels, self.kernel, stride, padding.removesuffix("_equiv"))


SHAPES = {
    "P4": Shape(rank=2, batch=32, size=28, fields=16),
    "P4M": Shape(rank=2, batch=32, size=28, fields=16),
    "O": Shape(rank=3, batch=4, size=12, fields=4),
    "Oh": Shape(rank=3, batch=4, size=12, fields=4),
}


def _models(
    group_name: str, padding: str, lifting: bool, stride: int, layer_class: type | None = None
) -> tuple[keras.Model, keras.Model, np.ndarray]:
    """The group layer (of `layer_class`, default the group convolution of the rank) and
    the plain layer with the same expanded channels, on one input.

    A stride of 2 uses an input one point smaller (odd) where the size is even: an even
    size cannot be strided equivariantly with a 3-point kernel (docs/designing.md).
    """
    shape = SHAPES[group_name]
    order = get_group(group_name).order
    size = shape.size - (1 if stride == 2 and shape.size % 2 == 0 else 0)
    spatial = (size,) * shape.rank
    channels = shape.fields if lifting else order * shape.fields
    group_shape = (*spatial, shape.fields) if lifting else (*spatial, order, shape.fields)
    group_input = keras.Input(group_shape)
    layer = shape.group_layer(group_name, padding, stride, layer_class)
    group_model = keras.Model(group_input, _merged(layer(group_input)))
    plain_input = keras.Input((*spatial, channels))
    plain_layer = shape.plain_layer(order * shape.fields, padding, stride)
    plain_model = keras.Model(plain_input, _same_shape(plain_layer(plain_input)))
    for model in (group_model, plain_model):
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    x = np.random.default_rng(0).normal(size=(shape.batch, *group_shape))
    return group_model, plain_model, x.astype("float32")


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """A layer other than the 2D/3D group convolution of `SHAPES`, against the plain Keras
    layer on the same expanded channels (batch 32, P4M with 16 fields = 128 channels, unless
    the row says otherwise)."""

    group_layer: object  # () -> keras layer
    plain_layer: object
    group_shape: tuple[int, ...]  # without the batch axis
    plain_shape: tuple[int, ...]
    group: str = "P4M"
    padding: str = "valid_equiv"
    strides: int = 1


LAYER_ROWS = {
    "GroupConv2D P4M dilation 2 same_equiv": LayerRow(
        lambda: GroupConv2D(16, 3, dilation_rate=2, padding="same_equiv", group="P4M"),
        lambda: keras.layers.Conv2D(128, 3, dilation_rate=2, padding="same"),
        (28, 28, 8, 16),
        (28, 28, 128),
        padding="same_equiv",
    ),
    "GroupConv2DTranspose P4M s2 valid_equiv": LayerRow(
        lambda: GroupConv2DTranspose(16, 3, strides=2, group="P4M"),
        lambda: keras.layers.Conv2DTranspose(128, 3, strides=2),
        (14, 14, 8, 16),
        (14, 14, 128),
        strides=2,
    ),
    "GroupConv2DTranspose P4M s1 valid_equiv": LayerRow(
        lambda: GroupConv2DTranspose(16, 3, group="P4M"),
        lambda: keras.layers.Conv2DTranspose(128, 3),
        (14, 14, 8, 16),
        (14, 14, 128),
    ),
    "GroupConv2DTranspose P4M s1 same_equiv": LayerRow(
        lambda: GroupConv2DTranspose(16, 3, padding="same_equiv", group="P4M"),
        lambda: keras.layers.Conv2DTranspose(128, 3, padding="same"),
        (14, 14, 8, 16),
        (14, 14, 128),
        padding="same_equiv",
    ),
    "GroupMaxPooling2D P4M 2x2": LayerRow(
        lambda: GroupMaxPooling2D(group="P4M"),
        lambda: keras.layers.MaxPooling2D(),
        (28, 28, 8, 16),
        (28, 28, 128),
        strides=2,
    ),
    "GroupBatchNormalization P4M": LayerRow(
        lambda: GroupBatchNormalization(group="P4M"),
        lambda: keras.layers.BatchNormalization(),
        (28, 28, 8, 16),
        (28, 28, 128),
    ),
    "GroupConv1D LM same_equiv": LayerRow(
        lambda: GroupConv1D(16, 3, padding="same_equiv", group="LM"),
        lambda: keras.layers.Conv1D(32, 3, padding="same"),
        (256, 2, 16),
        (256, 32),
        group="LM",
        padding="same_equiv",
    ),
}


def _merged(outputs):
    """The group layer's output with its group axis merged into the channels (a view), as
    the plain layer's: the loss then runs on the same layout for both, and the difference
    measured is the layer's alone (Keras's mean square error reduces over the last axis,
    which for a group output holds only the fields)."""
    *spatial, elements, fields = outputs.shape[1:]
    return keras.layers.Reshape((*spatial, elements * fields))(outputs)


def _same_shape(outputs):
    """The plain layer's output through a `Reshape` to its own shape, so that both models
    end in one `Reshape` layer (a layer call costs some microseconds of Python on PyTorch,
    which runs eagerly)."""
    return keras.layers.Reshape(tuple(outputs.shape[1:]))(outputs)


# Each timing of a repeat runs at least `steps` steps, and more where they take less than
# this in all (up to `MAX_STEPS`); `--min-timing-ms`.
MIN_TIMING_S = 0.03
MAX_STEPS = 100


def _time_steps(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def step_ratio(
    group_name: str,
    padding: str,
    repeats: int,
    steps: int,
    lifting: bool = False,
    stride: int = 1,
    mode: str = "train",
    floor: bool = False,
    max_repeats: int = 0,
    goal: float | None = None,
    bound: bool = False,
) -> dict:
    """Median step time of the group layer over the plain layer's, measured interleaved.

    `mode="train"`: `train_on_batch`; `mode="inference"`: `predict_on_batch`. `floor`: also
    time the same layer with a weight of its expanded kernel's shape (`expanded_weight_class`)
    in the same repeats, reported as `floor_ratio`. `bound`: likewise the layer whose
    expansion is one broadcast (`broadcast_expansion_class`), reported as `bound_ratio`.
    `max_repeats`, `goal`: see `_interleaved`.
    """
    group_model, plain_model, x = _models(group_name, padding, lifting, stride)
    rank = SHAPES[group_name].rank
    kind = "lifting" if lifting else "group"
    extra_models = {}
    for name, wanted, make_class in (
        ("floor", floor, expanded_weight_class),
        ("bound", bound, broadcast_expansion_class),
    ):
        if wanted:
            layer_class = make_class(rank)
            extra_models[name] = _models(group_name, padding, lifting, stride, layer_class)[0]
    result = _interleaved(
        group_model, plain_model, x, rank, repeats, steps, mode, extra_models, max_repeats, goal
    )
    return {
        "row": f"GroupConv{rank}D {group_name} {kind} {padding} s{stride} {mode}",
        "group": group_name,
        "input": kind,
        "padding": padding,
        "strides": stride,
        "mode": mode,
        **result,
    }


def layer_ratio(
    name: str,
    repeats: int,
    steps: int,
    mode: str,
    max_repeats: int = 0,
    goal: float | None = None,
) -> dict:
    """`step_ratio` for one of `LAYER_ROWS`."""
    row = LAYER_ROWS[name]
    models = []
    for make, shape in ((row.group_layer, row.group_shape), (row.plain_layer, row.plain_shape)):
        inputs = keras.Input(shape)
        outputs = make()(inputs)
        ending = _merged if shape == row.group_shape else _same_shape
        model = keras.Model(inputs, ending(outputs))
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        models.append(model)
    x = np.random.default_rng(0).normal(size=(32, *row.group_shape)).astype("float32")
    rank = len(row.plain_shape) - 1
    result = _interleaved(*models, x, rank, repeats, steps, mode, {}, max_repeats, goal)
    return {
        "row": f"{name} {mode}",
        "group": row.group,
        "input": "group",
        "padding": row.padding,
        "strides": row.strides,
        "mode": mode,
        **result,
    }


def _spread(result: dict) -> str:
    low, high = result["ratio_interval"]
    return f"[95% interval of the median {low:.3f}–{high:.3f}, {result['repeats']} repeats]"


def _interleaved(
    group_model: keras.Model,
    plain_model: keras.Model,
    x: np.ndarray,
    rank: int,
    repeats: int,
    steps: int,
    mode: str,
    extra_models: dict[str, keras.Model] | None = None,
    max_repeats: int = 0,
    goal: float | None = None,
) -> dict:
    """Median step times of the two models, steps interleaved; the plain model gets the
    same numbers with the group axis merged into the channels. Each of `extra_models` (the
    group model's input and output; `"floor"`, `"bound"`) is timed in the same repeats, and
    reported as `{name}_ratio` (with its quartiles and interval) and `{name}_ms`.

    After `repeats` repeats, while the 95% interval of the ratio's median
    (`median_interval`) contains `goal`, two more are run, up to `max_repeats`: a row near
    the goal gets the repeats it needs to be told from it, and every repeat counts in the
    result. The rule is the same on either side of the goal, so it favours neither verdict."""
    batch = x.shape[0]
    y_group = np.random.default_rng(1).normal(size=(batch, *group_model.output_shape[1:]))
    y_group = y_group.astype("float32")
    x_plain = x.reshape(batch, *x.shape[1 : 1 + rank], -1)
    y_plain = y_group  # the group output's axes are merged (`_merged`)

    def runner(model, inputs, targets):
        if mode == "train":
            return lambda: model.train_on_batch(inputs, targets)
        return lambda: model.predict_on_batch(inputs)

    extra_models = extra_models or {}
    stepping = [runner(group_model, x, y_group), runner(plain_model, x_plain, y_plain)]
    stepping += [runner(model, x, y_group) for model in extra_models.values()]
    for _ in range(3):  # compile and warm up each
        for step in stepping:
            step()
    # Short steps get more of them per timing, so that each timing lasts MIN_TIMING_S: a
    # timing of a few milliseconds varies by several percent with the scheduler alone.
    shortest = min(_time_steps(step, 1) for step in stepping)
    steps = min(max(steps, math.ceil(MIN_TIMING_S / max(shortest, 1e-6))), MAX_STEPS)
    times: list[list[float]] = [[] for _ in stepping]

    def undecided() -> bool:
        """Whether the interval of the group ratio's median still holds the goal."""
        if goal is None:
            return False
        low, high = median_interval([g / p for g, p in zip(times[0], times[1], strict=True)])
        return low <= goal <= high

    repeat = 0
    while repeat < repeats or (repeat < max(max_repeats, repeats) and undecided()):
        # Alternate the order so drifts in machine load hit each alike; repeats past
        # `repeats` come in pairs, one of each order.
        for _ in range(1 if repeat < repeats else 2):
            order = list(zip(stepping, times, strict=True))
            for step, timings in order if repeat % 2 == 0 else order[::-1]:
                timings.append(_time_steps(step, steps))
            repeat += 1
    group_times, plain_times = times[0], times[1]
    result = {
        **_ratio(group_times, plain_times),
        "group_ms": 1e3 * statistics.median(group_times),
        "plain_ms": 1e3 * statistics.median(plain_times),
        "steps": steps,
        "repeats": len(group_times),
    }
    for name, extra_times in zip(extra_models, times[2:], strict=True):
        extra = _ratio(extra_times, plain_times)
        result[f"{name}_ratio"] = extra["ratio"]
        result[f"{name}_ratio_quartiles"] = extra["ratio_quartiles"]
        result[f"{name}_ratio_interval"] = extra["ratio_interval"]
        result[f"{name}_ms"] = 1e3 * statistics.median(extra_times)
    return result


def _ratio(times: list[float], plain_times: list[float]) -> dict:
    """The median and quartiles of the per-repeat ratios `times / plain_times`: the ratio of
    each repeat's adjacent timings, so that a change in machine load between repeats, which
    moves both alike, cancels out of it."""
    ratios = sorted(t / p for t, p in zip(times, plain_times, strict=True))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "ratio": statistics.median(ratios),
        "ratio_quartiles": (quartiles[0], quartiles[2]),
        "ratio_interval": median_interval(ratios),
    }


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of the population `values` are drawn
    from: the `k`-th smallest and the `k`-th largest value, `k` the largest whose interval
    covers the median with at least `confidence` (a value falls below the median with
    probability one half, so the count below is binomial). Too few values for that give
    their whole range (at 5 values it covers the median with 94% probability, at 9 the
    interval is the 2nd to 8th value, 96%; at 27 the 8th to 20th, 98%)."""
    ordered, n = sorted(values), len(values)
    below = 0.0  # P(count below the median < k), for k = 1, 2, …
    k = 1
    for candidate in range(1, n // 2 + 1):
        below += math.comb(n, candidate - 1) / 2**n
        if 1 - 2 * below < confidence:
            break
        k = candidate
    return ordered[k - 1], ordered[n - k]


def expanded_weight_class(rank: int) -> type:
    """The group convolution of `rank` with a weight of its transformed kernel's shape as
    its kernel: the same convolution, bias, reshapes and output, and no kernel expansion.
    Timed against the plain layer, it is what the group layer would cost if expanding its
    kernel were free (`--floor`)."""
    base = {2: GroupConv2D, 3: GroupConv3D}[rank]

    class ExpandedWeight(base):
        def build_kernel(self) -> None:
            group_size = 1 if self.lifting else self.group.order
            inputs = group_size * self.in_channels
            outputs = len(self.output_elements) * self.filters
            shape = (*self.kernel_size, inputs, outputs)
            add_kernel_and_bias(self, shape, (self.filters,))
            self.kernel_gather = KernelGather(self.transformed_kernel_indices())

        def transformed_kernel(self):
            return keras.ops.convert_to_tensor(self.kernel)

        def call(self, inputs, training=None):
            # No kept kernel (`groco_core.layers.kernel_cache`): there is nothing to expand.
            return super().call(inputs, training=True)

    return ExpandedWeight


def broadcast_expansion_class(rank: int) -> type:
    """The group convolution of `rank` whose transformed kernel is its kernel broadcast over
    the output elements (one copy per element, untransformed): the same weights, convolution,
    bias and output, and an expansion by the cheapest operation that writes the transformed
    kernel, whose gradient sums it back over the elements. Not equivariant: timed against the
    plain layer, it is what the group layer would cost with an ideal expansion, a bound for
    any layer that hands the backend's convolution a materialised kernel (`--bound`)."""
    base = {2: GroupConv2D, 3: GroupConv3D}[rank]

    class BroadcastExpansion(base):
        def transformed_kernel(self):
            group_size = 1 if self.lifting else self.group.order
            inputs = group_size * self.in_channels
            elements = len(self.output_elements)
            kernel = keras.ops.reshape(self.kernel, (*self.kernel_size, inputs, 1, self.filters))
            kernel = keras.ops.broadcast_to(
                kernel, (*self.kernel_size, inputs, elements, self.filters)
            )
            return keras.ops.reshape(kernel, (*self.kernel_size, inputs, elements * self.filters))

    return BroadcastExpansion


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
    global MIN_TIMING_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="at least this many per timing")
    parser.add_argument(
        "--max-repeats",
        type=int,
        default=0,
        help="more repeats, up to this many, while a row's 95%% interval contains --goal",
    )
    parser.add_argument("--goal", type=float, default=1.03, help="the ratio --max-repeats tests")
    parser.add_argument(
        "--min-timing-ms",
        type=float,
        default=1e3 * MIN_TIMING_S,
        help="more steps per timing where they would take less than this (0: exactly --steps)",
    )
    parser.add_argument("--groups", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument(
        "--paddings",
        nargs="+",
        default=["valid_equiv", "same_equiv"],
        choices=["valid_equiv", "same_equiv"],
    )
    parser.add_argument("--inputs", nargs="+", default=["group"], choices=["group", "lifting"])
    parser.add_argument("--strides", nargs="+", type=int, default=[1], choices=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["train"], choices=["train", "inference"])
    parser.add_argument(
        "--layers",
        nargs="*",
        default=[],
        choices=["all", *LAYER_ROWS],
        help="rows of other layers (dilation, transposed, pooling, batch norm, 1D); 'all'",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time each group convolution with its expanded kernel as its weight",
    )
    parser.add_argument(
        "--bound",
        action="store_true",
        help="also time each group convolution with its expansion replaced by one broadcast "
        "of its kernel over the output elements: the bound of an ideal expansion",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    MIN_TIMING_S = args.min_timing_ms / 1e3
    results = []
    layers = list(LAYER_ROWS) if "all" in args.layers else args.layers
    for name, mode in itertools.product(layers, args.modes):
        result = layer_ratio(name, args.repeats, args.steps, mode, args.max_repeats, args.goal)
        result["backend"] = keras.backend.backend()
        results.append(result)
        if not args.json:
            print(
                f"{result['backend']:<10} {result['row']:<48} group/plain = "
                f"{result['ratio']:.3f} {_spread(result)} (medians {result['group_ms']:.1f} / "
                f"{result['plain_ms']:.1f} ms)",
                flush=True,
            )
    for name in args.groups:
        builds = build_times(name, args.repeats)
        rank = SHAPES[name].rank
        for padding, kind, stride, mode in itertools.product(
            args.paddings, args.inputs, args.strides, args.modes
        ):
            result = step_ratio(
                name, padding, args.repeats, args.steps, kind == "lifting", stride, mode,
                args.floor, args.max_repeats, args.goal, args.bound,
            )  # fmt: skip
            result.update(builds)
            result["backend"] = keras.backend.backend()
            results.append(result)
            if not args.json:
                print(
                    f"{result['backend']:<10} {result['row']:<48} GroupConv{rank}D/Conv{rank}D "
                    f"= {result['ratio']:.3f} {_spread(result)} "
                    f"(medians {result['group_ms']:.1f} / {result['plain_ms']:.1f} ms); "
                    f"build {result['group_build_ms']:.2f} ms "
                    f"(Conv{rank}D {result['plain_build_ms']:.2f} ms)"
                    + (f"; without expansion {result['floor_ratio']:.3f}" if args.floor else "")
                    + (
                        f"; ideal expansion {result['bound_ratio']:.3f} "
                        f"[{result['bound_ratio_interval'][0]:.3f}–"
                        f"{result['bound_ratio_interval'][1]:.3f}]"
                        if args.bound
                        else ""
                    ),
                    flush=True,
                )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
