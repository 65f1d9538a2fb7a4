"""Timings of single operations behind the choices in the hot path, per backend.

Each figure in docs/separable.md and docs/benchmarks.md that compares two ways of running one
operation comes from here. The two ways run interleaved in one process; medians in ms.

- torch: a depthwise convolution, forward and backward, on the channels-last input as a view
  (what `torch_conv_channels_last` passes) against a contiguous channels-first copy (what
  `keras.ops` passes); the pointwise product as a matmul against a 1×1 convolution; a
  convolution with its bias added by the convolution against a separate add; group
  convolution train steps with the bias gradient computed by PyTorch's convolution backward
  against summed apart, and the plain layer's (2D; 3D in `torch_3d_bias_gradient`); the 1D
  group convolution's train and inference steps with its input copied to contiguous memory
  and as a channels-last view; the `Oh` kernel transformation (3×3×3, 4 fields in and out)
  and the convolution, forward and kernel gradient, with the kernel gathered into the
  convolution's weight layout (`KernelGather.torch_output_major`) against a gather followed
  by a copy into Keras's layout; the kernel gradient of a 5×5 depthwise convolution,
  oneDNN's own against four 3×3 tiles (`groco_separable.depthwise._torch_depthwise`), and
  oneDNN's 3×3 one for reference; the kernel transformation into PyTorch's weight layout by
  rows against entry by entry (`torch.take`), alone and in the train steps of lifting rows
  of `overhead.py`.
- tensorflow: the kernel gradient of a depthwise convolution, TensorFlow's own against the
  swapped-roles correlation of `groco_separable.depthwise._tf_depthwise` (whose time includes
  the input gradient, which its custom gradient computes too); a group convolution's
  inference call in a `tf.function` (as in `predict`) with the transformed kernel kept
  between calls (`groco_core.layers.kernel_cache`) against expanded on every call, for
  transformed kernels of 18 432 to 995 328 entries (kept only from
  `TF_CACHE_MIN_PIECES` of them divided by the filters); the kernel transformation, forward
  and with its gradient, as `KernelGather.moved` runs it (`tf.gather_nd` of runs read as wide
  entries) against the same runs with `tf.gather`, and a floor that moves as many values
  (a multiply over the transformed kernel's size, and for the gradient a sum over the
  output elements too), for 2D and 3D kernels of 4 to 64 fields; the transformation's
  gradient alone (`Oh`, 4 fields) as `KernelGather.moved` computes it against TensorFlow's
  scatter-adds, a sorted segment sum, a sparse-dense matmul and an ideal expansion's sum;
  TensorFlow's own 3D convolution and its two gradients with 96, 128 and 192 channels (run
  with `TF_ENABLE_ONEDNN_OPTS=0` and `=1`: which implementation runs depends on it).
- jax: a multiply-add of `(32, 28, 28, 128)` with per-channel vectors of 16 values tiled 8
  times by broadcast and reshape, by a product with a 0/1 matrix (`tile_over_group` on JAX),
  and with vectors of 128 values (no tiling); the train step of a separable layer inside a
  network (`benchmarks/separable.py`'s `inner` models, P4M 3×3 and 5×5, O 3×3×3) with the
  depthwise part's input gradient taken per sample against as the transpose of its forward
  sum (`groco_separable.depthwise.JAX_PER_SAMPLE_INPUT_GRADIENT_POINTS`), two steps per
  timing; the same P4M models (and a 1×1 depthwise kernel) with the pointwise part's own
  gradients against JAX's (`groco_separable.separable.JAX_POINTWISE_OWN_GRADIENT`): the
  compiled step's temporary memory, its time and its minor page faults; the same for the
  depthwise part's per-sample gradient loop with and without
  `groco_separable.depthwise.JAX_LOW_MEMORY_GRADIENTS` (P4M 3×3 and 5×5, O 3×3×3); the
  forward pass and kernel gradient of a transposed convolution (stride 1 `valid` and
  `same`, stride 2 `valid`), XLA's own against
  `groco_core.layers.conv_transpose.conv_transpose`'s; a `valid` convolution in 1D, 2D
  and 3D, forward and with its gradients, unpadded (`keras.ops.conv`) against with a zero
  row that adds no output (`groco_core.layers.conv.jax_conv`).
- jax and tensorflow: the train step of a group convolution with a one-point kernel inside a
  network (P4M, O and LM, strides 1 and 2) as the backend's convolution against as a matrix
  product (where `groco_core.layers.conv.BaseGroupConv` uses which).

Run: `KERAS_BACKEND=torch python benchmarks/micro.py [--repeats 15] [--only CASE]`; `--only`
runs the one case function whose name starts with CASE (e.g. `pointwise`, `jax_unpadded`).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import keras


def _interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for case in cases.values():  # warm up (and compile)
        for _ in range(3):
            case()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            start = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def _report(title: str, medians: dict[str, float]) -> None:
    figures = ", ".join(f"{name} {ms:.2f} ms" for name, ms in medians.items())
    print(f"{title}: {figures}", flush=True)


def torch_cases(repeats: int) -> None:
    import torch
    import torch.nn.functional as tnn

    channels = 256
    x = torch.randn(8, 28, 28, channels, requires_grad=True)
    g = torch.randn(8, 28, 28, channels)
    for k in (3, 5):
        w = torch.randn(channels, 1, k, k, requires_grad=True)

        def view(k=k, w=w):
            y = tnn.conv2d(x.permute(0, 3, 1, 2), w, padding=k // 2, groups=channels)
            y.permute(0, 2, 3, 1).backward(g)

        def copy(k=k, w=w):
            first = x.permute(0, 3, 1, 2).contiguous()
            y = tnn.conv2d(first, w, padding=k // 2, groups=channels)
            y.permute(0, 2, 3, 1).backward(g)

        _report(
            f"torch depthwise {k}x{k} (8, 28, 28, 256) forward+backward",
            _interleaved({"channels-last view": view, "channels-first copy": copy}, repeats),
        )
    w = torch.randn(channels, channels, requires_grad=True)

    def matmul():
        (x.reshape(-1, channels) @ w).reshape(x.shape).backward(g)

    def conv1x1():
        kernel = w.t().reshape(channels, channels, 1, 1)
        tnn.conv2d(x.permute(0, 3, 1, 2), kernel).permute(0, 2, 3, 1).backward(g)

    _report(
        "torch pointwise (6272, 256) @ (256, 256) forward+backward",
        _interleaved({"matmul": matmul, "1x1 convolution": conv1x1}, repeats),
    )
    x = torch.randn(32, 28, 28, 128)
    w = torch.randn(128, 128, 3, 3)
    b = torch.randn(128)

    def separate():
        with torch.no_grad():
            tnn.conv2d(x.permute(0, 3, 1, 2), w, padding=1).permute(0, 2, 3, 1) + b

    def fused():
        with torch.no_grad():
            tnn.conv2d(x.permute(0, 3, 1, 2), w, b, padding=1).permute(0, 2, 3, 1)

    _report(
        "torch convolution (32, 28, 28, 128) 3x3 inference",
        _interleaved(
            {"bias added separately": separate, "bias in the convolution": fused}, repeats
        ),
    )

    _torch_bias_gradient(repeats)
    _torch_conv1d_input(repeats)
    _torch_kernel_transformation(repeats)


def _torch_bias_gradient(repeats: int) -> None:
    """Train steps of the group convolution of `benchmarks/overhead.py` (P4 lifting `valid`,
    P4M lifting `same`, P4 and P4M group input, stride 1) with its bias gradient computed by
    PyTorch's convolution backward against summed apart
    (`groco_core.layers.conv.TORCH_BIAS_GRADIENT_APART_RANKS`), and the plain layer's."""
    rows = [("P4", "valid_equiv", True, 1), ("P4M", "same_equiv", True, 1)]
    rows += [("P4", "valid_equiv", False, 1), ("P4M", "same_equiv", False, 1)]
    _bias_gradient_rows(rows, repeats)


