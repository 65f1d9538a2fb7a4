"""Keras parity: groco layers behave as their Keras counterparts under the settings and
inputs an experienced Keras user tries (global data format, unknown sizes, messages)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from groco_separable import SeparableGroupConv2D
from keras import ops

from groco_core import (
    GroupAveragePooling2D,
    GroupConv1D,
    GroupConv2D,
    GroupConv2DTranspose,
    GroupConv3D,
    GroupMaxPooling2D,
    export,
)


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
