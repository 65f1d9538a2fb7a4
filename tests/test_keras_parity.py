"""Keras parity: groco layers behave as their Keras counterparts under the settings and
inputs an experienced Keras user tries (global data format, unknown sizes, messages)."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
from groco_separable import DepthwiseGroupConv2D, SeparableGroupConv2D
from keras import ops
from transforms import act, max_equivariance_error

from groco_core import (
    GlobalGroupAveragePooling1D,
    GlobalGroupMaxPooling2D,
    GroupAveragePooling2D,
    GroupAveragePooling3D,
    GroupBatchNormalization,
    GroupConv1D,
    GroupConv2D,
    GroupConv2DTranspose,
    GroupConv3D,
    GroupConv3DTranspose,
    GroupDense,
    GroupMaxPooling2D,
    GroupReduce,
    export,
    get_group,
)

P4 = get_group("P4").matrices


@pytest.fixture
def channels_first():
    """The global image data format set to channels_first for one test."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        yield
    finally:
        keras.config.set_image_data_format(previous)


def _randomize(model, rng):
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _assert_export_equal(model, rng):
    x = rng.normal(size=(2, *model.input.shape[1:])).astype("float32")
    plain = export(model)
    assert not any(type(layer).__module__.startswith("groco") for layer in plain.layers)
    np.testing.assert_allclose(
        ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(model(x)), atol=1e-4
    )


def test_export_under_global_channels_first_2d(rng, channels_first):
    # Every layer takes the global format; export pads (stride 2), pools with padding,
    # and crops (transposed conv): each stock layer it makes must pad the right axes.
    inputs = keras.Input((3, 9, 9))
    x = GroupConv2D(4, 3, group="P4M", strides=2, padding="same_equiv")(inputs)
    x = GroupMaxPooling2D(group="P4M", subgroup="P4", pool_size=3, strides=2, padding="same_equiv")(
        x
    )
    x = GroupAveragePooling2D(group="P4", pool_size=3, strides=1, padding="same_equiv")(x)
    x = GroupConv2DTranspose(3, 3, group="P4", strides=2, padding="same_equiv")(x)
    x = SeparableGroupConv2D(2, 3, group="P4", padding="same_equiv")(x)
    model = keras.Model(inputs, x)
    assert model.output.shape[1] == 2  # channels first
    _assert_export_equal(_randomize(model, rng), rng)


def test_export_under_global_channels_first_1d_and_3d(rng, channels_first):
    inputs = keras.Input((2, 7))
    x = GroupConv1D(3, 3, group="LM", strides=2, padding="same_equiv")(inputs)
    _assert_export_equal(_randomize(keras.Model(inputs, x), rng), rng)
    inputs = keras.Input((2, 5, 5, 5))
    x = GroupConv3D(2, 3, group="D4", strides=2, padding="same_equiv")(inputs)
    _assert_export_equal(_randomize(keras.Model(inputs, x), rng), rng)


