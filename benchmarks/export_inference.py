"""Inference time of an exported groco model vs the same network written by hand.

`groco_core.export` should cost nothing at inference: its output is a plain Keras model. This
script builds a small P4M encoder-decoder (lifting conv, group conv down to P4 with stride 2,
transposed conv back up to P4M), exports it, and writes the same network by hand with the
same stock Keras layers and shapes. Both run side by side in one process (interleaved, after
warm-up, through `predict_on_batch`, so each backend compiles the way it does for inference);
the script prints the medians, the ratio (goal: at most 1.01; the median over several pairs
of the two, built apart, of each pair's median per-repeat ratio) and where the two networks'
layers differ (type or configuration, names and initializers aside).

Usage (one backend per run; takes well under a minute on a laptop CPU; `--json` prints the
figures as one JSON object, as `benchmarks/bench.py` reads them):
    KERAS_BACKEND=jax python benchmarks/export_inference.py [--repeats 50] [--instances 5]
    [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import keras
import numpy as np

from groco_core import export
from groco_core.layers.conv import GroupConv2D
from groco_core.layers.conv_transpose import GroupConv2DTranspose

SIZE, CHANNELS, FILTERS, BATCH = 33, 3, 8, 16


def groco_network() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    x = GroupConv2D(FILTERS, 3, group="P4M", activation="relu")(inputs)
    x = GroupConv2D(FILTERS, 3, group="P4M", subgroup="P4", strides=2, activation="relu")(x)
    x = GroupConv2DTranspose(FILTERS, 2, group="P4M", subgroup="P4", strides=2)(x)
    return keras.Model(inputs, x)


def hand_written_network() -> keras.Model:
    """The plain network a user would write for the same computation and shapes: the group
    axis merged into the channels throughout, split off once at the output."""
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    x = keras.layers.Conv2D(8 * FILTERS, 3)(inputs)  # 31 × 31, 8 elements × FILTERS
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(4 * FILTERS, 3, strides=2)(x)  # 15 × 15, 4 elements
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2DTranspose(8 * FILTERS, 2, strides=2)(x)  # 30 × 30, 8 elements
    x = keras.layers.Reshape((30, 30, 8, FILTERS))(x)
    return keras.Model(inputs, x)


def layer_differences(exported: keras.Model, hand: keras.Model) -> list[str]:
    """Where the two networks' layers differ in type or configuration, apart from names and
    initializers (which do not act at inference); an empty list when they are the same
    network layer for layer, so that their time ratio can only measure noise."""
    if len(exported.layers) != len(hand.layers):
        return [f"{len(exported.layers)} layers against {len(hand.layers)}"]
    differences = []
    for index, (ours, theirs) in enumerate(zip(exported.layers, hand.layers, strict=True)):
        configs = []
        for layer in (ours, theirs):
            config = layer.get_config()
            configs.append(
                {k: v for k, v in config.items() if not k.endswith(("name", "initializer"))}
            )
        if type(ours) is not type(theirs):
            differences.append(
                f"layer {index}: {type(ours).__name__} against {type(theirs).__name__}"
            )
        elif configs[0] != configs[1]:
            keys = sorted(
                k
                for k in configs[0].keys() | configs[1].keys()
                if configs[0].get(k) != configs[1].get(k)
            )
            differences.append(f"layer {index} ({type(ours).__name__}): {', '.join(keys)}")
    return differences


def seconds_per_call(model: keras.Model, x: np.ndarray, calls: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        model.predict_on_batch(x)
    return (time.perf_counter() - start) / calls


def measure(repeats: int, calls: int = 5, instances: int = 5) -> dict:
    """Median `predict_on_batch` times of the export and the hand-written network, each
    repeat timing `calls` calls in a row, over `instances` pairs of the two built apart.

    Two builds of one network can differ by a few percent in speed for as long as they live
    (where their memory lies): the pairs' ratios, which the script prints, spread over
    0.974–1.021 in one run per backend. So several pairs are built and timed in turn, and the
    ratio reported is the median of the pairs' ratios, each the median of its per-repeat
    ratios."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, SIZE, SIZE, CHANNELS)).astype("float32")
    pairs = []
    for _ in range(instances):
        exported = export(groco_network())
        hand = hand_written_network()
        hand.set_weights(exported.get_weights())  # same layers, so the weights line up
        same = np.max(np.abs(exported.predict_on_batch(x) - hand.predict_on_batch(x)))
        assert same < 1e-5, f"the hand-written network differs from the export by {same}"
        for _ in range(3):  # warm-up: compilation and caches
            seconds_per_call(exported, x)
            seconds_per_call(hand, x)
        pairs.append({"exported": exported, "hand": hand})
    times: list[dict[str, list[float]]] = [{"exported": [], "hand": []} for _ in pairs]
    for repeat in range(repeats):
        # Alternating which runs first cancels any advantage of going second.
        order = ("exported", "hand") if repeat % 2 == 0 else ("hand", "exported")
        for pair, pair_times in zip(pairs, times, strict=True):
            for name in order:
                pair_times[name].append(seconds_per_call(pair[name], x, calls))
    exported_ms = 1e3 * statistics.median(t for p in times for t in p["exported"])
    hand_ms = 1e3 * statistics.median(t for p in times for t in p["hand"])
    # The ratio of each repeat's adjacent pair, as benchmarks/overhead.py takes it: a change
    # in machine load between repeats moves both of a pair alike and cancels out of it.
    pair_ratios = [
        statistics.median(e / h for e, h in zip(p["exported"], p["hand"], strict=True))
        for p in times
    ]
    return {
        "backend": keras.backend.backend(),
        "batch": BATCH,
        "input": f"{SIZE}x{SIZE}x{CHANNELS}",
        "repeats": repeats,
        "calls": calls,
        "instances": instances,
        "exported_ms": exported_ms,
        "hand_ms": hand_ms,
        "ratio": statistics.median(pair_ratios),
        "pair_ratios": pair_ratios,
        "layer_differences": layer_differences(pairs[0]["exported"], pairs[0]["hand"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--calls", type=int, default=5, help="calls timed together per repeat")
    parser.add_argument("--instances", type=int, default=5, help="pairs of networks built apart")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = measure(args.repeats, args.calls, args.instances)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(
        f"backend={r['backend']} batch={r['batch']} input={r['input']} "
        f"repeats={r['repeats']}x{r['calls']} calls, {r['instances']} pairs: exported "
        f"{r['exported_ms']:.2f} ms, hand-written {r['hand_ms']:.2f} ms, ratio {r['ratio']:.3f} "
        f"(pairs {min(r['pair_ratios']):.3f}–{max(r['pair_ratios']):.3f}; goal <= 1.01); "
        f"layers differ: {'; '.join(r['layer_differences']) or 'none'}"
    )


if __name__ == "__main__":
    main()
