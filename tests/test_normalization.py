"""GroupBatchNormalization: per-channel statistics shared over space and the group."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from transforms import max_equivariance_error

from groco_core.layers.normalization import GroupBatchNormalization
from groco_core.registry import get_group

GROUPS_2D = ["P4M", "P4", "P2MM", "CMM", "PMd"]


def signal(rng, shape):
    return (3.0 + 2.0 * rng.normal(size=shape)).astype("float32")


def randomize_weights(layer, rng):
    gamma, beta, mean, variance = (w.shape for w in layer.weights)
    layer.set_weights(
        [
            rng.normal(size=gamma).astype("float32"),
            rng.normal(size=beta).astype("float32"),
            rng.normal(size=mean).astype("float32"),
            rng.uniform(0.5, 2.0, size=variance).astype("float32"),
        ]
    )


def test_shapes_and_parameters_are_per_channel(rng):
    layer = GroupBatchNormalization(group="P4M")
    x = signal(rng, (2, 5, 5, 8, 3))
    assert layer(x).shape == x.shape
    assert layer.compute_output_shape(x.shape) == x.shape
    assert [tuple(w.shape) for w in layer.weights] == [(3,)] * 4
    assert layer.count_params() == 12
    assert len(layer.trainable_weights) == 2


def test_training_mode_normalizes_over_batch_space_and_group(rng):
    layer = GroupBatchNormalization(group="P4", epsilon=1e-3)
    x = signal(rng, (3, 4, 4, 4, 2))
    y = ops.convert_to_numpy(layer(x, training=True))
    mean = x.mean(axis=(0, 1, 2, 3))
    variance = x.var(axis=(0, 1, 2, 3))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(variance + 1e-3), atol=1e-4)
    # The moving statistics moved towards the batch statistics, one value per channel.
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.moving_mean), 0.01 * mean, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.moving_variance), 0.99 + 0.01 * variance, rtol=1e-5
    )


def test_inference_uses_the_moving_statistics_per_channel(rng):
    layer = GroupBatchNormalization(group="P4M", epsilon=1e-3)
    x = signal(rng, (2, 3, 3, 8, 5))
    layer(x)
    randomize_weights(layer, rng)
    gamma, beta, mean, variance = layer.get_weights()
    expected = (x - mean) / np.sqrt(variance + 1e-3) * gamma + beta
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("group", GROUPS_2D)
def test_equivariant_in_training_and_inference(group, training, rng):
    matrices = get_group(group).matrices
    layer = GroupBatchNormalization(group=group)
    x = signal(rng, (2, 5, 5, len(matrices), 3))
    layer(x)
    randomize_weights(layer, rng)

    def normalize(inputs):
        return layer(inputs, training=training)

    assert max_equivariance_error(normalize, x, matrices, matrices, matrices) < 1e-4


def test_channels_first_default_axis_and_1d(rng):
    layer = GroupBatchNormalization(axis=1)
    x = signal(rng, (2, 3, 6, 2))
    y = ops.convert_to_numpy(layer(x, training=True))
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    variance = x.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(variance + 1e-3), atol=1e-4)
    lm = get_group("LM").matrices
    error = max_equivariance_error(
        lambda t: layer(t, training=True), x, lm, lm, lm, channels_last=False, spatial_dims=1
    )
    assert error < 1e-4
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        assert GroupBatchNormalization().axis == 1
    finally:
        keras.config.set_image_data_format(previous)
    assert GroupBatchNormalization().axis == -1


def test_no_spatial_axes(rng):
    layer = GroupBatchNormalization(group="P4M")
    assert layer(signal(rng, (4, 8, 3)), training=True).shape == (4, 8, 3)


def test_get_config_round_trip_and_export(rng):
    layer = GroupBatchNormalization(group="P4M", momentum=0.9, epsilon=1e-2, center=False)
    x = signal(rng, (2, 4, 4, 8, 3))
    layer(x)
    layer.set_weights([w * 0 + rng.uniform(0.5, 2.0, size=w.shape) for w in layer.get_weights()])
    config = layer.get_config()
    assert config["group"] == "P4M" and config["momentum"] == 0.9
    clone = GroupBatchNormalization.from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(clone(x)), ops.convert_to_numpy(layer(x)), atol=1e-6
    )
    inputs = keras.Input(x.shape[1:])
    plain = keras.Model(inputs, layer.export_plain(inputs))
    assert [type(lay).__module__.split(".")[0] for lay in plain.layers] == ["keras", "keras"]
    np.testing.assert_allclose(
        ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(layer(x)), atol=1e-5
    )


def test_bad_arguments(rng):
    x = signal(rng, (2, 4, 4, 8, 3))
    with pytest.raises(ValueError, match="must be the last axis or axis 1"):
        GroupBatchNormalization(axis=-2)(x)
    with pytest.raises(ValueError, match="axis must be one int"):
        GroupBatchNormalization(axis=[1, 2])
    with pytest.raises(ValueError, match="group axis .* of length 4"):
        GroupBatchNormalization(group="P4")(x)
    with pytest.raises(ValueError, match="keras.layers.BatchNormalization"):
        GroupBatchNormalization()(signal(rng, (2, 3)))
