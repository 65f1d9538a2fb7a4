"""Fuzzing training: compiled training steps compute what eager ones compute.

Hypothesis draws a stack of two to four group layers that fit together, on a group of the
line, the square or the hexagonal lattice, or a small cubic one (volumes of side 2 to 4):
a lifting convolution (plain, depthwise or separable) or an input already on the group, then
group convolutions, transposed convolutions (onto a supergroup too), max or average pooling
(onto a subgroup too), batch normalization, `GroupDense`, `GroupReduce`, depthwise and
separable group convolutions, each followed or not by a ReLU (whose exact zeros are ties
for the max pools), then global max or average pooling and a `Dense` head. The input is
random, or holds exact ties: one value per image, whole images of zeros, or small integers.
All weights are set from a seeded numpy generator, and the same model is trained for three
SGD steps on one batch compiled and with `run_eagerly=True`: the losses must be finite and
equal, and so must the updates of the weights (batch normalization's moving statistics
included). The tolerances are explained at `LOSS_RTOL`.

"Compiled" is, per backend: JAX `jit`; TensorFlow `tf.function` with and without XLA
(`jit_compile=True` and `False`); PyTorch `torch.compile` (`jit_compile=True`; without it
PyTorch's compiled and eager training are the same code). torch.compile takes about 25 s a
model on two cores, so on PyTorch far fewer stacks are drawn (`MAX_EXAMPLES`: one in the ci
profile, 15 in the deep one) and, in the ci profile, only the issue's model of the
regression test is compiled.

A configuration a layer refuses (`ValueError` / `TypeError`, with a message that says what is
wrong, as in `test_fuzz.py`) is drawn away with `reject()`; `--hypothesis-show-statistics`
counts, per layer kind, the stacks that trained and the layers that refused.

Profiles, as in `test_fuzz.py` (whose import loads them): `HYPOTHESIS_PROFILE=ci` (the
default, derandomized, a few stacks per backend) and `HYPOTHESIS_PROFILE=deep` (`make fuzz`).
"""

from __future__ import annotations

import os

import groco_separable
import keras
import numpy as np
import pytest
from groco_separable.depthwise import FORMULATIONS
from groco_separable.separable import ORDERS
from hypothesis import event, given, reject, settings
from hypothesis import strategies as st
from test_fuzz import NAMED  # importing test_fuzz registers and loads the profiles

import groco_core
from groco_core import get_group, list_groups, subgroups_of

BACKEND = keras.backend.backend()
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
# Stacks per test run, for about 45 s on two cores: a stack costs about 8 s on JAX (mostly
# the eager steps, each op compiled on first use), 3 s on TensorFlow (two compilations),
# 25 s on PyTorch (torch.compile).
MAX_EXAMPLES = {
    "ci": {"jax": 5, "tensorflow": 10, "torch": 1},
    "deep": {"jax": 200, "tensorflow": 200, "torch": 15},
}[PROFILE][BACKEND]
# What "compiled" means on each backend; each is compared with `run_eagerly=True`.
COMPILED = {
    "jax": ({"jit_compile": True},),
    "tensorflow": ({"jit_compile": False}, {"jit_compile": True}),
    "torch": ({"jit_compile": True},),
}[BACKEND]

STEPS, BATCH, LEARNING_RATE = 3, 4, 0.01
# Compiled and eager steps differ by float32 round-off only: a compiler reorders sums, fuses
# multiply-adds and recomputes values inside fusions. The largest differences come from
# long sums: TensorFlow's eager (Eigen) reductions are less accurate than XLA's, so batch
# normalization's variance over 2048 values came out 1.3e-5 off eagerly and 1e-6 under XLA,
# and the first loss 1.2e-5 apart (a `D2h_aa` separable convolution, ReLU and batch
# normalization). Losses may differ by LOSS_RTOL.
# Updates are compared, not weights: after three steps of SGD(0.01) a weight is mostly its
# initial value, which would hide a wrong gradient. An element of a variable's update may
# differ by UPDATE_RTOL of the variable's largest update, plus MODEL_RTOL of the model's
# largest update (a variable whose exact gradient is 0, such as a bias before batch
# normalization, gets the round-off of a sum of terms as large as other gradients), plus
# WEIGHT_ULPS float32 spacings of the variable's largest weight (an update is the
# difference of two rounded weights).
# Measured over ~550 stacks and the regression models on the three backends: losses
# differed by at most 1.3e-5 relative (the case above), and no update used more than 4% of
# its tolerance; a wrong gradient (a tie counted twice or as 0, a max routed elsewhere)
# moves updates by percents of their size, and a NaN fails at once.
LOSS_RTOL = 1e-4
UPDATE_RTOL = 1e-3
MODEL_RTOL = 1e-4
WEIGHT_ULPS = 4

