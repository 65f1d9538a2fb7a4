"""A group-equivariant U-Net (Ronneberger et al. 2015) for segmentation, 2D or 3D.

Each level has two 3×3 group convolutions (with group batch normalization and ReLU); the
encoder halves the size with a max pooling, the decoder doubles it back with a transposed
group convolution and concatenates the encoder's features of the same size. Every size
halves to `ceil(n / 2)` and comes back to exactly `n` (`building.upsampling_window`), so the
output has the input's spatial size for every input size, and every step is centred: the
network is exactly equivariant. The head is a 1×1 group convolution (a dense layer at every
point) pooled over the group axis: per-point class scores that turn with the input.
"""

from __future__ import annotations

from typing import Any

import keras

from groco_core.applications import building
from groco_core.applications.building import Setup, conv_bn
from groco_core.groups import PointGroup


def double_conv(net: Setup, x: Any, filters: int, name: str) -> Any:
    """The two 3×3 convolutions of one level."""
    x = conv_bn(net, x, filters, 3, f"{name}_1")
    return conv_bn(net, x, filters, 3, f"{name}_2")


def GroupUNet(  # noqa: N802 (named as keras.applications' constructors)
    group: str | PointGroup = "P4M",
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 2,
    classifier_activation: Any = "softmax",
    base_filters: int | None = None,
    depth: int = 4,
    name: str = "group_unet",
) -> keras.Model:
    """A group-equivariant U-Net: per-point classes, of the input's spatial size.

    The same code builds the plain U-Net (`group="P1"`, `base_filters=64`).

    Args:
        group: a point group (name or object) of a square (2D) or cubic (3D) lattice.
        include_top: end with a 1×1 group convolution to `classes` pooled over the group
            axis (average, or maximum with `pooling="max"`) and `classifier_activation`:
            `(batch, *spatial, classes)`.
        weights: None only: there are no pretrained weights.
        input_tensor: a Keras tensor to build on (e.g. `keras.Input(...)`).
        input_shape: `(height, width, channels)` or `(depth, height, width, channels)`, with
            known sizes, equal on the axes the group exchanges. Any size is accepted.
        pooling: how the group axis is pooled: `"avg"` or `"max"` (the head's; without the
            head, the features `(batch, *spatial, base_filters)`), or None (the head
            averages; without it the group signal `(batch, *spatial, |G|, base_filters)`).
        classes: classes per point.
        classifier_activation: the head's activation (None: logits).
        base_filters: the first level's width (doubled at every level). None: the width
            whose parameter count is close to the plain U-Net's (64 / √|G|, at least 1).
        depth: the number of halvings (4 in the original U-Net).
        name: the model's name.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError / TypeError: for an argument or input shape the network cannot use,
            naming it, the value received and what works.

    Example:
        >>> model = GroupUNet(group="Oh", input_shape=(5, 5, 5, 1), classes=2,
        ...                   base_filters=1, depth=2)
        >>> model.output_shape
        (None, 5, 5, 5, 2)
    """
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
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(
            f"depth must be a positive int (the number of halvings). Received: depth={depth!r}."
        )
    x, spatial = net.inputs, net.spatial
    skips = []
    for level in range(depth):
        x = double_conv(net, x, net.base_filters * 2**level, f"down{level + 1}")
        skips.append((x, spatial))
        x = net.layers.max_pooling(
            pool_size=building.windows(spatial, 2),
            strides=2,
            padding="same_equiv",
            group=net.group,
            name=f"down{level + 1}_pool",
        )(x)
        spatial = building.halved(spatial)
    x = double_conv(net, x, net.base_filters * 2**depth, "bottom")
    for level in reversed(range(depth)):
        skip, spatial = skips[level]
        kernel_size, output_padding = building.upsampling_window(spatial)
        x = net.layers.conv_transpose(
            net.base_filters * 2**level,
            kernel_size,
            strides=2,
            padding="same_equiv",
            output_padding=output_padding,
            group=net.group,
            name=f"up{level + 1}_upsample",
        )(x)
        x = keras.layers.Concatenate(name=f"up{level + 1}_concat")([skip, x])
        x = double_conv(net, x, net.base_filters * 2**level, f"up{level + 1}")
    if include_top:
        x = net.layers.conv(classes, 1, group=net.group, name="head_conv")(x)
        x = building.pool_over_group(net, x, pooling or "avg", "head")
        x = keras.layers.Activation(classifier_activation, name="predictions")(x)
    elif pooling is not None:
        x = building.pool_over_group(net, x, pooling, "features")
    return keras.Model(building.source_inputs(net.inputs), x, name=name)
