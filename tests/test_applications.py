"""`groco_core.applications`: the ResNets and U-Nets are exactly invariant / equivariant under
every group element (transforms written in `transforms.py`, all transformed inputs in one
forward pass), keep the sizes they promise, refuse what they cannot build, have the plain
network's parameters on P1, and survive save/load and export."""

from __future__ import annotations

import doctest
import math

import keras
import numpy as np
import pytest
from keras import ops
from transforms import act_on_grid

import groco_core
from groco_core import get_group
from groco_core.applications import GroupResNet18, GroupResNet34, GroupResNet50, GroupUNet

RESNETS = {18: GroupResNet18, 34: GroupResNet34, 50: GroupResNet50}
ON_JAX = keras.backend.backend() == "jax"
# JAX compiles a random draw for every new weight shape and every new network, seconds each
# on a CPU. Checks of what Keras builds the same on every backend (parameter counts, the
# docstrings' shapes) run on TensorFlow and torch.
SAME_ON_EVERY_BACKEND = pytest.mark.skipif(
    ON_JAX, reason="weight shapes do not depend on the backend; TensorFlow and torch check them"
)


@pytest.fixture(autouse=True)
def seeded_weights():
    """The same initial weights on every run: a narrow network whose ReLUs all happen to
    close would give zero outputs (caught by `assert_close`) on one draw in many."""
    keras.utils.set_random_seed(1234)


# (group, input shape): 2D on P4 and P4M, 3D on O and Oh, D4h on a non-cubic volume. The
# sizes meet both parities on the way down (14 → 7 → 4 → 2 → 1; 6 → 3 → 2 → 1; 5 → 3 → 2).
CASES = [
    ("P4", (14, 14, 2)),
    ("P4M", (13, 13, 1)),
    ("O", (6, 6, 6, 1)),
    ("Oh", (5, 5, 5, 1)),
    ("D4h", (5, 6, 6, 1)),
]


def transformed_batch(x: np.ndarray, group_name: str) -> np.ndarray:
    """`g·x` for every element g of the group, stacked along the batch axis (element-major)."""
    matrices = get_group(group_name).matrices
    spatial_axes = tuple(range(1, x.ndim - 1))
    return np.concatenate([act_on_grid(x, m, spatial_axes) for m in matrices], axis=0)


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The inference outputs: one compiled call on JAX (op by op, every op compiles), an eager
    call elsewhere (where tracing a graph costs more than it saves)."""
    if ON_JAX:
        return model.predict(x, batch_size=len(x), verbose=0)
    return ops.convert_to_numpy(model(x, training=False))


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal to float32 round-off, relative to the outputs' scale (which must not vanish)."""
    scale = float(np.max(np.abs(expected)))
    assert scale > 1e-6, "the outputs vanish: the comparison would prove nothing"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4 * scale)


def assert_responds(outputs: np.ndarray, other: np.ndarray) -> None:
    """The outputs for another input differ well beyond the tolerance: the network is not
    (near) constant, which would pass any invariance check."""
    scale = float(np.max(np.abs(outputs)))
    assert np.max(np.abs(outputs - other)) > 1e-2 * scale


def resnet_cases() -> list[tuple[int, str, tuple]]:
    """Every ResNet on every case; on JAX (see `ON_JAX`) ResNet-18 on every case and the
    deep ResNets on P4M: torch checks them all under every element, TensorFlow under a
    sample (`checked_elements`)."""
    cases = [(depth, group, shape) for depth in RESNETS for group, shape in CASES]
    if ON_JAX:
        cases = [case for case in cases if case[0] == 18 or case[1] == "P4M"]
    return cases


def checked_elements(group: str, depth: int, rank: int) -> np.ndarray:
    """Every element, except for the deep 3D ResNets on TensorFlow: the identity and five
    drawn once (torch checks every element of every case)."""
    order = get_group(group).order
    if rank == 2 or depth == 18 or keras.backend.backend() != "tensorflow":
        return np.arange(order)
    return np.concatenate([[0], np.random.default_rng(depth).choice(np.arange(1, order), 5)])


