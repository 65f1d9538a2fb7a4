"""Group-equivariant ResNets (He et al. 2016): ResNet-18 and -34 of basic blocks, ResNet-50 of
bottleneck blocks, shaped like `keras.applications.ResNet50`.

The layout is the plain network's: a 7×7 stride-2 lifting stem, a 3×3 stride-2 max pooling,
four stages of blocks whose first block (after the first stage) halves the size, and an
invariant head. Every convolution is a group convolution followed by group batch
normalization and ReLU; on `group="P1"` this is the ordinary ResNet. Each stride-2 window
takes the parity of the size it meets (`building.stride_two_window`: 7 → 8, 3 → 4, 1 → 2 on
even sizes), so the network is exactly equivariant on every size it accepts.
"""

from __future__ import annotations

from typing import Any

import keras

from groco_core.applications import building
from groco_core.applications.building import Setup, conv_bn
from groco_core.groups import PointGroup

# Blocks per stage: ResNet-18 and -34 of basic blocks, ResNet-50 of bottlenecks.
STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
BOTTLENECK_EXPANSION = 4


def basic_block(
    net: Setup, x: Any, spatial: tuple, filters: int, downsample: bool, name: str
) -> tuple[Any, tuple]:
    """Two 3×3 convolutions and the shortcut (a 1×1 convolution where the size or the width
    changes). Returns the output and its spatial size."""
    strides = 2 if downsample else 1
    kernel = building.windows(spatial, 3) if downsample else 3
    if downsample or x.shape[-1] != filters:
        shortcut_kernel = building.windows(spatial, 1) if downsample else 1
        shortcut = conv_bn(net, x, filters, shortcut_kernel, f"{name}_0", strides, relu=False)
    else:
        shortcut = x
    x = conv_bn(net, x, filters, kernel, f"{name}_1", strides)
    x = conv_bn(net, x, filters, 3, f"{name}_2", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    x = keras.layers.Activation("relu", name=f"{name}_out")(x)
    return x, building.halved(spatial) if downsample else spatial


def bottleneck_block(
    net: Setup, x: Any, spatial: tuple, filters: int, downsample: bool, name: str
) -> tuple[Any, tuple]:
    """1×1, 3×3 and 1×1 convolutions to `4·filters`, and the shortcut; as in Keras's ResNet-50
    the stride sits on the first 1×1 convolution (a 2×2 one on even sizes)."""
    strides = 2 if downsample else 1
    kernel = building.windows(spatial, 1) if downsample else 1
    width = BOTTLENECK_EXPANSION * filters
    if downsample or x.shape[-1] != width:
        shortcut = conv_bn(net, x, width, kernel, f"{name}_0", strides, relu=False)
    else:
        shortcut = x
    x = conv_bn(net, x, filters, kernel, f"{name}_1", strides)
    x = conv_bn(net, x, filters, 3, f"{name}_2")
    x = conv_bn(net, x, width, 1, f"{name}_3", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    x = keras.layers.Activation("relu", name=f"{name}_out")(x)
    return x, building.halved(spatial) if downsample else spatial


def group_resnet(
    depth: int,
    group: str | PointGroup,
    include_top: bool,
    weights: Any,
    input_tensor: Any,
    input_shape: tuple | None,
    pooling: str | None,
    classes: int,
    classifier_activation: Any,
    base_filters: int | None,
    name: str,
) -> keras.Model:
    """The ResNet of `depth` layers; see `GroupResNet18` for the arguments."""
    net = building.setup(
        name,
        group,
        input_shape,
        input_tensor,
        include_top,
        pooling,
        classes,
        base_filters,
        weights,
    )
    block = bottleneck_block if depth == 50 else basic_block
    x = conv_bn(net, net.inputs, net.base_filters, building.windows(net.spatial, 7), "conv1", 2)
    spatial = building.halved(net.spatial)
    x = net.layers.max_pooling(
        pool_size=building.windows(spatial, 3),
        strides=2,
        padding="same_equiv",
        group=net.group,
        name="pool1_pool",
    )(x)
    spatial = building.halved(spatial)
    for stage, blocks in enumerate(STAGES[depth]):
        filters = net.base_filters * 2**stage
        for index in range(blocks):
            downsample = stage > 0 and index == 0
            x, spatial = block(
                net, x, spatial, filters, downsample, f"conv{stage + 2}_block{index + 1}"
            )
    if include_top:
        x = net.layers.global_pooling["avg"](group=net.group, name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling is not None:
        x = net.layers.global_pooling[pooling](group=net.group, name=f"{pooling}_pool")(x)
    return keras.Model(building.source_inputs(net.inputs), x, name=name)


def GroupResNet18(  # noqa: N802 (named as keras.applications' constructors)
    group: str | PointGroup = "P4M",
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    base_filters: int | None = None,
    name: str = "group_resnet18",
) -> keras.Model:
    """A group-equivariant ResNet-18 (basic blocks, 2-2-2-2), 2D or 3D, invariant at the top.

    The same code builds the plain ResNet (`group="P1"`, `base_filters=64`), so the two
    compare like for like.

    Args:
        group: a point group (name or object) of a square (2D) or cubic (3D) lattice.
        include_top: end with global pooling over space and the group, then a Dense layer of
            `classes` (an invariant classifier).
        weights: None only: there are no pretrained weights.
        input_tensor: a Keras tensor to build on (e.g. `keras.Input(...)`).
        input_shape: `(height, width, channels)` or `(depth, height, width, channels)`, with
            known sizes, equal on the axes the group exchanges. Any size is accepted: each
            stride-2 window takes its parity.
        pooling: with `include_top=False`: None (the group signal `(batch, *spatial, |G|,
            channels)`), `"avg"` or `"max"` (global pooling over space and the group:
            invariant features `(batch, channels)`).
        classes: the classifier's outputs.
        classifier_activation: the classifier's activation (None: logits).
        base_filters: the first stage's width (doubled at every stage). None: the width
            whose parameter count is close to the plain ResNet's (64 / √|G|, at least 1).
        name: the model's name.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError / TypeError: for an argument or input shape the network cannot use,
            naming it, the value received and what works.

    Example:
        >>> model = GroupResNet18(group="P4", input_shape=(15, 15, 1), classes=3,
        ...                       base_filters=2)
        >>> model.output_shape
        (None, 3)
    """
    return group_resnet(18, **locals())


def GroupResNet34(  # noqa: N802
    group: str | PointGroup = "P4M",
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    base_filters: int | None = None,
    name: str = "group_resnet34",
) -> keras.Model:
    """A group-equivariant ResNet-34 (basic blocks, 3-4-6-3); arguments as `GroupResNet18`.

    Example:
        >>> model = GroupResNet34(group="P4M", input_shape=(8, 8, 3), include_top=False,
        ...                       pooling="max", base_filters=1)
        >>> model.output_shape
        (None, 8)
    """
    return group_resnet(34, **locals())


def GroupResNet50(  # noqa: N802
    group: str | PointGroup = "P4M",
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    base_filters: int | None = None,
    name: str = "group_resnet50",
) -> keras.Model:
    """A group-equivariant ResNet-50 (bottleneck blocks of width `4·filters`, 3-4-6-3: 53
    convolutions, as Keras's); arguments as `GroupResNet18`.

    Example:
        >>> model = GroupResNet50(group="O", input_shape=(4, 4, 4, 1), include_top=False,
        ...                       base_filters=1)
        >>> model.output_shape
        (None, 1, 1, 1, 24, 32)
    """
    return group_resnet(50, **locals())
