"""Every fast path computes what its plain `keras.ops` reference computes.

`groco_core.layers.fast_paths.FAST_PATHS` lists the backend-specific formulations; inside
`reference_formulations()` the layers compute the references instead. Each test builds one
layer, then takes its output and the gradient of `Σ output · cotangent` (random cotangent)
with respect to the input and every trainable weight, with the fast paths and without, and
compares them: fast eagerly and compiled (`jax.jit`; `tf.function` with and without XLA;
`torch.compile` in its own test) against the reference run eagerly, which is the plain
formulation as written. Hypothesis draws the configurations (group, rank, kind, strides,
padding, dilation, subgroup, data format, dtype, input sizes) and inputs with exact ties:
constant images, zero borders, ReLU zeros, where a maximum's gradient must be shared the way
the reference shares it. Named configurations show that each fast path of the backend is
taken at least once; mutations (a gradient scaled by 1.01, a tie broken otherwise) show the
comparison catches a wrong fast path.
"""

from __future__ import annotations

import importlib
import inspect
import os

import groco_separable
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import groco_core
from groco_core.layers import fast_paths, kernel_cache
from groco_core.layers.fast_paths import FAST_PATHS, reference_formulations, taken_fast_paths

BACKEND = keras.backend.backend()
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
EXAMPLES = {"ci": 12, "deep": 150}.get(PROFILE, 12)

# Largest difference allowed, relative to the largest entry of the reference (or 1).
TOLERANCE = {"float32": 2e-4, "float16": 1e-2, "bfloat16": 3e-2}

GROUPS = {1: ("LM", "L1"), 2: ("P4M", "P4", "PMh", "CMM"), 3: ("C4v", "D2h_af", "O")}
KINDS = (
    "lifting_conv",
    "group_conv",
    "transposed",
    "depthwise",
    "separable",
    "max_pooling",
    "average_pooling",
    "global_max_pooling",
    "batch_norm",
    "dense",
)
INPUTS = ("normal", "constant", "relu", "zero_border")


def _layer(config: dict):
    """The layer a configuration describes and whether its input lives on the group."""
    kind, group, rank = config["kind"], config["group"], config["rank"]
    data_format = config["data_format"]
    common = {"group": group, "data_format": data_format, "dtype": config["dtype"]}
    window = {
        "strides": config["strides"],
        "padding": config["padding"],
        "subgroup": config["subgroup"],
    }
    if kind in ("lifting_conv", "group_conv"):
        dilation = {"dilation_rate": config["dilation"]} if config["dilation"] > 1 else {}
        layer = getattr(groco_core, f"GroupConv{rank}D")(
            3, config["kernel"], **window, **dilation, **common
        )
        return layer, kind == "group_conv"
    if kind == "transposed":
        layer = getattr(groco_core, f"GroupConv{rank}DTranspose")(
            3, config["kernel"], **window, **common
        )
        return layer, config["on_group"]
    if kind in ("depthwise", "separable"):
        options = {"depth_multiplier": config["depth_multiplier"], **window, **common}
        if kind == "depthwise":
            layer = getattr(groco_separable, f"DepthwiseGroupConv{rank}D")(
                config["kernel"], **options
            )
        else:
            layer = getattr(groco_separable, f"SeparableGroupConv{rank}D")(
                3, config["kernel"], order=config["order"], **options
            )
        return layer, config["on_group"]
    if kind in ("max_pooling", "average_pooling"):
        mode = "Max" if kind == "max_pooling" else "Average"
        layer = getattr(groco_core, f"Group{mode}Pooling{rank}D")(
            pool_size=config["kernel"], **window, **common
        )
        return layer, True
    if kind == "global_max_pooling":
        return getattr(groco_core, f"GlobalGroupMaxPooling{rank}D")(**common), True
    if kind == "batch_norm":
        axis = -1 if data_format == "channels_last" else 1
        layer = groco_core.GroupBatchNormalization(axis=axis, group=group, dtype=config["dtype"])
        return layer, True
    return groco_core.GroupDense(3, group=group, subgroup=config["subgroup"]), True


