"""GroupConv2D against escnn's `R2Conv` on identical shapes, PyTorch, one process.

Shapes as in `benchmarks/overhead.py`: batch 32, 28×28, 3×3 kernels, 16 regular fields in and
out. GroCo's `GroupConv2D` on P4 / P4M (input `(32, 28, 28, |G|, 16)`) against escnn's `R2Conv`
between 16 regular fields of C4 / D4 (input `(32, 16·|G|, 28, 28)`), each driven by the same
plain torch loop: a train step is forward, mean-square loss, backward and an SGD update; an
inference step is a forward pass under `torch.no_grad()` (escnn in `eval()` mode, which caches
its expanded filter). `valid`: escnn `padding=0` against `padding="valid_equiv"`; `same`:
escnn `padding=1` against `padding="same_equiv"`. The two layers of one row run interleaved
(the order alternates every repeat); the ratio reported is the median over repeats of each
repeat's GroCo / escnn ratio, with its quartiles (the two times of a repeat are taken back to
back, so a change in machine load between repeats cancels out of it), as in `overhead.py`.

Needs escnn (`make bench-peers` installs it in `.venv-peers`, apart from the project's own
environment: escnn's `lie_learn` needs `numpy<2` and a Fortran compiler).

Run: `KERAS_BACKEND=torch .venv-peers/bin/python benchmarks/peers.py [--repeats 25]
[--out benchmarks/RESULTS-peers.md]`; with `--profile P4 same` (a group, a padding) instead a
`torch.profiler` table of 20 train steps of each, operators by self time.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import escnn  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from escnn import gspaces, nn  # noqa: E402

from groco_core import GroupConv2D  # noqa: E402

BATCH, SIZE, FIELDS, KERNEL = 32, 28, 16, 3
PAIRS = (
    ("P4", "C4", lambda: gspaces.rot2dOnR2(N=4)),
    ("P4M", "D4", lambda: gspaces.flipRot2dOnR2(N=4)),
)


def escnn_layer(space, padding: int):
    field_type = nn.FieldType(space, [space.regular_repr] * FIELDS)
    return nn.R2Conv(field_type, field_type, kernel_size=KERNEL, padding=padding), field_type


def groco_layer(group: str, padding: str):
    layer = GroupConv2D(FIELDS, KERNEL, padding=padding, group=group)
    order = layer.group.order
    layer.build((None, SIZE, SIZE, order, FIELDS))
    return layer, order


def steps(group: str, space_factory, padding: str):
    """(train, inference) callables for GroCo and escnn on one configuration."""
    space = space_factory()
    escnn_conv, field_type = escnn_layer(space, 0 if padding == "valid" else 1)
    ours, order = groco_layer(group, f"{padding}_equiv")
    rng = np.random.default_rng(0)
    x_ours = torch.as_tensor(
        rng.normal(size=(BATCH, SIZE, SIZE, order, FIELDS)), dtype=torch.float32
    )
    x_escnn = nn.GeometricTensor(
        torch.as_tensor(rng.normal(size=(BATCH, FIELDS * order, SIZE, SIZE)), dtype=torch.float32),
        field_type,
    )
    ours_params = [v.value for v in ours.trainable_variables]
    ours_sgd = torch.optim.SGD(ours_params, lr=1e-3)
    escnn_sgd = torch.optim.SGD(escnn_conv.parameters(), lr=1e-3)

    def ours_train():
        ours_sgd.zero_grad()
        loss = torch.mean(ours(x_ours) ** 2)
        loss.backward()
        ours_sgd.step()

    def escnn_train():
        escnn_conv.train()
        escnn_sgd.zero_grad()
        loss = torch.mean(escnn_conv(x_escnn).tensor ** 2)
        loss.backward()
        escnn_sgd.step()

    def ours_infer():
        with torch.no_grad():
            ours(x_ours)

    def escnn_infer():
        escnn_conv.eval()
        with torch.no_grad():
            escnn_conv(x_escnn)

    return {"train": (ours_train, escnn_train), "inference": (ours_infer, escnn_infer)}


def timed(step, n: int = 2) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def compare(ours, theirs, repeats: int) -> dict:
    """Median step times of the two, steps interleaved, and the median and quartiles of the
    per-repeat ratios."""
    for _ in range(3):
        ours()
        theirs()
    ours_times, their_times = [], []
    for repeat in range(repeats):
        pair = [(ours, ours_times), (theirs, their_times)]
        for step, times in pair if repeat % 2 == 0 else pair[::-1]:
            times.append(timed(step))
    ratios = sorted(o / t for o, t in zip(ours_times, their_times, strict=True))
    quartiles = statistics.quantiles(ratios, n=4)
    return {
        "ours_ms": 1e3 * statistics.median(ours_times),
        "their_ms": 1e3 * statistics.median(their_times),
        "ratio": statistics.median(ratios),
        "quartiles": (quartiles[0], quartiles[2]),
    }


def profile(group: str, padding: str) -> None:
    """Operators by self time over 20 train steps of GroCo and of escnn, one table each."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    factory = {name: make for name, _, make in PAIRS}[group]
    ours, theirs = steps(group, factory, padding)["train"]
    for _ in range(5):
        ours()
        theirs()
    for name, step in (("GroCo", ours), ("escnn", theirs)):
        with profiler(activities=[ProfilerActivity.CPU], record_shapes=True) as recorded:
            for _ in range(20):
                step()
        print(f"{name}, {group} {padding}, 20 train steps:")
        table = recorded.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40
        )
        print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--out", default="benchmarks/RESULTS-peers.md")
    parser.add_argument(
        "--profile",
        nargs=2,
        metavar=("GROUP", "PADDING"),
        help="a torch.profiler table of train steps instead (e.g. P4 same)",
    )
    args = parser.parse_args()
    if args.profile:
        group, padding = args.profile
        if group not in {name for name, _, _ in PAIRS} or padding not in ("valid", "same"):
            parser.error(f"--profile takes P4 or P4M and valid or same. Received: {args.profile}")
        profile(group, padding)
        return
    rows = []
    for group, peer, factory in PAIRS:
        for padding in ("valid", "same"):
            for mode, (ours, theirs) in steps(group, factory, padding).items():
                result = compare(ours, theirs, args.repeats)
                rows.append((group, peer, padding, mode, result))
                low, high = result["quartiles"]
                print(
                    f"{group}/{peer} {padding:<5} {mode:<9} GroCo {result['ours_ms']:7.1f} ms  "
                    f"escnn {result['their_ms']:7.1f} ms  ratio {result['ratio']:.3f} "
                    f"[{low:.3f}–{high:.3f}]",
                    flush=True,
                )
    lines = [
        "# GroCo against escnn (generated by `make bench-peers`)",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"keras {keras.__version__}, escnn {escnn.__version__}",
        f"- shapes: batch {BATCH}, {SIZE}×{SIZE}, {KERNEL}×{KERNEL}, {FIELDS} regular fields in "
        f"and out; {args.repeats} interleaved repeats of 2 steps; times: medians; ratio: the "
        "median of the per-repeat ratios, with its quartiles",
        "- command: `KERAS_BACKEND=torch .venv-peers/bin/python benchmarks/peers.py "
        f"--repeats {args.repeats}`",
        "",
        "| GroCo group | escnn group | padding | step | GroCo ms | escnn ms | GroCo / escnn "
        "| quartiles | goal ≤ 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group, peer, padding, mode, result in rows:
        ratio, (low, high) = result["ratio"], result["quartiles"]
        lines.append(
            f"| {group} | {peer} | {padding} | {mode} | {result['ours_ms']:.1f} "
            f"| {result['their_ms']:.1f} | {ratio:.3f} | {low:.3f}–{high:.3f} "
            f"| {'met' if ratio <= 1 else 'missed'} |"
        )
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