# -- signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer_class, keras_class",
    [
        (GroupConv1D, keras.layers.Conv1D),
        (GroupConv2D, keras.layers.Conv2D),
        (GroupConv3D, keras.layers.Conv3D),
        (GroupConv2DTranspose, keras.layers.Conv2DTranspose),
        (GroupConv3DTranspose, keras.layers.Conv3DTranspose),
        (GroupDense, keras.layers.Dense),
        (GroupMaxPooling2D, keras.layers.MaxPooling2D),
        (GroupAveragePooling3D, keras.layers.AveragePooling3D),
        (GlobalGroupMaxPooling2D, keras.layers.GlobalMaxPooling2D),
        (GlobalGroupAveragePooling1D, keras.layers.GlobalAveragePooling1D),
        (GroupBatchNormalization, keras.layers.BatchNormalization),
        (SeparableGroupConv2D, keras.layers.SeparableConv2D),
        (DepthwiseGroupConv2D, keras.layers.DepthwiseConv2D),
    ],
)
def test_constructors_list_the_keras_arguments_in_keras_order(layer_class, keras_class):
    ours = inspect.signature(layer_class.__init__).parameters
    theirs = inspect.signature(keras_class.__init__).parameters
    keras_names = [n for n in theirs if n not in ("self", "kwargs") and n in ours]
    positional = [n for n, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD and n != "self"]
    # Every Keras argument we support sits at Keras's position, before the group arguments.
    assert positional[: len(keras_names)] == keras_names
    assert not set(theirs) - set(ours) - {"self", "kwargs", "quantization_config", "name"}
    for name in keras_names:
        if name not in ("padding", "axis"):  # defaults that differ on purpose
            assert ours[name].default == theirs[name].default or ours[name].default in (1, 2)
    for name in ("group", "subgroup", "allow_non_equivariance"):
        assert name not in ours or ours[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert ours["group"].kind is inspect.Parameter.KEYWORD_ONLY


def test_missing_group_names_the_argument():
    with pytest.raises(ValueError, match=r"GroupConv2D needs a `group`.*Received: group=None"):
        GroupConv2D(4, 3)
    with pytest.raises(ValueError, match=r"GroupConv3DTranspose needs a `group`"):
        GroupConv3DTranspose(4, 3)


def test_group_passed_where_keras_has_strides_is_explained():
    with pytest.raises(TypeError, match=r"Received: strides='P4M'.*group='P4M'"):
        GroupConv2D(4, 3, "P4M")
    with pytest.raises(TypeError, match=r"Received: pool_size='P4M'.*group='P4M'"):
        GroupMaxPooling2D("P4M")
    with pytest.raises(ValueError, match=r"GroupAveragePooling3D needs a `group`"):
        GroupAveragePooling3D()
    with pytest.raises(ValueError, match=r"SeparableGroupConv2D needs a `group`"):
        SeparableGroupConv2D(4, 3)
    with pytest.raises(ValueError, match=r"DepthwiseGroupConv2D needs a `group`"):
        DepthwiseGroupConv2D(3)


@pytest.mark.parametrize("spelling", ["CHANNELS_FIRST", "Channels_First", "channels_first"])
def test_data_format_is_case_insensitive(spelling):
    for layer in (
        GroupConv2D(2, 3, group="P4", data_format=spelling),
        GroupMaxPooling2D(group="P4", data_format=spelling),
    ):
        assert layer.data_format == "channels_first"
        assert layer.get_config()["data_format"] == "channels_first"
    with pytest.raises(ValueError, match=r"Received: data_format='channels_middle'"):
        GroupConv2D(2, 3, group="P4", data_format="channels_middle")


# -- unknown spatial sizes ----------------------------------------------------------------


def _strided_network(shape):
    """Strided conv, strided pooling (equivariant and Keras's own padding), transposed conv."""
    inputs = keras.Input(shape)
    x = GroupConv2D(3, 3, group="P4M", strides=2, padding="same_equiv")(inputs)
    x = GroupMaxPooling2D(group="P4M", subgroup="P4", pool_size=3, strides=2, padding="same")(x)
    x = GroupAveragePooling2D(group="P4", pool_size=3, strides=2, padding="valid_equiv")(x)
    x = GroupConv2DTranspose(2, 3, group="P4", strides=2)(x)
    x = GroupConv2D(2, 3, group="P4", strides=2, padding="valid_equiv")(x)
    return keras.Model(inputs, x)


def test_strided_layers_accept_unknown_sizes_and_match_known_sizes(rng):
    flexible = _randomize(_strided_network((None, None, 3)), rng)
    assert flexible.output.shape == (None, None, None, 4, 2)
    for size in (17, 25):
        fixed = _strided_network((size, size, 3))
        fixed.set_weights(flexible.get_weights())
        x = rng.normal(size=(2, size, size, 3)).astype("float32")
        expected = ops.convert_to_numpy(fixed(x))
        assert expected.shape[1:3] == fixed.output.shape[1:3]
        np.testing.assert_allclose(
            ops.convert_to_numpy(flexible(x)), expected, rtol=1e-5, atol=1e-5
        )
        # predict traces (TensorFlow retraces a second size with the spatial axes unknown)
        np.testing.assert_allclose(flexible.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
        p4 = np.array([[0, -1], [1, 0]])
        error = max_equivariance_error(flexible, x, [p4], None, P4)
        assert error <= 1e-6 * (1 + np.max(np.abs(expected)))  # float32 round-off


def test_unknown_sizes_train(rng):
    model = _strided_network((None, None, 3))
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(4, 17, 17, 3)).astype("float32")
    y = np.zeros((4, 1, 1, 4, 2), "float32")
    history = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_unknown_size_with_a_bad_parity_is_refused_at_call_time(rng):
    model = keras.Sequential(
        [keras.Input((None, None, 3)), GroupConv2D(2, 3, group="P4", strides=2)]
    )
    with pytest.raises(ValueError, match=r"input size 16.*an input of size 15 or 17"):
        model(np.zeros((1, 16, 16, 3), "float32"))
    model(np.zeros((1, 15, 15, 3), "float32"))  # odd sizes work


def test_unknown_size_in_a_traced_tensorflow_graph_is_checked_at_run_time(rng):
    # Only TensorFlow traces graphs whose spatial sizes are unknown; elsewhere sizes are
    # static when the layer runs and the check above applies.
    layer = GroupConv2D(2, 3, group="P4", strides=2)
    layer.build((None, None, None, 3))
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(ValueError, match=r"input size 16"):
            layer(np.zeros((1, 16, 16, 3), "float32"))
        return
    import tensorflow as tf

    run = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 3))])
    x = rng.normal(size=(1, 15, 15, 3)).astype("float32")
    np.testing.assert_allclose(run(x).numpy(), ops.convert_to_numpy(layer(x)), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must have the parity"):
        run(np.zeros((1, 16, 16, 3), "float32"))


# -- messages -----------------------------------------------------------------------------


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = GroupConv2D(2, 3, group="P4")

    def call(self, x):
        return self.conv(x)


def test_export_of_a_subclassed_model_says_what_to_do():
    model = _Subclassed()
    model(np.zeros((1, 5, 5, 1), "float32"))
    with pytest.raises(
        TypeError, match=r"functional or Sequential.*class _Subclassed.*set_weights"
    ):
        export(model)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GroupDense(5, group="P4M"),
        lambda: GroupReduce("P4M", "P4"),
        lambda: GroupBatchNormalization(group="P4M"),
    ],
    ids=["GroupDense", "GroupReduce", "GroupBatchNormalization"],
)
def test_an_image_is_told_to_be_lifted_first(make):
    # The 16×8 image's width equals |P4M| = 8: it must not be taken for the group axis.
    layer = make()
    name = type(layer).__name__
    with pytest.raises(
        ValueError,
        match=rf"{name}\(group='P4M'\).*looks like an image.*lifting "
        rf"GroupConv2D\(filters, kernel_size, group='P4M'\), then apply {name}",
    ):
        layer(np.zeros((2, 16, 8, 5), "float32"))


