"""Batch normalization of signals on a group, equivariant because it is shared over the group.

Normalizing each group element separately would let the statistics tell the elements apart
and break equivariance. With statistics and parameters per channel only (reduced over batch,
space and the group axis), a transformation of the input permutes values that share one mean,
one variance, one scale and one offset: the output transforms the same way.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from groco_core.groups import PointGroup
from groco_core.layers.arguments import check_group_axis
from groco_core.layers.fast_paths import takes
from groco_core.layers.group_axis import reshape, tile_over_group
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.layers.support import image_support, mask_to_support, plain_mask_to_support
from groco_core.registry import get_group


@keras.saving.register_keras_serializable(package="groco")
class GroupBatchNormalization(RegisteredGroupsMixin, keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` for signals on a group, per channel only.

    Exactly a `BatchNormalization` whose `axis` is the channel axis: means, variances, `gamma`
    and `beta` have shape `(channels,)` and are shared by space and the group axis, in
    training and in inference. What it adds: the default `axis` follows the image data format,
    other axes are refused (they would break equivariance), and with `group` the length of
    the group axis is checked.

    Args:
        axis: the channel axis. Default: -1 for `channels_last`, 1 for `channels_first`
            (from `keras.config.image_data_format()`). Only the channel axis is accepted.
            The layer's `data_format` follows from it.
        momentum, epsilon, center, scale, beta_initializer, gamma_initializer,
            moving_mean_initializer, moving_variance_initializer, beta_regularizer,
            gamma_regularizer, beta_constraint, gamma_constraint, renorm, renorm_clipping,
            renorm_momentum, synchronized: as in `keras.layers.BatchNormalization`, in the
            same order.
        group: optional, keyword only: the group the input lives on (name or object). When
            given, the input's group axis must have length `|G|`; stored by name in
            `get_config`. On a masked lattice (hexagonal) it is needed: the statistics are
            then taken over the group's image support only, and the output is zero off it.

    Input shape:
        `(batch, *spatial, |G|, channels)` (`channels_first`: `(batch, channels, *spatial, |G|)`),
        rank ≥ 3 (no spatial axes is fine).

    Output shape:
        Same as the input.

    Raises:
        ValueError: for an `axis` that is not the channel axis, an input without a group axis
            (rank < 3), or a group axis whose length is not `|G|`.

    Example:
        >>> import numpy as np
        >>> layer = GroupBatchNormalization(group="P4M")
        >>> layer(np.ones((2, 5, 5, 8, 3)), training=True).shape
        (2, 5, 5, 8, 3)
        >>> [w.shape for w in layer.weights][:2]
        [(3,), (3,)]
    """

    def __init__(
        self,
        axis: int | None = None,
        momentum: float = 0.99,
        epsilon: float = 0.001,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        renorm: bool = False,
        renorm_clipping: dict[str, float] | None = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        *,
        group: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        if axis is None:
            axis = -1 if keras.config.image_data_format() == "channels_last" else 1
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(
                "GroupBatchNormalization normalizes per channel: axis must be one int, the "
                f"channel axis (-1 or 1). Received: axis={axis!r}"
            )
        super().__init__(
            axis=axis,
            momentum=momentum,
            epsilon=epsilon,
            center=center,
            scale=scale,
            beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            moving_mean_initializer=moving_mean_initializer,
            moving_variance_initializer=moving_variance_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
            renorm=renorm,
            renorm_clipping=renorm_clipping,
            renorm_momentum=renorm_momentum,
            synchronized=synchronized,
            **kwargs,
        )
        self.group = None if group is None else get_group(group)

    @property
    def data_format(self) -> str:
        """`"channels_first"` when `axis` is axis 1 (of the input it was built on, if any),
        else `"channels_last"`."""
        rank = getattr(self.input_spec, "ndim", None)  # set by `build`
        axis = self.axis % rank if rank else self.axis
        return "channels_first" if axis == 1 else "channels_last"

    def build(self, input_shape: tuple) -> None:
        rank = len(input_shape)
        channel_axis = self.axis % rank if rank else self.axis
        if rank < 3 or channel_axis not in (1, rank - 1):
            raise ValueError(
                "GroupBatchNormalization takes a signal on a group, (batch, *spatial, |G|, "
                "channels) or (batch, channels, *spatial, |G|), and normalizes over its channel "
                "axis, which must be the last axis or axis 1: statistics along any other axis "
                f"would break equivariance. Received: axis={self.axis}, input_shape="
                f"{tuple(input_shape)}. Pass axis=-1 (channels_last) or axis=1 "
                "(channels_first); for an input without a group axis use "
                "keras.layers.BatchNormalization."
            )
        if self.group is not None:
            group_axis = rank - 2 if channel_axis == rank - 1 else rank - 1
            check_group_axis(type(self).__name__, self.group, tuple(input_shape), group_axis)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        """Keras's batch normalization, run on the group axis merged into the channels.

        The channels-last input `(..., |G|, C)` is normalized as `(..., |G|·C)` with the
        per-channel statistics and parameters tiled `|G|` times: the same numbers, but the
        per-channel arithmetic broadcasts over a long last axis instead of a short one
        (TensorFlow, P4M, `(32, 28, 28, 8, 16)`, inference against a `BatchNormalization` on
        `(32, 28, 28, 128)`: 1.17–1.35 → 0.99–1.04 in `benchmarks/overhead.py`). Training statistics
        come from the merged axis too: per merged channel, then combined over the group axis
        (equal counts, so the mean of the means, and the mean of the variances plus the
        variance of the means). Renormalization, synchronized statistics, a mask and
        `channels_first` run as Keras runs them.
        """
        rank = len(inputs.shape)
        channels_last = self.axis % rank == rank - 1
        if self.group is not None and rank == self.group.dimension + 3:
            start = 1 if channels_last else 2
            spatial = tuple(inputs.shape[start : start + self.group.dimension])
            if image_support(self.group, spatial) is not None:
                return self._call_on_support(inputs, training, mask, channels_last)
        if (
            self.renorm
            or self.synchronized
            or mask is not None
            or not channels_last
            or not takes("merged_batch_norm")
        ):
            return super().call(inputs, training=training, mask=mask)
        elements, channels = inputs.shape[-2], inputs.shape[-1]
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        shape = ops.shape(x)
        merged = reshape(x, (*shape[:-2], elements * channels))
        moving_mean = ops.cast(self.moving_mean, x.dtype)
        moving_variance = ops.cast(self.moving_variance, x.dtype)
        if training and self.trainable:
            axes = tuple(range(rank - 2))
            means, variances = ops.moments(merged, axes)
            means = ops.reshape(means, (elements, channels))
            variances = ops.reshape(variances, (elements, channels))
            mean = ops.mean(means, axis=0)
            variance = ops.mean(variances, axis=0) + ops.var(means, axis=0)
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
        else:
            mean, variance = moving_mean, moving_variance
        gamma = tile_over_group(ops.cast(self.gamma, x.dtype), elements) if self.scale else None
        beta = tile_over_group(ops.cast(self.beta, x.dtype), elements) if self.center else None
        outputs = ops.batch_normalization(
            merged,
            tile_over_group(mean, elements),
            tile_over_group(variance, elements),
            axis=-1,
            offset=beta,
            scale=gamma,
            epsilon=self.epsilon,
        )
        return ops.cast(reshape(outputs, shape), self.compute_dtype)

    def _call_on_support(
        self, inputs: Any, training: bool | None, mask: Any, channels_last: bool
    ) -> Any:
        """The normalization on a masked lattice (hexagonal): statistics over the points of
        the group's image support only, and zeros written off it (where `beta` would
        otherwise be), so that the next layer reads nothing a turn of the lattice does not
        move."""
        if self.renorm or self.synchronized or mask is not None:
            raise ValueError(
                f"GroupBatchNormalization on group {self.group.name} ({self.group.lattice} "
                "lattice, which uses only part of the array) computes its statistics over the "
                "lattice's image support and does not support renorm, synchronized or a mask "
                f"there. Received: renorm={self.renorm}, synchronized={self.synchronized}, "
                f"mask={'None' if mask is None else 'a tensor'}. Leave them at their defaults."
            )
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        if not channels_last:
            x = ops.moveaxis(x, 1, -1)
        dimension = self.group.dimension
        x = mask_to_support(x, self.group)
        moving_mean = ops.cast(self.moving_mean, x.dtype)
        moving_variance = ops.cast(self.moving_variance, x.dtype)
        if training and self.trainable:
            support = image_support(self.group, tuple(x.shape[1 : 1 + dimension]))
            weights = ops.cast(support.reshape((1, *support.shape, 1, 1)), x.dtype)
            axes = tuple(range(len(x.shape) - 1))
            count = ops.cast(ops.shape(x)[0] * x.shape[-2] * int(support.sum()), x.dtype)
            mean = ops.sum(x, axis=axes) / count
            variance = ops.sum(weights * ops.square(x - mean), axis=axes) / count
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
        else:
            mean, variance = moving_mean, moving_variance
        outputs = ops.batch_normalization(
            x,
            mean,
            variance,
            axis=-1,
            offset=ops.cast(self.beta, x.dtype) if self.center else None,
            scale=ops.cast(self.gamma, x.dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        outputs = mask_to_support(outputs, self.group)
        if not channels_last:
            outputs = ops.moveaxis(outputs, -1, 1)
        return ops.cast(outputs, self.compute_dtype)

    def export_plain(self, inputs: Any) -> Any:
        """A stock `keras.layers.BatchNormalization` with the same configuration and weights."""
        config = keras.layers.BatchNormalization.get_config(self)
        plain = keras.layers.BatchNormalization.from_config(config)
        outputs = plain(inputs)
        plain.set_weights(self.get_weights())
        if self.group is not None and len(inputs.shape) == self.group.dimension + 3:
            # A masked lattice: zero off the image support, as `call` writes.
            start = 1 if self.data_format == "channels_last" else 2
            axes = tuple(range(start, start + self.group.dimension))
            outputs = plain_mask_to_support(outputs, self.group, self.name, axes)
        return outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["group"] = None if self.group is None else self.group.name
        return config
