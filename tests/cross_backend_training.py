"""Four SGD steps of one small GroCo network from fixed weights and data, on the backend named
by `KERAS_BACKEND`, run in a fresh process per backend by `tests/test_cross_backend.py`.
Prints one line, `RESULT {"losses": [...]}`: the loss of each training step, then the loss
of the trained network in inference mode (moving statistics).

Run: `KERAS_BACKEND=jax python tests/cross_backend_training.py`
"""

from __future__ import annotations

import json
import os

if os.environ.get("KERAS_BACKEND") == "jax":
    import jax

    # As in conftest.py: the partitionable threefry takes seconds to compile the random draw
    # of each weight initializer on CPU, and every draw is overwritten here anyway.
    jax.config.update("jax_threefry_partitionable", False)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from groco_separable import SeparableGroupConv2D  # noqa: E402

from groco_core import (  # noqa: E402
    GlobalGroupMaxPooling2D,
    GroupBatchNormalization,
    GroupConv2D,
    GroupConv2DTranspose,
    GroupMaxPooling2D,
)

STEPS, BATCH, LEARNING_RATE = 4, 8, 0.05


def network() -> keras.Model:
    """Lift onto P4M → batch norm → max pooling onto P4 → conv → separable conv →
    transposed conv (stride 2) → batch norm → global max pooling → Dense."""
    inputs = keras.Input((11, 11, 1))
    x = GroupConv2D(4, 3, group="P4M", activation="relu")(inputs)  # (9, 9, 8, 4)
    x = GroupBatchNormalization(group="P4M")(x)
    x = GroupMaxPooling2D(group="P4M", subgroup="P4", pool_size=3)(x)  # (3, 3, 4, 4)
    x = GroupConv2D(4, 3, group="P4", padding="same_equiv", activation="relu")(x)
    x = SeparableGroupConv2D(4, 3, group="P4", padding="same_equiv")(x)
    x = GroupConv2DTranspose(4, 3, strides=2, group="P4")(x)  # (7, 7, 4, 4)
    x = GroupBatchNormalization(group="P4")(x)
    x = GlobalGroupMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def set_weights(model: keras.Model, rng: np.random.Generator) -> None:
    """Every variable from numpy, in `model.weights` order (the same on every backend), batch
    normalization's moving statistics included.

    Kernels are scaled by their fan-in. The `gamma`s are small because the head sees maxima of
    normalized values (about 3·gamma): with `gamma` near 1, SGD(0.05) overshoots and the loss
    rises before it falls.
    """
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.name == "moving_variance":
            value = rng.uniform(0.5, 1.5, size=shape)
        elif variable.name == "gamma":
            value = rng.uniform(0.25, 0.75, size=shape)
        elif len(shape) == 1:  # biases, betas, moving means
            value = 0.1 * rng.normal(size=shape)
        else:
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        variable.assign(value.astype(variable.dtype))


def main() -> None:
    rng = np.random.default_rng(2024)
    model = network()
    set_weights(model, rng)
    x = rng.normal(size=(BATCH, 11, 11, 1)).astype("float32")
    y = rng.normal(size=(BATCH, 2)).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    # One batch per epoch: `history` holds the loss of each step, not a running mean.
    history = model.fit(x, y, batch_size=BATCH, epochs=STEPS, shuffle=False, verbose=0)
    final = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    losses = [float(loss) for loss in history.history["loss"]] + [float(final)]
    print("RESULT " + json.dumps({"backend": keras.backend.backend(), "losses": losses}))


if __name__ == "__main__":
    main()
