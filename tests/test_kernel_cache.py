"""The transformed kernel reused in inference: never stale after any way a weight changes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from autodiff import value_and_gradients
from groco_separable import DepthwiseGroupConv2D, SeparableGroupConv2D

from groco_core import GroupConv2D, GroupConv2DTranspose, GroupConv3D, GroupDense, get_group
from groco_core.layers import kernel_cache

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def keep_every_kernel(monkeypatch):
    """TensorFlow keeps only large transformed kernels; here every one, so that these small
    layers exercise the kept kernel."""
    monkeypatch.setattr(kernel_cache, "TF_CACHE_MIN_PIECES", 0)


LAYERS = {
    "conv": (lambda: GroupConv2D(3, 3, group="P4", padding="same_equiv"), (2, 6, 6, 4, 2)),
    "lifting": (lambda: GroupConv2D(3, 3, group="P4M"), (2, 7, 7, 2)),
    "transpose": (lambda: GroupConv2DTranspose(3, 3, group="P4"), (2, 5, 5, 4, 2)),
    "dense": (lambda: GroupDense(3, group="P4"), (2, 4, 2)),
    "depthwise": (lambda: DepthwiseGroupConv2D(3, group="P4"), (2, 7, 7, 4, 2)),
    "separable": (lambda: SeparableGroupConv2D(3, 3, group="P4"), (2, 7, 7, 4, 2)),
}


def _model(name: str) -> tuple[keras.Model, np.ndarray]:
    make, shape = LAYERS[name]
    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, make()(inputs))
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    return model, x


def _fresh_output(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The output of a new model (nothing cached) holding `model`'s current weights."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return keras.ops.convert_to_numpy(clone(x))


def _random_weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_predict_follows_every_weight_change(name, tmp_path):
    model, x = _model(name)
    first = model.predict_on_batch(x)
    np.testing.assert_allclose(model.predict_on_batch(x), first, rtol=1e-6, atol=1e-6)

    # set_weights
    model.set_weights(_random_weights(model, 1))
    after_set = model.predict_on_batch(x)
    assert not np.allclose(after_set, first)
    np.testing.assert_allclose(after_set, _fresh_output(model, x), rtol=1e-5, atol=1e-5)

    # variable.assign on the kernel alone
    layer = model.layers[-1]
    kernel = layer.pointwise.kernel if name == "separable" else layer.kernel
    kernel.assign(2.0 * keras.ops.convert_to_numpy(kernel))
    after_assign = model.predict_on_batch(x)
    assert not np.allclose(after_assign, after_set)
    np.testing.assert_allclose(after_assign, _fresh_output(model, x), rtol=1e-5, atol=1e-5)

    # an optimizer step
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.train_on_batch(x, np.ones_like(after_assign))
    after_step = model.predict_on_batch(x)
    assert not np.allclose(after_step, after_assign)
    np.testing.assert_allclose(after_step, _fresh_output(model, x), rtol=1e-5, atol=1e-5)

    # load_weights restores the earlier weights
    path = str(tmp_path / "earlier.weights.h5")
    model.set_weights(_random_weights(model, 2))
    earlier = model.predict_on_batch(x)
    model.save_weights(path)
    model.set_weights(_random_weights(model, 3))
    assert not np.allclose(model.predict_on_batch(x), earlier)
    model.load_weights(path)
    np.testing.assert_allclose(model.predict_on_batch(x), earlier, rtol=1e-6, atol=1e-6)


def test_lora_enabled_after_predict_is_used():
    model, x = _model("conv")
    layer = model.layers[-1]
    before = model.predict_on_batch(x)
    layer.enable_lora(2, b_initializer="ones")
    # As with any Keras layer, a predict function traced before the LoRA weights existed
    # (TensorFlow's) is remade to see them.
    model.make_predict_function(force=True)
    after = model.predict_on_batch(x)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, keras.ops.convert_to_numpy(layer(x)), rtol=1e-5, atol=1e-5)


def test_eager_calls_reuse_the_kernel_where_the_backend_can_tell():
    """PyTorch outside autograd and eager JAX keep the expanded kernel between calls;
    TensorFlow, and PyTorch with autograd on, expand it on every call."""
    layer, shape = LAYERS["conv"][0](), LAYERS["conv"][1]
    x = np.ones(shape, "float32")
    if BACKEND == "torch":
        import torch

        layer(x)
        assert "_groco_kernel_cache" not in layer.__dict__  # autograd on: nothing kept
        with torch.no_grad():
            layer(x)
            kept = layer.__dict__["_groco_kernel_cache"][1]
            layer(x)
            assert layer.__dict__["_groco_kernel_cache"][1] is kept
            layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
            out = keras.ops.convert_to_numpy(layer(x))
            assert layer.__dict__["_groco_kernel_cache"][1] is not kept
    else:
        layer(x)
        kept = layer.__dict__.get("_groco_kernel_cache")
        if BACKEND == "jax":
            assert kept is not None
            layer(x)
            assert layer.__dict__["_groco_kernel_cache"][1] is kept[1]
        else:
            assert kept is None
        layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
        out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, 0.0)  # zero kernel, zero bias


def _kept_tensorflow_kernel(layer):
    """The variable holding `layer`'s kept transformed kernel on TensorFlow."""
    (entry,) = layer.__dict__["_groco_tf_kernel_cache"].values()
    assert entry is not None
    return entry[1]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's kept kernel lives in its graph")
