"""Where a TensorFlow step of one `overhead.py` row spends its time: a `tf.profiler` trace of
the group model's and the plain model's calls, read back per call.

The two models (and, with `--floor`, the group layer with its expanded kernel as its weight,
`overhead.expanded_weight_class`) are called in turn, `--calls` times each, inside one trace.
For each model the trace gives, per call (medians over the calls):

- the call's time inside TensorFlow's runtime (from the moment it runs the step's graph);
- when the convolution starts, counted from the call's start: what runs before it (variable
  reads, the kernel's expansion, the bias's tiling, the check of a kept kernel) is the
  latency the layer adds ahead of its one large operation;
- each operation's time and count, the group model's against the plain model's.

The times of small operations carry the profiler's own cost (a few microseconds each), in
both models alike. TensorFlow runs independent operations side by side on its thread pool,
so the operations' times add up to more than the call's.

Run: `KERAS_BACKEND=tensorflow python benchmarks/tf_trace.py --group Oh --input lifting
--stride 2 --padding valid_equiv --mode inference [--calls 40] [--floor] [--top 20]`
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import statistics
import tempfile

import keras
import numpy as np
import overhead

# Events of TensorFlow's runtime and thread pool, not operations.
_BOOKKEEPING = (
    "Eager",
    "Thread",
    "Executor",
    "KernelAndDevice",
    "Validate",
    "FunctionRun",
    "TFE_",
    "ParallelFor",
)


def _trace_events(directory: str) -> list[dict]:
    """The complete events of the trace written under `directory`, by start time."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    paths = glob.glob(f"{directory}/**/*.xplane.pb", recursive=True)
    if not paths:
        raise RuntimeError(f"no trace was written under {directory}")
    data, _ = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "trace_viewer@", {})
    events = [e for e in json.loads(data)["traceEvents"] if e.get("ph") == "X"]
    return sorted(events, key=lambda e: e["ts"])


def per_call(events: list[dict], names: list[str]) -> dict:
    """For each model's step function (`names`, in the order the models were first called),
    the median call time, the median offset of its convolution's start and each operation's
    median time and count per call, from the trace's `events`."""
    steps = [e for e in events if e["name"].startswith("EagerLocalExecute: __inference")]
    firsts = list(dict.fromkeys(e["name"] for e in steps))
    if len(firsts) != len(names):
        raise RuntimeError(
            f"the trace holds {len(firsts)} step functions, {len(names)} models were called: "
            f"{firsts}"
        )
    pairs = zip(names, firsts, strict=True)
    calls_of = {name: [e for e in steps if e["name"] == first] for name, first in pairs}
    operations = [e for e in events if not e["name"].startswith(_BOOKKEEPING)]
    result = {}
    for name, calls in calls_of.items():
        durations, conv_starts = [], []
        times: dict[str, list[float]] = collections.defaultdict(list)
        counts: collections.Counter = collections.Counter()
        for call in calls:
            start, end = call["ts"], call["ts"] + call["dur"]
            inside = [e for e in operations if start <= e["ts"] <= end]
            durations.append(call["dur"])
            convolutions = [e["ts"] for e in inside if "Conv" in e["name"]]
            if convolutions:
                conv_starts.append(min(convolutions) - start)
            per_operation: dict[str, float] = collections.defaultdict(float)
            for event in inside:
                per_operation[event["name"]] += event["dur"]
                counts[event["name"]] += 1
            for operation, total in per_operation.items():
                times[operation].append(total)
        result[name] = {
            "call_us": statistics.median(durations),
            "conv_start_us": statistics.median(conv_starts) if conv_starts else None,
            "operations": {
                operation: (
                    # Calls without the operation count as 0.
                    statistics.median(values + [0.0] * (len(calls) - len(values))),
                    counts[operation] / len(calls),
                )
                for operation, values in times.items()
            },
        }
    return result


def trace_row(
    group: str,
    lifting: bool,
    stride: int,
    padding: str,
    mode: str,
    calls: int,
    floor: bool = False,
) -> dict:
    """`per_call` of the row's models, called in turn `calls` times each inside one trace."""
    import tensorflow as tf

    group_model, plain_model, x = overhead._models(group, padding, lifting, stride)
    models = {"group": group_model, "plain": plain_model}
    if floor:
        layer_class = overhead.expanded_weight_class(overhead.SHAPES[group].rank)
        models["without expansion"] = overhead._models(
            group, padding, lifting, stride, layer_class
        )[0]
    rank = overhead.SHAPES[group].rank
    plain_x = x.reshape(x.shape[0], *x.shape[1 : 1 + rank], -1)
    target = np.random.default_rng(1).normal(size=(x.shape[0], *group_model.output_shape[1:]))
    target = target.astype("float32")
    steps = []
    for name, model in models.items():
        inputs = plain_x if name == "plain" else x
        if mode == "train":
            steps.append(lambda m=model, i=inputs: m.train_on_batch(i, target))
        else:
            steps.append(lambda m=model, i=inputs: m.predict_on_batch(i))
    for _ in range(5):  # traced and warm before the profile
        for step in steps:
            step()
    with tempfile.TemporaryDirectory() as directory:
        tf.profiler.experimental.start(directory)
        try:
            for _ in range(calls):
                for step in steps:
                    step()
        finally:
            tf.profiler.experimental.stop()
        return per_call(_trace_events(directory), list(models))


def report(result: dict, top: int) -> str:
    """The per-call figures as text: one line per model, then the operations by their time
    in the group model, with the plain model's beside them."""
    lines = []
    for name, figures in result.items():
        start = figures["conv_start_us"]
        start_text = "no convolution" if start is None else f"convolution starts at {start:.1f}"
        lines.append(f"{name}: call {figures['call_us']:.1f} µs, {start_text} µs")
    lines.append(f"{'operation':40s} " + " ".join(f"{name[:18]:>24s}" for name in result))
    names = set().union(*(figures["operations"] for figures in result.values()))
    group_operations = result["group"]["operations"]
    order = sorted(names, key=lambda n: -group_operations.get(n, (0.0, 0))[0])
    for operation in order[:top]:
        cells = []
        for figures in result.values():
            time, count = figures["operations"].get(operation, (0.0, 0.0))
            cells.append(f"{time:10.1f} µs × {count:4.1f}")
        lines.append(f"{operation[:40]:40s} " + " ".join(f"{c:>24s}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", default="Oh", choices=list(overhead.SHAPES))
    parser.add_argument("--input", default="group", choices=["group", "lifting"])
    parser.add_argument("--stride", type=int, default=1, choices=[1, 2])
    parser.add_argument("--padding", default="valid_equiv", choices=["valid_equiv", "same_equiv"])
    parser.add_argument("--mode", default="inference", choices=["train", "inference"])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--floor", action="store_true", help="also the layer without expansion")
    parser.add_argument("--top", type=int, default=20, help="operations listed")
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        parser.error(
            f"this traces TensorFlow; run it with KERAS_BACKEND=tensorflow, not "
            f"{keras.backend.backend()!r}"
        )
    result = trace_row(
        args.group,
        args.input == "lifting",
        args.stride,
        args.padding,
        args.mode,
        args.calls,
        args.floor,
    )
    print(
        f"{args.group} {args.input} {args.padding} s{args.stride} {args.mode}, "
        f"{args.calls} calls each (medians per call)"
    )
    print(report(result, args.top))


if __name__ == "__main__":
    main()
