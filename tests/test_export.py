"""export(model): plain Keras models equal to groco models; `.keras` save and load."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from groco_core import MatrixGroup, export, hookimpl, registry
from groco_core.exporting import keras_same_paddings
from groco_core.layers.conv import GroupConv2D
from groco_core.layers.conv_transpose import GroupConv2DTranspose
from groco_core.layers.normalization import GroupBatchNormalization


def _randomize(model, rng):
    """Random weights from numpy (JAX compiles its initialisers anew for every shape)."""
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _network(data_format="channels_last"):
    """Lifting → group conv to P4 with stride → transposed conv P4 → P4M → Dense."""
    shape = (9, 9, 3) if data_format == "channels_last" else (3, 9, 9)
    common = dict(data_format=data_format, kernel_initializer="zeros")
    inputs = keras.Input(shape)
    x = GroupConv2D(4, 3, group="P4M", activation="relu", **common)(inputs)
    x = GroupConv2D(4, 3, group="P4M", subgroup="P4", strides=2, **common)(x)
    x = GroupConv2DTranspose(3, 2, group="P4M", subgroup="P4", strides=2, **common)(x)
    x = GroupConv2DTranspose(
        2, 3, group="P4M", padding="same_equiv", activation="softmax", **common
    )(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(5, kernel_initializer="zeros")(x)
    return keras.Model(inputs, outputs)


def _is_groco(layer):
    return type(layer).__module__.startswith("groco")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_export_matches_and_is_plain(rng, data_format):
    model = _randomize(_network(data_format), rng)
    x = rng.normal(size=(2, *model.input.shape[1:])).astype("float32")
    plain = export(model)
    assert not any(_is_groco(layer) for layer in plain.layers)
    assert any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in plain.layers)
    np.testing.assert_allclose(
        ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_export_of_sequential_model(rng):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            GroupConv2D(3, 3, group="P4", kernel_initializer="zeros"),
            GroupConv2DTranspose(2, 3, group="P4", kernel_initializer="zeros"),
            keras.layers.GlobalAveragePooling3D(),
        ]
    )
    _randomize(model, rng)
    x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    plain = export(model)
    assert not any(_is_groco(layer) for layer in plain.layers)
    np.testing.assert_allclose(
        ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(model(x)), atol=1e-5
    )


def _with_statistics(model, rng):
    """`_randomize`, with positive moving variances, so batch norm at inference is a
    different affine map per channel."""
    model.set_weights(
        [
            rng.uniform(0.5, 2.0, size=w.shape).astype("float32")
            if "variance" in v.path
            else rng.normal(size=w.shape).astype("float32")
            for w, v in zip(model.get_weights(), model.weights, strict=True)
        ]
    )
    return model


def _assert_same_outputs(plain, model, x):
    expected = ops.convert_to_numpy(model(x))
    assert np.abs(expected).max() > 0.1  # the comparison sees values, not zeros
    np.testing.assert_allclose(
        ops.convert_to_numpy(plain(x)), expected, atol=2e-5 * np.abs(expected).max()
    )


def _count(model, layer_class):
    return sum(type(layer) is layer_class for layer in model.layers)


def test_export_keeps_the_group_axis_merged_between_layers(rng):
    """Consecutive group layers exchange `(…, |G|·C)` tensors in the export, as the same
    network of stock layers does: one Reshape (the model's output), batch norm over the
    merged channels with its statistics tiled over the group, activations and Add on the
    merged tensors, and Keras's own `"same"` padding where `same_equiv` pads as it does."""
    inputs = keras.Input((10, 10, 3))
    x = GroupConv2D(4, 3, group="P4M", padding="same_equiv")(inputs)
    x = GroupBatchNormalization(group="P4M")(x)
    x = keras.layers.Activation("relu")(x)
    y = GroupConv2D(4, 3, group="P4M", padding="same_equiv", activation="relu")(x)
    x = keras.layers.Add()([x, y])
    outputs = GroupConv2D(4, 4, strides=2, group="P4M", padding="same_equiv")(x)
    model = _with_statistics(keras.Model(inputs, outputs), rng)
    plain = export(model)

    _assert_same_outputs(plain, model, rng.normal(size=(2, 10, 10, 3)).astype("float32"))
    assert _count(plain, keras.layers.Reshape) == 1
    assert plain.layers[-1].output.shape == (None, 5, 5, 8, 4)
    assert _count(plain, keras.layers.ZeroPadding2D) == 0
    convs = [layer for layer in plain.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [conv.padding for conv in convs] == ["same"] * 3
    (norm,) = [
        layer for layer in plain.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    group_norm = model.layers[2]
    assert norm.moving_mean.shape == (32,)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(norm.moving_mean),
        np.tile(ops.convert_to_numpy(group_norm.moving_mean), 8),
    )


@pytest.mark.parametrize("rank", [2, 3])
def test_export_takes_a_heads_group_mean_into_its_dense(rank, rng):
    """A global average over space and group followed by a Dense exports as the stock head:
    a global average over space, then one Dense on all |G|·C channels whose kernel is the
    Dense's tiled over the group and divided by |G|. An average followed by anything else
    keeps its mean over the group."""
    import groco_core

    group, shape = ("P4M", (6, 6, 2)) if rank == 2 else ("O", (3, 3, 3, 1))
    conv = groco_core.GroupConv2D if rank == 2 else groco_core.GroupConv3D
    pooling = getattr(groco_core, f"GlobalGroupAveragePooling{rank}D")
    inputs = keras.Input(shape)
    features = pooling()(conv(3, 3, group=group, padding="same_equiv")(inputs))
    head = keras.Model(inputs, keras.layers.Dense(5)(features))
    other = keras.Model(inputs, keras.layers.Activation("tanh")(features))
    x = 10 * rng.normal(size=(2, *shape)).astype("float32")  # means of a few values
    order = groco_core.get_group(group).order

    plain = export(head)
    _assert_same_outputs(plain, head, x)
    assert _count(plain, keras.layers.Reshape) == 0
    assert _count(plain, getattr(keras.layers, f"GlobalAveragePooling{rank}D")) == 1
    (dense,) = [layer for layer in plain.layers if isinstance(layer, keras.layers.Dense)]
    kernel = ops.convert_to_numpy(head.layers[-1].kernel)
    np.testing.assert_allclose(
        ops.convert_to_numpy(dense.kernel), np.concatenate([kernel] * order) / order
    )
    plain_other = export(other)
    _assert_same_outputs(plain_other, other, x)
    assert plain_other.layers[-1].output.shape == (None, 3)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation"),
    [(9, 3, 1, 1), (8, 4, 1, 1), (8, 3, 2, 1), (9, 4, 2, 1), (10, 3, 3, 1), (9, 3, 1, 2)],
)
def test_keras_same_paddings_are_what_keras_pads(rng, size, kernel, stride, dilation):
    """The paddings `export` compares `same_equiv`'s with are Keras's own: padding with them
    and convolving `valid` gives Keras's `same` convolution."""
    x = rng.normal(size=(1, size, size, 2)).astype("float32")
    w = rng.normal(size=(kernel, kernel, 2, 3)).astype("float32")
    paddings = keras_same_paddings((size, size), (kernel,) * 2, (stride,) * 2, (dilation,) * 2)
    padded = np.pad(x, ((0, 0), *paddings, (0, 0)))
    options = dict(strides=stride, dilation_rate=dilation)
    same = ops.convert_to_numpy(ops.conv(x, w, padding="same", **options))
    valid = ops.convert_to_numpy(ops.conv(padded, w, padding="valid", **options))
    np.testing.assert_allclose(valid, same, atol=1e-5)
    # An unknown size: known at stride 1 (the same as for any size), not at a larger one.
    unknown = keras_same_paddings((None, size), (kernel,) * 2, (stride,) * 2, (dilation,) * 2)
    assert unknown == (paddings if stride == 1 else None)


def test_export_gives_the_split_layout_to_layers_that_read_it(rng):
    """Layers that act across entries see `(…, |G|, C)` as in the group model: a softmax over
    the channels, a Dense, batch norm over another axis, an Add of a merged and an unmerged
    tensor, and a stride-1 model of unknown height."""
    inputs = keras.Input((None, 7, 3))
    x = GroupConv2D(3, 3, group="P4", activation="softmax")(inputs)
    z = GroupConv2D(3, 1, group="P4")(x)
    y = keras.layers.Dense(3)(x)
    x = keras.layers.Add()([z, y])
    x = GroupConv2D(4, 1, group="P4")(x)  # as many channels as elements
    x = keras.layers.BatchNormalization(axis=3)(x)
    x = GroupConv2D(2, 3, group="P4", activation="relu")(x)
    x = keras.layers.Activation("relu")(x)
    model = _with_statistics(keras.Model(inputs, x), rng)
    plain = export(model)

    _assert_same_outputs(plain, model, rng.normal(size=(2, 9, 7, 3)).astype("float32"))
    softmax = [
        layer
        for layer in plain.layers
        if getattr(layer, "activation", None) is keras.activations.softmax
    ]
    assert len(softmax) == 1 and softmax[0].output.shape == (None, None, 5, 4, 3)
    (norm,) = [
        layer for layer in plain.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norm.moving_mean.shape == (4,)


# Makes every `groco*` import fail, then loads a model and compares it with saved outputs.
_LOAD_WITHOUT_GROCO = """
import importlib.abc, sys

class BlockGroco(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].startswith("groco"):
            raise ImportError("groco is blocked in this process: " + name)
        return None

sys.meta_path.insert(0, BlockGroco())
try:
    import groco_core  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("groco_core could still be imported")
import keras
import numpy as np

model = keras.models.load_model(sys.argv[1])
x, expected = np.load(sys.argv[2]), np.load(sys.argv[3])
error = float(np.max(np.abs(keras.ops.convert_to_numpy(model(x)) - expected)))
assert error <= 1e-5, error
assert not any(m.startswith("groco") for m in sys.modules)
print("loaded without groco")
"""


def test_exported_model_loads_where_groco_is_not_installed(rng, tmp_path):
    model = _randomize(_network(), rng)
    x = rng.normal(size=(2, 9, 9, 3)).astype("float32")
    path = tmp_path / "m.keras"
    export(model).save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", ops.convert_to_numpy(model(x)))
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_GROCO, str(path)]
        + [str(tmp_path / "x.npy"), str(tmp_path / "expected.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded without groco" in result.stdout


def test_keras_round_trip_of_groco_model(rng, tmp_path):
    model = _randomize(_network(), rng)
    x = rng.normal(size=(2, 9, 9, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))


class _FlipPlugin:
    @hookimpl
    def groco_register_groups(self, register):
        register(MatrixGroup("ExportTestFlip", [[[1, 0], [0, 1]], [[1, 0], [0, -1]]]))


def test_loading_a_model_whose_group_is_missing(tmp_path):
    # Registered and removed by hand: the group must disappear before the test ends.
    name = registry.register_plugin(_FlipPlugin(), name="export_test_flip")
    try:
        inputs = keras.Input((5, 5, 2))
        layer = GroupConv2DTranspose(2, 3, group="ExportTestFlip", kernel_initializer="zeros")
        keras.Model(inputs, layer(inputs)).save(tmp_path / "m.keras")
    finally:
        registry.unregister_plugin(name)
    with pytest.raises(ValueError, match=r"'ExportTestFlip'.*a plugin must provide"):
        keras.models.load_model(tmp_path / "m.keras")


class _Doubling(keras.layers.Layer):
    group = input_group = output_group = None  # any group (groco_core.GroupLayer)
    data_format = "channels_last"

    def call(self, inputs):
        return inputs * 2


class _LayerPlugin:
    @hookimpl
    def groco_register_layers(self, register):
        register(_Doubling)


def test_groco_layer_without_export_plain_is_refused(register_plugin):
    register_plugin(_LayerPlugin(), name="export_test_layers")
    inputs = keras.Input((4, 4, 2))
    x = GroupConv2D(2, 3, group="P4", kernel_initializer="zeros")(inputs)
    model = keras.Model(inputs, _Doubling(name="doubling")(x))
    with pytest.raises(TypeError, match=r"'doubling' of class _Doubling has no export_plain"):
        export(model)


def test_shared_groco_layer_is_refused():
    layer = GroupConv2D(2, 1, group="P4", kernel_initializer="zeros")
    inputs = keras.Input((4, 4, 4, 2))
    model = keras.Model(inputs, layer(layer(inputs)))
    with pytest.raises(ValueError, match=r"called more than once"):
        export(model)


def test_export_needs_a_model_with_an_input():
    with pytest.raises(TypeError, match=r"export takes a keras.Model"):
        export(GroupConv2D(2, 3, group="P4"))
    with pytest.raises(ValueError, match=r"no defined input.*keras.Input"):
        export(keras.Sequential([GroupConv2D(2, 3, group="P4")]))