def test_group_dense_takes_signals_with_or_without_space(rng):
    layer = GroupDense(3, group="P4M")
    assert layer(np.zeros((2, 8, 5), "float32")).shape == (2, 8, 3)
    assert layer(np.zeros((2, 4, 4, 8, 5), "float32")).shape == (2, 4, 4, 8, 3)


def test_kernel_larger_than_input_says_the_output_would_be_empty():
    with pytest.raises(ValueError, match=r"extent 5 is larger than the input size 3.*empty"):
        GroupConv2D(2, 5, group="P4")(np.zeros((1, 3, 3, 1), "float32"))
    with pytest.raises(ValueError, match=r"pool extent 4 is larger than the input size 3"):
        GroupMaxPooling2D(group="P4", pool_size=4)(np.zeros((1, 3, 3, 4, 1), "float32"))


@pytest.mark.parametrize(
    "make, size, message",
    [
        (
            lambda: GroupConv2D(2, 3, group="P4", strides=2, padding="same_equiv"),
            16,
            r"input size 16.*an input of size 15 or 17; kernel_size 2 or 4; strides=1 followed "
            r"by GroupMaxPooling2D\(pool_size=2, strides=2\)",
        ),
        (
            lambda: GroupMaxPooling2D(group="P4", pool_size=2),
            11,
            r"input size 11, pool extent 2.*an input of size 10 or 12; pool_size 3",
        ),
    ],
)
def test_parity_messages_name_what_works_for_this_layer(make, size, message):
    layer = make()
    shape = (1, size, size, 1) if isinstance(layer, GroupConv2D) else (1, size, size, 4, 1)
    with pytest.raises(ValueError, match=message):
        layer(np.zeros(shape, "float32"))


