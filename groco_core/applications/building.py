"""What the reference architectures share: their arguments, the plan of their spatial sizes,
the layers of the right rank, and the blocks and heads they are made of.

Every stride-2 step (a strided convolution or pooling) takes a window of the parity of the
size it meets: the nominal window (7, 3 or 1 for a convolution, 3 or 2 for a pooling) when
the size has its parity, one point more otherwise. The output grid is then centred on the
input grid (docs/designing.md) and has `ceil(n / 2)` points, as Keras's `"same"` would give,
on every size; upsampling reverses it exactly (`upsampling_window`). The plan is made when
the network is built, so the spatial sizes must be known then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from groco_core import layers as group_layers
from groco_core.groups import PointGroup
from groco_core.registry import get_group, subgroups_of

# The plain networks' widths: ResNet's and U-Net's first stage has 64 filters.
PLAIN_BASE_FILTERS = 64
POOLINGS = (None, "avg", "max")


@dataclass(frozen=True)
class Ranked:
    """The layer classes of one rank (2D or 3D)."""

    conv: type
    conv_transpose: type
    max_pooling: type
    average_pooling: type
    global_pooling: dict[str, type]


def ranked_layers(rank: int) -> Ranked:
    """The group layers for `rank` spatial axes."""
    suffix = f"{rank}D"
    return Ranked(
        conv=getattr(group_layers, f"GroupConv{suffix}"),
        conv_transpose=getattr(group_layers, f"GroupConv{suffix}Transpose"),
        max_pooling=getattr(group_layers, f"GroupMaxPooling{suffix}"),
        average_pooling=getattr(group_layers, f"GroupAveragePooling{suffix}"),
        global_pooling={
            "avg": getattr(group_layers, f"GlobalGroupAveragePooling{suffix}"),
            "max": getattr(group_layers, f"GlobalGroupMaxPooling{suffix}"),
        },
    )


@dataclass(frozen=True)
class Setup:
    """A network's checked arguments: its group, input, spatial sizes, widths and layers."""

    group: PointGroup
    inputs: Any
    spatial: tuple[int, ...]
    base_filters: int
    layers: Ranked


def setup(
    model_name: str,
    group: str | PointGroup,
    input_shape: tuple | None,
    input_tensor: Any,
    include_top: bool,
    pooling: str | None,
    classes: int,
    base_filters: int | None,
    weights: Any,
) -> Setup:
    """Checks the arguments every application takes and makes its input.

    Raises:
        ValueError / TypeError: naming the argument, the value received and the fix.
    """
    if weights is not None:
        raise ValueError(
            f"{model_name} has no pretrained weights: it is built with random initial weights "
            f"only. Received: weights={weights!r}. Pass weights=None and train the model, or "
            "load your own with model.load_weights(path)."
        )
    if pooling not in POOLINGS:
        raise ValueError(
            f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}. Use "
            "pooling='avg' for an average over the pooled axes."
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(
            f"classes must be a positive int, e.g. classes=10. Received: classes={classes!r}."
        )
    if not isinstance(include_top, bool):
        raise TypeError(
            f"include_top must be True or False. Received: include_top={include_top!r}."
        )
    group = get_group(group)
    check_lattice(model_name, group)
    inputs, shape = model_input(model_name, input_shape, input_tensor)
    rank = len(shape) - 1
    if rank != group.dimension or rank not in (2, 3):
        raise ValueError(
            f"{model_name} takes images (height, width, channels) with a group acting on 2 "
            "dimensions, or volumes (depth, height, width, channels) with a group acting on 3. "
            f"Received: input shape {shape} ({rank} spatial axes) and group={group.name!r} "
            f"(dimension {group.dimension}). Use an input with {group.dimension} spatial axes "
            f"and a channel axis, or a group of dimension {rank} (`groco list-groups "
            f"--dimension {rank}`)."
        )
    spatial = tuple(shape[:-1])
    check_spatial(model_name, group, spatial, shape)
    if base_filters is None:
        base_filters = parameter_matched_filters(group)
    elif isinstance(base_filters, bool) or not isinstance(base_filters, int) or base_filters < 1:
        raise ValueError(
            f"base_filters must be a positive int, or None for the widths whose parameter count "
            f"is close to the plain network's. Received: base_filters={base_filters!r}."
        )
    return Setup(group, inputs, spatial, base_filters, ranked_layers(rank))


def parameter_matched_filters(group: PointGroup) -> int:
    """The first stage's width whose group network has about the plain network's parameters.

    A group convolution between `c` fields on a group of order `|G|` has `|G|·c²` weights per
    kernel point against `c²` for a plain one, so `c = 64 / √|G|` matches the plain network's
    64; the lifting layer and the head, linear in `c`, are a small remainder.

    Example:
        >>> from groco_core import get_group
        >>> parameter_matched_filters(get_group("P4")), parameter_matched_filters(get_group("Oh"))
        (32, 9)
    """
    return max(1, round(PLAIN_BASE_FILTERS / math.sqrt(group.order)))


def check_lattice(model_name: str, group: PointGroup) -> None:
    """Refuses a group whose matrices are not signed permutations (e.g. the hexagonal
    lattice's turns): there an even grid has no centre point and even windows are not
    lattice-symmetric, so the size plan of these networks cannot hold."""
    matrices = np.abs(np.asarray(group.matrices))
    if np.all(matrices.sum(axis=-2) == 1) and np.all(matrices <= 1):
        return
    raise ValueError(
        f"{model_name} is built for square and cubic lattices, whose groups map every centred "
        f"grid onto itself; group {group.name} ({group.lattice} lattice) needs odd sizes and "
        f"odd windows throughout. Received: group={group.name!r}. Build the network from the "
        "group layers with strided odd kernels (docs/designing.md), or use a square or cubic "
        "group."
    )


