"""Smoke test of `make bench`: a tiny run of benchmarks/bench.py on this backend writes a
RESULTS.md with every section."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import keras

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_every_section():
    bench = _bench_module()
    backend = keras.backend.backend()
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
    )
    result = bench.measure_backend(backend, settings)
    text = bench.render({backend: result}, settings, "tiny")

    assert text.startswith("# GroCo benchmarks")
    for field in ("date", "machine", "versions", "repeats", "command"):
        assert re.search(rf"^- {field}: \S", text, re.MULTILINE), field
    assert f"{backend} {result['worker']['version']}" in text
    assert f"## {backend}" in text
    row = re.search(
        r"^\| GroupConv2D P4 group same_equiv s1 train \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
        r"([\d.]+)–([\d.]+) \| (pass|\*\*miss\*\*) \|$",
        text,
        re.MULTILINE,
    )
    assert row is not None, text
    group_ms, plain_ms, ratio, low, high = map(float, row.groups()[:5])
    # The ratio is the median of per-repeat ratios, between its quartiles; with one repeat
    # it is the ratio of the two times.
    assert low <= ratio <= high
    assert abs(ratio - group_ms / plain_ms) < 0.01 * ratio + 0.002
    assert re.search(
        r"^\| P4 \| [\d.]+ \| [\d.]+ \| ≤ 10 ms \| (pass|\*\*miss\*\*) \|$", text, re.M
    )
    for section in ("Exported model", "Separable against full"):
        assert re.search(rf"### {section}.*\n\nnot run\n", text), section
    memory = text.split("### Memory of one train step")[1]
    if backend == "jax":
        assert re.search(r"[\d.]+ MiB against [\d.]+ MiB, ratio [\d.]+", memory)
    else:
        assert f"not reported: {backend}" in memory
        assert f"Backends without a memory figure on this machine: {backend}." in text