def _input(config: dict, on_group: bool, rng: np.random.Generator) -> np.ndarray:
    rank, kind = config["rank"], config["kind"]
    order = (groco_core.get_group(config["group"]).order,) if on_group else ()
    spatial = () if kind == "dense" else (config["size"],) * rank
    channels = 2
    if config["data_format"] == "channels_first" and kind != "dense":
        shape = (2, channels, *spatial, *order)
        first = 2
    else:
        shape = (2, *spatial, *order, channels)
        first = 1
    x = rng.normal(size=shape).astype("float32")
    degenerate = config["kind"] == "batch_norm" and config["training"]
    if config["input"] == "constant" and not degenerate:
        # (Batch statistics of a constant batch have no variance: their output is rounding
        # noise times 1/sqrt(epsilon), different for any two summation orders.)
        x = np.full(shape, 0.5, "float32")
    elif config["input"] == "relu":
        x = np.maximum(x, 0)
    elif config["input"] == "zero_border" and spatial:
        inner = [slice(None)] * len(shape)
        for axis in range(first, first + rank):
            inner[axis] = slice(1, -1)
        bordered = np.zeros(shape, "float32")
        bordered[tuple(inner)] = x[tuple(inner)]
        x = bordered
    return x


@st.composite
def configurations(draw):
    kind = draw(st.sampled_from(KINDS))
    ranks = (2, 3) if kind in ("depthwise", "separable") else (1, 2, 3)
    if kind == "dense":
        ranks = (2,)
    rank = draw(st.sampled_from(ranks))
    group = draw(st.sampled_from(GROUPS[rank]))
    subgroups = sorted(groco_core.subgroups_of(group))
    return {
        "kind": kind,
        "rank": rank,
        "group": group,
        "subgroup": draw(st.sampled_from([None, *subgroups])),
        "kernel": draw(st.integers(1, 4 if rank < 3 else 3)),
        "strides": draw(st.sampled_from((1, 1, 2))),
        "dilation": draw(st.sampled_from((1, 1, 2))),
        "padding": draw(st.sampled_from(("valid_equiv", "same_equiv", "valid", "same"))),
        "size": draw(st.integers(3, {1: 9, 2: 8, 3: 5}[rank])),
        "data_format": draw(st.sampled_from(("channels_last", "channels_first"))),
        "dtype": draw(st.sampled_from(("float32", "float32", "float16", "bfloat16"))),
        "input": draw(st.sampled_from(INPUTS)),
        "on_group": draw(st.booleans()),
        "depth_multiplier": draw(st.sampled_from((1, 2))),
        "order": draw(st.sampled_from(("depthwise_first", "pointwise_first"))),
        "training": draw(st.booleans()),
    }


# -- value and gradients, per backend -------------------------------------------------------


def _run(layer, x: np.ndarray, cotangent: np.ndarray, training: bool, mode: str):
    """`(output, [gradient of Σ output·cotangent w.r.t. x, then each trainable weight])`,
    as numpy float32, computed `mode`: "eager", "jit" (JAX, or TensorFlow with XLA),
    "graph" (TensorFlow without XLA) or "compile" (torch.compile)."""
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    dtype = layer.compute_dtype

    options = {"training": training} if _takes_training(layer) else {}

    def forward(weights, inputs):
        output, _ = layer.stateless_call(weights, non_trainable, inputs, **options)
        return output

    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def loss(weights, inputs):
            output = forward(weights, inputs)
            return jnp.sum(output.astype("float32") * cotangent), output

        step = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        if mode == "jit":
            step = jax.jit(step)
        (_, output), (weight_gradients, input_gradient) = step(
            trainable, jnp.asarray(x, dtype=dtype)
        )
        gradients = [input_gradient, *weight_gradients]
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        def step(weights, inputs):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                tape.watch(inputs)
                output = forward(weights, inputs)
                loss = tf.reduce_sum(tf.cast(output, "float32") * cotangent)
            return output, tape.gradient(loss, [inputs, *weights])

        if mode != "eager":
            step = tf.function(step, jit_compile=mode == "jit")
        output, gradients = step([tf.identity(w) for w in trainable], tf.constant(x, dtype))
    else:
        import torch

        weights = [w.detach().clone().requires_grad_(True) for w in trainable]
        inputs = torch.tensor(x).to(getattr(torch, dtype)).requires_grad_(True)

        def step(weights, inputs):
            output = forward(weights, inputs)
            loss = (output.float() * torch.from_numpy(cotangent)).sum()
            return output, torch.autograd.grad(loss, [inputs, *weights], allow_unused=True)

        if mode == "compile":
            step = torch.compile(step)
        output, gradients = step(weights, inputs)
    as_numpy = [keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))]
    for gradient in gradients:
        as_numpy.append(
            None
            if gradient is None
            else keras.ops.convert_to_numpy(keras.ops.cast(gradient, "float32"))
        )
    return as_numpy[0], as_numpy[1:]


def _takes_training(layer) -> bool:
    return "training" in inspect.signature(layer.call).parameters


def _compiled_modes() -> tuple[str, ...]:
    return {"jax": ("jit",), "tensorflow": ("graph", "jit"), "torch": ()}[BACKEND]