def _torch_3d_bias_gradient(repeats: int) -> None:
    """`_torch_bias_gradient` for the 3D rows of `benchmarks/overhead.py`: O and Oh, lifting
    at stride 1 and group input at stride 2, both paddings."""
    rows = [
        (group, padding, lifting, 1 if lifting else 2)
        for group in ("O", "Oh")
        for lifting in (True, False)
        for padding in ("valid_equiv", "same_equiv")
    ]
    _bias_gradient_rows(rows, repeats)


def _bias_gradient_rows(rows: list[tuple[str, str, bool, int]], repeats: int) -> None:
    """For each `(group, padding, lifting, stride)`, 3 train steps per timing of the group
    model with its rank's bias gradient by the convolution and summed apart, and of the plain
    model."""
    import numpy as np
    from overhead import SHAPES, _models

    from groco_core.layers import conv

    for group, padding, lifting, stride in rows:
        group_model, plain_model, x = _models(group, padding, lifting, stride)
        rank = SHAPES[group].rank
        y = np.random.default_rng(1).normal(size=(x.shape[0], *group_model.output_shape[1:]))
        y = y.astype("float32")
        x_plain = x.reshape(*x.shape[: 1 + rank], -1)

        def step(ranks, model=group_model, x=x, y=y):
            conv.TORCH_BIAS_GRADIENT_APART_RANKS = ranks
            for _ in range(3):
                model.train_on_batch(x, y)

        def plain(model=plain_model, x=x_plain, y=y):
            for _ in range(3):
                model.train_on_batch(x, y)

        ranks = conv.TORCH_BIAS_GRADIENT_APART_RANKS
        try:
            medians = _interleaved(
                {
                    "by the convolution": lambda ranks=ranks, rank=rank: step(ranks - {rank}),
                    "summed apart": lambda ranks=ranks, rank=rank: step(ranks | {rank}),
                    "plain layer": plain,
                },
                repeats,
            )
        finally:
            conv.TORCH_BIAS_GRADIENT_APART_RANKS = ranks
        kind = "lifting" if lifting else "group"
        _report(f"torch {group} {kind} {padding} s{stride} train step x3, bias gradient", medians)