def model_input(model_name: str, input_shape: tuple | None, input_tensor: Any) -> tuple:
    """`(the input tensor, its shape without the batch axis)`."""
    if input_tensor is None:
        if input_shape is None:
            raise ValueError(
                f"{model_name} needs the input's shape: it picks every stride-2 window by the "
                "parity of the size it meets. Received: input_shape=None and "
                "input_tensor=None. Pass input_shape=(height, width, channels), e.g. "
                "(32, 32, 3), or (depth, height, width, channels) for volumes."
            )
        shape = tuple(input_shape)
        return keras.Input(shape), shape
    if not keras.backend.is_keras_tensor(input_tensor):
        raise TypeError(
            "input_tensor must be a Keras tensor, e.g. keras.Input((32, 32, 3)). Received: "
            f"input_tensor of type {type(input_tensor).__name__}."
        )
    shape = tuple(input_tensor.shape[1:])
    if input_shape is not None and tuple(input_shape) != shape:
        raise ValueError(
            f"input_shape and input_tensor disagree. Received: input_shape={tuple(input_shape)} "
            f"and input_tensor of shape {shape}. Pass only input_tensor."
        )
    return input_tensor, shape


def check_spatial(model_name: str, group: PointGroup, spatial: tuple, shape: tuple) -> None:
    """Refuses unknown spatial sizes, and different sizes on axes the group exchanges (a
    turn maps such an input onto another shape), naming the shapes that work."""
    if any(n is None or not isinstance(n, int) or n < 1 for n in spatial):
        raise ValueError(
            f"{model_name} needs known positive spatial sizes: each stride-2 window is chosen "
            f"by the parity of the size it meets. Received: input shape {shape}. Give every "
            "spatial size, e.g. (32, 32, 3)."
        )
    exchanges = np.any(np.asarray(group.matrices) != 0, axis=0)  # axis j reaches axis i
    for axis in range(len(spatial)):
        orbit = [other for other in range(len(spatial)) if exchanges[axis, other]]
        sizes = sorted({spatial[other] for other in orbit})
        if len(sizes) == 1:
            continue
        options = " or ".join(
            str(tuple(size if i in orbit else n for i, n in enumerate(shape)))
            for size in (sizes[0], sizes[-1])
        )
        raise ValueError(
            f"{model_name}: group {group.name} exchanges the spatial axes {orbit}, so their "
            "sizes must be equal for the network to be equivariant (a turn would map the "
            f"input onto another shape). Received: input shape {shape}. The nearest shapes "
            f"that work: {options}."
        )


def stride_two_window(size: int, nominal: int) -> int:
    """The window a stride-2 step takes on `size` points: `nominal` when the two have the same
    parity, `nominal + 1` otherwise, so that the output grid is centred on the input grid.

    Example:
        >>> stride_two_window(32, 3), stride_two_window(31, 3), stride_two_window(224, 7)
        (4, 3, 8)
    """
    return nominal if (size - nominal) % 2 == 0 else nominal + 1


def halved(spatial: tuple[int, ...]) -> tuple[int, ...]:
    """The sizes after a stride-2 step with `stride_two_window` and `"same_equiv"` padding."""
    return tuple((n + 1) // 2 for n in spatial)


def upsampling_window(spatial: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`(kernel_size, output_padding)` of the stride-2 transposed convolution (with
    `"same_equiv"` padding) that maps `halved(spatial)` back onto `spatial`: kernel 2 with
    output padding 1 doubles an axis (`m → 2m`), kernel 3 with output padding 0 gives
    `m → 2m − 1`; both crop the full transposed output equally on both sides.

    Example:
        >>> upsampling_window((16, 15))
        ((2, 3), (1, 0))
    """
    kernel = tuple(2 if n % 2 == 0 else 3 for n in spatial)
    return kernel, tuple(1 if n % 2 == 0 else 0 for n in spatial)


def windows(spatial: tuple[int, ...], nominal: int) -> tuple[int, ...]:
    """`stride_two_window` of every axis."""
    return tuple(stride_two_window(n, nominal) for n in spatial)


def conv_bn(
    net: Setup,
    x: Any,
    filters: int,
    kernel_size: int | tuple[int, ...],
    name: str,
    strides: int = 1,
    relu: bool = True,
) -> Any:
    """A group convolution without bias (lifting, on an image), group batch normalization
    and, unless `relu=False`, ReLU: the unit ResNets and U-Nets are made of."""
    x = net.layers.conv(
        filters,
        kernel_size,
        strides=strides,
        padding="same_equiv",
        use_bias=False,
        group=net.group,
        name=f"{name}_conv",
    )(x)
    x = group_layers.GroupBatchNormalization(epsilon=1.001e-5, group=net.group, name=f"{name}_bn")(
        x
    )
    if relu:
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def pool_over_group(net: Setup, x: Any, mode: str, name: str) -> Any:
    """Averages (`"avg"`) or maxima (`"max"`) over the group axis at every point: an image
    `(batch, *spatial, channels)` that turns with the input (equivariant, invariant along the
    group axis)."""
    if net.group.order > 1:
        trivial = next(
            name for name, members in subgroups_of(net.group).items() if len(members) == 1
        )
        pooling = net.layers.max_pooling if mode == "max" else net.layers.average_pooling
        x = pooling(pool_size=1, group=net.group, subgroup=trivial, name=f"{name}_pool")(x)
    return keras.layers.Reshape((*x.shape[1:-2], x.shape[-1]), name=f"{name}_squeeze")(x)


def source_inputs(inputs: Any) -> Any:
    """The model inputs behind `inputs` (an `input_tensor` may come out of other layers)."""
    found = keras.utils.get_source_inputs(inputs)
    return found[0] if len(found) == 1 else found
