"""`make bench`: every GroCo benchmark on every backend, written to `benchmarks/RESULTS.md`.

Each measurement runs in its own process with `KERAS_BACKEND` set, through the scripts that
measure it (`--json`):

- `benchmarks/overhead.py`: group layer against the plain Keras layer on the same expanded
  channels, train step and inference, medians of interleaved repeats, and layer build times;
- `benchmarks/export_inference.py`: an `export()`-ed network against the same network written
  by hand with stock Keras layers;
- `benchmarks/separable.py`: `SeparableGroupConv` against the full `GroupConv`;
- `benchmarks/networks.py`: `GroupResNet18` on P4M against the plain ResNet-18 with the same
  expanded widths (train step, inference, inference of its export, peak memory of training);
- this script's own `--worker`: the backend's version and the memory of one train step of
  `GroupConv2D` against `Conv2D` (JAX reports it for a compiled step on CPU; TensorFlow and
  PyTorch report allocator statistics only on accelerators).

Goals: overhead ratio ≤ 1.03 per row, export ratio ≤ 1.01, build time ≤ 10 ms for a 2D layer
and ≤ 100 ms for an Oh layer, separable ≥ 3× faster per train step than full at 3×3 and ≥ 6×
at 5×5, a whole network at or below the plain network's time (ratio ≤ 1) and its export's
inference at the plain network's (≤ 1.01). Each is shown with pass / miss.

Run: `python benchmarks/bench.py [--quick] [--backends jax tensorflow torch]
[--out benchmarks/RESULTS.md]` (the default run takes about half an hour on two cores, the
whole networks a few minutes of it per backend; `--quick` about five).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("jax", "tensorflow", "torch")
OVERHEAD_GOAL, EXPORT_GOAL = 1.03, 1.01
NETWORK_GOAL = 1.0  # a whole group network against the plain one of the same widths
BUILD_GOALS_MS = {"P4": 10.0, "P4M": 10.0, "Oh": 100.0}
SEPARABLE_GOALS = {3: 3.0, 5: 6.0}  # speedup per kernel size


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures and how often.

    Attributes:
        groups: the groups of `overhead.py`'s rows (2D: P4, P4M; 3D: O, Oh).
        paddings: `valid_equiv` and / or `same_equiv`.
        inputs: `group` (a signal on the group) and / or `lifting` (an image).
        strides: 1 and / or 2.
        modes: `train` and / or `inference`.
        repeats: interleaved repeats per overhead row (the median is reported).
        max_repeats: more repeats, two at a time up to this many, while the 95% interval of
            a row's median ratio contains the goal (`overhead.py --max-repeats`); 0: none.
        steps: steps per repeat, at least.
        min_timing_ms: more steps per repeat where they would take less than this.
        floor: whether to time each group convolution row also without its kernel expansion
            (`overhead.py --floor`).
        export_repeats: repeats of the export comparison, 0 to skip it.
        separable: whether to run `separable.py`.
        layers: `overhead.py`'s rows of other layers (`--layers`): dilation, transposed
            convolution, pooling, batch norm, 1D; `("all",)` or `()`.
        networks: `networks.py`'s configurations (`channel-matched`, `parameter-matched`);
            `()` skips the section.
        network_repeats: interleaved repeats per network row.
        network_memory: whether to measure each network's peak memory of training (a process per
            model).
    """

    groups: tuple[str, ...]
    paddings: tuple[str, ...]
    inputs: tuple[str, ...]
    strides: tuple[int, ...]
    modes: tuple[str, ...]
    repeats: int
    steps: int
    export_repeats: int
    separable: bool
    layers: tuple[str, ...] = ()
    min_timing_ms: float = 0.0
    floor: bool = False
    max_repeats: int = 0
    networks: tuple[str, ...] = ()
    network_repeats: int = 3
    network_memory: bool = False

    def network_arguments(self) -> list[str]:
        memory = ["--memory"] if self.network_memory else []
        return ["--configs", *self.networks, "--repeats", str(self.network_repeats), *memory]

    def overhead_arguments(self) -> list[str]:
        return [
            "--groups", *self.groups,
            "--layers", *self.layers,
            "--paddings", *self.paddings,
            "--inputs", *self.inputs,
            "--strides", *map(str, self.strides),
            "--modes", *self.modes,
            "--repeats", str(self.repeats),
            "--max-repeats", str(self.max_repeats),
            "--goal", str(OVERHEAD_GOAL),
            "--steps", str(self.steps),
            "--min-timing-ms", str(self.min_timing_ms),
            *(["--floor"] if self.floor else []),
        ]  # fmt: skip


