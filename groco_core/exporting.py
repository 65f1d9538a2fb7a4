"""Export: an equivalent model made of stock Keras layers only, kernels pre-transformed.

The exported model runs without any group machinery (no gather at call time) and loads where
groco is not installed. Every groco layer implements `export_plain(inputs)`: given the
symbolic input of the layer, it returns the output computed with stock `keras.layers` only.
The helpers here (`to_channels_last`, `plain_merge_group_axis`, ...) are shared by those methods.

Example:
    >>> import keras
    >>> from groco_core import GroupConv2D
    >>> from groco_core import export
    >>> inputs = keras.Input((9, 9, 3))
    >>> model = keras.Model(inputs, GroupConv2D(4, 3, group="P4M")(inputs))
    >>> plain = export(model)
    >>> sorted({type(layer).__module__.split(".")[0] for layer in plain.layers})
    ['keras']
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.group_layer import GroupLayer


def _is_groco_layer(layer: Any) -> bool:
    """Whether `export` replaces `layer`: a layer of a groco package or any `GroupLayer`."""
    return type(layer).__module__.split(".")[0].startswith("groco") or isinstance(layer, GroupLayer)


class _Copies:
    """The copies `clone_model` calls in place of a model's stock layers: one per layer, however
    often it is called (a shared layer stays shared), given the original's weights when its
    first call has built it."""

    def __init__(self) -> None:
        self._clones: dict[int, Any] = {}  # id(original) -> copy
        self._originals: dict[int, Any] = {}  # id(copy) -> original
        self._unweighted: set[int] = set()

    def clone(self, layer: Any) -> Any:
        if id(layer) not in self._clones:
            copy = type(layer).from_config(layer.get_config())
            self._clones[id(layer)] = copy
            self._originals[id(copy)] = layer
            self._unweighted.add(id(copy))
        return self._clones[id(layer)]

    def original(self, layer: Any) -> Any:
        """The layer `layer` copies (`layer` itself when it is no copy)."""
        return self._originals.get(id(layer), layer)

    def call(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        outputs = layer(*args, **kwargs)
        if id(layer) in self._unweighted:
            self._unweighted.discard(id(layer))
            layer.set_weights(self.original(layer).get_weights())
        return outputs


def export(model: keras.Model, input_shape: tuple[int | None, ...] | None = None) -> keras.Model:
    """An equivalent functional model made only of stock Keras layers.

    Groco layers are replaced by what their `export_plain` builds (kernels transformed once,
    biases tiled over the group); other layers are cloned with their weights. The result
    gives the same outputs (to float32 round-off), saves to `.keras`, and loads with plain
    Keras.

    Inputs of unknown spatial size export where every layer's padding is known without the
    size (stride 1) and Keras's `Reshape` can follow (at most one unknown axis: any 1D
    model, or one free axis in 2D/3D). Otherwise pass `input_shape` to export for one size.

    Args:
        model: a built Sequential or functional model (nested models are exported too).
        input_shape: the shape, without the batch axis, of the exported model's input (one
            input); default the model's own. Use it to export a model built on unknown
            sizes (`keras.Input((None, None, 3))`) for the size it will be deployed at.

    Returns:
        A new functional `keras.Model` with the same inputs and outputs.

    Raises:
        TypeError: when `model` is not a Keras model, is a subclassed model, or a groco layer
            has no `export_plain`.
        ValueError: when `model` is a Sequential model without a known input, or a groco
            layer is shared (called more than once).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"export takes a keras.Model. Received: model of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential):
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError):
            inputs = outputs = None
        if not inputs:
            raise ValueError(
                f"export needs a Sequential model that knows its input shape. Received: "
                f"model={model.name!r}, which has no defined input. Start it with "
                "keras.Input(shape) or build it by calling it on data."
            )
        if len(inputs) == 1 and len(outputs) == 1:
            inputs, outputs = inputs[0], outputs[0]
        model = keras.Model(inputs, outputs, name=model.name)
    elif not isinstance(getattr(model, "inputs", None), list):
        raise TypeError(
            f"export needs a functional or Sequential model: it follows the model's graph of "
            f"layers, and a subclassed model's `call` has none. Received: model {model.name!r} "
            f"of class {type(model).__name__}. Build the same layers as a functional model "
            "(keras.Model(inputs, outputs)) or a keras.Sequential, copy the weights over with "
            "set_weights, and export that."
        )

    copies = _Copies()
    exported: set[int] = set()

    def clone_function(layer: Any) -> Any:
        if _is_groco_layer(layer) or not isinstance(layer, keras.layers.Layer):
            return layer  # groco layers are replaced at call time; keras ops are stateless
        if isinstance(layer, keras.Model):
            return export(layer)
        return copies.clone(layer)

    def call_function(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_groco_layer(layer):
            if not hasattr(layer, "export_plain"):
                raise TypeError(
                    f"Layer {layer.name!r} of class {type(layer).__name__} has no "
                    "export_plain method, so export cannot replace it with stock Keras "
                    "layers. Implement export_plain(self, inputs) on that class."
                )
            if id(layer) in exported:
                raise ValueError(
                    f"export does not support a groco layer called more than once. Received: "
                    f"layer {layer.name!r}, shared between several calls. Use one layer per "
                    "call."
                )
            exported.add(id(layer))
            return layer.export_plain(args[0])
        return copies.call(layer, *args, **kwargs)

    input_tensors = None
    if input_shape is not None:
        if len(model.inputs) != 1 or len(tuple(input_shape)) != len(model.inputs[0].shape) - 1:
            raise ValueError(
                "input_shape must be the shape, without the batch axis, of the model's one "
                f"input, of rank {len(model.inputs[0].shape) - 1}. Received: "
                f"input_shape={input_shape!r} for a model with inputs "
                f"{[tuple(t.shape) for t in model.inputs]}"
            )
        input_tensors = keras.Input(tuple(input_shape), dtype=model.inputs[0].dtype)
    replaced = keras.models.clone_model(
        model,
        input_tensors=input_tensors,
        clone_function=clone_function,
        call_function=call_function,
    )
    return merged_layouts(replaced)


# -- one channel layout between exported layers -----------------------------------------------

# Activations that act on each entry alone, so on any layout of the same entries.
_ELEMENTWISE_ACTIVATIONS = (
    "celu elu exponential gelu hard_sigmoid hard_silu hard_swish hard_tanh leaky_relu linear "
    "log_sigmoid mish relu relu6 selu sigmoid silu softplus softsign sparse_plus squareplus "
    "swish tanh tanh_shrink"
).split()
_MERGE_LAYERS = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)


