"""`export_plain` of the depthwise group convolution, with stock Keras layers only.

2D: `DepthwiseConv2D`. 3D: Keras has no `DepthwiseConv3D`; a `Conv3D` with `groups` equal
to its input channels and `depth_multiplier` filters per group is exactly a depthwise 3D
convolution (the same channel order), so that is what the export uses.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.toolkit import (
    plain_activation,
    plain_fixed_dense,
    plain_known_paddings,
    plain_merge_group_axis,
    plain_pad_spatial,
    plain_selection_kernel,
    plain_swap_last_axes,
    plain_to_channels_first,
    plain_to_channels_last,
)


def plain_depthwise_layer(
    rank: int, kernel_size: tuple[int, ...], channels: int, multiplier: int, **kwargs: Any
) -> keras.layers.Layer:
    """A stock depthwise convolution: `DepthwiseConv1D/2D`, or a grouped `Conv3D`."""
    if rank <= 2:
        layer = getattr(keras.layers, f"DepthwiseConv{rank}D")
        return layer(kernel_size, depth_multiplier=multiplier, **kwargs)
    return keras.layers.Conv3D(channels * multiplier, kernel_size, groups=channels, **kwargs)


def plain_depthwise_kernel(rank: int, kernel: np.ndarray) -> np.ndarray:
    """The depthwise kernel `(*k, C, M)` in the layout of `plain_depthwise_layer`."""
    if rank <= 2:
        return kernel
    return kernel.reshape(*kernel.shape[:rank], 1, -1)


def export_depthwise_group_conv(layer: Any, inputs: Any) -> Any:
    """`export_plain` of `BaseDepthwiseGroupConv`: subgroup selection (a fixed Dense), padding,
    one stock depthwise convolution, reshape (and, when lifting, a Permute).

    Args:
        layer: a built `DepthwiseGroupConv2D/3D`.
        inputs: the layer's symbolic input.

    Returns:
        The symbolic output, equal to `layer(inputs)`.
    """
    rank = layer.rank
    elements = len(layer.output_elements)
    x = plain_to_channels_last(layer, inputs)
    if not layer.lifting:
        if layer.input_elements is not None:
            x = plain_swap_last_axes(x, f"{layer.name}_group_last")
            kernel = plain_selection_kernel(layer.input_elements, layer.group.order)
            x = plain_fixed_dense(x, kernel, f"{layer.name}_select_subgroup")
            x = plain_swap_last_axes(x, f"{layer.name}_channels_last_again")
        x = plain_merge_group_axis(layer, x)
    spatial = tuple(x.shape[1 : 1 + rank])
    paddings = plain_known_paddings(layer, layer.padding_rule.paddings(spatial))
    x = plain_pad_spatial(x, paddings, f"{layer.name}_pad")
    kernel = ops.convert_to_numpy(layer.transformed_kernel())
    channels, multiplier = kernel.shape[-2:]
    conv = plain_depthwise_layer(
        rank,
        layer.kernel_size,
        channels,
        multiplier,
        strides=layer.strides,
        padding="valid",
        data_format="channels_last",
        dilation_rate=layer.dilation_rate,
        use_bias=layer.use_bias,
        name=f"{layer.name}_depthwise",
    )
    x = conv(x)
    weights = [plain_depthwise_kernel(rank, kernel)]
    if layer.use_bias:
        bias = ops.convert_to_numpy(layer.bias).reshape(layer.in_channels, 1, -1)
        if layer.lifting:  # plain channel c·|H|·M + h·M + m
            shape = (layer.in_channels, elements, bias.shape[-1])
            weights.append(np.broadcast_to(bias, shape).reshape(-1))
        else:  # plain channel h·C·M + c·M + m
            weights.append(np.tile(bias.reshape(-1), elements))
    conv.set_weights(weights)
    spatial = tuple(x.shape[1:-1])
    if layer.lifting:
        # channel c·|H|·M + h·M + m → (h, c·M + m)
        x = keras.layers.Reshape(
            (*spatial, layer.in_channels, elements, layer.depth_multiplier),
            name=f"{layer.name}_split",
        )(x)
        dims = (*range(1, rank + 1), rank + 2, rank + 1, rank + 3)
        x = keras.layers.Permute(dims, name=f"{layer.name}_group_first")(x)
    x = keras.layers.Reshape(
        (*spatial, elements, layer.output_channels), name=f"{layer.name}_split_group"
    )(x)
    x = plain_activation(layer, x)
    return plain_to_channels_first(layer, x)
