"""Whole networks: invariance, training, export, and `.keras` round trips of every layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from transforms import act_on_grid

import groco_core
from groco_core import get_group, hookimpl, registry
from groco_core.layers import (
    GlobalGroupAveragePooling1D,
    GlobalGroupAveragePooling2D,
    GlobalGroupMaxPooling2D,
    GroupAveragePooling2D,
    GroupBatchNormalization,
    GroupConv1D,
    GroupConv2D,
    GroupConv2DTranspose,
    GroupDense,
    GroupMaxPooling1D,
    GroupMaxPooling2D,
    GroupReduce,
)


def build_network() -> keras.Model:
    """lift → conv → batch norm → pooling onto P4 → conv → global pooling → Dense."""
    inputs = keras.Input((13, 13, 2))
    x = GroupConv2D(4, 3, group="P4M", activation="relu")(inputs)
    x = GroupConv2D(4, 3, group="P4M")(x)
    x = GroupBatchNormalization(group="P4M")(x)
    x = keras.layers.Activation("relu")(x)
    x = GroupMaxPooling2D(group="P4M", subgroup="P4", pool_size=3)(x)
    x = GroupConv2D(6, 3, group="P4", padding="same_equiv", activation="relu")(x)
    x = GlobalGroupAveragePooling2D()(x)
    outputs = keras.layers.Dense(3)(x)  # logits: a saturated softmax would hide differences
    return keras.Model(inputs, outputs)


def test_network_is_invariant_trains_and_exports(tmp_path, rng):
    # Seeded: with some initial weights every ReLU of the small network dies in training and
    # the output no longer depends on the input, mirror included.
    keras.utils.set_random_seed(7)
    model = build_network()
    assert model.output_shape == (None, 3)
    x = rng.normal(size=(8, 13, 13, 2)).astype("float32")
    labels = rng.integers(0, 3, size=(8,))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, labels, epochs=3, batch_size=4, verbose=0)
    assert all(np.isfinite(loss) for loss in history.history["loss"])

    # Invariant under P4 (the group left after pooling onto it); inference mode batch norm.
    y = ops.convert_to_numpy(model(x))
    for matrix in get_group("P4").matrices:
        turned = ops.convert_to_numpy(model(act_on_grid(x, matrix, (1, 2))))
        np.testing.assert_allclose(turned, y, atol=1e-5, rtol=1e-5)
    # A mirror is no longer a symmetry: the output does change (the test can fail).
    mirrored = ops.convert_to_numpy(model(act_on_grid(x, np.diag([1, -1]), (1, 2))))
    assert np.max(np.abs(mirrored - y)) > 1e-3

    plain = groco_core.export(model)
    modules = {type(layer).__module__ for layer in plain.layers}
    assert not any(module.startswith("groco") for module in modules), modules
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x)), y, atol=1e-5)
    path = tmp_path / "plain.keras"
    plain.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(reloaded(x)), y, atol=1e-5)


LAYERS = [
    (lambda: GroupConv2D(3, 3, group="P4M", subgroup="CMM"), (7, 7, 2)),
    (lambda: GroupConv1D(3, 3, group="LM", strides=2), (9, 2)),
    (lambda: GroupConv2DTranspose(3, 2, group="P4M", subgroup="P4", strides=2), (3, 3, 4, 2)),
    (lambda: GroupMaxPooling2D(group="P4M", subgroup="P2MM"), (6, 6, 8, 2)),
    (lambda: GroupAveragePooling2D(group="P4", pool_size=3, padding="same_equiv"), (7, 7, 4, 2)),
    (lambda: GlobalGroupMaxPooling2D(), (5, 5, 8, 2)),
    (lambda: GroupBatchNormalization(group="P4M"), (5, 5, 8, 2)),
    (lambda: GroupDense(4, group="P4M", subgroup="P4"), (8, 3)),
    (lambda: GroupReduce(group="P4M", subgroup="PMd"), (5, 5, 8, 2)),
    (lambda: GroupMaxPooling1D(group="LM", pool_size=3), (9, 2, 2)),
    (lambda: GlobalGroupAveragePooling1D(), (9, 2, 2)),
]


@pytest.mark.parametrize(("make_layer", "shape"), LAYERS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_layer_round_trips_through_a_keras_file(make_layer, shape, tmp_path, rng):
    layer = make_layer()
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    x = rng.normal(size=(2, *shape)).astype("float32")
    if model.weights:  # non-default weights, so the comparison means something
        model.set_weights([w + rng.normal(size=w.shape) for w in model.get_weights()])
    expected = ops.convert_to_numpy(model(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[-1]) is type(layer)
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)


class _TemporaryGroupPlugin:
    @hookimpl
    def groco_register_groups(self, register):
        register(groco_core.MatrixGroup("Flip2", [[[1, 0], [0, 1]], [[1, 0], [0, -1]]]))


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: GroupConv2D(2, 3, group="Flip2"),
        lambda: GroupMaxPooling2D(group="Flip2"),
        lambda: GroupBatchNormalization(group="Flip2"),
        lambda: GroupDense(2, group="Flip2"),
        lambda: GroupReduce(group="Flip2", subgroup="P1"),
    ],
)
def test_loading_without_the_groups_plugin_names_the_group(make_layer, tmp_path):
    name = registry.register_plugin(_TemporaryGroupPlugin(), name="temporary_flip")
    try:
        layer = make_layer()
        shape = (4, 4, 2, 3) if not isinstance(layer, GroupDense) else (2, 3)
        inputs = keras.Input(shape)
        keras.Model(inputs, layer(inputs)).save(tmp_path / "m.keras")
    finally:
        registry.unregister_plugin(name)
    with pytest.raises(ValueError, match="Unknown group 'Flip2'.*a plugin must provide"):
        keras.models.load_model(tmp_path / "m.keras")