@pytest.mark.parametrize(("depth", "group", "shape"), resnet_cases())
def test_resnet_is_invariant_under_every_element(depth, group, shape, rng):
    model = RESNETS[depth](
        group=group, input_shape=shape, classes=3, classifier_activation=None, base_filters=2
    )
    x, other = rng.normal(size=(2, 1, *shape)).astype("float32")
    elements = checked_elements(group, depth, len(shape) - 1)
    outputs = predict(model, np.concatenate([other, transformed_batch(x, group)[elements]]))
    assert outputs.shape == (1 + len(elements), 3)
    assert_close(outputs[1:], np.broadcast_to(outputs[1:2], outputs[1:].shape))
    assert_responds(outputs[1], outputs[0])


@pytest.mark.parametrize(("group", "shape"), CASES)
def test_unet_is_equivariant_under_every_element_and_keeps_the_size(group, shape, rng):
    model = GroupUNet(
        group=group,
        input_shape=shape,
        classes=2,
        classifier_activation=None,
        base_filters=1,
        depth=3,
    )
    assert model.output_shape == (None, *shape[:-1], 2)
    x, other = rng.normal(size=(2, 1, *shape)).astype("float32")
    outputs = predict(model, np.concatenate([x, other, transformed_batch(x, group)]))
    # The image of g·x is g applied to the image of x.
    expected = transformed_batch(outputs[:1], group)
    assert_close(outputs[2:], expected)
    assert_responds(outputs[0], outputs[1])


@SAME_ON_EVERY_BACKEND
@pytest.mark.parametrize(
    ("size", "kernels", "final"),
    [
        (224, {"conv1": 8, "conv3_block1_1": 4, "conv5_block1_0": 2}, 7),
        (225, {"conv1": 7, "conv3_block1_1": 3, "conv5_block1_0": 1}, 8),
    ],
)
def test_resnet_stride_two_windows_take_the_parity_of_the_size(size, kernels, final):
    model = GroupResNet18(
        group="P4M", input_shape=(size, size, 3), include_top=False, base_filters=1
    )
    for name, kernel in kernels.items():
        assert model.get_layer(f"{name}_conv").kernel_size == (kernel, kernel)
    assert model.output_shape == (None, final, final, 8, 8)


@pytest.mark.parametrize("size", [17, 18])
def test_unet_output_has_the_input_size_at_full_depth(size):
    model = GroupUNet(group="P4M", input_shape=(size, size, 1), base_filters=1)
    assert model.output_shape == (None, size, size, 2)


def test_unet_without_top_returns_features_pooled_over_the_group_or_not():
    signal = GroupUNet(
        group="P4", input_shape=(8, 8, 1), include_top=False, base_filters=2, depth=2
    )
    pooled = GroupUNet(
        group="P4", input_shape=(8, 8, 1), include_top=False, pooling="max", base_filters=2, depth=2
    )
    assert signal.output_shape == (None, 8, 8, 4, 2)
    assert pooled.output_shape == (None, 8, 8, 2)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (
            {"group": "P4", "input_shape": (16, 12, 1)},
            ValueError,
            r"exchanges the spatial axes \[0, 1\].*Received: input shape \(16, 12, 1\).*"
            r"\(12, 12, 1\) or \(16, 16, 1\)",
        ),
        (
            {"group": "Oh", "input_shape": (8, 8, 6, 1)},
            ValueError,
            r"\(6, 6, 6, 1\) or \(8, 8, 8, 1\)",
        ),
        (
            {"group": "P4M", "input_shape": (None, None, 3)},
            ValueError,
            r"needs known positive spatial sizes.*Received: input shape \(None, None, 3\)",
        ),
        ({"group": "P4M"}, ValueError, r"needs the input's shape.*Received: input_shape=None"),
        (
            {"group": "O", "input_shape": (8, 8, 1)},
            ValueError,
            r"Received: input shape \(8, 8, 1\) \(2 spatial axes\) and group='O'",
        ),
        (
            {"group": "P6M", "input_shape": (9, 9, 1)},
            ValueError,
            r"square and cubic lattices.*Received: group='P6M'",
        ),
        (
            {"group": "P4M", "input_shape": (8, 8, 1), "weights": "imagenet"},
            ValueError,
            r"no pretrained weights.*Received: weights='imagenet'",
        ),
        (
            {"group": "P4M", "input_shape": (8, 8, 1), "pooling": "mean"},
            ValueError,
            r"Received: pooling='mean'",
        ),
        (
            {"group": "P4M", "input_shape": (8, 8, 1), "base_filters": 0},
            ValueError,
            r"Received: base_filters=0",
        ),
        (
            {"group": "P4M", "input_tensor": np.zeros((1, 8, 8, 1))},
            TypeError,
            r"input_tensor must be a Keras tensor.*Received: input_tensor of type ndarray",
        ),
    ],
)
@pytest.mark.parametrize("constructor", [GroupResNet18, GroupUNet])
def test_refused_arguments_name_the_value_and_what_works(constructor, arguments, error, message):
    with pytest.raises(error, match=message):
        constructor(**arguments)