def _torch_conv1d_input(repeats: int) -> None:
    """Train and inference steps of the LM row of `benchmarks/overhead.py` with the 1D
    convolution's input copied to contiguous memory where gradients are taken
    (`groco_core.layers.conv.TORCH_CONTIGUOUS_1D_INPUT_FOR_GRADIENTS`) and without."""
    import keras
    import numpy as np
    from overhead import LAYER_ROWS, _merged

    from groco_core.layers import conv

    row = LAYER_ROWS["GroupConv1D LM same_equiv"]
    inputs = keras.Input(row.group_shape)
    model = keras.Model(inputs, _merged(row.group_layer()(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, *row.group_shape)).astype("float32")
    y = np.random.default_rng(1).normal(size=(32, *model.output_shape[1:])).astype("float32")
    for mode in ("train", "inference"):

        def step(copy, mode=mode):
            conv.TORCH_CONTIGUOUS_1D_INPUT_FOR_GRADIENTS = copy
            for _ in range(3):
                if mode == "train":
                    model.train_on_batch(x, y)
                else:
                    model.predict_on_batch(x)

        try:
            medians = _interleaved(
                {"copied": lambda: step(True), "as a view": lambda: step(False)}, repeats
            )
        finally:
            conv.TORCH_CONTIGUOUS_1D_INPUT_FOR_GRADIENTS = True
        _report(f"torch GroupConv1D LM same_equiv {mode} step x3", medians)


def _torch_kernel_transformation(repeats: int) -> None:
    import torch

    from groco_core import GroupConv3D
    from groco_core.layers import conv

    layer = GroupConv3D(4, 3, group="Oh")
    layer.build((4, 12, 12, 12, 48, 4))
    kernel = layer._kernel.value
    x = torch.randn(4, 12, 12, 12, 192)
    no_padding = ((0, 0),) * 3

    def step(transformed):
        y = conv.torch_conv_channels_last(x, transformed, (1,) * 3, no_padding, (1,) * 3)
        torch.autograd.grad(y, kernel, torch.ones_like(y))

    def gather_and_copy():
        moved = torch.moveaxis(layer._kernel_gather(kernel.reshape(-1, 4, 4)), 0, -2)
        step(moved.reshape(3, 3, 3, 192, 192))

    assert conv.eager_torch()
    _report(
        "torch Oh kernel transformation and convolution (4, 12, 12, 12, 192) 3x3x3, forward "
        "and kernel gradient",
        _interleaved(
            {
                "into the weight layout": lambda: step(layer.transformed_kernel()),
                "gather, then copy": gather_and_copy,
            },
            repeats,
        ),
    )

    _torch_tiled_kernel_gradient(repeats)
    _torch_take(repeats)


def _torch_take(repeats: int) -> None:
    """The kernel transformation into PyTorch's weight layout
    (`KernelGather.torch_output_major`) by rows against entry by entry (`torch.take`): 20
    calls with the kernel gradient per timing, for transformed kernels of 9 216 to 248 832
    entries; then train steps of `benchmarks/overhead.py`'s lifting rows (and one
    group-input row) either way, and the plain layer's, 5 steps per timing
    (`TORCH_TAKE_MAX_ENTRIES`)."""
    import numpy as np
    import torch
    from overhead import SHAPES, _models

    from groco_core import GroupConv2D, GroupConv3D
    from groco_core.layers import conv

    default = conv.TORCH_TAKE_MAX_ENTRIES
    ways = {"by rows": -1, "entry by entry": 2**62}
    configurations = {
        "P4 lifting, 16 fields": (GroupConv2D, "P4", 16, (28, 28, 16)),
        "O lifting, 4 fields": (GroupConv3D, "O", 4, (12, 12, 12, 4)),
        "P4M lifting, 16 fields": (GroupConv2D, "P4M", 16, (28, 28, 16)),
        "Oh lifting, 4 fields": (GroupConv3D, "Oh", 4, (12, 12, 12, 4)),
        "P4 group, 16 fields": (GroupConv2D, "P4", 16, (28, 28, 4, 16)),
        "O group, 2 fields": (GroupConv3D, "O", 2, (12, 12, 12, 24, 2)),
        "P4M group, 12 fields": (GroupConv2D, "P4M", 12, (28, 28, 8, 12)),
        "P4M group, 16 fields": (GroupConv2D, "P4M", 16, (28, 28, 8, 16)),
        "O group, 4 fields": (GroupConv3D, "O", 4, (12, 12, 12, 24, 4)),
    }
    try:
        for name, (layer_class, group, fields, shape) in configurations.items():
            layer = layer_class(fields, 3, group=group)
            layer.build((None, *shape))
            upstream = torch.randn(layer.transformed_kernel().shape)
            values, cases = [], {}
            for way, limit in ways.items():

                def twenty(limit=limit, layer=layer, upstream=upstream):
                    conv.TORCH_TAKE_MAX_ENTRIES = limit
                    for _ in range(20):
                        layer.transformed_kernel().backward(upstream)

                conv.TORCH_TAKE_MAX_ENTRIES = limit
                values.append(layer.transformed_kernel().detach().numpy())
                cases[way] = twenty
            assert (values[0] == values[1]).all()
            _report(
                f"torch kernel transformation with its gradient x20, {name}, "
                f"{values[0].size} entries",
                _interleaved(cases, repeats),
            )
        rows = [("O", "valid_equiv", True, 1), ("O", "valid_equiv", True, 2)]
        rows += [("Oh", "same_equiv", True, 2), ("P4", "valid_equiv", True, 1)]
        rows += [("P4M", "same_equiv", True, 1), ("P4", "valid_equiv", False, 2)]
        for group, padding, lifting, stride in rows:
            models = {}
            for way in ways:
                models[way], plain_model, x = _models(group, padding, lifting, stride)
            rank = SHAPES[group].rank
            y = np.random.default_rng(1).normal(size=(x.shape[0], *plain_model.output_shape[1:]))
            y = y.astype("float32")
            x_plain = x.reshape(*x.shape[: 1 + rank], -1)
            cases = {}
            for way, limit in ways.items():

                def five(limit=limit, model=models[way], x=x, y=y):
                    conv.TORCH_TAKE_MAX_ENTRIES = limit
                    for _ in range(5):
                        model.train_on_batch(x, y)

                cases[way] = five

            def plain(model=plain_model, x=x_plain, y=y):
                for _ in range(5):
                    model.train_on_batch(x, y)

            cases["plain layer"] = plain
            kind = "lifting" if lifting else "group"
            _report(
                f"torch {group} {kind} {padding} s{stride} train step x5",
                _interleaved(cases, repeats),
            )
    finally:
        conv.TORCH_TAKE_MAX_ENTRIES = default


def _torch_tiled_kernel_gradient(repeats: int) -> None:
    import torch
    from groco_separable.depthwise import _torch_depthwise

    from groco_core.layers.conv import torch_conv_channels_last

    channels = 256
    x = torch.randn(8, 28, 28, channels)
    g = torch.randn(8, 28, 28, channels)
    cases = {}
    for k in (3, 5):
        kernel = torch.randn(k, k, 1, channels, requires_grad=True)
        same = ((k // 2, k // 2),) * 2

        def own(kernel=kernel, same=same):
            y = torch_conv_channels_last(x, kernel, (1, 1), same, (1, 1), groups=channels)
            torch.autograd.grad(y, kernel, g)

        def tiled(kernel=kernel, same=same):
            torch.autograd.grad(_torch_depthwise(x, kernel, same, channels, None), kernel, g)

        cases[f"oneDNN's {k}x{k}"] = own
        if k > 3:
            cases[f"3x3 tiles {k}x{k}"] = tiled
    _report(
        "torch depthwise (8, 28, 28, 256), forward and kernel gradient",
        _interleaved(cases, repeats),
    )


def tensorflow_cases(repeats: int) -> None:
    import tensorflow as tf
    from groco_separable.depthwise import _tf_depthwise

    shapes = ((8, 28, 256, 3), (8, 28, 256, 5), (8, 112, 64, 5), (2, 56, 128, 7))
    for batch, size, channels, k in shapes:
        x = tf.random.normal((batch, size + k - 1, size + k - 1, channels))
        w = tf.random.normal((k, k, channels, 1))
        g = tf.random.normal((batch, size, size, channels))

        @tf.function
        def native(x=x, w=w, g=g, k=k, channels=channels):
            return tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(
                x, [k, k, channels, 1], g, [1, 1, 1, 1], "VALID"
            )

        @tf.function
        def swapped(x=x, w=w, g=g):
            with tf.GradientTape() as tape:
                tape.watch(w)
                y = _tf_depthwise(x, w)
            return tape.gradient(y, w, output_gradients=g)

        _report(
            f"tensorflow depthwise kernel gradient {(batch, size, size, channels)} {k}x{k}",
            _interleaved({"TensorFlow's": native, "swapped roles": swapped}, repeats),
        )
    _tf_kept_kernel(repeats)
    _tf_expansion(repeats)
    _tf_kernel_gradient_ways(repeats)
    _tf_conv3d_gradients(repeats)
    _pointwise_group_conv(repeats)


def _tf_expansion(repeats: int) -> None:
    """The kernel transformation of a group convolution, 20 calls per timing, forward and
    forward with the kernel gradient, in a `tf.function`: as `KernelGather.moved` runs it (one
    `tf.gather_nd` of runs, read as wide entries where their length allows); the same runs
    with `tf.gather`, the formulation before it; and a floor that moves as many values: one
    multiply over the transformed kernel's size, and for the gradient a sum over the output
    elements of an upstream of that size as well."""
    import numpy as np
    import tensorflow as tf

    from groco_core import GroupConv2D, GroupConv3D

    configurations = {
        "P4M lifting, 16 fields": (GroupConv2D, "P4M", 16, (28, 28, 16)),
        "P4 group, 16 fields": (GroupConv2D, "P4", 16, (28, 28, 4, 16)),
        "P4M group, 16 fields": (GroupConv2D, "P4M", 16, (28, 28, 8, 16)),
        "P4M group, 64 fields": (GroupConv2D, "P4M", 64, (28, 28, 8, 64)),
        "O lifting, 4 fields": (GroupConv3D, "O", 4, (12, 12, 12, 4)),
        "O group, 4 fields": (GroupConv3D, "O", 4, (12, 12, 12, 24, 4)),
        "O group, 16 fields": (GroupConv3D, "O", 16, (12, 12, 12, 24, 16)),
        "Oh lifting, 4 fields": (GroupConv3D, "Oh", 4, (12, 12, 12, 4)),
        "Oh group, 4 fields": (GroupConv3D, "Oh", 4, (12, 12, 12, 48, 4)),
        "Oh group, 16 fields": (GroupConv3D, "Oh", 16, (12, 12, 12, 48, 16)),
    }
    for name, (layer_class, group, fields, shape) in configurations.items():
        layer = layer_class(fields, 3, group=group)
        layer.build((None, *shape))
        points = int(np.prod(layer.kernel_size))
        kernel_rows = points * (1 if layer.lifting else layer.group.order)
        transformed = layer.transformed_kernel()  # also prepares the gather's tables
        elements = len(layer._output_elements)
        rows, inverse = layer._kernel_gather._tensorflow_tables[(kernel_rows, layer.in_channels)]
        upstream = tf.constant(
            np.random.default_rng(0).normal(size=transformed.shape).astype("float32")
        )
        stacked = tf.reshape(upstream, (elements, -1))

        def gather_v2(
            layer=layer, rows=rows, inverse=inverse, shape=transformed.shape, fields=fields
        ):
            @tf.custom_gradient
            def gather(table):
                def gradient(up):
                    up = tf.reshape(up, (rows.shape[0], fields))
                    return tf.reduce_sum(tf.gather(up, inverse[..., 0]), axis=0)

                return tf.gather(table, rows[:, 0]), gradient

            table = tf.reshape(tf.identity(layer._kernel.value), (-1, fields))
            return tf.reshape(gather(table), shape)

        ways = {"as now (GatherNd)": layer.transformed_kernel, "GatherV2": gather_v2}
        calls = {}
        for mode in ("forward", "forward and kernel gradient"):
            values = []
            for way_name, way in ways.items():
                if mode == "forward":

                    @tf.function
                    def call(way=way):
                        return way()
                else:

                    @tf.function
                    def call(way=way, layer=layer, upstream=upstream):
                        with tf.GradientTape() as tape:
                            kernel = way()
                        # Both returned, so that neither is pruned from the graph.
                        return kernel, tape.gradient(kernel, layer._kernel, upstream)

                values.append(np.concatenate([np.ravel(v) for v in tf.nest.flatten(call())]))
                calls[way_name] = call
            if mode == "forward":

                @tf.function
                def floor(upstream=upstream):
                    return upstream * 2.0
            else:

                @tf.function
                def floor(upstream=upstream, stacked=stacked):
                    return upstream * 2.0, tf.reduce_sum(stacked, axis=0)

            calls["floor"] = floor
            np.testing.assert_allclose(values[1], values[0], rtol=1e-5, atol=1e-5)

            def twenty(call):
                def run():
                    for _ in range(20):
                        call()

                return run

            _report(
                f"tensorflow kernel transformation, {mode}, {name}",
                _interleaved({way: twenty(call) for way, call in calls.items()}, repeats),
            )


def _tf_kernel_gradient_ways(repeats: int) -> None:
    """The kernel transformation's gradient alone (`Oh`, 3×3×3, 4 fields, group input:
    248 832 runs of 4 values summed back into 5 184), 20 calls per timing, each a
    `tf.function` of that one gradient: as `KernelGather.moved` computes it (the upstream's
    runs gathered with the inverse permutations, read as `int64` entries, and summed over the
    elements); by TensorFlow's scatter-adds (`tf.scatter_nd`, `UnsortedSegmentSum`); by a
    gather into the kernel's order and a sorted `segment_sum`; by a sparse-dense matmul with
    the transposed one-hot matrix of the forward gather; and the floor of an ideal
    expansion (a broadcast), whose gradient is one sum over the elements."""
    import numpy as np
    import tensorflow as tf

    from groco_core import GroupConv3D
    from groco_core.layers.conv import _tensorflow_run_gather

    fields = 4
    layer = GroupConv3D(fields, 3, group="Oh")
    layer.build((None, 12, 12, 12, 48, fields))
    kernel_rows = 27 * 48
    layer.transformed_kernel()  # prepares the gather's tables
    rows, inverse = layer._kernel_gather._tensorflow_tables[(kernel_rows, fields)]
    table = tf.reshape(tf.constant(layer._kernel.value), (-1, fields))  # (5 184, 4)
    entries, elements = rows.shape[0], inverse.shape[0]
    upstream = tf.constant(
        np.random.default_rng(0).normal(size=(entries, fields)).astype("float32")
    )
    index = rows[:, 0].astype("int64")
    by_source = np.argsort(index, kind="stable").astype("int32")
    one_hot = tf.sparse.SparseTensor(
        np.stack([np.arange(entries), index], axis=1),
        np.ones(entries, "float32"),
        (entries, table.shape[0]),
    )

    def as_now():
        with tf.GradientTape() as tape:
            tape.watch(table)
            gathered = _tensorflow_run_gather(table, rows, inverse)
        return tape.gradient(gathered, table, upstream)

    ways = {
        "as now (gather and sum)": as_now,
        "scatter_nd": lambda: tf.scatter_nd(rows, upstream, table.shape),
        "unsorted_segment_sum": lambda: tf.math.unsorted_segment_sum(
            upstream, index, table.shape[0]
        ),
        "gather and segment_sum": lambda: tf.math.segment_sum(
            tf.gather(upstream, by_source), index[by_source]
        ),
        "sparse matmul": lambda: tf.sparse.sparse_dense_matmul(one_hot, upstream, adjoint_a=True),
        "floor (a broadcast's sum)": lambda: tf.reduce_sum(
            tf.reshape(upstream, (elements, -1, fields)), axis=0
        ),
    }
    calls = {name: tf.function(way) for name, way in ways.items()}
    expected = calls["as now (gather and sum)"]().numpy()
    for name, call in calls.items():
        if not name.startswith("floor"):
            np.testing.assert_allclose(call().numpy(), expected, rtol=1e-5, atol=1e-5)

    def twenty(call):
        def run():
            for _ in range(20):
                call()

        return run

    _report(
        "tensorflow kernel transformation's gradient alone, Oh group, 4 fields",
        _interleaved({name: twenty(call) for name, call in calls.items()}, repeats),
    )


def _tf_conv3d_gradients(repeats: int) -> None:
    """TensorFlow's own 3D convolution, 3×3×3 `valid` on `(4, size, size, size, C)` with C
    output channels: forward, kernel gradient and input gradient, 5 calls of a `tf.function`
    per timing, for the channel counts of `overhead.py`'s O and Oh rows (96 and 192) and 128.
    Which implementation runs depends on TensorFlow's oneDNN setting (`TF_ENABLE_ONEDNN_OPTS`;
    run it once each way)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    onednn = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    rng = np.random.default_rng(0)
    for channels, size, stride in ((96, 11, 2), (128, 11, 2), (192, 11, 2), (96, 12, 1)):
        x = tf.constant(rng.normal(size=(4, size, size, size, channels)).astype("float32"))
        w = tf.constant(rng.normal(size=(3, 3, 3, channels, channels)).astype("float32"))
        strides = [1, stride, stride, stride, 1]
        y = tf.nn.conv3d(x, w, strides, "VALID")
        ways = {
            "forward": lambda x=x, w=w, s=strides: tf.nn.conv3d(x, w, s, "VALID"),
            "kernel gradient": lambda x=x, w=w, y=y, s=strides: tf.raw_ops.Conv3DBackpropFilterV2(
                input=x, filter_sizes=w.shape, out_backprop=y, strides=s, padding="VALID"
            ),
            "input gradient": lambda x=x, w=w, y=y, s=strides: tf.raw_ops.Conv3DBackpropInputV2(
                input_sizes=x.shape, filter=w, out_backprop=y, strides=s, padding="VALID"
            ),
        }
        calls = {name: tf.function(way) for name, way in ways.items()}

        def five(call):
            def run():
                for _ in range(5):
                    call()

            return run

        _report(
            f"tensorflow Conv3D {channels} channels, input {size}³, stride {stride}, oneDNN "
            f"{onednn}, 5 calls",
            _interleaved({name: five(call) for name, call in calls.items()}, repeats),
        )


def _tf_kept_kernel(repeats: int) -> None:
    """Two copies of one layer with the same weights, one keeping its transformed kernel
    (`TF_CACHE_MIN_PIECES` 0) and one expanding it every call (the threshold above its
    size), each called 10 times per timing."""
    import numpy as np
    import tensorflow as tf

    from groco_core import GroupConv2D, GroupConv3D
    from groco_core.layers import kernel_cache

    configurations = {
        "P4M lifting (28, 28, 16)": (lambda: GroupConv2D(16, 3, group="P4M"), (32, 28, 28, 16)),
        "P4 group (28, 28, 4, 16)": (lambda: GroupConv2D(16, 3, group="P4"), (32, 28, 28, 4, 16)),
        "P4M group (28, 28, 8, 16)": (
            lambda: GroupConv2D(16, 3, group="P4M"),
            (32, 28, 28, 8, 16),
        ),
        "P4M group, batch 8 (28, 28, 8, 32)": (
            lambda: GroupConv2D(32, 3, group="P4M"),
            (8, 28, 28, 8, 32),
        ),
        "O group stride 2 (11, 11, 11, 24, 4)": (
            lambda: GroupConv3D(4, 3, 2, group="O"),
            (4, 11, 11, 11, 24, 4),
        ),
        "Oh group stride 2 (11, 11, 11, 48, 4)": (
            lambda: GroupConv3D(4, 3, 2, group="Oh"),
            (4, 11, 11, 11, 48, 4),
        ),
    }
    default = kernel_cache.TF_CACHE_MIN_PIECES
    for name, (make, shape) in configurations.items():
        x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32"))
        kept, expanded = make(), make()
        kept.build(shape)
        expanded.build(shape)
        expanded.set_weights(kept.get_weights())
        calls = {}
        for case, layer, threshold in (("kept", kept, 0), ("expanded", expanded, 2**62)):
            kernel_cache.TF_CACHE_MIN_PIECES = threshold
            function = tf.function(lambda x, layer=layer: layer(x, training=False))
            function(x)  # traced now, with this threshold

            def ten_calls(function=function, x=x):
                for _ in range(10):
                    function(x)
                return function(x).numpy()

            calls[case] = ten_calls
        kernel_cache.TF_CACHE_MIN_PIECES = default
        np.testing.assert_allclose(calls["kept"](), calls["expanded"](), rtol=1e-5, atol=1e-5)
        entries = int(np.prod(kept.transformed_kernel().shape))
        _report(
            f"tensorflow inference, 11 calls, {name}, {entries} kernel entries",
            _interleaved(calls, repeats),
        )


def jax_cases(repeats: int) -> None:
    _jax_tiled_multiply_add(repeats)
    _jax_depthwise_input_gradient(repeats)
    _jax_pointwise_gradient(repeats)
    _jax_low_memory_gradients(repeats)
    _jax_conv_transpose_kernel_gradient(repeats)
    _jax_unpadded_convolution(repeats)
    _pointwise_group_conv(repeats)


def _jax_pointwise_gradient(repeats: int) -> None:
    """The train step of a separable layer inside a network (`benchmarks/separable.py`'s
    `inner` models: P4M, 32 fields, 28×28, batch 8, depthwise kernels 1×1, 3×3 and 5×5) with
    the pointwise part's own gradients (`groco_separable.separable._jax_pointwise`) against
    JAX's: the temporary memory of the compiled step, then two steps per timing and the
    minor page faults per step (medians)."""
    from groco_separable import separable

    cases = (("own gradients", True), ("JAX's gradients", False))
    for kernel in (1, 3, 5):
        _jax_separable_choice(repeats, separable, "JAX_POINTWISE_OWN_GRADIENT", cases, kernel)


def _jax_low_memory_gradients(repeats: int) -> None:
    """The same for the depthwise part's per-sample loop with and without
    `groco_separable.depthwise.JAX_LOW_MEMORY_GRADIENTS`, at 3×3 and 5×5 (P4M) and on O
    (3×3×3, 8 fields, `(2, 10, 10, 10, 24, 8)`)."""
    from groco_separable import depthwise

    cases = (("low memory", True), ("all points at once", False))
    for kernel in (3, 5):
        _jax_separable_choice(repeats, depthwise, "JAX_LOW_MEMORY_GRADIENTS", cases, kernel)
    _jax_separable_choice(
        repeats, depthwise, "JAX_LOW_MEMORY_GRADIENTS", cases, 3, "O", (2, 10, 10, 10, 24, 8)
    )


def _jax_separable_choice(
    repeats: int,
    module: object,
    attribute: str,
    cases: tuple[tuple[str, bool], ...],
    kernel: int,
    group: str = "P4M",
    shape: tuple[int, ...] = (8, 28, 28, 8, 32),
) -> None:
    """Inner-position separable train steps with `module.attribute` set per case: the
    compiled step's temporary memory, two steps per timing and the minor page faults per
    step (medians)."""
    import jax
    import numpy as np
    from groco_separable import SeparableGroupConv2D, SeparableGroupConv3D
    from separable import _model, _page_faults

    layer_class = SeparableGroupConv2D if len(shape) == 5 else SeparableGroupConv3D
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    y = rng.normal(size=shape).astype("float32")
    default = getattr(module, attribute)
    name = f"jax separable {group} {kernel}x{kernel} inner"
    steps = {}
    for case, value in cases:
        setattr(module, attribute, value)
        layer = layer_class(shape[-1], kernel, group=group, padding="same_equiv")
        model = _model(layer, shape[1:], "inner")
        model.train_on_batch(x, y)  # traced now, with this choice
        state = tuple(
            [v.value for v in variables]
            for variables in (
                model.trainable_variables,
                model.non_trainable_variables,
                model.optimizer.variables,
                model.metrics_variables,
            )
        )
        compiled = jax.jit(model.train_step).lower(state, (x, y)).compile()
        temporary = compiled.memory_analysis().temp_size_in_bytes / 2**20
        print(f"{name}, {case}: {temporary:.1f} MiB temporary")

        def two_steps(model=model):
            model.train_on_batch(x, y)
            model.train_on_batch(x, y)

        steps[case] = two_steps
    setattr(module, attribute, default)
    faults = {case: [] for case in steps}
    for _ in range(repeats):
        for case, step in steps.items():
            before = _page_faults()
            step()
            if before is not None:
                faults[case].append((_page_faults() - before) / 2)
    if all(faults.values()):
        counts = ", ".join(f"{c} {statistics.median(f):.0f}" for c, f in faults.items())
        print(f"{name}, minor page faults per step: {counts}")
    _report(f"{name}, train step x2", _interleaved(steps, repeats))


def _jax_depthwise_input_gradient(repeats: int) -> None:
    import numpy as np
    from groco_separable import SeparableGroupConv2D, SeparableGroupConv3D, depthwise
    from separable import _model

    configurations = {
        "P4M 3x3, (8, 28, 28, 8, 32)": (SeparableGroupConv2D, 32, 3, "P4M", (8, 28, 28, 8, 32)),
        "P4M 5x5, (8, 28, 28, 8, 32)": (SeparableGroupConv2D, 32, 5, "P4M", (8, 28, 28, 8, 32)),
        "O 3x3x3, (2, 10, 10, 10, 24, 8)": (
            SeparableGroupConv3D,
            8,
            3,
            "O",
            (2, 10, 10, 10, 24, 8),
        ),
    }
    default = depthwise.JAX_PER_SAMPLE_INPUT_GRADIENT_POINTS
    for name, (layer_class, fields, kernel, group, shape) in configurations.items():
        rng = np.random.default_rng(0)
        x = rng.normal(size=shape).astype("float32")
        y = rng.normal(size=shape).astype("float32")
        steps = {}
        for case, threshold in (("per sample", 1), ("transpose", 2**62)):
            depthwise.JAX_PER_SAMPLE_INPUT_GRADIENT_POINTS = threshold
            layer = layer_class(fields, kernel, group=group, padding="same_equiv")
            model = _model(layer, shape[1:], "inner")
            model.train_on_batch(x, y)  # traced now, with this threshold

            def two_steps(model=model, x=x, y=y):
                model.train_on_batch(x, y)
                model.train_on_batch(x, y)

            steps[case] = two_steps
        depthwise.JAX_PER_SAMPLE_INPUT_GRADIENT_POINTS = default
        _report(f"jax separable train step x2, inner, {name}", _interleaved(steps, repeats))


def _jax_tiled_multiply_add(repeats: int) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    x = jnp.asarray(np.random.default_rng(0).normal(size=(32, 28, 28, 128)), "float32")
    scale, offset = jnp.full((16,), 1.5, "float32"), jnp.full((16,), 0.5, "float32")
    long_scale, long_offset = jnp.tile(scale, 8), jnp.tile(offset, 8)
    tiling = jnp.asarray(np.tile(np.eye(16, dtype="float32"), (8, 1)))
    broadcast = jax.jit(lambda x, a, b: x * jnp.tile(a, 8) + jnp.tile(b, 8))
    product = jax.jit(lambda x, a, b: x * (tiling @ a) + tiling @ b)
    untiled = jax.jit(lambda x, a, b: x * a + b)
    _report(
        "jax multiply-add (32, 28, 28, 128) with per-channel vectors",
        _interleaved(
            {
                "16 values tiled by broadcast": lambda: broadcast(
                    x, scale, offset
                ).block_until_ready(),
                "16 values tiled by a product": lambda: product(
                    x, scale, offset
                ).block_until_ready(),
                "128 values": lambda: untiled(x, long_scale, long_offset).block_until_ready(),
            },
            repeats,
        ),
    )


def _jax_conv_transpose_kernel_gradient(repeats: int) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from keras import ops

    from groco_core.layers.conv_transpose import conv_transpose

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 14, 14, 128)), "float32")
    kernel = jnp.asarray(rng.normal(size=(3, 3, 128, 128)), "float32")
    for stride, padding in ((1, "valid"), (1, "same"), (2, "valid")):
        shape = ops.conv_transpose(x, kernel, stride, padding, data_format="channels_last").shape
        upstream = jnp.asarray(rng.normal(size=shape), "float32")

        # x and the upstream gradient are arguments: as constants, XLA would fold the whole
        # gradient (it does not depend on the kernel) at compile time.
        def xla(kernel, x, upstream, stride=stride, padding=padding):
            y = ops.conv_transpose(x, kernel, stride, padding, data_format="channels_last")
            return jnp.sum(y * upstream)

        def ours(kernel, x, upstream, stride=stride, padding=padding):
            return jnp.sum(conv_transpose(x, kernel, (stride, stride), padding) * upstream)

        steps = {}
        for name, loss in (("XLA's", xla), ("conv_transpose's", ours)):
            gradient = jax.jit(jax.grad(loss))
            steps[name] = lambda gradient=gradient, upstream=upstream: gradient(
                kernel, x, upstream
            ).block_until_ready()
        _report(
            f"jax transposed convolution (32, 14, 14, 128), 3x3, stride {stride} {padding}, "
            "forward and kernel gradient",
            _interleaved(steps, max(3, repeats // 3)),
        )


def _jax_unpadded_convolution(repeats: int) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from keras import ops

    from groco_core.layers.conv import jax_conv

    rng = np.random.default_rng(0)
    configurations = (  # input shape, kernel size, stride, dilation
        ((32, 256, 32), 3, 1, 1),
        ((16, 28, 28, 128), 1, 1, 1),
        ((16, 28, 28, 128), 2, 1, 1),
        ((16, 28, 28, 128), 3, 1, 1),
        ((16, 28, 28, 128), 3, 1, 2),
        ((16, 28, 28, 128), 5, 1, 1),
        ((16, 28, 28, 128), 3, 2, 1),
        ((4, 12, 12, 12, 96), 3, 1, 1),
    )
    for shape, size, stride, dilation in configurations:
        rank = len(shape) - 2
        x = jnp.asarray(rng.normal(size=shape), "float32")
        kernel = jnp.asarray(rng.normal(size=(size,) * rank + shape[-1:] * 2), "float32")
        strides, dilations = (stride,) * rank, (dilation,) * rank

        def keras_valid(kernel, x, strides=strides, dilations=dilations):
            return ops.conv(x, kernel, strides, "valid", "channels_last", dilations)

        def padded_row(kernel, x, strides=strides, dilations=dilations):
            return jax_conv(x, kernel, strides, ((0, 0),) * len(strides), dilations)

        upstream = jnp.asarray(rng.normal(size=keras_valid(kernel, x).shape), "float32")
        steps = {}
        for name, conv in (("unpadded", keras_valid), ("jax_conv", padded_row)):
            forward = jax.jit(conv)

            def loss(kernel, x, upstream, conv=conv):
                return jnp.sum(conv(kernel, x) * upstream)

            train = jax.jit(jax.grad(loss, argnums=(0, 1)))
            steps[f"{name} forward"] = lambda forward=forward, x=x, kernel=kernel: forward(
                kernel, x
            ).block_until_ready()
            steps[f"{name} train"] = lambda train=train, x=x, kernel=kernel, upstream=upstream: (
                jax.block_until_ready(train(kernel, x, upstream))
            )
        _report(
            f"jax valid convolution {shape}, kernel {size}, stride {stride}, dilation "
            f"{dilation}, forward / forward and gradients",
            _interleaved(steps, max(3, repeats // 3)),
        )


def _pointwise_group_conv(repeats: int) -> None:
    """Train steps of a group convolution with a one-point kernel inside a network
    (`benchmarks/separable.py`'s `inner` models), as the backend's convolution against as a
    matrix product (`BaseGroupConv._matmul_applies` forced either way), two steps per
    timing."""
    import numpy as np
    from separable import _model

    from groco_core import GroupConv1D, GroupConv2D, GroupConv3D
    from groco_core.layers import conv

    configurations = {
        "P4M, (8, 28, 28, 8, 32)": (GroupConv2D, 32, "P4M", (8, 28, 28, 8, 32)),
        "O, (4, 11, 11, 11, 24, 8)": (GroupConv3D, 8, "O", (4, 11, 11, 11, 24, 8)),
        "LM, (32, 255, 2, 64)": (GroupConv1D, 64, "LM", (32, 255, 2, 64)),
    }
    chooses = conv.BaseGroupConv._matmul_applies
    for (name, (layer_class, fields, group, shape)), stride in itertools.product(
        configurations.items(), (1, 2)
    ):
        rng = np.random.default_rng(0)
        size = shape[1] - 1 if stride == 2 and shape[1] % 2 == 0 else shape[1]
        shape = (shape[0], *(size,) * (len(shape) - 3), *shape[-2:])
        x = rng.normal(size=shape).astype("float32")
        steps = {}
        for case, product in (("convolution", False), ("matrix product", True)):
            conv.BaseGroupConv._matmul_applies = lambda self, product=product: product
            model = _model(layer_class(fields, 1, stride, group=group), shape[1:], "inner")
            y = rng.normal(size=(shape[0], *model.output_shape[1:])).astype("float32")
            model.train_on_batch(x, y)  # traced now, with this choice

            def two_steps(model=model, x=x, y=y):
                model.train_on_batch(x, y)
                model.train_on_batch(x, y)

            steps[case] = two_steps
        conv.BaseGroupConv._matmul_applies = chooses
        _report(
            f"{keras.backend.backend()} kernel-1 group convolution train step x2, inner, "
            f"{name}, stride {stride}",
            _interleaved(steps, repeats),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", help="run only the case of this name (e.g. pointwise)")
    args = parser.parse_args()
    if args.only is not None:
        names = [n for n in globals() if n.strip("_").startswith(args.only) and n != "main"]
        if len(names) != 1:
            parser.error(f"--only {args.only!r} matches {names or 'no case'}; name one case")
        globals()[names[0]](args.repeats)
        return
    cases = {"torch": torch_cases, "tensorflow": tensorflow_cases, "jax": jax_cases}
    cases[keras.backend.backend()](args.repeats)


if __name__ == "__main__":
    main()