def _names(layer) -> list[str]:
    return ["input", *(v.path for v in layer.trainable_variables)]


def compare(layer, x: np.ndarray, training: bool, modes: tuple[str, ...] = ("eager",)) -> None:
    """Asserts that the layer's output and gradients with its fast paths, computed in each
    of `modes`, equal those of its references computed eagerly.

    In float16 and bfloat16, sums over many terms differ by more than their last digit
    from one order of summation to another: there the fast paths must be as close to the
    float32 computation (the references, in float32) as the references are, up to
    `TOLERANCE` times the largest entry."""
    rng = np.random.default_rng(7)
    options = {"training": training} if _takes_training(layer) else {}
    output = keras.ops.convert_to_numpy(layer(x, **options))  # builds it
    cotangent = rng.normal(size=output.shape).astype("float32")
    with reference_formulations():
        expected = _run(layer, x, cotangent, training, "eager")
    exact = None
    if layer.compute_dtype != "float32":
        twin = type(layer).from_config({**layer.get_config(), "dtype": "float32"})
        twin(x, **options)
        twin.set_weights([np.asarray(w, "float32") for w in layer.get_weights()])
        with reference_formulations():
            exact = _run(twin, x, cotangent, training, "eager")
    tolerance = TOLERANCE[layer.compute_dtype]
    names = ["output", *_names(layer)]
    for mode in modes:
        actual = _run(layer, x, cotangent, training, mode)
        for index, name in enumerate(names):
            got, want = (
                (actual[0], expected[0])
                if index == 0
                else (
                    actual[1][index - 1],
                    expected[1][index - 1],
                )
            )
            where = f"{name} ({mode}, {type(layer).__name__}, {layer.compute_dtype})"
            if want is None or got is None:
                assert got is None and want is None, where
                continue
            assert np.all(np.isfinite(got)) == np.all(np.isfinite(want)), where
            scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
            allowed = tolerance * scale
            if exact is not None:
                truth = exact[0] if index == 0 else exact[1][index - 1]
                allowed += 2 * float(np.max(np.abs(want - truth), initial=0.0))
                want = truth
            error = float(np.max(np.abs(got - want), initial=0.0))
            assert error <= allowed, f"{where}: differs by {error:.3g} of {scale:.3g}"


def _modes() -> tuple[str, ...]:
    return ("eager", *_compiled_modes())


# -- the draws --------------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    derandomize=PROFILE != "deep",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(configurations())
def test_fast_paths_equal_their_references(config):
    rng = np.random.default_rng(0)
    try:
        layer, on_group = _layer(config)
        x = _input(config, on_group, rng)
        layer(x, **({"training": config["training"]} if _takes_training(layer) else {}))
    except (ValueError, TypeError) as error:
        assert "Received" in str(error), str(error)  # refused clearly: nothing to compare
        event("refused")
        return
    event(f"{config['kind']}, {config['dtype']}, {config['input']}")
    compare(layer, x, config["training"], _modes())


# -- every fast path of this backend, taken and equal to its reference ------------------------


def _group_conv(filters: int = 4, fields: int = 3, **options):
    layer = groco_core.GroupConv2D(filters, 3, group="P4", **options)
    return layer, (2, 7, 7, 4, fields)


def _depthwise(kernel: int, **options):
    return _depthwise_on("P4", kernel, **options)


def _depthwise_on(group: str, kernel: int, **options):
    layer = groco_separable.DepthwiseGroupConv2D(kernel, group=group, **options)
    order = groco_core.get_group(group).order
    return layer, (2, 7, 7, order, 3)


