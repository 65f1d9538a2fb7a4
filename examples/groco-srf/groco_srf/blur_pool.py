"""`GroupBlurPool2D`: anti-aliased downsampling of signals on a group (Zhang 2019, "Making
convolutional networks shift-invariant again").

A strided layer samples its input every `stride` points, and frequencies above the new
Nyquist limit fold back (a checkerboard becomes a constant). Blurring first with a fixed
low-pass filter removes them. The binomial blur is invariant under every signed permutation
of its window, and the same blur is applied to every channel of every group element, so
the layer commutes with the group: it is equivariant wherever the padding rule keeps the
output grid centred.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from groco_core import PointGroup
from groco_core.toolkit import (
    PaddingRule,
    RegisteredGroupsMixin,
    check_group_axis,
    check_invariant_under_group,
    check_window_in_support,
    merge_group_axis,
    normalize_data_format,
    normalize_tuple,
    plain_known_paddings,
    plain_merge_group_axis,
    plain_pad_spatial,
    plain_split_group_axis,
    plain_to_channels_first,
    plain_to_channels_last,
    resolve_groups,
    split_group_axis,
)
from groco_srf.filters import binomial_filter

if TYPE_CHECKING:
    from groco_core.testing import EquivarianceCase

BLUR_SIZES = (2, 3, 4, 5)


def check_blur_size(blur_size: Any) -> int:
    """`blur_size` as an int in `BLUR_SIZES`, or a ValueError naming them."""
    if isinstance(blur_size, bool) or blur_size not in BLUR_SIZES:
        raise ValueError(
            f"blur_size must be one of {', '.join(map(str, BLUR_SIZES))} (the binomial "
            f"filter's width). Received: blur_size={blur_size!r}"
        )
    return int(blur_size)


def check_blur_invariant(layer_name: str, group: PointGroup, blur: np.ndarray) -> None:
    """Refuses a group whose kernel permutation moves taps of the blur onto taps of other
    weights: blurring would then not commute with the group."""
    size = blur.shape[0]
    try:
        permutation = group.kernel_permutation(blur.shape)
    except ValueError as error:
        raise ValueError(
            f"{layer_name}: group {group.name} does not map a {size}×{size} window onto "
            f"itself. Received: group={group.name!r}, blur_size={size} ({error}). Use a "
            "blur_size the group maps onto itself, or pass allow_non_equivariance=True."
        ) from None
    flat = blur.reshape(-1)
    if not np.allclose(flat[permutation], flat[None, :]):
        raise ValueError(
            f"{layer_name}: the {size}×{size} binomial blur is not invariant under group "
            f"{group.name}: its kernel_permutation moves taps onto taps of other weights, so "
            f"blurring would break equivariance. Received: group={group.name!r}, "
            f"blur_size={size}. Use a group whose elements map the square window onto itself "
            "(square-lattice groups such as 'P4M'), or pass allow_non_equivariance=True."
        )


@keras.saving.register_keras_serializable(package="groco_srf")
class GroupBlurPool2D(RegisteredGroupsMixin, keras.layers.Layer):
    """Blur, then subsample: anti-aliased downsampling of a signal on a group.

    Every channel of every group element is correlated with the same normalised
    `blur_size × blur_size` binomial filter at stride `strides`, with the equivariant
    padding (zeros) of `padding`.

    Args:
        blur_size: the binomial filter's width, 2 to 5 (2: a box, 3: `[1, 2, 1]/4` each
            way). With `strides=2` the input size must have the parity of `blur_size`.
        strides: int or pair, default 2.
        padding: `"valid_equiv"` (default), `"same_equiv"`, `"valid"` or `"same"`, as in
            `groco_core.GroupMaxPooling2D`.
        data_format: `"channels_last"` or `"channels_first"`; default Keras's image format.
        group: the group the input lives on (name or object); keyword only, required.
        allow_non_equivariance: accept a padding, stride or group that breaks equivariance.

    Input shape:
        `(batch, rows, cols, |G|, channels)` (`channels_first`: `(batch, channels, rows,
        cols, |G|)`).

    Output shape:
        `(batch, new_rows, new_cols, |G|, channels)`.

    Raises:
        ValueError: for a bad `blur_size`, strides the group does not keep, a group that
            does not leave the blur invariant or uses only part of its window (the
            hexagonal lattice), an input size no padding keeps equivariant, or an input
            that is not a signal on `group`; each names the argument, the value and the fix.

    Example:
        >>> import numpy as np
        >>> from groco_srf import GroupBlurPool2D
        >>> GroupBlurPool2D(3, group="P4M")(np.zeros((1, 9, 9, 8, 2))).shape
        (1, 4, 4, 8, 2)
    """

    def __init__(
        self,
        blur_size: int = 3,
        strides: int | tuple[int, int] = 2,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        *,
        group: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        layer_name = type(self).__name__
        self.rank = 2
        self.group, _, _ = resolve_groups(layer_name, group, None, 2)
        self.blur_size = check_blur_size(blur_size)
        self.strides = normalize_tuple(strides, 2, "strides")
        self.data_format = normalize_data_format(data_format)
        self.allow_non_equivariance = bool(allow_non_equivariance)
        self.blur = binomial_filter(self.blur_size)
        if not self.allow_non_equivariance:
            check_invariant_under_group(self.group, self.strides, "strides")
            check_window_in_support(layer_name, self.group, self.blur.shape, "blur_size")
            check_blur_invariant(layer_name, self.group, self.blur)
        self.padding_rule = PaddingRule(
            padding,
            self.blur.shape,
            self.strides,
            self.group,
            layer_name,
            allow_non_equivariance=self.allow_non_equivariance,
            window="pool",
        )
        self.padding = self.padding_rule.padding
        self.input_spec = keras.layers.InputSpec(ndim=5)

    def spatial_shape(self, shape: tuple) -> tuple:
        """The spatial axes of an input or output shape, in the layer's data format."""
        start = 1 if self.data_format == "channels_last" else 2
        return tuple(shape[start : start + 2])

    def build(self, input_shape: tuple) -> None:
        channels_last = self.data_format == "channels_last"
        check_group_axis(
            type(self).__name__, self.group, tuple(input_shape), -2 if channels_last else -1
        )
        self.padding_rule.paddings(self.spatial_shape(input_shape))  # refuse a bad size early
        self.channels = int(input_shape[-1 if channels_last else 1])
        # numpy, not a weight: fixed, never trained, not saved. (rows, cols, |G|·C, 1)
        merged = self.group.order * self.channels
        self.depthwise_kernel = np.tile(self.blur[:, :, None, None], (1, 1, merged, 1))
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        spatial = self.padding_rule.output_spatial(self.spatial_shape(tuple(input_shape)))
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, *input_shape[-2:])
        return (input_shape[0], input_shape[1], *spatial, input_shape[-1])

    def call(self, inputs: Any) -> Any:
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(inputs, 1, -1) if channels_first else inputs
        x = merge_group_axis(x)  # every (element, channel) pair is one depthwise channel
        conv_padding, explicit = self.padding_rule.conv_padding(tuple(x.shape[1:3]))
        if explicit is not None:
            if None in explicit:
                explicit = self.padding_rule.resolve(x, explicit)
            x = ops.pad(x, [(0, 0), *explicit, (0, 0)])
        kernel = ops.cast(self.depthwise_kernel, x.dtype)
        y = ops.depthwise_conv(x, kernel, self.strides, conv_padding, "channels_last")
        y = split_group_axis(y, self.group.order, self.channels)
        return ops.moveaxis(y, -1, 1) if channels_first else y

    def export_plain(self, inputs: Any) -> Any:
        """The same map from stock Keras layers: Reshape, ZeroPadding2D, a DepthwiseConv2D
        holding the blur, Reshape (and Permutes for `channels_first`)."""
        x = plain_merge_group_axis(self, plain_to_channels_last(self, inputs))
        paddings = plain_known_paddings(self, self.padding_rule.paddings(tuple(x.shape[1:3])))
        x = plain_pad_spatial(x, paddings, f"{self.name}_pad")
        blur = keras.layers.DepthwiseConv2D(
            self.blur_size,
            strides=self.strides,
            padding="valid",
            data_format="channels_last",
            use_bias=False,
            name=f"{self.name}_blur",
        )
        x = blur(x)
        blur.set_weights([self.depthwise_kernel])
        return plain_to_channels_first(self, plain_split_group_axis(self, x, self.group.order))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "group": self.group.name,
                "blur_size": self.blur_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "allow_non_equivariance": self.allow_non_equivariance,
            }
        )
        return config

    @classmethod
    def equivariance_cases(cls, group: PointGroup) -> list[EquivarianceCase]:
        """Odd and even blurs at stride 2 on a 2D group whose elements map square windows
        onto themselves; none on other groups (which the layer refuses)."""
        if group.dimension != 2 or group.kernel_support_mask((3, 3)) is not None:
            return []
        from groco_core.testing import EquivarianceCase  # the kit: for `groco check` only

        order = group.order
        return [
            EquivarianceCase("blur 3, valid_equiv", cls(3, group=group), (1, 7, 7, order, 2)),
            EquivarianceCase(
                "blur 4, same_equiv",
                cls(4, padding="same_equiv", group=group),
                (1, 8, 8, order, 2),
            ),
        ]