def _is_elementwise(layer: Any) -> bool:
    """Whether `layer` maps each entry of its one input alone (an elementwise activation)."""
    if isinstance(layer, keras.layers.ReLU | keras.layers.LeakyReLU | keras.layers.ELU):
        return True
    if type(layer) is not keras.layers.Activation:
        return False
    return any(
        layer.activation is getattr(keras.activations, name, None)
        for name in _ELEMENTWISE_ACTIVATIONS
    )


def _reshape_target(shape: tuple) -> tuple | None:
    """A Reshape target for a tensor of (batch-less) `shape`: -1 for its one unknown axis;
    None when more than one axis is unknown (Keras's Reshape cannot express it)."""
    if sum(n is None for n in shape) > 1:
        return None
    return tuple(-1 if n is None else int(n) for n in shape)


def merged_layouts(model: keras.Model) -> keras.Model:
    """`model` (of stock layers) with the group axis left merged into the channels between
    layers: the same function, without the `Reshape` pairs `export_plain` writes around
    each layer.

    Every group layer's export takes `(…, |G|, C)`, reshapes it to the `(…, |G|·C)` its
    plain convolution or pooling reads, and reshapes its output back. This pass follows the
    reshaped tensors instead: a `Reshape` of a reshaped tensor reshapes the original once (or
    not at all where the shapes agree), elementwise activations and merge layers (`Add`, …)
    act on the merged tensor, and a `BatchNormalization` over the channel axis acts on the
    merged channels with its statistics tiled over the group (the same map at inference,
    which is what an exported model is for). A `Reshape` is written only where a layer reads
    the split layout, and Keras drops the ones nothing reads; so consecutive group layers
    exchange merged tensors, as in the same network written with stock layers by hand.
    """
    merged: dict[int, tuple[Any, Any]] = {}  # id(tensor) -> (tensor, the tensor it reshapes)

    def source(tensor: Any) -> Any:
        found = merged.get(id(tensor))
        return tensor if found is None or found[0] is not tensor else found[1]

    def viewed(tensor: Any, reshaped_from: Any) -> Any:
        merged[id(tensor)] = (tensor, reshaped_from)
        return tensor

    def as_shape_of(view: Any, tensor: Any) -> Any:
        """`tensor` reshaped to `view`'s shape, remembering that it reshapes `tensor`."""
        target = _reshape_target(tuple(view.shape[1:]))
        return viewed(keras.layers.Reshape(target)(tensor), tensor)

    copies = _Copies()
    group_means: dict[int, tuple[Any, Any, int]] = {}  # id(mean) -> (mean, pooled, |G|)

    def call_function(layer: Any, *args: Any, **kwargs: Any) -> Any:
        inputs = args[0] if args else None
        if len(args) != 1 or any(value is not None for value in kwargs.values()):
            return copies.call(layer, *args, **kwargs)
        found = group_means.get(id(inputs))
        if found is not None and found[0] is inputs:
            folded = _dense_on_group_mean(copies.original(layer), layer, found[1], found[2])
            if folded is not None:
                return folded
        if type(layer) is keras.layers.GlobalAveragePooling1D:
            pooled = _pooled_over_space(layer, inputs, source(inputs))
            if pooled is not None:
                order = pooled.shape[-1] // inputs.shape[-1]
                split = keras.layers.Reshape((order, inputs.shape[-1]))(pooled)
                mean = copies.call(layer, split)
                group_means[id(mean)] = (mean, pooled, order)
                return mean
        if isinstance(layer, keras.layers.Reshape) and not isinstance(inputs, list | tuple):
            base = source(inputs)
            shape = tuple(layer.compute_output_shape(base.shape)[1:])
            target = _reshape_target(shape)
            if target is None:
                return copies.call(layer, inputs)
            if tuple(base.shape[1:]) == shape:
                return base
            return viewed(keras.layers.Reshape(target, name=layer.name)(base), base)
        if isinstance(inputs, list | tuple):
            bases = [source(t) for t in inputs]
            same = (
                type(layer) in _MERGE_LAYERS
                and all(b is not t for b, t in zip(bases, inputs, strict=True))
                and len({tuple(b.shape) for b in bases}) == 1
                and len({tuple(t.shape) for t in inputs}) == 1
                and _reshape_target(tuple(inputs[0].shape[1:])) is not None
            )
            if not same:
                return copies.call(layer, *args)
            return as_shape_of(inputs[0], copies.call(layer, bases))
        base = source(inputs)
        if base is inputs or _reshape_target(tuple(inputs.shape[1:])) is None:
            return copies.call(layer, inputs)
        if _is_elementwise(layer):
            return as_shape_of(inputs, copies.call(layer, base))
        tiled = _tiled_batch_normalization(copies.original(layer), inputs, base)
        if tiled is not None:
            return as_shape_of(inputs, tiled)
        return copies.call(layer, inputs)

    def clone_function(layer: Any) -> Any:
        return layer if isinstance(layer, keras.Model) else copies.clone(layer)  # nested: done

    return keras.models.clone_model(
        model, clone_function=clone_function, call_function=call_function
    )


