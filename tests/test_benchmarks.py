"""Smoke test of `make bench`: a tiny run of benchmarks/bench.py on this backend writes a
RESULTS.md with every section."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from groco_core.layers import fast_paths

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_every_section(monkeypatch):
    bench = _bench_module()
    backend = keras.backend.backend()
    # Each measurement's process inherits it: TensorFlow's section must report it on.
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    settings = bench.Settings(
        groups=("P4",),
        paddings=("same_equiv",),
        inputs=("group",),
        strides=(1,),
        modes=("train",),
        repeats=1,
        steps=1,
        export_repeats=0,
        separable=False,
        floor=True,
    )
    result = bench.measure_backend(backend, settings)
    text = bench.render({backend: result}, settings, "tiny")

    assert text.startswith("# GroCo benchmarks")
    for field in ("date", "machine", "versions", "repeats", "command"):
        assert re.search(rf"^- {field}: \S", text, re.MULTILINE), field
    assert f"{backend} {result['worker']['version']}" in text
    cpu_flags, cpuinfo = set(), Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("flags"):
            cpu_flags = set(line.split(":", 1)[1].split())
            break
    avx512 = "yes" if "avx512f" in cpu_flags else "no"
    assert re.search(rf"^- machine: .*, AVX-512 {avx512}$", text, re.MULTILINE)
    onednn = "TensorFlow's oneDNN operations: on (`TF_ENABLE_ONEDNN_OPTS=1`)."
    assert (onednn in text) == (backend == "tensorflow"), text[:1500]
    assert f"## {backend}" in text
    row = re.search(
        r"^\| GroupConv2D P4 group same_equiv s1 train \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
        r"([\d.]+)–([\d.]+) \| 1 \| ([\d.]+) \| (pass|\*\*miss\*\*)(, within noise)? \|$",
        text,
        re.MULTILINE,
    )
    assert row is not None, text
    group_ms, plain_ms, ratio, low, high = map(float, row.groups()[:5])
    # The ratio is the median of per-repeat ratios, inside its interval; with one repeat it
    # is the ratio of the two times, and the interval is that one ratio.
    assert low == ratio == high
    assert re.search(r"^\d+ of 1 rows within the goal\. Within noise", text, re.MULTILINE)
    assert abs(ratio - group_ms / plain_ms) < 0.01 * ratio + 0.002
    assert re.search(
        r"^\| P4 \| [\d.]+ \| [\d.]+ \| ≤ 10 ms \| (pass|\*\*miss\*\*) \|$", text, re.M
    )
    for section in ("Exported model", "Separable against full"):
        assert re.search(rf"### {section}.*\n\nnot run\n", text), section
    # A separable row renders its page faults per step: full / separable / floor.
    result["separable"] = [
        {
            "position": "inner",
            "group": "P4M",
            "kernel": 3,
            "params_group_conv": 73760,
            "params_separable": 8512,
            "default_formulation": "shifts",
            "step_ms": {"GroupConv": 80.0, "Separable[shifts]": 20.0, "Floor": 16.0},
            "page_faults_per_step": {"GroupConv": 0.0, "Separable[shifts]": 11854.4, "Floor": None},
            "speedup_default": 4.0,
            "floor_ms": 16.0,
            "speedup_bound": 5.0,
        }
    ]
    text = bench.render({backend: result}, settings, "tiny")
    assert re.search(
        r"^\| inner \| P4M \| 3×3 \| 73760 / 8512 \| 80.0 \| 20.0 \(shifts\) \| 4.00 \| "
        r"16.0 \(5.0×\) \| 0 / 11854 / – \| ≥ 3×: pass \|$",
        text,
        re.MULTILINE,
    ), text
    memory = text.split("### Memory of one train step")[1]
    if backend == "jax":
        assert re.search(r"[\d.]+ MiB against [\d.]+ MiB, ratio [\d.]+", memory)
    else:
        assert f"not reported: {backend}" in memory
        assert f"Backends without a memory figure on this machine: {backend}." in text


def test_the_export_benchmark_times_the_same_network_layer_for_layer():
    """benchmarks/export_inference.py times an export against a hand-written network. The
    two have the same layers and configurations (names and initializers aside), so their
    time ratio measures what `export` costs and nothing else; a changed layer is found."""
    from groco_core import export

    spec = importlib.util.spec_from_file_location(
        "export_inference", BENCH.parent / "export_inference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exported = export(module.groco_network())
    hand = module.hand_written_network()
    assert module.layer_differences(exported, hand) == []

    def tanh_activations(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Activation):
            config["activation"] = "tanh"
        return type(layer).from_config(config)

    altered = keras.models.clone_model(hand, clone_function=tanh_activations)
    assert module.layer_differences(exported, altered) == [
        "layer 2 (Activation): activation",
        "layer 4 (Activation): activation",
    ]
    shorter = keras.Model(hand.inputs, hand.layers[-2].output)
    assert module.layer_differences(exported, shorter) == ["7 layers against 6"]


def test_the_separable_benchmark_counts_page_faults_per_step():
    """benchmarks/separable.py counts the minor page faults of each timed block: writing a
    freshly mapped 64 MiB block faults its pages in (4 KiB pages, or 2 MiB ones where the
    kernel gives huge pages). The block is mapped with `mmap`, not taken from the allocator,
    whose reuse of freed memory depends on what earlier tests loaded."""
    import mmap

    import numpy as np

    spec = importlib.util.spec_from_file_location("separable_bench", BENCH.parent / "separable.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def write_fresh_block() -> None:
        block = mmap.mmap(-1, 64 * 2**20)
        pages = np.frombuffer(block, dtype=np.uint8)
        pages[:] = 1
        del pages  # the map closes only once no array views it
        block.close()

    before = module._page_faults()
    if sys.platform.startswith("linux"):
        write_fresh_block()
        assert module._page_faults() - before >= 64 // 2

        class Allocating:
            def train_on_batch(self, x, y):
                write_fresh_block()

        seconds, faults = module._time_steps(Allocating(), None, None, 2)
        assert seconds > 0 and faults >= 64 // 2
    else:
        assert before is None or before >= 0


def test_short_overhead_steps_are_timed_in_runs_of_at_least_the_minimum(monkeypatch):
    """benchmarks/overhead.py runs more steps per timing where one step is short, so that a
    timing lasts at least `MIN_TIMING_S`, and exactly `steps` where the minimum is 0."""
    import time

    import numpy as np

    spec = importlib.util.spec_from_file_location("overhead_bench", BENCH.parent / "overhead.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "overhead_bench", module)  # for its dataclasses
    spec.loader.exec_module(module)

    class Sleeping:
        output_shape = (None, 2, 2, 3)

        def __init__(self, seconds):
            self.seconds, self.calls = seconds, 0

        def train_on_batch(self, x, y):
            self.calls += 1
            time.sleep(self.seconds)

    x = np.zeros((1, 2, 2, 3), "float32")
    # Sleeps of 10 and 20 ms: a sleep overshoots by a millisecond or so on a loaded machine,
    # which would move the ratio of 2 and 4 ms sleeps out of its bounds.
    monkeypatch.setattr(module, "MIN_TIMING_S", 0.1)
    group, plain = Sleeping(0.01), Sleeping(0.02)
    result = module._interleaved(group, plain, x, 2, repeats=2, steps=1, mode="train")
    # One step of the shorter model takes at least 10 ms: at most 10 make 100 ms.
    assert 2 <= result["steps"] <= 10
    assert group.calls == 3 + 1 + 2 * result["steps"]
    assert 0.4 < result["ratio"] < 0.6

    monkeypatch.setattr(module, "MIN_TIMING_S", 0.0)
    result = module._interleaved(Sleeping(0.002), plain, x, 2, repeats=2, steps=3, mode="train")
    assert result["steps"] == 3


def _overhead_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("overhead_bench", BENCH.parent / "overhead.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "overhead_bench", module)  # for its dataclasses
    spec.loader.exec_module(module)
    return module


def test_the_interval_of_the_median_covers_it_at_least_95_percent_of_the_time(monkeypatch):
    """overhead.median_interval, checked by drawing samples from a distribution of known
    median: it covers the median in at least 95% of samples, and is no wider than it needs
    to be (it misses in more than 1% at the sample sizes `make bench` uses)."""
    import numpy as np

    module = _overhead_module(monkeypatch)
    rng = np.random.default_rng(0)
    for n in (9, 15, 21, 27):
        samples = rng.lognormal(mean=0.0, sigma=0.1, size=(4000, n))  # median 1
        covered = np.mean(
            [low <= 1.0 <= high for low, high in map(module.median_interval, samples)]
        )
        assert 0.95 <= covered <= 0.99, (n, covered)
    # Ties and tiny samples: the whole range, from one value on.
    assert module.median_interval([1.5]) == (1.5, 1.5)
    assert module.median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_rows_near_the_goal_get_more_repeats_and_the_others_do_not(monkeypatch):
    """overhead._interleaved adds repeats, two at a time up to `max_repeats`, while the
    interval of the median ratio contains `goal`; rows clear of it keep `repeats`."""
    import numpy as np

    module = _overhead_module(monkeypatch)
    running = []

    class Scripted:
        output_shape = (None, 2, 2, 3)

        def __init__(self, times):
            self.times, self.calls = times, 0

        def train_on_batch(self, x, y):
            running.append(self)

    def scripted_time(step, steps):
        step()
        model = running.pop()
        model.calls += 1
        return model.times[model.calls % len(model.times)]

    monkeypatch.setattr(module, "_time_steps", scripted_time)
    monkeypatch.setattr(module, "MIN_TIMING_S", 0.0)
    x = np.zeros((1, 2, 2, 3), "float32")

    def repeats_of(group_times, goal, max_repeats=27):
        group, plain = Scripted(group_times), Scripted([1.0])
        arguments = (x, 2, 9, 1, "train", None, max_repeats, goal)
        return module._interleaved(group, plain, *arguments)

    near = repeats_of([1.0, 1.06], goal=1.03)  # ratios 1.00 and 1.06: never decided
    assert near["repeats"] == 27 and near["ratio_interval"] == (1.0, 1.06)
    assert repeats_of([1.2], goal=1.03)["repeats"] == 9  # decided from the start
    assert repeats_of([1.0, 1.06], goal=None)["repeats"] == 9
    assert repeats_of([1.0, 1.06], goal=1.03, max_repeats=0)["repeats"] == 9


def test_the_floor_layer_is_the_group_layer_without_its_expansion(monkeypatch):
    """overhead.py's `--floor` layer, given the group layer's expanded kernel as its weight
    and the same bias, computes the group layer's output (lifting and group input)."""
    import numpy as np

    from groco_core import GroupConv2D

    module = _overhead_module(monkeypatch)
    rng = np.random.default_rng(0)
    for shape in ((2, 9, 9, 3), (2, 9, 9, 8, 3)):
        x = rng.normal(size=shape).astype("float32")
        layer = GroupConv2D(4, 3, 2, "same_equiv", group="P4M", bias_initializer="normal")
        floor = module.expanded_weight_class(2)(4, 3, 2, "same_equiv", group="P4M")
        expected = keras.ops.convert_to_numpy(layer(x))
        floor.build(x.shape)
        assert tuple(floor.kernel.shape) == tuple(layer.transformed_kernel().shape)
        floor.kernel.assign(layer.transformed_kernel())
        floor.bias.assign(layer.bias)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(floor(x)), expected, rtol=1e-5, atol=1e-5
        )