PRESETS = {
    "default": Settings(
        groups=("P4", "P4M", "O", "Oh"),
        paddings=("valid_equiv", "same_equiv"),
        inputs=("group", "lifting"),
        strides=(1, 2),
        modes=("train", "inference"),
        repeats=9,
        max_repeats=27,
        steps=3,
        export_repeats=30,
        separable=True,
        layers=("all",),
        min_timing_ms=30.0,
        floor=True,
        networks=("channel-matched", "parameter-matched"),
        network_repeats=9,
        network_memory=True,
    ),
    "quick": Settings(
        groups=("P4", "P4M", "Oh"),
        paddings=("valid_equiv", "same_equiv"),
        inputs=("group",),
        strides=(1,),
        modes=("train", "inference"),
        repeats=3,
        steps=1,
        export_repeats=10,
        separable=False,
        networks=("channel-matched",),
        network_repeats=3,
    ),
}


def _more_steps(settings: Settings) -> str:
    if not settings.min_timing_ms:
        return ""
    return (
        f" (more where a step is short: each timing lasts at least {settings.min_timing_ms:g}"
        " ms, up to 100 steps)"
    )


def _more_repeats(settings: Settings) -> str:
    if settings.max_repeats <= settings.repeats:
        return ""
    return (
        f", and two more at a time, up to {settings.max_repeats}, while the 95% interval of "
        f"the row's median ratio contains {OVERHEAD_GOAL}"
    )


def _within_noise(row: dict) -> bool:
    """Whether the 95% interval of an overhead row's median contains the goal: another run
    could give the other verdict."""
    low, high = row["ratio_interval"]
    return low <= OVERHEAD_GOAL <= high


def _overhead_verdict(row: dict) -> str:
    """pass / **miss** by the median ratio, marked "within noise" (`_within_noise`)."""
    verdict = _verdict(row["ratio"] <= OVERHEAD_GOAL)
    return f"{verdict}, within noise" if _within_noise(row) else verdict