def _pooled_over_space(layer: Any, view: Any, base: Any) -> Any:
    """`base` `(batch, *spatial, |G|·C)` averaged over its spatial axes by a stock global
    pooling, where `layer` (a GlobalAveragePooling1D) averages `view`, `base` reshaped to
    `(batch, points·|G|, C)`: the same mean, taken over space first and over the group after,
    so that a Dense after it can take the group's mean into its kernel
    (`_dense_on_group_mean`). None where the layer or the shapes are not of that form."""
    rank = len(base.shape) - 2
    if base is view or layer.data_format != "channels_last" or layer.keepdims:
        return None
    if rank not in (1, 2, 3) or len(view.shape) != 3 or None in base.shape[1:]:
        return None
    channels, merged = view.shape[-1], base.shape[-1]
    points = int(np.prod(base.shape[1:-1]))
    if merged % channels or view.shape[1] != points * (merged // channels):
        return None
    pooling = getattr(keras.layers, f"GlobalAveragePooling{rank}D")(name=f"{layer.name}_space")
    return pooling(base)


def _dense_on_group_mean(original: Any, layer: Any, pooled: Any, order: int) -> Any:
    """A stock Dense `layer` (copying `original`) applied to the mean over the group of
    `pooled` `(batch, |G|·C)`, as one Dense on `pooled` whose kernel is the original's tiled
    over the group and divided by `|G|`: the same map, and the head of the same network
    written with stock layers (a global pooling, then a Dense on all its channels). None
    where `original` is not a plain Dense on `(batch, C)`."""
    if type(original) is not keras.layers.Dense or getattr(original, "lora_enabled", False):
        return None
    weights = original.get_weights()
    channels = pooled.shape[-1] // order
    if not 1 <= len(weights) <= 2 or weights[0].shape[0] != channels:
        return None
    dense = keras.layers.Dense.from_config(layer.get_config())
    outputs = dense(pooled)
    dense.set_weights([np.tile(weights[0], (order, 1)) / order, *weights[1:]])
    return outputs


def _tiled_batch_normalization(layer: Any, view: Any, base: Any) -> Any:
    """`layer` (a stock BatchNormalization over the last axis of `view`, which splits the
    last axis of `base` into `(|G|, C)`) applied to `base` with every per-channel vector
    tiled over the group; None where `layer` or the shapes are not of that form."""
    if type(layer) is not keras.layers.BatchNormalization:
        return None
    rank = len(view.shape)
    if layer.axis not in (-1, rank - 1) or len(base.shape) != rank - 1:
        return None
    order, channels = view.shape[-2], view.shape[-1]
    if tuple(view.shape[:-2]) != tuple(base.shape[:-1]) or base.shape[-1] != order * channels:
        return None
    weights = layer.get_weights()
    if any(w.shape != (channels,) for w in weights):
        return None
    tiled = keras.layers.BatchNormalization.from_config(layer.get_config())
    outputs = tiled(base)
    tiled.set_weights([np.tile(w, order) for w in weights])
    return outputs


# -- building blocks for export_plain ------------------------------------------------------


def selection_kernel(indices: np.ndarray, size: int, weight: float = 1.0) -> np.ndarray:
    """Kernel `(size, n)` of a bias-free Dense that gathers `x[..., indices]` (times `weight`
    and summed where a column lists several indices: `indices` is `(n,)` or `(n, m)`).

    Example:
        >>> from groco_core.toolkit import plain_selection_kernel
        >>> plain_selection_kernel([2, 0], 3).tolist()
        [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    """
    indices = np.asarray(indices).reshape(len(indices), -1)
    kernel = np.zeros((size, len(indices)), dtype="float32")
    for column, rows in enumerate(indices):
        kernel[rows, column] += weight
    return kernel


def fixed_dense(
    x: Any, kernel: np.ndarray, name: str, bias: np.ndarray | None = None, activation: Any = None
) -> Any:
    """A stock Dense with a fixed kernel (and bias), built on `x`, for `export_plain`.

    Example:
        >>> import keras
        >>> import numpy as np
        >>> from groco_core.toolkit import plain_fixed_dense
        >>> y = plain_fixed_dense(keras.Input((3,)), np.eye(3, 2, dtype="float32"), "pick")
        >>> tuple(y.shape)
        (None, 2)
    """
    dense = keras.layers.Dense(
        kernel.shape[1], use_bias=bias is not None, activation=activation, name=name
    )
    y = dense(x)
    dense.set_weights([kernel] if bias is None else [kernel, bias])
    return y


def swap_last_axes(x: Any, name: str) -> Any:
    """Stock Permute exchanging the last two axes of `x`.

    Example:
        >>> import keras
        >>> from groco_core.toolkit import plain_swap_last_axes
        >>> tuple(plain_swap_last_axes(keras.Input((5, 4, 3)), "swap").shape)
        (None, 5, 3, 4)
    """
    rank = len(x.shape)
    dims = (*range(1, rank - 2), rank - 1, rank - 2)
    return keras.layers.Permute(dims, name=name)(x)


def channels_to_last(x: Any, name: str) -> Any:
    """Stock Permute `(batch, C, *rest)` → `(batch, *rest, C)`."""
    rank = len(x.shape)
    return keras.layers.Permute((*range(2, rank), 1), name=name)(x)


def channels_to_first(x: Any, name: str) -> Any:
    """Stock Permute `(batch, *rest, C)` → `(batch, C, *rest)`."""
    rank = len(x.shape)
    return keras.layers.Permute((rank - 1, *range(1, rank - 1)), name=name)(x)


def static_shape(x: Any, layer_name: str) -> tuple[int, ...]:
    """The non-batch shape of a symbolic tensor, refusing unknown sizes (Reshape needs them)."""
    shape = tuple(x.shape[1:])
    if any(n is None for n in shape):
        raise ValueError(
            f"{layer_name}.export_plain needs an input of known shape (except the batch size). "
            f"Received: input shape {tuple(x.shape)}. Export for the size you deploy at, e.g. "
            "export(model, input_shape=(32, 32, 3))."
        )
    return shape


def known_paddings(layer: Any, paddings: tuple) -> tuple[tuple[int, int], ...]:
    """`paddings`, refusing (a ValueError saying to export for one input size) an axis whose
    padding depends on an unknown size (None: a stride > 1).

    Example:
        >>> from groco_core import GroupConv2D
        >>> from groco_core.toolkit import plain_known_paddings
        >>> plain_known_paddings(GroupConv2D(4, 3, group="P4"), ((1, 1), (1, 1)))
        ((1, 1), (1, 1))
    """
    if None in paddings:
        raise ValueError(
            f"export cannot choose the padding of layer {layer.name!r}: it has strides > 1 and "
            "an input of unknown size, and its padding depends on the size. Export for the "
            "size you deploy at, e.g. export(model, input_shape=(32, 32, 3))."
        )
    return paddings


def to_channels_last(layer: Any, x: Any) -> Any:
    """Moves the channels of a `channels_first` input last (identity for `channels_last`).

    Example:
        >>> import keras
        >>> from groco_core import GroupConv2D
        >>> from groco_core.toolkit import plain_to_channels_last
        >>> layer = GroupConv2D(4, 3, group="P4", data_format="channels_first")
        >>> tuple(plain_to_channels_last(layer, keras.Input((2, 9, 9))).shape)
        (None, 9, 9, 2)
    """
    if layer.data_format == "channels_last":
        return x
    return channels_to_last(x, f"{layer.name}_channels_last")


def to_channels_first(layer: Any, x: Any) -> Any:
    """Undoes `plain_to_channels_last` (identity for `channels_last`).

    Example:
        >>> import keras
        >>> from groco_core import GroupConv2D
        >>> from groco_core.toolkit import plain_to_channels_first
        >>> layer = GroupConv2D(4, 3, group="P4", data_format="channels_first")
        >>> tuple(plain_to_channels_first(layer, keras.Input((9, 9, 4, 2))).shape)
        (None, 2, 9, 9, 4)
    """
    if layer.data_format == "channels_last":
        return x
    return channels_to_first(x, f"{layer.name}_channels_first")


def _reshape(layer: Any, x: Any, target: tuple, suffix: str) -> Any:
    target = tuple(-1 if n is None else int(n) for n in target)
    if target.count(-1) > 1:
        raise ValueError(
            f"export needs known spatial sizes to reshape the output of layer {layer.name!r}: "
            "Keras's Reshape layer allows one unknown axis. Received: a tensor of shape "
            f"{tuple(x.shape)}. Export for the size you deploy at, e.g. "
            "export(model, input_shape=(32, 32, 3))."
        )
    return keras.layers.Reshape(target, name=f"{layer.name}_{suffix}")(x)


def plain_merge_group_axis(layer: Any, x: Any) -> Any:
    """Stock Reshape `(batch, *spatial, |G|, C)` → `(batch, *spatial, |G|·C)` (channel
    `k·C + c`), named after `layer`.

    Example:
        >>> import keras
        >>> from groco_core import GroupConv2D
        >>> from groco_core.toolkit import plain_merge_group_axis
        >>> layer = GroupConv2D(4, 3, group="P4")
        >>> tuple(plain_merge_group_axis(layer, keras.Input((9, 9, 4, 2))).shape)
        (None, 9, 9, 8)
    """
    return _reshape(layer, x, (*x.shape[1:-2], x.shape[-2] * x.shape[-1]), "merge_group")


def plain_split_group_axis(layer: Any, x: Any, order: int) -> Any:
    """Stock Reshape `(batch, *spatial, order·F)` → `(batch, *spatial, order, F)`, named
    after `layer`.

    Example:
        >>> import keras
        >>> from groco_core import GroupConv2D
        >>> from groco_core.toolkit import plain_split_group_axis
        >>> layer = GroupConv2D(4, 3, group="P4")
        >>> tuple(plain_split_group_axis(layer, keras.Input((7, 7, 16)), 4).shape)
        (None, 7, 7, 4, 4)
    """
    return _reshape(layer, x, (*x.shape[1:-1], order, x.shape[-1] // order), "split_group")


def _channels_last(layer_class: type) -> dict[str, str]:
    """`{"data_format": "channels_last"}` where the class takes one (1D padding and cropping
    did not in every Keras 3 release, and were channels-last there)."""
    return (
        {"data_format": "channels_last"}
        if "data_format" in inspect.signature(layer_class.__init__).parameters
        else {}
    )


def pad_spatial(x: Any, paddings: tuple[tuple[int, int], ...], name: str) -> Any:
    """Stock `ZeroPadding1D/2D/3D` on the spatial axes of a channels-last `x`; the data format
    is explicit, so a global `channels_first` setting does not change which axes it pads.

    Example:
        >>> import keras
        >>> from groco_core.toolkit import plain_pad_spatial
        >>> tuple(plain_pad_spatial(keras.Input((9, 9, 2)), ((1, 1), (1, 1)), "pad").shape)
        (None, 11, 11, 2)
    """
    if not any(before or after for before, after in paddings):
        return x
    rank = len(paddings)
    padding_layer = getattr(keras.layers, f"ZeroPadding{rank}D")
    return padding_layer(
        paddings[0] if rank == 1 else paddings, name=name, **_channels_last(padding_layer)
    )(x)


def crop_spatial(x: Any, cropping: tuple[tuple[int, int], ...], name: str) -> Any:
    """Stock `Cropping1D/2D/3D` on the spatial axes of a channels-last `x` (explicit data
    format, as in `plain_pad_spatial`).

    Example:
        >>> import keras
        >>> from groco_core.toolkit import plain_crop_spatial
        >>> tuple(plain_crop_spatial(keras.Input((9, 9, 2)), ((1, 1), (1, 1)), "crop").shape)
        (None, 7, 7, 2)
    """
    if not any(before or after for before, after in cropping):
        return x
    rank = len(cropping)
    cropping_layer = getattr(keras.layers, f"Cropping{rank}D")
    return cropping_layer(
        cropping[0] if rank == 1 else cropping, name=name, **_channels_last(cropping_layer)
    )(x)


def apply_activation(layer: Any, x: Any) -> Any:
    """The layer's activation as a stock `Activation` layer (after the group axis is split
    off, so activations over an axis, such as softmax, see the same axis); `x` itself
    without one.

    Example:
        >>> import keras
        >>> from groco_core import GroupConv2D
        >>> from groco_core.toolkit import plain_activation
        >>> inputs = keras.Input((7, 7, 4, 4))
        >>> layer = GroupConv2D(4, 3, group="P4", activation="relu", name="conv")
        >>> keras.Model(inputs, plain_activation(layer, inputs)).layers[-1].name
        'conv_activation'
    """
    activation = getattr(layer, "activation", None)
    if activation is None or activation is keras.activations.linear:
        return x
    return keras.layers.Activation(activation, name=f"{layer.name}_activation")(x)


def _plain_weights(layer: Any, order: int) -> list[np.ndarray]:
    weights = [ops.convert_to_numpy(layer.transformed_kernel())]
    if layer.use_bias:
        weights.append(np.tile(ops.convert_to_numpy(layer.bias), order))
    return weights


def keras_same_paddings(
    spatial: tuple, kernel_size: tuple, strides: tuple, dilation_rate: tuple
) -> tuple[tuple[int, int], ...] | None:
    """`(before, after)` per axis that Keras's `padding="same"` pads a convolution's input
    of size `spatial` with (half the total before, the odd one after); None where it depends
    on an unknown size (a stride > 1).

    Example:
        >>> from groco_core.exporting import keras_same_paddings
        >>> keras_same_paddings((32, 32), (8, 8), (2, 2), (1, 1))
        ((3, 3), (3, 3))
        >>> keras_same_paddings((32,), (4,), (2,), (1,))
        ((1, 1),)
    """
    found = []
    for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate, strict=True):
        extent = (k - 1) * d + 1
        if s == 1:
            total = extent - 1
        elif n is None:
            return None
        else:
            total = max(0, (-(-n // s) - 1) * s + extent - n)
        found.append((total // 2, total - total // 2))
    return tuple(found)


def export_group_conv(layer: Any, inputs: Any) -> Any:
    """`export_plain` of `BaseGroupConv`: one plain convolution (its own `"same"` padding
    where that is the layer's padding, an explicit `ZeroPadding` otherwise), reshape.

    Args:
        layer: a built `GroupConv1D/2D/3D`.
        inputs: the layer's symbolic input.

    Returns:
        The symbolic output, equal to `layer(inputs)`.
    """
    x = to_channels_last(layer, inputs)
    if not layer.lifting:
        x = plain_merge_group_axis(layer, x)
    spatial = tuple(x.shape[1 : 1 + layer.rank])
    paddings = known_paddings(layer, layer.padding_rule.paddings(spatial))
    same = paddings == keras_same_paddings(
        spatial, layer.kernel_size, layer.strides, layer.dilation_rate
    )
    if not same:
        x = pad_spatial(x, paddings, f"{layer.name}_pad")
    order = len(layer.output_elements)
    conv = getattr(keras.layers, f"Conv{layer.rank}D")(
        order * layer.filters,
        layer.kernel_size,
        strides=layer.strides,
        padding="same" if same else "valid",
        data_format="channels_last",
        dilation_rate=layer.dilation_rate,
        use_bias=layer.use_bias,
        kernel_initializer="zeros",  # overwritten; zeros skip a random draw per shape
        name=f"{layer.name}_conv",
    )
    x = conv(x)
    conv.set_weights(_plain_weights(layer, order))
    x = apply_activation(layer, plain_split_group_axis(layer, x, order))
    return to_channels_first(layer, x)


def export_group_conv_transpose(layer: Any, inputs: Any) -> Any:
    """`export_plain` of `BaseGroupConvTranspose`: one plain transposed convolution, then
    the window (zero input rows and cropping, see `plain_window`), then reshape."""
    x = to_channels_last(layer, inputs)
    if not layer.lifting:
        x = plain_merge_group_axis(layer, x)
    input_padding, cropping = layer.plain_window()
    rank = layer.rank
    x = pad_spatial(x, input_padding, f"{layer.name}_pad")
    order = layer.group.order
    conv = getattr(keras.layers, f"Conv{rank}DTranspose")(
        order * layer.filters,
        layer.extents,  # the dilation is built into the transformed kernel
        strides=layer.strides,
        padding="valid",
        data_format="channels_last",
        use_bias=layer.use_bias,
        kernel_initializer="zeros",  # overwritten; zeros skip a random draw per shape
        name=f"{layer.name}_conv_transpose",
    )
    x = conv(x)
    conv.set_weights(_plain_weights(layer, order))
    x = crop_spatial(x, cropping, f"{layer.name}_crop")
    x = apply_activation(layer, plain_split_group_axis(layer, x, order))
    return to_channels_first(layer, x)