# For each fast path: layers (with their input shapes) that take it on its backends, one per
# branch it has.
CASES = {
    "torch_tensor_reshape": [_group_conv],
    "bias_on_merged_axis": [_group_conv],
    "jax_tiling_matmul": [_group_conv],
    "torch_channels_last_conv": [
        lambda: _group_conv(strides=2),
        lambda: _depthwise(3, padding="same_equiv"),
        lambda: (groco_separable.SeparableGroupConv2D(4, 3, group="P4"), (2, 7, 7, 4, 3)),
    ],
    "torch_bias_gradient_apart": [lambda: _group_conv(padding="same_equiv")],
    "jax_padded_conv": [_group_conv],
    "pointwise_matmul": [lambda: (groco_core.GroupConv2D(4, 1, group="P4M"), (2, 5, 5, 8, 3))],
    "cropped_kernel": [
        # A 1×1 input: the kernel's centre alone, a one-point convolution.
        lambda: (groco_core.GroupConv2D(4, 3, group="P4M", padding="same_equiv"), (2, 1, 1, 8, 3)),
        # 2×2 of a 4×4 kernel at stride 2, on the group.
        lambda: (
            groco_core.GroupConv2D(3, 4, strides=2, group="P4", padding="same_equiv"),
            (2, 2, 2, 4, 2),
        ),
        # Lifting, 3×3 of a 5×5 kernel.
        lambda: (groco_core.GroupConv2D(3, 5, group="P4", padding="same_equiv"), (2, 2, 2, 3)),
        # 3D, one point of a 3×3×3 kernel.
        lambda: (
            groco_core.GroupConv3D(2, 3, group="O", padding="same_equiv"),
            (2, 1, 1, 1, 24, 2),
        ),
    ],
    "torch_index_select_gather": [lambda: _depthwise(3)],
    "jax_in_bounds_gather": [_group_conv],
    "jax_permutation_gradient": [
        _group_conv,
        lambda: (groco_core.GroupConv2D(3, 3, group="P4M"), (2, 6, 6, 2)),  # lifting
        lambda: (groco_core.GroupDense(3, group="P4M", subgroup="P4"), (2, 8, 3)),
    ],
    "tensorflow_run_gather": [
        _group_conv,  # rows of 4 values, read as int64 pairs
        lambda: _group_conv(filters=12),  # rows of 12 values, read as they are
        lambda: (groco_core.GroupConv2DTranspose(3, 3, group="P4"), (2, 4, 4, 4, 2)),
    ],
    "torch_output_major_kernel": [
        _group_conv,  # entry by entry (torch.take)
        lambda: _group_conv(filters=16, fields=16),  # by rows, with its own gradient
    ],
    "trivial_group_gather": [
        lambda: (groco_core.GroupConv2D(4, 3, group="P1"), (2, 7, 7, 3)),  # lifting
        lambda: (groco_core.GroupConv2D(4, 3, group="P1"), (2, 7, 7, 1, 3)),
        lambda: (groco_core.GroupConv2DTranspose(3, 3, group="P1"), (2, 4, 4, 1, 2)),
        lambda: (groco_core.GroupDense(3, group="P1"), (2, 1, 3)),
        lambda: _depthwise_on("P1", 3),
    ],
    "kernel_cache": [
        lambda: (groco_core.GroupDense(3, group="P4M"), (2, 8, 3)),
        _group_conv,
    ],
    "jax_transposed_kernel_gradient": [
        lambda: (
            groco_core.GroupConv2DTranspose(3, 3, strides=2, group="P4M"),
            (2, 4, 4, 8, 2),
        )
    ],
    "merged_batch_norm": [
        lambda: (groco_core.GroupBatchNormalization(group="P4M"), (4, 3, 3, 8, 2))
    ],
    "jax_max_gradient": [
        lambda: (groco_core.GlobalGroupMaxPooling2D(), (2, 3, 3, 8, 2)),
        lambda: (groco_core.GroupMaxPooling2D(group="P4M", subgroup="P4"), (2, 4, 4, 8, 2)),
    ],
    "torch_tiled_depthwise_gradient": [
        lambda: _depthwise(5, padding="same_equiv"),  # input gradient by the flipped kernel
        lambda: _depthwise(4, padding="same_equiv"),  # by the convolution's backward
    ],
    "tensorflow_depthwise_kernel_gradient": [lambda: _depthwise(5, padding="same_equiv")],
    "jax_shifts_gradient": [
        lambda: _depthwise(3, padding="same_equiv"),  # input gradient by the transpose
        lambda: _depthwise(5, padding="same_equiv"),  # per sample, in the loop
        lambda: _depthwise(3, strides=2),
    ],
    "tensorflow_shifts_gradient": [
        lambda: (
            groco_separable.DepthwiseGroupConv3D(3, group="C4v", padding="same_equiv"),
            (2, 5, 5, 5, 8, 2),
        )
    ],
    "jax_pointwise_gradient": [
        lambda: (groco_separable.SeparableGroupConv2D(4, 3, group="P4"), (2, 7, 7, 4, 3))
    ],
}
# Fast paths taken only inside another one.
INSIDE = {
    "jax_tiling_matmul": ("bias_on_merged_axis",),
    "jax_permutation_gradient": ("jax_in_bounds_gather",),
    "torch_bias_gradient_apart": ("torch_channels_last_conv",),
    "torch_tiled_depthwise_gradient": ("torch_channels_last_conv",),
}
BACKEND_PATHS = sorted(name for name, path in FAST_PATHS.items() if BACKEND in path.backends)