def _json_output(command: list[str], backend: str) -> object:
    """Run `command` with `KERAS_BACKEND=backend` and parse the JSON it prints last."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"`KERAS_BACKEND={backend} {' '.join(command)}` failed:\n{done.stderr[-3000:]}"
        )
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("[", "{")))
    return json.loads("\n".join(lines[start:]))


def measure_backend(backend: str, settings: Settings) -> dict:
    """Every measurement of one backend, each in its own process."""
    python = sys.executable
    result = {
        "worker": _json_output([python, str(HERE / "bench.py"), "--worker"], backend),
        "overhead": _json_output(
            [python, str(HERE / "overhead.py"), "--json", *settings.overhead_arguments()],
            backend,
        ),
        "export": None,
        "separable": None,
        "networks": None,
    }
    if settings.export_repeats:
        script = str(HERE / "export_inference.py")
        command = [python, script, "--json", "--repeats", str(settings.export_repeats)]
        result["export"] = _json_output(command, backend)
    if settings.separable:
        command = [python, str(HERE / "separable.py"), "--json"]
        result["separable"] = _json_output(command, backend)
    if settings.networks:
        command = [python, str(HERE / "networks.py"), "--json", *settings.network_arguments()]
        result["networks"] = _json_output(command, backend)
    return result


def _worker() -> dict:
    """The backend's version and the memory of one train step (in this process's backend)."""
    import keras

    backend = keras.backend.backend()
    module = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}[backend]
    version = __import__(module).__version__
    memory = None
    if backend == "jax":
        memory = {
            "group_bytes": _jax_step_bytes(group=True),
            "plain_bytes": _jax_step_bytes(group=False),
        }
    return {"backend": backend, "version": version, "memory": memory, "onednn": _onednn()}


def _onednn() -> bool | None:
    """Whether TensorFlow runs its oneDNN operations in this process (None on the other
    backends, or where TensorFlow does not say). TensorFlow decides it by the CPU unless
    `TF_ENABLE_ONEDNN_OPTS` says, and it decides which convolutions run: on the project's
    2-core AMD machine, where it was off, TensorFlow's 3D convolution gradients with 96 or
    128 channels took 20 to 30 times as long as with it on (docs/cube_groups.md)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    try:  # TensorFlow's own flag, the one its startup message reports
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def _jax_step_bytes(group: bool) -> int:
    """Temporary bytes XLA allocates for one compiled train step (gradient of a mean square)
    of GroupConv2D on P4 (batch 32, 28×28, 16 fields, `same_equiv`) or of the plain Conv2D on
    the same 64 channels."""
    import jax
    import keras
    import numpy as np

    from groco_core import GroupConv2D

    if group:
        layer = GroupConv2D(16, 3, padding="same_equiv", group="P4")
        shape = (32, 28, 28, 4, 16)
    else:
        layer = keras.layers.Conv2D(64, 3, padding="same")
        shape = (32, 28, 28, 64)
    layer.build(shape)
    x = np.zeros(shape, "float32")

    def loss(trainable, non_trainable):
        y, _ = layer.stateless_call(trainable, non_trainable, x)
        return jax.numpy.mean(y**2)

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    compiled = jax.jit(jax.grad(loss)).lower(trainable, non_trainable).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def _separable_goal(row: dict) -> str:
    """`≥ N×: pass / miss` for the 2D rows; the 3D row (O) has no goal."""
    goal = SEPARABLE_GOALS.get(row["kernel"]) if row["group"] != "O" else None
    if goal is None:
        return "no goal"
    return f"≥ {goal:g}×: {_verdict(row['speedup_default'] >= goal)}"


def _verdict(passed: bool) -> str:
    return "pass" if passed else "**miss**"


def _overhead_summary(rows: list[dict]) -> str:
    """How many rows pass, and how many verdicts either way are within the noise."""
    passed = [row for row in rows if row["ratio"] <= OVERHEAD_GOAL]
    missed = [row for row in rows if row["ratio"] > OVERHEAD_GOAL]

    def noisy(some: list[dict]) -> int:
        return sum(map(_within_noise, some))

    return (
        f"{len(passed)} of {len(rows)} rows within the goal. Within noise (the 95% interval "
        f"of the median contains {OVERHEAD_GOAL}): {noisy(passed)} passes, {noisy(missed)} "
        f"misses. Misses with their whole interval above the goal: "
        f"{len(missed) - noisy(missed)}."
    )


def _machine() -> str:
    model = _cpuinfo("model name") or platform.processor() or platform.machine()
    avx512 = "avx512f" in (_cpuinfo("flags") or "").split()
    return (
        f"{model}, {os.cpu_count()} cores ({platform.system()} {platform.machine()}), "
        f"AVX-512 {'yes' if avx512 else 'no'}"
    )