# -- parameter counts against plain Keras networks built here ---------------------------------


def window(size: int, nominal: int) -> int:
    """A stride-2 window centred on `size` points: the nominal one, or one more."""
    return nominal + (size - nominal) % 2


def plain_resnet(depth: int, shape: tuple, base: int, classes: int) -> keras.Model:
    """Keras's ResNet layout from stock layers, each stride-2 window of the size's parity."""
    rank = len(shape) - 1
    conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv3D
    pool = keras.layers.MaxPooling2D if rank == 2 else keras.layers.MaxPooling3D
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]

    def unit(x, filters, kernel, strides=1, relu=True):
        x = conv(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        return keras.layers.ReLU()(x) if relu else x

    inputs = keras.Input(shape)
    size = shape[0]
    x = unit(inputs, base, window(size, 7), 2)
    size = math.ceil(size / 2)
    x = pool(window(size, 3), strides=2, padding="same")(x)
    size = math.ceil(size / 2)
    for stage, count in enumerate(blocks):
        filters = base * 2**stage
        for index in range(count):
            strides = 2 if stage > 0 and index == 0 else 1
            if depth == 50:
                width, first = 4 * filters, window(size, 1) if strides == 2 else 1
                needs_projection = strides == 2 or x.shape[-1] != width
                shortcut = unit(x, width, first, strides, False) if needs_projection else x
                y = unit(x, filters, first, strides)
                y = unit(y, filters, 3)
                y = unit(y, width, 1, relu=False)
            else:
                projection = window(size, 1) if strides == 2 else 1
                needs_projection = strides == 2 or x.shape[-1] != filters
                shortcut = unit(x, filters, projection, strides, False) if needs_projection else x
                y = unit(x, filters, window(size, 3) if strides == 2 else 3, strides)
                y = unit(y, filters, 3, relu=False)
            x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
            size = math.ceil(size / strides)
    pooled = (
        keras.layers.GlobalAveragePooling2D()
        if rank == 2
        else keras.layers.GlobalAveragePooling3D()
    )
    return keras.Model(inputs, keras.layers.Dense(classes)(pooled(x)))


def plain_unet(shape: tuple, base: int, classes: int, depth: int) -> keras.Model:
    """The U-Net from stock layers: pooling and up-convolutions of the size's parity."""
    rank = len(shape) - 1
    conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv3D
    up = keras.layers.Conv2DTranspose if rank == 2 else keras.layers.Conv3DTranspose
    pool = keras.layers.MaxPooling2D if rank == 2 else keras.layers.MaxPooling3D

    def level(x, filters):
        for _ in range(2):
            x = conv(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        return x

    inputs = keras.Input(shape)
    x, size, skips = inputs, shape[0], []
    for index in range(depth):
        x = level(x, base * 2**index)
        skips.append((x, size))
        x = pool(window(size, 2), strides=2, padding="same")(x)
        size = math.ceil(size / 2)
    x = level(x, base * 2**depth)
    for index in reversed(range(depth)):
        skip, size = skips[index]
        odd = size % 2
        x = up(
            base * 2**index, 2 + odd, strides=2, padding="same", output_padding=0 if odd else None
        )(x)
        x = level(keras.layers.Concatenate()([skip, x]), base * 2**index)
    return keras.Model(inputs, conv(classes, 1)(x))


@SAME_ON_EVERY_BACKEND
@pytest.mark.parametrize(
    ("depth", "shape"), [(18, (6, 6, 6, 1)), (34, (13, 13, 1)), (50, (14, 14, 3))]
)
def test_resnet_on_p1_has_the_plain_resnets_parameters(depth, shape):
    base = 2
    model = RESNETS[depth](
        group="P1" if len(shape) == 3 else "C1", input_shape=shape, classes=5, base_filters=base
    )
    plain = plain_resnet(depth, shape, base, 5)
    assert model.count_params() == plain.count_params()
    convolutions = [layer for layer in model.layers if "Conv" in type(layer).__name__]
    assert len(convolutions) == {18: 20, 34: 36, 50: 53}[depth]


@SAME_ON_EVERY_BACKEND
@pytest.mark.parametrize("shape", [(13, 13, 1), (6, 6, 6, 2)])
def test_unet_on_the_trivial_group_has_the_plain_unets_parameters(shape):
    trivial = "P1" if len(shape) == 3 else "C1"
    model = GroupUNet(group=trivial, input_shape=shape, classes=3, base_filters=2, depth=3)
    assert model.count_params() == plain_unet(shape, 2, 3, 3).count_params()


@SAME_ON_EVERY_BACKEND
@pytest.mark.parametrize(
    ("group", "constructor", "shape", "extra"),
    [
        ("P4M", GroupResNet18, (16, 16, 3), {}),
        ("Oh", GroupUNet, (8, 8, 8, 1), {"depth": 2}),
    ],
)
def test_parameter_matched_widths_are_within_ten_percent_of_the_plain_network(
    group, constructor, shape, extra
):
    trivial = "P1" if len(shape) == 3 else "C1"
    plain = constructor(group=trivial, input_shape=shape, classes=10, base_filters=64, **extra)
    matched = constructor(group=group, input_shape=shape, classes=10, **extra)
    ratio = matched.count_params() / plain.count_params()
    assert 0.9 <= ratio <= 1.1, ratio


# -- save/load and export ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constructor", "group", "shape"),
    [(GroupResNet18, "P4M", (9, 9, 2)), (GroupUNet, "O", (5, 5, 5, 1))],
)
def test_save_load_and_export_give_the_same_outputs(constructor, group, shape, tmp_path, rng):
    extra = {"depth": 2} if constructor is GroupUNet else {}
    model = constructor(group=group, input_shape=shape, classes=3, base_filters=1, **extra)
    x = rng.normal(size=(2, *shape)).astype("float32")
    expected = predict(model, x)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert_close(predict(loaded, x), expected)
    exported = groco_core.export(model)
    assert all(type(layer).__module__.startswith("keras") for layer in exported.layers)
    assert_close(predict(exported, x), expected)


def test_input_tensor_builds_on_the_given_input():
    inputs = keras.Input((8, 8, 1))
    model = GroupResNet18(
        group="P4", input_tensor=inputs, include_top=False, pooling="avg", base_filters=1
    )
    assert model.inputs[0] is inputs
    assert model.output_shape == (None, 8)


@SAME_ON_EVERY_BACKEND
def test_docstring_examples_run():
    from groco_core.applications import building, resnet, unet

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for module in (building, resnet, unet):
        for test in finder.find(module, module.__name__, globs=dict(vars(module))):
            examples += len(test.examples)
            runner.run(test)
    assert examples >= 8
    assert runner.summarize(verbose=False).failed == 0
