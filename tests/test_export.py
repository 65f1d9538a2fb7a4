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
from groco_core.layers.conv import GroupConv2D
from groco_core.layers.conv_transpose import GroupConv2DTranspose


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