def _cpuinfo(field: str) -> str | None:
    """The first value of `field` in `/proc/cpuinfo` (None where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    return None


def render(results: dict[str, dict], settings: Settings, command: str) -> str:
    """RESULTS.md from the measurements of `measure_backend`, one section per backend."""
    versions = ", ".join(
        f"{backend} {results[backend]['worker']['version']}" for backend in results
    )
    lines = [
        "# GroCo benchmarks (generated by `make bench`)",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {_machine()}",
        f"- versions: python {platform.python_version()}, keras "
        f"{importlib.metadata.version('keras')}, {versions}, groco "
        f"{importlib.metadata.version('groco')}",
        f"- repeats: {settings.repeats} interleaved repeats of {settings.steps} step(s) per "
        f"overhead row{_more_steps(settings)}{_more_repeats(settings)}; export: "
        f"{settings.export_repeats} repeats of 5 calls on each of 5 pairs of networks; "
        "ratios: the median of the per-repeat ratios; medians throughout",
        f"- command: `{command}`",
        "- escnn comparison: [RESULTS-peers.md](RESULTS-peers.md) (`make bench-peers`)",
        "",
        "How to read this file: [docs/benchmarks.md](../docs/benchmarks.md).",
    ]
    memory_missing = []
    for backend, result in results.items():
        lines += ["", f"## {backend}", ""]
        onednn = result["worker"].get("onednn")
        if onednn is not None:
            setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
            how = (
                f"`TF_ENABLE_ONEDNN_OPTS={setting}`"
                if setting
                else "TensorFlow's default on this CPU; `TF_ENABLE_ONEDNN_OPTS=1` turns them on"
            )
            lines += [f"TensorFlow's oneDNN operations: {'on' if onednn else 'off'} ({how}).", ""]
        lines += ["### Overhead over the plain Keras layer", ""]
        lines += [
            "| row | group ms | plain ms | ratio | 95% interval | repeats | without expansion | "
            f"goal ≤ {OVERHEAD_GOAL} |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines[-2:-2] = [_overhead_summary(result["overhead"]), ""]
        for row in result["overhead"]:
            low, high = row["ratio_interval"]
            floor = f"{row['floor_ratio']:.3f}" if "floor_ratio" in row else "–"
            lines.append(
                f"| {row['row']} | {row['group_ms']:.2f} | {row['plain_ms']:.2f} | "
                f"{row['ratio']:.3f} | {low:.3f}–{high:.3f} | {row['repeats']} | {floor} | "
                f"{_overhead_verdict(row)} |"
            )
        lines += ["", "### Build time of one layer", ""]
        lines += ["| group | GroCo ms | plain ms | goal | |", "|---|---|---|---|---|"]
        builds = {row["group"]: row for row in result["overhead"] if "group_build_ms" in row}
        for group, row in builds.items():
            goal = BUILD_GOALS_MS.get(group)
            verdict = _verdict(row["group_build_ms"] <= goal) if goal else "no goal"
            lines.append(
                f"| {group} | {row['group_build_ms']:.2f} | {row['plain_build_ms']:.2f} | "
                f"{f'≤ {goal:g} ms' if goal else '–'} | {verdict} |"
            )
        export = result["export"]
        lines += ["", "### Exported model against the same plain network", ""]
        if export is None:
            lines.append("not run")
        else:
            lines.append(
                f"exported {export['exported_ms']:.2f} ms, hand-written {export['hand_ms']:.2f} "
                f"ms (batch {export['batch']}, input {export['input']}): ratio "
                f"{export['ratio']:.3f} (over {export['instances']} pairs of the two built apart, "
                f"the median of each pair's median per-repeat ratio; the pairs "
                f"{min(export['pair_ratios']):.3f}–{max(export['pair_ratios']):.3f}), goal ≤ "
                f"{EXPORT_GOAL}: {_verdict(export['ratio'] <= EXPORT_GOAL)}. The export's "
                "layers against the hand-written network's (type and configuration, names "
                f"and initializers aside): {'; '.join(export['layer_differences']) or 'the same'}"
            )
        lines += ["", "### Separable against full group convolution", ""]
        if result["separable"] is None:
            lines.append("not run")
        else:
            lines += [
                "Position `inner`: the layer inside a network (its input gradient computed); "
                "`first`: the model's first layer (none computed). Page faults: the median "
                "minor page faults per step of full / separable / floor (first writes to "
                "memory the allocator has just mapped; docs/benchmarks.md, Memory "
                "allocation). See docs/separable.md.",
                "",
                "| position | group | kernel | params full / separable | full ms | separable ms "
                "(default formulation) | speedup | kernel-1 floor ms (bound) | page faults | "
                "goal |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for row in result["separable"]:
                default = f"Separable[{row['default_formulation']}]"
                counts = row.get("page_faults_per_step") or {}
                faults = " / ".join(
                    "–" if counts.get(name) is None else f"{counts[name]:.0f}"
                    for name in ("GroupConv", default, "Floor")
                )
                lines.append(
                    f"| {row['position']} | {row['group']} | {row['kernel']}×{row['kernel']} | "
                    f"{row['params_group_conv']} / {row['params_separable']} | "
                    f"{row['step_ms']['GroupConv']:.1f} | {row['step_ms'][default]:.1f} "
                    f"({row['default_formulation']}) | {row['speedup_default']:.2f} | "
                    f"{row['floor_ms']:.1f} ({row['speedup_bound']:.1f}×) | {faults} | "
                    f"{_separable_goal(row)} |"
                )
        lines += ["", "### Whole networks: GroupResNet18 on P4M against the plain ResNet-18", ""]
        lines += _network_lines(result.get("networks"), settings)
        memory = result["worker"]["memory"]
        lines += ["", "### Memory of one train step", ""]
        if memory is None:
            memory_missing.append(backend)
            lines.append(f"not reported: {backend} gives no allocator statistics on CPU")
        else:
            ratio = memory["group_bytes"] / memory["plain_bytes"]
            lines.append(
                "GroupConv2D P4 `same_equiv` (batch 32, 28×28, 16 fields) against Conv2D on "
                f"64 channels, temporary bytes of the compiled gradient step: "
                f"{memory['group_bytes'] / 2**20:.1f} MiB against "
                f"{memory['plain_bytes'] / 2**20:.1f} MiB, ratio {ratio:.2f}"
            )
    if memory_missing:
        lines += [
            "",
            f"Backends without a memory figure on this machine: {', '.join(memory_missing)}.",
        ]
    return "\n".join(lines) + "\n"


def _interval(row: dict, name: str = "ratio") -> str:
    low, high = row[f"{name}_interval"]
    return f"{row[name]:.3f} ({low:.3f}–{high:.3f})"


def _network_lines(rows: list[dict] | None, settings: Settings) -> list[str]:
    """The rows of `networks.py`: step times, ratios with their 95% intervals, the export's
    inference and the peak memory of training."""
    if not rows:
        return ["not run"]
    first = rows[0]
    lines = [
        f"Batch {first['batch']}, input {'×'.join(map(str, first['input']))}, 10 classes; "
        f"{settings.network_repeats} interleaved repeats; ratio: the median of the per-repeat "
        'ratios (95% interval). The plain network: `GroupResNet18(group="P1")` with the '
        "group network's channels (|G| times its fields), rebuilt from stock Keras layers; "
        "P1: that network on GroCo's layers; export: `groco_core.export` of the group network. "
        "Memory: how far the resident set rises, at its peak, while the model is built and "
        "trained for three steps, each model in its own process (docs/benchmarks.md).",
        "",
        "| network (fields → plain channels) | params group / plain | step | group ms | plain ms "
        f"| group / plain | goal ≤ {NETWORK_GOAL:g} | P1 / plain | export ms | export / plain "
        f"| goal ≤ {EXPORT_GOAL} | memory group / plain MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        export = "–", "–", "–"
        if "export_ratio" in row:
            export = (
                f"{row['export_ms']:.1f}",
                _interval(row, "export_ratio"),
                _verdict(row["export_ratio"] <= EXPORT_GOAL),
            )
        memory = row.get("memory")
        if row["mode"] != "train" or not memory or not memory.get("plain_bytes"):
            memory_text = "–"
        else:
            memory_text = (
                f"{memory['group_bytes'] / 2**20:.0f} / {memory['plain_bytes'] / 2**20:.0f} "
                f"({memory['group_bytes'] / memory['plain_bytes']:.2f})"
            )
        lines.append(
            f"| {row['config']} ({row['base_filters']} → {row['plain_base_filters']}) | "
            f"{row['group_params']:,} / {row['plain_params']:,} | {row['mode']} | "
            f"{row['group_ms']:.1f} | {row['plain_ms']:.1f} | {_interval(row)} | "
            f"{_verdict(row['ratio'] <= NETWORK_GOAL)} | {_interval(row, 'p1_ratio')} | "
            f"{' | '.join(export)} | {memory_text} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker()))
        return
    settings = PRESETS["quick" if args.quick else "default"]
    results = {}
    for backend in args.backends:
        print(f"measuring {backend} ...", flush=True)
        results[backend] = measure_backend(backend, settings)
    command = "python benchmarks/bench.py" + (" --quick" if args.quick else "")
    if args.backends != list(BACKENDS):
        command += " --backends " + " ".join(args.backends)
    args.out.write_text(render(results, settings, command))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