# -- export of models built on unknown sizes ----------------------------------------------


def test_export_keeps_an_unknown_size_where_reshape_allows(rng):
    inputs = keras.Input((None, 3))
    x = GroupConv1D(4, 3, group="LM", padding="same_equiv")(inputs)
    x = GroupConv1D(2, 3, group="LM")(x)
    model = _randomize(keras.Model(inputs, x), rng)
    plain = export(model)
    assert plain.input.shape == (None, None, 3)
    for size in (7, 12):
        x = rng.normal(size=(2, size, 3)).astype("float32")
        np.testing.assert_allclose(
            ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(model(x)), atol=1e-5
        )


def test_export_for_a_deployment_size(rng):
    model = _randomize(_strided_network((None, None, 3)), rng)
    with pytest.raises(ValueError, match=r"export\(model, input_shape=\(32, 32, 3\)\)"):
        export(model)
    plain = export(model, input_shape=(17, 17, 3))
    assert plain.input.shape == (None, 17, 17, 3)
    x = rng.normal(size=(2, 17, 17, 3)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(model(x)), atol=1e-4
    )
    with pytest.raises(ValueError, match=r"Received: input_shape=\(17, 17\)"):
        export(model, input_shape=(17, 17))


def test_export_refuses_a_strided_layer_on_an_unknown_size():
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, GroupConv1D(2, 3, group="LM", strides=2)(inputs))
    with pytest.raises(ValueError, match=r"padding depends on the size.*input_shape="):
        export(model)


# -- groups ---------------------------------------------------------------------------------


def _numpy_lifting_conv(x, kernel, matrices):
    """Valid cross-correlation of `x` (B, N, N, C) with the kernel turned by every element:
    out[b, p, h, f] = Σ_q Σ_c x[b, q, c] ψ_c,f(M_h⁻¹(q − p)) (transforms from the test's own
    numpy helpers)."""
    size, k = x.shape[1], kernel.shape[0]
    out = np.zeros((x.shape[0], size - k + 1, size - k + 1, len(matrices), kernel.shape[-1]))
    for h, matrix in enumerate(matrices):
        turned = act(kernel, matrix, (0, 1))  # ψ(M_h⁻¹ r)
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                window = x[:, i : i + k, j : j + k, :]
                out[:, i, j, h] = np.einsum("bxyc,xycf->bf", window, turned)
    return out


def test_grouped_lifting_conv_matches_numpy(rng):
    layer = GroupConv2D(4, 3, groups=2, use_bias=False, group="P4")
    x = rng.normal(size=(2, 6, 6, 6)).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    kernel = ops.convert_to_numpy(layer.kernel)
    assert kernel.shape == (3, 3, 3, 4)  # (k, k, in_channels / groups, filters)
    # Output fields 0, 1 see input channels 0-2; fields 2, 3 see channels 3-5.
    dense = np.zeros((3, 3, 6, 4))
    dense[:, :, :3, :2], dense[:, :, 3:, 2:] = kernel[..., :2], kernel[..., 2:]
    expected = _numpy_lifting_conv(x.astype("float64"), dense, P4)
    np.testing.assert_allclose(y, expected, atol=1e-4)


def test_grouped_group_conv_is_equivariant_and_exports(rng):
    inputs = keras.Input((7, 7, 8, 6))
    layer = GroupConv2D(4, 3, groups=2, group="P4M", padding="same_equiv")
    model = _randomize(keras.Model(inputs, layer(inputs)), rng)
    assert layer.count_params() == 3 * 3 * 8 * 3 * 4 + 4  # Keras's grouped count × |G|
    x = rng.normal(size=(2, 7, 7, 8, 6)).astype("float32")
    p4m = get_group("P4M").matrices
    assert max_equivariance_error(layer, x, p4m, p4m, p4m) < 1e-4
    _assert_export_equal(model, rng)
    config = layer.get_config()
    assert config["groups"] == 2 and GroupConv2D.from_config(config).groups == 2


