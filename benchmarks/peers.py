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

Whole networks (`--networks`, run by default after the layer rows): GroCo's
`GroupResNet18` on P4M (batch 8, 32×32×3, 10 classes; the configurations of
`benchmarks/networks.py`: channel-matched, 8 fields, and parameter-matched, 23) against the
same ResNet-18 built from escnn modules on D4 (`gspaces.flipRot2dOnR2(4)`): `R2Conv` with
GroCo's kernel sizes, strides and (symmetric) paddings (the 2×2 stride-2 shortcuts with a
basis of their own, escnn's default being empty at that size), `InnerBatchNorm`, `ReLU`,
`PointwiseMaxPool2D`, the same number of regular fields per layer, and a head of
`PointwiseAdaptiveAvgPool2D`, `GroupPooling` and a linear layer. Same torch loop (mean-square
loss on the 10 outputs, SGD); ratios with the 95% interval of the median, as in
`benchmarks/networks.py`.

Needs escnn (`make bench-peers` installs it in `.venv-peers`, apart from the project's own
environment: escnn's `lie_learn` needs `numpy<2` and a Fortran compiler).

Run: `KERAS_BACKEND=torch .venv-peers/bin/python benchmarks/peers.py [--repeats 25]
[--network-repeats 9] [--networks channel-matched parameter-matched | --networks]
[--out benchmarks/RESULTS-peers.md]` (`--networks` with no configuration skips them;
`--only-networks` skips the layer rows); with `--profile P4 same` (a group, a padding) instead a
`torch.profiler` table of 20 train steps of each, operators by self time; with
`--profile-network parameter-matched inference` (a configuration, a step) one of 5 steps of
each network.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import escnn  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from escnn import gspaces, nn  # noqa: E402

from groco_core import GroupConv2D  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import networks  # noqa: E402
import overhead  # noqa: E402

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


def _same_padding(size: int, kernel: int, stride: int) -> int:
    """The symmetric padding that gives `ceil(size / stride)` outputs, as GroCo's
    `same_equiv` (whose windows are chosen so that the padding is symmetric)."""
    total = (-(-size // stride) - 1) * stride + kernel - size
    if total % 2:
        raise ValueError(
            f"no symmetric padding for size {size}, kernel {kernel}, stride {stride}. "
            f"Received: a total padding of {total}."
        )
    return total // 2


class EscnnResNet18(torch.nn.Module):
    """GroCo's `GroupResNet18` on P4M, rebuilt from escnn modules on D4 with the same
    fields, kernel sizes, strides and paddings (read from the GroCo model's layers)."""

    def __init__(self, groco_model, classes: int = networks.CLASSES):
        super().__init__()
        self.space = gspaces.flipRot2dOnR2(N=4)
        self.groco = groco_model
        self.size = groco_model.input_shape[1]
        channels = groco_model.input_shape[-1]
        self.input_type = nn.FieldType(self.space, [self.space.trivial_repr] * channels)
        field_type, size = self.input_type, self.size
        self.stem, field_type, size = self._conv_bn("conv1", field_type, size, relu=True)
        pool = groco_model.get_layer("pool1_pool").get_config()
        (kernel, _), (stride, _) = pool["pool_size"], pool["strides"]
        padding = _same_padding(size, kernel, stride)
        self.pool = nn.PointwiseMaxPool2D(field_type, kernel, stride, padding=padding)
        size = -(-size // stride)
        self.blocks = torch.nn.ModuleList()
        for stage, blocks in enumerate((2, 2, 2, 2)):
            for index in range(blocks):
                name = f"conv{stage + 2}_block{index + 1}"
                block = torch.nn.Module()
                block.conv1, out_type, out_size = self._conv_bn(f"{name}_1", field_type, size, True)
                block.conv2, out_type, _ = self._conv_bn(f"{name}_2", out_type, out_size, False)
                block.shortcut = None
                if f"{name}_0_conv" in {layer.name for layer in groco_model.layers}:
                    block.shortcut, _, _ = self._conv_bn(f"{name}_0", field_type, size, False)
                block.relu = nn.ReLU(out_type)
                self.blocks.append(block)
                field_type, size = out_type, out_size
        self.spatial_pool = nn.PointwiseAdaptiveAvgPool2D(field_type, 1)
        self.group_pool = nn.GroupPooling(field_type)
        self.head = torch.nn.Linear(len(field_type), classes)

    def _conv_bn(self, name: str, in_type, size: int, relu: bool):
        """`R2Conv` and `InnerBatchNorm` (and `ReLU`) as GroCo's `{name}_conv` and `_bn`."""
        config = self.groco.get_layer(f"{name}_conv").get_config()
        (kernel, _), (stride, _) = config["kernel_size"], config["strides"]
        out_type = nn.FieldType(self.space, [self.space.regular_repr] * config["filters"])
        padding = _same_padding(size, kernel, stride)
        # escnn's default basis for a 2×2 filter is empty: its four points, at radius
        # √2/2, get a ring of their own and the frequencies a 2×2 grid can hold.
        basis = (
            {"rings": [2**-0.5], "sigma": [0.6], "frequencies_cutoff": lambda radius: 4.0}
            if kernel == 2
            else {}
        )
        modules = [
            nn.R2Conv(in_type, out_type, kernel, padding=padding, stride=stride, **basis),
            nn.InnerBatchNorm(out_type),
        ]
        if relu:
            modules.append(nn.ReLU(out_type))
        return nn.SequentialModule(*modules), out_type, -(-size // stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(nn.GeometricTensor(x, self.input_type)))
        for block in self.blocks:
            shortcut = x if block.shortcut is None else block.shortcut(x)
            x = block.relu(block.conv2(block.conv1(x)) + shortcut)
        x = self.group_pool(self.spatial_pool(x)).tensor
        return self.head(torch.flatten(x, 1))


def network_steps(config: str):
    """(train, inference) callables for GroCo's `GroupResNet18` on P4M and its escnn
    rebuild, on one batch."""
    ours = networks.build(config, "group")
    theirs = EscnnResNet18(ours)
    rng = np.random.default_rng(0)
    shape = (networks.BATCH, *networks.INPUT_SHAPE)
    x_ours = torch.as_tensor(rng.normal(size=shape), dtype=torch.float32)
    x_theirs = x_ours.permute(0, 3, 1, 2).contiguous()  # escnn takes channels first
    ours_sgd = torch.optim.SGD([v.value for v in ours.trainable_variables], lr=1e-3)
    their_sgd = torch.optim.SGD(theirs.parameters(), lr=1e-3)

    def ours_train():
        ours_sgd.zero_grad()
        torch.mean(ours(x_ours, training=True) ** 2).backward()
        ours_sgd.step()

    def their_train():
        theirs.train()
        their_sgd.zero_grad()
        torch.mean(theirs(x_theirs) ** 2).backward()
        their_sgd.step()

    def ours_infer():
        with torch.no_grad():
            ours(x_ours, training=False)

    def their_infer():
        theirs.eval()
        with torch.no_grad():
            theirs(x_theirs)

    counts = {
        "ours_params": ours.count_params(),
        "their_params": sum(p.numel() for p in theirs.parameters() if p.requires_grad),
    }
    return {"train": (ours_train, their_train), "inference": (ours_infer, their_infer)}, counts


def timed(step, n: int = 2) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def compare(ours, theirs, repeats: int, n: int = 2) -> dict:
    """Median step times of the two, steps interleaved (`n` steps per timing), and the
    median, quartiles and 95% interval (`overhead.median_interval`) of the per-repeat
    ratios."""
    for _ in range(3):
        ours()
        theirs()
    ours_times, their_times = [], []
    for repeat in range(repeats):
        pair = [(ours, ours_times), (theirs, their_times)]
        for step, times in pair if repeat % 2 == 0 else pair[::-1]:
            times.append(timed(step, n))
    ratios = sorted(o / t for o, t in zip(ours_times, their_times, strict=True))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "ours_ms": 1e3 * statistics.median(ours_times),
        "their_ms": 1e3 * statistics.median(their_times),
        "ratio": statistics.median(ratios),
        "quartiles": (quartiles[0], quartiles[2]),
        "interval": overhead.median_interval(ratios),
        "repeats": repeats,
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


def profile_network(config: str, mode: str) -> None:
    """Operators by self time over 5 steps (`train` or `inference`) of GroCo's ResNet-18 of
    `config` and of its escnn rebuild, after 3 warm-up steps, one table each."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    ours, theirs = network_steps(config)[0][mode]
    for name, step in (("GroCo", ours), ("escnn", theirs)):
        for _ in range(3):
            step()
        with profiler(activities=[ProfilerActivity.CPU]) as recorded:
            for _ in range(5):
                step()
        print(f"{name}, ResNet-18 {config}, 5 {mode} steps:")
        print(recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def network_rows(configs: list[str], repeats: int) -> list[tuple]:
    """`(config, mode, counts, result)` for each configuration and step, printed as they
    come."""
    rows = []
    for config in configs:
        stepping, counts = network_steps(config)
        for mode, (ours, theirs) in stepping.items():
            result = compare(ours, theirs, repeats, n=1)
            rows.append((config, mode, counts, result))
            low, high = result["interval"]
            print(
                f"ResNet-18 {config:<17} {mode:<9} GroCo {result['ours_ms']:7.1f} ms  escnn "
                f"{result['their_ms']:7.1f} ms  ratio {result['ratio']:.3f} [{low:.3f}–"
                f"{high:.3f}]",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--network-repeats", type=int, default=9)
    parser.add_argument(
        "--networks", nargs="*", choices=list(networks.CONFIGS), default=list(networks.CONFIGS)
    )
    parser.add_argument("--only-networks", action="store_true", help="skip the layer rows")
    parser.add_argument("--out", default="benchmarks/RESULTS-peers.md")
    parser.add_argument(
        "--profile",
        nargs=2,
        metavar=("GROUP", "PADDING"),
        help="a torch.profiler table of train steps instead (e.g. P4 same)",
    )
    parser.add_argument(
        "--profile-network",
        nargs=2,
        metavar=("CONFIG", "MODE"),
        help="a torch.profiler table of 5 network steps instead (e.g. parameter-matched inference)",
    )
    args = parser.parse_args()
    if args.profile_network:
        config, mode = args.profile_network
        if config not in networks.CONFIGS or mode not in ("train", "inference"):
            parser.error(
                f"--profile-network takes one of {sorted(networks.CONFIGS)} and train or "
                f"inference. Received: {args.profile_network}"
            )
        profile_network(config, mode)
        return
    if args.profile:
        group, padding = args.profile
        if group not in {name for name, _, _ in PAIRS} or padding not in ("valid", "same"):
            parser.error(f"--profile takes P4 or P4M and valid or same. Received: {args.profile}")
        profile(group, padding)
        return
    rows = []
    for group, peer, factory in PAIRS if not args.only_networks else ():
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
    whole = network_rows(args.networks, args.network_repeats)
    command = "KERAS_BACKEND=torch .venv-peers/bin/python benchmarks/peers.py"
    command += f" --repeats {args.repeats} --network-repeats {args.network_repeats}"
    if args.networks != list(networks.CONFIGS):
        command += " --networks " + " ".join(args.networks)
    if args.only_networks:
        command += " --only-networks"
    lines = [
        "# GroCo against escnn (generated by `make bench-peers`)",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"keras {keras.__version__}, escnn {escnn.__version__}",
        f"- layers: batch {BATCH}, {SIZE}×{SIZE}, {KERNEL}×{KERNEL}, {FIELDS} regular fields in "
        f"and out; {args.repeats} interleaved repeats of 2 steps; times: medians; ratio: the "
        "median of the per-repeat ratios, with its quartiles",
        f"- networks: ResNet-18 on P4M / D4, batch {networks.BATCH}, "
        f"{'×'.join(map(str, networks.INPUT_SHAPE))}, {args.network_repeats} interleaved "
        "repeats of 1 step; ratio with the 95% interval of the median",
        f"- command: `{command}`",
        "",
    ]
    if rows:
        lines += [
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
    if whole:
        lines += [
            "",
            "## Whole networks: ResNet-18, GroCo's GroupResNet18 against escnn modules",
            "",
            "| configuration (fields) | params GroCo / escnn | step | GroCo ms | escnn ms | "
            "GroCo / escnn | 95% interval | goal ≤ 1 |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for config, mode, counts, result in whole:
        low, high = result["interval"]
        lines.append(
            f"| {config} ({networks._base_filters(config)}) | {counts['ours_params']:,} / "
            f"{counts['their_params']:,} | {mode} | {result['ours_ms']:.1f} | "
            f"{result['their_ms']:.1f} | {result['ratio']:.3f} | {low:.3f}–{high:.3f} | "
            f"{'met' if result['ratio'] <= 1 else 'missed'} |"
        )
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