def test_the_bound_layer_broadcasts_the_group_layers_kernel(monkeypatch):
    """overhead.py's `--bound` layer has the group layer's weights, and convolves with its
    kernel copied once per output element, untransformed (lifting and group input)."""
    import numpy as np

    from groco_core import GroupConv2D

    module = _overhead_module(monkeypatch)
    rng = np.random.default_rng(1)
    for shape in ((2, 9, 9, 3), (2, 9, 9, 8, 3)):
        x = rng.normal(size=shape).astype("float32")
        layer = GroupConv2D(4, 3, 2, "same_equiv", group="P4M")
        bound = module.broadcast_expansion_class(2)(4, 3, 2, "same_equiv", group="P4M")
        layer.build(x.shape)
        bound.build(x.shape)
        assert [tuple(w.shape) for w in bound.weights] == [tuple(w.shape) for w in layer.weights]
        kernel = rng.normal(size=bound.kernel.shape).astype("float32")
        bound.kernel.assign(kernel)
        bound.bias.assign(rng.normal(size=bound.bias.shape).astype("float32"))
        inputs = shape[-1] * (shape[-2] if len(shape) == 5 else 1)
        # (3, 3, inputs, 4) -> (3, 3, inputs, 8 elements · 4 fields), each element a copy
        expected_kernel = np.tile(kernel.reshape(3, 3, inputs, 4), (1, 1, 1, 8))
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(bound.transformed_kernel()), expected_kernel
        )
        floor = module.expanded_weight_class(2)(4, 3, 2, "same_equiv", group="P4M")
        floor.build(x.shape)
        floor.kernel.assign(expected_kernel)
        floor.bias.assign(bound.bias)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(bound(x)),
            keras.ops.convert_to_numpy(floor(x)),
            rtol=1e-5,
            atol=1e-5,
        )