# Groups per number of spatial axes: the line, the square lattice (with a group, its rotation
# subgroup and a small one), the hexagonal lattice and cubic groups of order 8 (whose
# volumes stay tiny).
GROUPS = {1: ("LM",), 2: ("P4M", "P4", "P2MM", "P6"), 3: ("D2h_aa", "C4v", "D2_aa")}
SIZES = {1: (5, 9), 2: (4, 7), 3: (2, 4)}  # input side lengths drawn from
LARGEST = {1: 12, 2: 9, 3: 5}  # transposed convolutions stop growing past these
LIFTING = ("lifting_conv", "lifting_depthwise", "lifting_separable")
KINDS = (
    "group_conv",
    "transposed",
    "pooling",
    "batch_norm",
    "dense",
    "reduce",
    "depthwise",
    "separable",
)
INPUTS = ("normal", "constant", "zeros", "integers")


def _same_lattice(group: str, names) -> list[str]:
    lattice = get_group(group).lattice
    return sorted(name for name in names if get_group(name).lattice == lattice)


def _supergroups(group: str) -> list[str]:
    """Groups of the same lattice (order ≤ 8 in 3D) that have `group` as a proper subgroup."""
    dimension = get_group(group).dimension
    return sorted(
        g.name
        for g in list_groups(dimension)
        if group in subgroups_of(g)
        and g.lattice == get_group(group).lattice
        and (dimension < 3 or g.order <= 8)
    )


def _window(draw, size: int, hexagonal: bool, pooling: bool) -> dict:
    """Kernel or pool size, strides and padding that usually fit an input of side `size`:
    Keras's own paddings are centred for odd windows only, a stride of 2 needs a window of
    the size's parity, and on the hexagonal lattice outputs must have odd sizes and pools
    span one point (a square window is not a union of hexagons)."""
    window = draw(st.integers(1, min(3, size)))
    strides = draw(st.sampled_from((1, 1, 2))) if size >= 3 else 1
    padding = draw(st.sampled_from(("same_equiv", "same_equiv", "valid_equiv", "same", "valid")))
    if padding in ("same", "valid") and window % 2 == 0:
        window -= 1
    if strides == 2 and (size - window) % 2:
        window = window + 1 if window == 1 else window - 1
    if hexagonal:
        window = 1 if pooling else window - 1 + window % 2
        padding = padding.replace("valid", "same")
    return {"window": window, "strides": strides, "padding": padding}