def test_tensorflow_predict_serves_the_kept_kernel_until_a_weight_changes():
    """The kept kernel is what `predict` convolves with (overwritten here, the output
    follows it) until the kernel's value changes, which re-expands it."""
    model, x = _model("conv")
    layer = model.layers[-1]
    first = model.predict_on_batch(x)
    kept = _kept_tensorflow_kernel(layer)
    expansion = keras.ops.convert_to_numpy(layer.transformed_kernel())
    np.testing.assert_array_equal(kept.numpy(), expansion)
    kept.assign(np.zeros(kept.shape, "float32"))
    bias = np.broadcast_to(keras.ops.convert_to_numpy(layer.bias), first.shape)
    np.testing.assert_allclose(model.predict_on_batch(x), bias, atol=1e-6)
    # The same values assigned again are still unchanged bits: the kept kernel stays.
    layer.kernel.assign(keras.ops.convert_to_numpy(layer.kernel))
    np.testing.assert_allclose(model.predict_on_batch(x), bias, atol=1e-6)
    # One entry's sign flipped (0.0 to -0.0 counts too): re-expanded.
    kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
    kernel.flat[0] = -kernel.flat[0]
    layer.kernel.assign(kernel)
    after = model.predict_on_batch(x)
    np.testing.assert_allclose(after, _fresh_output(model, x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(after, bias)
    kernel.flat[0] = 0.0
    layer.kernel.assign(kernel)
    model.predict_on_batch(x)
    kept.assign(np.zeros(kept.shape, "float32"))
    kernel.flat[0] = -0.0
    layer.kernel.assign(kernel)
    np.testing.assert_allclose(model.predict_on_batch(x), _fresh_output(model, x), atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's kept kernel lives in its graph")
@pytest.mark.parametrize("start", [0.0, -0.0])
def test_tensorflow_kernel_of_zeros_at_the_first_call(start):
    """The kept bits start as those of +0.0 and the kept kernel as the expansion of zeros: a
    layer whose kernel is +0.0 at its first call is served that start, which is right; one
    whose kernel is -0.0 (other bits) is expanded anew; a later change is seen."""
    layer = GroupConv2D(3, 3, group="P4", padding="same_equiv", kernel_initializer="zeros")
    x = np.random.default_rng(6).normal(size=(2, 6, 6, 4, 2)).astype("float32")
    layer.build(x.shape)
    layer.bias.assign(np.arange(3, dtype="float32") + 1.0)
    layer.kernel.assign(np.full(layer.kernel.shape, start, "float32"))
    model_input = keras.Input(x.shape[1:])
    model = keras.Model(model_input, layer(model_input))
    first = model.predict_on_batch(x)
    np.testing.assert_allclose(first, np.broadcast_to([1.0, 2.0, 3.0], first.shape))
    kept = _kept_tensorflow_kernel(layer).numpy()
    np.testing.assert_array_equal(kept, 0.0)
    np.testing.assert_array_equal(np.signbit(kept), np.signbit(start))
    layer.kernel.assign(np.random.default_rng(7).normal(size=layer.kernel.shape))
    second = model.predict_on_batch(x)
    assert not np.allclose(second, first)
    np.testing.assert_allclose(second, _fresh_output(model, x), rtol=1e-5, atol=1e-5)


def _weight_gradients(model: keras.Model, x: np.ndarray, training: bool, compiled: bool):
    """The gradient of `Σ output²` with respect to the model's weights, through a call with
    `training` (on TensorFlow in a `tf.function` where `compiled`), read from variables the
    model has already used in inference."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def gradients(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(model(x, training=training)))
            return tape.gradient(loss, model.trainable_variables)

        function = tf.function(gradients) if compiled else gradients
        return [g.numpy() for g in function(tf.constant(x))]
    if BACKEND == "jax":
        import jax

        def loss(trainable):
            outputs, _ = model.stateless_call(
                trainable, [v.value for v in model.non_trainable_variables], x, training=training
            )
            return (outputs**2).sum()

        function = jax.jit(jax.grad(loss)) if compiled else jax.grad(loss)
        return [np.asarray(g) for g in function([v.value for v in model.trainable_variables])]
    for variable in model.trainable_variables:
        variable.value.grad = None
    (model(x, training=training) ** 2).sum().backward()
    return [v.value.grad.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("compiled", [False, True])
def test_a_gradient_through_an_inference_call_reaches_the_weights(compiled):
    """A gradient taken through a `training=False` call (fine-tuning with frozen batch
    statistics) is the one through a training call, also when the inference calls before
    kept the transformed kernel (TensorFlow's kept kernel carries the expansion's gradient)."""
    model, x = _model("separable")
    model.predict_on_batch(x)  # the kernel kept where the backend keeps it
    expected = _weight_gradients(model, x, True, compiled)
    for _ in range(2):  # the second call serves the kept kernel
        got = _weight_gradients(model, x, False, compiled)
        for g, want in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-4)
    assert all(np.abs(g).sum() > 0 for g in expected)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's kept kernel lives in its graph")
def test_tensorflow_kept_kernel_under_xla_and_in_a_saved_model(tmp_path):
    """`jit_compile=True` predict follows a weight change; `model.export` writes a SavedModel
    whose reloaded serving function gives the model's output, also after a change."""
    import tensorflow as tf

    model, x = _model("conv")
    model.compile(loss="mse", jit_compile=True)
    first = model.predict_on_batch(x)
    np.testing.assert_allclose(first, _fresh_output(model, x), rtol=1e-5, atol=1e-5)
    model.set_weights(_random_weights(model, 5))
    second = model.predict_on_batch(x)
    assert not np.allclose(second, first)
    np.testing.assert_allclose(second, _fresh_output(model, x), rtol=1e-5, atol=1e-5)

    path = str(tmp_path / "served")
    model.export(path, format="tf_saved_model")
    served = tf.saved_model.load(path)
    np.testing.assert_allclose(served.serve(x).numpy(), second, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's kept kernel lives in its graph")
def test_tensorflow_keeps_only_kernels_whose_expansion_costs(monkeypatch):
    """With the shipped threshold a 3D O convolution keeps its kernel, a 2D P4 one does not;
    training calls and calls under a distribution strategy never do."""
    import tensorflow as tf

    monkeypatch.setattr(kernel_cache, "TF_CACHE_MIN_PIECES", 2**15)
    big, small = GroupConv3D(4, 3, group="O"), GroupConv2D(4, 3, group="P4")
    big_x, small_x = np.ones((1, 5, 5, 5, 24, 4), "float32"), np.ones((1, 5, 5, 4, 4), "float32")
    for layer, x in ((big, big_x), (small, small_x)):
        layer(x, training=True)
        assert "_groco_tf_kernel_cache" not in layer.__dict__
    big(big_x, training=False)
    small(small_x, training=False)
    assert _kept_tensorflow_kernel(big) is not None
    assert list(small.__dict__["_groco_tf_kernel_cache"].values()) == [None]
    mirrored = GroupConv3D(4, 3, group="O")
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        mirrored.build(big_x.shape)
        tf.function(lambda: mirrored(big_x, training=False))()
    assert "_groco_tf_kernel_cache" not in mirrored.__dict__


def _no_grad():
    if BACKEND == "torch":
        import torch

        return torch.no_grad()
    import contextlib

    return contextlib.nullcontext()


def test_a_stateless_call_uses_the_scope_values():
    """Inside a `keras.StatelessScope` the layer reads the scope's values: a kernel kept from
    an ordinary call must not be served there, nor the scope's kernel afterwards (inference
    calls, where TensorFlow keeps the kernel too)."""
    layer, shape = LAYERS["conv"][0](), LAYERS["conv"][1]
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    with _no_grad():
        before = keras.ops.convert_to_numpy(layer(x, training=False))
        layer(x, training=False)  # kept where the backend can tell
        zeros = [(v, keras.ops.zeros(v.shape, v.dtype)) for v in layer.trainable_variables]
        with keras.StatelessScope(state_mapping=zeros):
            inside = keras.ops.convert_to_numpy(layer(x, training=False))
        after = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(inside, 0.0)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def test_mixed_precision_calls_get_a_kernel_of_their_dtype():
    """Under a float16 policy the kernel is read as a cast copy: the output is float16 and
    follows a change of the weights (inference calls, where TensorFlow keeps the kernel)."""
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer, shape = LAYERS["conv"][0](), LAYERS["conv"][1]
        x = np.random.default_rng(4).normal(size=shape).astype("float32")
        with _no_grad():
            first = layer(x, training=False)
            assert keras.backend.standardize_dtype(first.dtype) == "float16"
            layer(x, training=False)
            layer.kernel.assign(2.0 * keras.ops.convert_to_numpy(layer.kernel))
            bias = keras.ops.convert_to_numpy(layer.bias)
            second = keras.ops.convert_to_numpy(layer(x, training=False)).astype("float32")
    finally:
        keras.config.set_dtype_policy("float32")
    expected = 2.0 * (keras.ops.convert_to_numpy(first).astype("float32") - bias) + bias
    np.testing.assert_allclose(second, expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("row", [(2, 5), (2, 2), (3,)])
@pytest.mark.parametrize("permutations", [True, False])
def test_kernel_row_gather_and_its_gradient(permutations, row):
    """`KernelGather` against numpy indexing, bit for bit, and its gradient against numpy's
    scatter-add, for permutation rows (TensorFlow's own gradient path) and others, with
    kernel rows of 10, 4 and 3 values (on TensorFlow read as they are, as `int64` entries,
    and as they are)."""
    from groco_core.layers.conv import KernelGather

    rng = np.random.default_rng(0)
    if permutations:
        indices = np.stack([rng.permutation(6).reshape(2, 3) for _ in range(4)])
    else:
        indices = rng.integers(0, 6, size=(4, 2, 3))
    indices = indices.astype("int32")
    gather = KernelGather(indices)
    assert (gather.inverse is not None) == permutations
    flat = rng.normal(size=(6, *row)).astype("float32")
    weights = rng.normal(size=(4, 2, 3, *row)).astype("float32")

    def fn(kernel):
        taken = gather(kernel)
        return keras.ops.sum(keras.ops.multiply(taken, weights))

    np.testing.assert_array_equal(keras.ops.convert_to_numpy(gather(flat)), flat[indices])
    value, (gradient,) = value_and_gradients(fn, flat)
    np.testing.assert_allclose(value, np.sum(flat[indices] * weights), rtol=1e-5)
    expected = np.zeros_like(flat)
    np.add.at(expected, indices, weights)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-5)

    if keras.backend.backend() == "torch" and permutations and len(row) == 2:
        # The gather into PyTorch's weight layout: `(|H|, F, ..., C)`, the same values.
        import torch

        from groco_core.backend import torch as torch_backend

        output_major = torch_backend.output_major(gather, torch.tensor(flat))
        np.testing.assert_array_equal(output_major.numpy(), np.moveaxis(flat[indices], -1, 1))


@pytest.mark.skipif(BACKEND != "torch", reason="the gather into PyTorch's weight layout")
@pytest.mark.parametrize("take_max_entries", [-1, 2**62], ids=["by-rows", "entry-by-entry"])
def test_torch_output_major_gather_and_its_gradient_either_way(take_max_entries, monkeypatch):
    """`groco_core.backend.torch.output_major` by rows and entry by entry (`torch.take`): the
    values of numpy's gather with the fields moved second, and the gradient of numpy's
    scatter-add over the elements."""
    import torch

    from groco_core.backend import torch as torch_backend
    from groco_core.layers import conv

    monkeypatch.setattr(torch_backend, "TAKE_MAX_ENTRIES", take_max_entries)
    rng = np.random.default_rng(2)
    indices = np.stack([rng.permutation(6).reshape(2, 3) for _ in range(4)]).astype("int32")
    gather = conv.KernelGather(indices)
    flat = rng.normal(size=(6, 2, 5)).astype("float32")  # (n, C, F)
    expected = np.moveaxis(flat[indices], -1, 1)  # (|H|, F, 2, 3, C)
    weights = rng.normal(size=expected.shape).astype("float32")
    kernel = torch.tensor(flat, requires_grad=True)
    output_major = torch_backend.output_major(gather, kernel)
    assert output_major.is_contiguous()
    np.testing.assert_array_equal(output_major.detach().numpy(), expected)
    (output_major * torch.tensor(weights)).sum().backward()
    expected_gradient = np.zeros_like(flat)
    np.add.at(expected_gradient, indices, np.moveaxis(weights, 1, -1))
    np.testing.assert_allclose(kernel.grad.numpy(), expected_gradient, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lead", [0, 1, 2])
@pytest.mark.parametrize(
    "last, dtype", [(5, "float32"), (4, "float32"), (2, "float32"), (2, "float64")]
)
def test_moved_kernel_gather_and_its_gradient(lead, last, dtype):
    """`KernelGather.moved` against numpy's gather and `moveaxis`, bit for bit, and its
    gradient against numpy's scatter-add, with the element axis after 0, 1 and 2 of the
    trailing axes `(2, 3, last)`. On TensorFlow the runs moved are 2 to 30 values long, so
    that rows are read as they are (among them 2 `float64`, 5 `float32`) and as `int64`
    entries (2, 4 and 6 `float32`)."""
    from groco_core.layers import conv

    rng = np.random.default_rng(1)
    indices = np.stack([rng.permutation(6).reshape(2, 3) for _ in range(4)]).astype("int32")
    gather = conv.KernelGather(indices)
    flat = rng.normal(size=(6, 2, 3, last)).astype(dtype)
    expected_value = np.moveaxis(flat[indices], 0, 2 + lead)  # (2, 3, *D[:lead], 4, *D[lead:])
    weights = rng.normal(size=expected_value.shape).astype(dtype)

    def fn(kernel):
        return keras.ops.sum(keras.ops.multiply(gather.moved(kernel, lead), weights))

    moved = keras.ops.convert_to_numpy(gather.moved(flat, lead))
    # JAX (without x64) and PyTorch take float64 numpy input as float32.
    np.testing.assert_array_equal(moved, expected_value.astype(moved.dtype))
    value, (gradient,) = value_and_gradients(fn, flat)
    np.testing.assert_allclose(value, np.sum(expected_value * weights), rtol=1e-5)
    expected = np.zeros_like(flat)
    np.add.at(expected, indices, np.moveaxis(weights, 2 + lead, 0))
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "group, fields, options",
    [
        ("Oh", (48, 2), {}),
        ("O", (3,), {}),
        ("P4M", (8, 3), {"subgroup": "P4"}),
        ("P4", (4, 4), {"groups": 2}),
    ],
)
def test_the_transformed_kernels_gradient_is_its_adjoint(group, fields, options):
    """The kernel transformation is linear, `T(k)`, so the gradient `g` of `<T(k), U>` must
    satisfy `<T(k'), U> = <k', g>` for every `k'`. Checked with random `k'` and `U`, on the
    path the backend takes (PyTorch's own gather into its weight layout, TensorFlow's custom
    gradient)."""
    rank = get_group(group).dimension
    layer = (GroupConv2D if rank == 2 else GroupConv3D)(2, 3, group=group, **options)
    layer.build((2,) + (5,) * rank + fields)
    rng = np.random.default_rng(3)
    shape = tuple(layer._kernel.shape)
    upstream = rng.normal(size=tuple(layer.transformed_kernel().shape)).astype("float32")

    def inner_product(kernel):
        with keras.StatelessScope(state_mapping=[(layer._kernel, kernel)]):
            transformed = layer.transformed_kernel()
        return keras.ops.sum(keras.ops.multiply(transformed, upstream))

    kernel = rng.normal(size=shape).astype("float32")
    _, (gradient,) = value_and_gradients(inner_product, kernel)
    for _ in range(2):
        other = rng.normal(size=shape).astype("float32")
        value, _ = value_and_gradients(inner_product, other)
        np.testing.assert_allclose(value, np.sum(other * gradient), rtol=1e-4, atol=1e-3)