def test_bad_groups_are_refused():
    with pytest.raises(ValueError, match=r"filters must be divisible by groups.*filters=5"):
        GroupConv2D(5, 3, groups=2, group="P4")
    with pytest.raises(ValueError, match=r"groups must be a positive int. Received: groups=0"):
        GroupConv2D(4, 3, groups=0, group="P4")
    with pytest.raises(ValueError, match=r"divisible by groups. Received: 3 input fields"):
        GroupConv2D(4, 3, groups=2, group="P4")(np.zeros((1, 5, 5, 3), "float32"))


# -- LoRA -----------------------------------------------------------------------------------


def _lora_model(rank_on_constructor):
    inputs = keras.Input((7, 7, 2))
    options = {"lora_rank": 2} if rank_on_constructor else {}
    x = GroupConv2D(4, 3, group="P4M", **options)(inputs)
    x = GroupDense(3, group="P4M", **options)(x)
    return keras.Model(inputs, x)


def test_lora_training_changes_only_the_lora_weights_and_stays_equivariant(rng):
    model = _lora_model(rank_on_constructor=False)
    before = {w.path: ops.convert_to_numpy(w).copy() for w in model.weights}
    conv, dense = model.layers[1], model.layers[2]
    for layer in (conv, dense):
        layer.enable_lora(2, b_initializer="random_normal")
        assert layer.lora_enabled and not layer._kernel.trainable
    assert tuple(conv.lora_kernel_a.shape) == (3, 3, 2, 2)
    assert tuple(dense.lora_kernel_b.shape) == (2, 3)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = rng.normal(size=(4, 7, 7, 2)).astype("float32")
    model.fit(x, np.ones((4, 5, 5, 8, 3), "float32"), epochs=2, verbose=0)
    for w in model.weights:
        if "lora" in w.path or "bias" in w.path:
            continue
        np.testing.assert_array_equal(ops.convert_to_numpy(w), before[w.path])  # frozen
    lora = [w for w in model.trainable_weights if "lora_kernel_a" in w.path]
    assert len(lora) == 2 and all(
        not np.allclose(ops.convert_to_numpy(w), 0) for w in model.trainable_weights
    )
    p4m = get_group("P4M").matrices
    assert max_equivariance_error(model, x, p4m, None, p4m) < 1e-4


def test_lora_saving_loading_and_export(rng, tmp_path):
    model = _lora_model(rank_on_constructor=True)
    conv = model.layers[1]
    assert conv.lora_enabled and conv.get_config()["lora_rank"] == 2
    for layer in model.layers[1:]:
        layer.lora_kernel_b.assign(rng.normal(size=layer.lora_kernel_b.shape) * 0.1)
    x = rng.normal(size=(2, 7, 7, 2)).astype("float32")
    expected = ops.convert_to_numpy(model(x))
    model.save(tmp_path / "lora.keras")
    loaded = keras.models.load_model(tmp_path / "lora.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), expected, atol=1e-5)
    # As in Keras: the merged kernel is stored, the factors restart from zero.
    assert np.allclose(ops.convert_to_numpy(loaded.layers[1].lora_kernel_b), 0)
    model.save_weights(tmp_path / "lora.weights.h5")
    other = _lora_model(rank_on_constructor=True)
    other.load_weights(tmp_path / "lora.weights.h5")
    np.testing.assert_allclose(ops.convert_to_numpy(other(x)), expected, atol=1e-5)
    plain = export(model)
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x)), expected, atol=1e-5)


def test_lora_misuse_is_refused():
    layer = GroupConv2D(4, 3, group="P4")
    with pytest.raises(ValueError, match=r"enable_lora needs a built layer"):
        layer.enable_lora(2)
    layer.build((None, 5, 5, 2))
    with pytest.raises(ValueError, match=r"rank must be a positive int.*Received: rank=0"):
        layer.enable_lora(0)
    layer.enable_lora(2)
    with pytest.raises(ValueError, match=r"already enabled"):
        layer.enable_lora(2)
    constrained = GroupDense(3, group="P4", kernel_constraint="non_neg")
    constrained.build((None, 4, 2))
    with pytest.raises(ValueError, match=r"incompatible with a kernel constraint"):
        constrained.enable_lora(2)
    with pytest.raises(ValueError, match=r"lora_rank must be a positive int.*lora_rank=-1"):
        GroupDense(3, group="P4", lora_rank=-1)
    with pytest.raises(ValueError, match=r"GroupDense needs a `group`"):
        GroupDense(3)