def test_every_fast_path_has_a_case_and_a_reference():
    assert sorted(CASES) == sorted(FAST_PATHS)
    for path in FAST_PATHS.values():
        assert set(path.backends) <= set(fast_paths.BACKENDS), path
        assert path.reference, path
        parts = path.formulation.split(".")
        for split in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
            try:
                target = importlib.import_module(".".join(parts[:split]))
                break
            except ModuleNotFoundError:
                continue
        for name in parts[split:]:
            target = getattr(target, name)  # the formulation exists where it is named
        assert callable(target), path


@pytest.mark.parametrize("name", BACKEND_PATHS)
def test_each_fast_path_is_taken_and_equals_its_reference(name, monkeypatch):
    # Keep every kernel expansion on TensorFlow, so inference calls take its cache too.
    monkeypatch.setattr(kernel_cache, "TF_CACHE_MIN_PIECES", 0)
    kept = {name, *INSIDE.get(name, ())}
    for number, case in enumerate(CASES[name]):
        layer, shape = case()
        x = np.random.default_rng(3).normal(size=shape).astype("float32")
        monkeypatch.setattr(fast_paths, "_taken", set())
        with reference_formulations(*(other for other in FAST_PATHS if other not in kept)):
            compare(layer, x, training=True, modes=_modes())
            if name in ("kernel_cache", "merged_batch_norm", "cropped_kernel"):  # inference
                compare(layer, x, training=False, modes=_modes())
        assert name in taken_fast_paths(), f"case {number} of {name} did not take it"


def test_reference_formulations_refuses_an_unknown_name():
    with pytest.raises(ValueError, match=r"Unknown fast path 'jax_conv'.*Received: name="):
        with reference_formulations("jax_conv"):
            pass
    with pytest.raises(ValueError, match=r"Unknown fast path"):
        fast_paths.takes("no_such_path")


# -- the comparison catches wrong fast paths ----------------------------------------------------


def _scaled_gradient(function, factor: float = 1.01):
    """`function` with the same values and every gradient through it times `factor`."""

    def scaled(*args, **kwargs):
        y = function(*args, **kwargs)
        return keras.ops.subtract(
            keras.ops.multiply(y, factor), keras.ops.stop_gradient(y) * (factor - 1)
        )

    return scaled


# Per backend: a fast path's function (module, name), and a case that takes it.
MUTATED = {
    "jax": ("groco_core.backend.jax", "conv", "jax_padded_conv"),
    "tensorflow": ("groco_core.backend.tensorflow", "run_gather", "tensorflow_run_gather"),
    "torch": ("groco_core.backend.torch", "channels_last_conv", "torch_channels_last_conv"),
}


def test_a_fast_path_whose_gradient_is_scaled_by_1_01_fails(monkeypatch):
    module_name, function, case = MUTATED[BACKEND]
    module = importlib.import_module(module_name)
    monkeypatch.setattr(module, function, _scaled_gradient(getattr(module, function)))
    layer, shape = CASES[case][0]()
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    with pytest.raises(AssertionError, match="differs by"):
        compare(layer, x, training=True, modes=_modes())


@pytest.mark.skipif(BACKEND != "jax", reason="the maximum's own gradient is JAX's fast path")
def test_a_maximum_that_breaks_ties_otherwise_fails(monkeypatch):
    import jax
    import jax.numpy as jnp

    def first_only(x, axes, keepdims=False):  # all of the gradient to one maximal entry
        if not fast_paths.takes("jax_max_gradient"):
            return NotImplemented
        kept = tuple(a for a in range(x.ndim) if a not in [b % x.ndim for b in axes])
        merged = jnp.transpose(x, (*kept, *(b % x.ndim for b in axes)))
        merged = merged.reshape(*(x.shape[a] for a in kept), -1)
        first = jax.lax.stop_gradient(jnp.argmax(merged, -1))
        return jnp.take_along_axis(merged, first[..., None], -1)[..., 0]

    from groco_core.backend import jax as jax_backend

    monkeypatch.setattr(jax_backend, "reduce_max", first_only)
    layer = groco_core.GlobalGroupMaxPooling2D()
    x = np.full((2, 3, 3, 8, 2), 0.5, "float32")  # every entry ties
    with pytest.raises(AssertionError, match="input.*differs by"):
        compare(layer, x, training=True, modes=_modes())


# -- torch.compile, which Keras uses for jit_compile=True on PyTorch ---------------------------


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile is PyTorch's compiler")
@pytest.mark.parametrize("case", ["jax_max_gradient", "torch_bias_gradient_apart"])
def test_torch_compile_equals_the_reference(case):
    layer, shape = CASES[case][0]()
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    compare(layer, x, training=True, modes=("compile",))