def _tiny_network(group, input_shape, classes, base_filters):
    """A network with `GroupResNet18`'s arguments and the same kinds of layers (lifting and
    group convolutions, batch norm, invariant head), small enough to build in a second."""
    from groco_core import GlobalGroupAveragePooling2D, GroupBatchNormalization, GroupConv2D

    inputs = keras.Input(input_shape)
    x = GroupConv2D(base_filters, 3, padding="same_equiv", group=group)(inputs)
    x = GroupBatchNormalization(group=group)(x)
    x = GroupConv2D(base_filters, 3, padding="same_equiv", group=group)(x)
    x = GlobalGroupAveragePooling2D(group=group)(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def test_the_network_benchmark_times_a_fast_path_against_its_reference():
    """`networks.py --without NAME` times the group network against itself computed with a
    fast path's reference; a fast path the network does not take is refused, since the two
    would be the same network."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        import networks
    finally:
        sys.path.remove(str(BENCH.parent))
    options = dict(input_shape=(8, 8, 3), batch=2, base_filters=2, network=_tiny_network)
    rows = networks.measure_fast_paths("channel-matched", ["merged_batch_norm"], 3, **options)
    assert [row["mode"] for row in rows] == ["train", "inference"]
    for row in rows:
        low, high = row["ratio_interval"]
        assert low <= row["ratio"] <= high and row["group_ms"] > 0 and row["plain_ms"] > 0
    # Each step of the reference, not only its first (a trace on JAX and TensorFlow, an eager
    # call on PyTorch), computes the references.
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(fast_paths.takes("cropped_kernel"))
            return x

    inputs = keras.Input((2,))
    probe = keras.Model(inputs, Probe()(inputs))
    wrapped = networks.InReferenceFormulations(probe, ["cropped_kernel"])
    seen.clear()  # the symbolic calls that built the model
    for _ in range(3):
        wrapped.predict_on_batch(np.zeros((1, 2), "float32"))
    assert seen and not any(seen)
    if keras.backend.backend() == "torch":  # eager: the model unwrapped takes it again
        probe.predict_on_batch(np.zeros((1, 2), "float32"))
        assert seen[-1]
    elsewhere = "torch_tensor_reshape" if keras.backend.backend() == "jax" else "jax_padded_conv"
    with pytest.raises(ValueError, match=rf"never takes \['{elsewhere}'\]"):
        networks.measure_fast_paths("channel-matched", [elsewhere], 3, **options)


def test_the_network_section_times_group_plain_and_export_interleaved():
    """benchmarks/networks.py on a tiny network: the plain network has the group network's
    channels as its own filters (P1, |G| = 8 times the fields) and is made of stock Keras
    layers, every ratio is inside its 95% interval, the inference row times the export, and
    bench.py renders the rows with their verdicts."""
    bench = _bench_module()
    sys.path.insert(0, str(BENCH.parent))
    try:
        import networks
    finally:
        sys.path.remove(str(BENCH.parent))
    rows = networks.measure(
        "channel-matched", 3, input_shape=(8, 8, 3), batch=2, base_filters=2,
        network=_tiny_network,
    )  # fmt: skip
    assert [row["mode"] for row in rows] == ["train", "inference"]
    # 3·3·3·2 + 2 (lifting, shared over the 8 elements) + 3·3·(8·2)·2 + 2 + BN 2·2 (+ 2·2
    # moving) + Dense 2·10 + 10; the plain one: 3·3·3·16 + 16 + 3·3·16·16 + 16 + BN 4·16 +
    # Dense 16·10 + 10.
    group_params = 54 + 2 + 288 + 2 + 8 + 30
    plain_params = 432 + 16 + 2304 + 16 + 64 + 170
    for row in rows:
        assert (row["base_filters"], row["plain_base_filters"]) == (2, 16)
        assert (row["group_params"], row["plain_params"]) == (group_params, plain_params)
        low, high = row["ratio_interval"]
        assert low <= row["ratio"] <= high and row["repeats"] == 3
        assert row["group_ms"] > 0 and row["plain_ms"] > 0 and row["p1_ms"] > 0
        low, high = row["p1_ratio_interval"]
        assert low <= row["p1_ratio"] <= high
    assert "export_ratio" not in rows[0]
    plain = networks.stock_keras(_tiny_network("P1", (8, 8, 3), 10, 16))
    assert {type(layer).__module__.split(".")[0] for layer in plain.layers} == {"keras"}
    assert plain.count_params() == plain_params
    low, high = rows[1]["export_ratio_interval"]
    assert low <= rows[1]["export_ratio"] <= high and rows[1]["export_ms"] > 0
    rows[0]["memory"] = {"group_bytes": 3 * 2**20, "plain_bytes": 2 * 2**20}
    settings = bench.Settings(
        groups=("P4",), paddings=("same_equiv",), inputs=("group",), strides=(1,),
        modes=("train",), repeats=1, steps=1, export_repeats=0, separable=False,
        networks=("channel-matched",), network_repeats=3,
    )  # fmt: skip
    text = "\n".join(bench._network_lines(rows, settings))
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].startswith("| network") and "| P1 / plain |" in table[0]
    assert {line.count("|") for line in table} == {table[0].count("|")}, text
    number = r"[\d.]+ \([\d.]+–[\d.]+\)"
    verdict = r"(pass|\*\*miss\*\*)"
    assert re.search(
        rf"^\| channel-matched \(2 → 16\) \| {group_params} / {plain_params:,} \| train \| "
        rf"[\d.]+ \| [\d.]+ \| {number} \| {verdict} \| {number} \| – \| – \| – \| "
        r"3 / 2 \(1.50\) \|$",
        text,
        re.MULTILINE,
    ), text
    assert re.search(
        rf"^\| channel-matched \(2 → 16\) \| .* \| inference \| [\d.]+ \| [\d.]+ \| {number} \| "
        rf"{verdict} \| {number} \| [\d.]+ \| {number} \| {verdict} \| – \|$",
        text,
        re.MULTILINE,
    ), text
