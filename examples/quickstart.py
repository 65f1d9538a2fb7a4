"""A small P4M network on random images: prints its output shape and its measured
equivariance error (rotating/mirroring the input must leave the invariant output unchanged).

Run: `KERAS_BACKEND=jax python examples/quickstart.py`
"""

import keras
import numpy as np

from groco_core import GroupConv2D, get_group
from groco_core.testing import check_equivariance

inputs = keras.Input((27, 27, 1))
x = GroupConv2D(8, 3, group="P4M", activation="relu")(inputs)  # lifting: image → P4M signal
x = GroupConv2D(8, 3, group="P4M", strides=2, activation="relu")(x)  # P4M → P4M
x = GroupConv2D(8, 3, group="P4M", subgroup="P4")(x)  # P4M → P4 (the group "stride")
model = keras.Model(inputs, x)

images = np.random.default_rng(0).normal(size=(4, 27, 27, 1)).astype("float32")
outputs = model(images)
error = check_equivariance(model, images, group="P4M", output_group="P4")
print(f"backend: {keras.backend.backend()}")
print(f"input shape: {images.shape} -> output shape: {tuple(outputs.shape)}")
print(f"parameters: {model.count_params()}")
print(f"max |L(g·x) - g·L(x)| over the {get_group('P4').order} elements of P4: {error:.2e}")
assert error < 1e-4, "the network should be equivariant to float32 round-off"