def _output_size(size: int, window: dict, transposed: bool = False) -> int:
    """Roughly the output side (the `_equiv` paddings may add a little)."""
    stride, extent = window["strides"], window["window"]
    if transposed:
        return (
            size * stride if window["padding"].startswith("same") else (size - 1) * stride + extent
        )
    if window["padding"].startswith("same"):
        return -(-size // stride)
    return max((size - extent) // stride + 1, 1)


@st.composite
def stacks(draw) -> dict:
    """A stack of layers, as plain values (printed by Hypothesis when a stack fails)."""
    dimension = draw(st.sampled_from((1, 2, 3)))
    group = draw(st.sampled_from(GROUPS[dimension]))
    hexagonal = get_group(group).lattice == "hexagonal"
    size = draw(st.integers(*SIZES[dimension])) | (1 if hexagonal else 0)
    channels_first = draw(st.booleans())
    spec = {
        "group": group,
        "size": size,
        "channels": draw(st.sampled_from((1, 2))),
        "channels_first": channels_first,
        "inputs": draw(st.sampled_from(INPUTS)),
        "seed": draw(st.integers(0, 2**16)),
    }
    first = [*LIFTING[: 1 if dimension == 1 else 3], "on_group"]
    spec["lifted"] = draw(st.sampled_from(first)) != "on_group"
    if spec["lifted"]:
        count, kinds = draw(st.integers(1, 3)), [draw(st.sampled_from(first[:-1]))]
    else:
        count, kinds = draw(st.integers(2, 4)), []
    layers = []
    for index in range(len(kinds) + count):
        available = [
            kind
            for kind in KINDS
            if not (kind == "dense" and channels_first)  # GroupDense is channels-last only
            and not (kind in ("depthwise", "separable") and dimension == 1)
            and not (kind == "reduce" and not _same_lattice(group, subgroups_of(group)))
        ]
        kind = kinds[index] if index < len(kinds) else draw(st.sampled_from(available))
        layer = {"kind": kind, "relu": draw(st.booleans())}
        if kind == "transposed":
            # Onto a supergroup (its `subgroup` is the group the input lives on) or onto
            # the same group.
            layer["group"] = draw(st.sampled_from([group, *_supergroups(group)]))
            layer["subgroup"] = None if layer["group"] == group else group
            output_group = layer["group"]
        elif kind == "batch_norm":
            layer["group"], output_group = group, group
        else:
            subgroups = _same_lattice(group, subgroups_of(group))
            subgroup = draw(st.sampled_from(subgroups if kind == "reduce" else [None, *subgroups]))
            layer["group"], layer["subgroup"] = group, subgroup
            output_group = subgroup or group
        if kind not in ("batch_norm", "dense", "reduce"):
            window = _window(draw, size, hexagonal, kind == "pooling")
            if kind == "transposed" and _output_size(size, window, True) > LARGEST[dimension]:
                window["strides"] = 1
            layer.update(window)
            size = _output_size(size, window, kind == "transposed")
        if kind in ("lifting_conv", "group_conv", "transposed", "dense") or kind.endswith(
            "separable"
        ):
            layer["filters"] = draw(st.sampled_from((2, 3)))
        if kind == "pooling":
            layer["average"] = draw(st.booleans())
        if kind in ("depthwise", "separable", "lifting_depthwise", "lifting_separable"):
            formulations = FORMULATIONS[1:] if dimension == 3 else FORMULATIONS
            layer["formulation"] = draw(st.sampled_from((None, *formulations)))
            layer["depth_multiplier"] = draw(st.sampled_from((1, 2)))
            if kind.endswith("separable"):
                layer["order"] = draw(st.sampled_from(ORDERS))
                if layer["order"] == "pointwise_first":  # one spatial kernel per output field
                    layer["depth_multiplier"] = 1
        layers.append(layer)
        group = output_group
    spec["layers"] = layers
    spec["global_average"] = draw(st.booleans())
    spec["output_group"] = group
    return spec


def _layer(layer: dict, rank: int, data_format: str) -> keras.layers.Layer:
    """The layer one entry of a stack describes."""
    kind = layer["kind"]
    if kind == "batch_norm":
        axis = 1 if data_format == "channels_first" else -1
        return groco_core.GroupBatchNormalization(axis=axis, group=layer["group"])
    if kind == "dense":
        return groco_core.GroupDense(
            layer["filters"], group=layer["group"], subgroup=layer["subgroup"]
        )
    if kind == "reduce":
        return groco_core.GroupReduce(layer["group"], layer["subgroup"], data_format=data_format)
    if kind == "pooling":
        mode = "Average" if layer["average"] else "Max"
        return getattr(groco_core, f"Group{mode}Pooling{rank}D")(
            pool_size=layer["window"],
            strides=layer["strides"],
            padding=layer["padding"],
            data_format=data_format,
            group=layer["group"],
            subgroup=layer["subgroup"],
        )
    conv = {
        "kernel_size": layer["window"],
        "strides": layer["strides"],
        "padding": layer["padding"],
        "data_format": data_format,
        "group": layer["group"],
        "subgroup": layer["subgroup"],
    }
    if kind in ("lifting_conv", "group_conv"):
        return getattr(groco_core, f"GroupConv{rank}D")(layer["filters"], **conv)
    if kind == "transposed":
        return getattr(groco_core, f"GroupConv{rank}DTranspose")(layer["filters"], **conv)
    conv["depth_multiplier"] = layer["depth_multiplier"]
    conv["formulation"] = layer["formulation"]
    if kind.endswith("depthwise"):
        return getattr(groco_separable, f"DepthwiseGroupConv{rank}D")(**conv)
    return getattr(groco_separable, f"SeparableGroupConv{rank}D")(
        layer["filters"], order=layer["order"], **conv
    )


def _input_shape(spec: dict) -> tuple[int, ...]:
    rank = get_group(spec["group"]).dimension
    inner = (
        *(spec["size"],) * rank,
        *(() if spec["lifted"] else (get_group(spec["group"]).order,)),
    )
    return (spec["channels"], *inner) if spec["channels_first"] else (*inner, spec["channels"])


class Refused(Exception):
    """A layer of the stack refused its arguments or its input (the error is the cause)."""

    def __init__(self, kind: str):
        super().__init__(f"refused by {kind}")
        self.kind = kind


def _build(spec: dict) -> keras.Model:
    """The stack as a functional model; raises `Refused` when a layer refuses."""
    rank = get_group(spec["group"]).dimension
    data_format = "channels_first" if spec["channels_first"] else "channels_last"
    inputs = keras.Input(_input_shape(spec))
    x = inputs
    for layer in spec["layers"]:
        try:
            x = _layer(layer, rank, data_format)(x)
        except (ValueError, TypeError) as error:
            raise Refused(layer["kind"]) from error
        if layer["relu"]:
            x = keras.layers.ReLU()(x)
    mode = "Average" if spec["global_average"] else "Max"
    x = getattr(groco_core, f"GlobalGroup{mode}Pooling{rank}D")(
        data_format=data_format, group=spec["output_group"]
    )(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def _data(spec: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shape = (BATCH, *_input_shape(spec))
    per_image = (BATCH,) + (1,) * (len(shape) - 1)
    x = rng.normal(size=shape)
    if spec["inputs"] == "constant":  # one value per image: every window ties
        x = np.broadcast_to(rng.normal(size=per_image), shape)
    elif spec["inputs"] == "zeros":  # whole images of zeros among random ones
        x = x * (np.arange(BATCH) % 2).reshape(per_image)
    elif spec["inputs"] == "integers":  # few distinct values: ties everywhere
        x = rng.integers(-2, 3, size=shape)
    return x.astype("float32"), rng.normal(size=(BATCH, 2)).astype("float32")


def _initial_weights(model: keras.Model, rng: np.random.Generator) -> list[np.ndarray]:
    """Every variable from numpy: kernels scaled by their fan-in, biases and betas small,
    batch normalization's scales and moving variances near 1."""
    weights = []
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, size=shape)
        elif len(shape) == 1:  # biases, betas, moving means
            value = 0.1 * rng.normal(size=shape)
        else:
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        weights.append(value.astype(variable.dtype))
    return weights


def _train(
    build, weights, x, y, learning_rate=LEARNING_RATE, batch_size=BATCH, epochs=STEPS, **options
) -> tuple[np.ndarray, list[np.ndarray]]:
    """SGD on (x, y) in order from `weights`, compiled with `options`: the loss of each epoch
    (of each step when the data is one batch) and the weights after the last."""
    if BACKEND == "torch" and options.get("jit_compile"):
        import torch

        # Dynamo compiles Keras's `train_step` of a second model in the process with
        # dynamic shapes, on which Inductor fails (`cannot determine truth value of
        # Relational`), with plain Keras layers too: each model is compiled afresh, as in a
        # process of its own.
        torch._dynamo.reset()
    model = build()
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse", **options)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return np.array(history.history["loss"]), model.get_weights()


def _assert_same_training(compiled, eager, initial, label: str) -> None:
    (compiled_losses, compiled_weights), (eager_losses, eager_weights) = compiled, eager
    assert np.all(np.isfinite(eager_losses)), f"eager losses {eager_losses}"
    assert np.all(np.isfinite(compiled_losses)), f"{label}: losses {compiled_losses}"
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=LOSS_RTOL, err_msg=label)
    spacing = np.finfo(np.float32).eps
    largest_in_model = max(
        float(np.max(np.abs(end - start), initial=0.0))
        for start, end in zip(initial, eager_weights, strict=True)
    )
    pairs = zip(initial, compiled_weights, eager_weights, strict=True)
    for index, (start, ours, theirs) in enumerate(pairs):
        expected = theirs - start
        largest_update = float(np.max(np.abs(expected), initial=0.0))
        largest_weight = float(np.max(np.abs(start), initial=0.0))
        np.testing.assert_allclose(
            ours - start,
            expected,
            rtol=0,
            atol=UPDATE_RTOL * largest_update
            + MODEL_RTOL * largest_in_model
            + WEIGHT_ULPS * spacing * largest_weight,
            err_msg=f"{label}: update of weight {index} (shape {start.shape})",
        )


@settings(max_examples=MAX_EXAMPLES)
@given(stacks())
def test_compiled_training_equals_eager_training(spec):
    try:
        model = _build(spec)
    except Refused as refusal:
        message = str(refusal.__cause__)
        assert "Received" in message and any(word in message for word in NAMED), message
        event(str(refusal))
        reject()
    rng = np.random.default_rng(spec["seed"])
    weights = _initial_weights(model, rng)
    x, y = _data(spec, rng)
    eager = _train(lambda: _build(spec), weights, x, y, run_eagerly=True)
    for options in COMPILED:
        compiled = _train(lambda: _build(spec), weights, x, y, **options)
        _assert_same_training(compiled, eager, weights, f"{options}")
    for kind in sorted({layer["kind"] for layer in spec["layers"]}):
        event(f"trained: {kind}")
    event(f"trained: {get_group(spec['group']).dimension}D, {spec['inputs']} input")


def _issue_model() -> keras.Model:
    """The model of the issue: it trained to NaN under `jit` on JAX and was finite eagerly.
    An XLA CPU fusion recomputed the global max's input with other rounding than the max
    itself saw, so no element equalled the max and its gradient divided by a tie count of 0.
    """
    return keras.Sequential(
        [
            keras.Input((9, 9, 1)),
            groco_core.GroupConv2D(4, 3, group="P4M", activation="relu"),
            groco_core.GroupConv2D(4, 3, group="P4M"),
            groco_core.GroupBatchNormalization(group="P4M"),
            groco_core.GlobalGroupMaxPooling2D(),
            keras.layers.Dense(2),
        ]
    )


def _plain_conv_model() -> keras.Model:
    """The same ending after a plain convolution: batch normalization and the global max
    alone."""
    return keras.Sequential(
        [
            keras.Input((9, 9, 1)),
            keras.layers.Conv2D(32, 3),
            keras.layers.Reshape((7, 7, 8, 4)),
            groco_core.GroupBatchNormalization(group="P4M"),
            groco_core.GlobalGroupMaxPooling2D(),
            keras.layers.Dense(2),
        ]
    )


# The default compilation (as in the issue: `jit` on JAX, `tf.function` on TensorFlow, none
# on PyTorch) and the compiler where it is another. torch.compile takes about 25 s a model on
# two cores: the ci profile compiles the issue's model only.
REGRESSIONS = [
    pytest.param(
        build, options, id=f"{build.__name__.strip('_')}-{'jit_compile' if options else 'default'}"
    )
    for build in (_issue_model, _plain_conv_model)
    for options in ({}, {"jit_compile": True})
    if not (options and BACKEND == "jax")  # `jit` is JAX's default
    and not (options and BACKEND == "torch" and PROFILE == "ci" and build is _plain_conv_model)
]


@pytest.mark.parametrize("build, options", REGRESSIONS)
def test_regression_batch_norm_then_global_max_trains_compiled_as_eagerly(build, options):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 9, 9, 1)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    keras.utils.set_random_seed(1)  # the issue's initial weights
    weights = build().get_weights()
    fit = {"learning_rate": 0.05, "batch_size": 8, "epochs": 2}
    eager = _train(build, weights, x, y, run_eagerly=True, **fit)
    compiled = _train(build, weights, x, y, **options, **fit)
    _assert_same_training(compiled, eager, weights, f"{options}")
