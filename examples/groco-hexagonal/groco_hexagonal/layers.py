"""Keras layers that resample square-pixel images onto the hexagonal lattice and back.

`SquareToHexagonal` and `HexagonalToSquare` apply, with `keras.ops` only (so on JAX,
TensorFlow and PyTorch alike), the fixed tables that `groco_hexagonal.resample` builds in
numpy at build time: four bilinear taps per lattice point one way, the nearest lattice point
per pixel the other way. They put a hexagonal G-CNN (e.g. on `P6M`) behind ordinary image
inputs, and draw its dense outputs back on square pixels, as HexaConv (Hoogeboom et al.,
2018) does. The numpy functions `square_to_hexagonal` / `hexagonal_to_square` are their
reference.

Both are registered for `.keras` files under the package `groco_hexagonal`: import this
module before `keras.saving.load_model` / `groco_core.load_model`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.toolkit import normalize_data_format
from groco_hexagonal.resample import (
    check_shape,
    check_size,
    check_spacing,
    nearest_lattice_indices,
    square_to_hexagonal_taps,
)


class _SpatialResampling(keras.layers.Layer):
    """Shared plumbing of the two layers: the spatial axes are 1, 2 (`channels_last`) or
    2, 3 (`channels_first`); every other axis (channels, a group axis) is carried along, so
    signals on a group resample too."""

    def __init__(self, spacing: float = 1.0, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.spacing = check_spacing(spacing, type(self).__name__)
        self.data_format = normalize_data_format(data_format)

    @property
    def spatial_axes(self) -> tuple[int, int]:
        """The two spatial axes of the inputs and outputs."""
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def spatial_shape(self, input_shape: tuple) -> tuple[int, int]:
        """The input's `(height, width)`, which must be known: the table depends on it."""
        input_shape = tuple(input_shape)
        if len(input_shape) < 4:
            raise ValueError(
                f"{type(self).__name__}: inputs need a batch axis, two spatial axes and channels, "
                f"e.g. (batch, height, width, channels). Received: input_shape={input_shape}"
            )
        first, second = self.spatial_axes
        spatial = (input_shape[first], input_shape[second])
        if None in spatial:
            raise ValueError(
                f"{type(self).__name__}: the spatial size must be known when the layer is built "
                f"(its resampling table depends on it). Received: input_shape={input_shape}; "
                "give keras.Input a full spatial shape."
            )
        return int(spatial[0]), int(spatial[1])

    def resample(self, inputs: Any, indices: np.ndarray, weights: np.ndarray | None) -> Any:
        """`out[b, p, ...] = Σ_k weights[p, k] · flat[b, indices[p, k], ...]`, with the input's
        spatial axes flattened row-major (`flat`) and the output's `indices.shape[:2]`; without
        weights, `indices` has one entry per output point and `flat` gets a zero entry last,
        which an index equal to its length selects."""
        first, second = self.spatial_axes
        x = ops.cast(inputs, self.compute_dtype)
        if first != 1:
            x = ops.moveaxis(x, (first, second), (1, 2))
        rest = tuple(x.shape[3:])
        flat = ops.reshape(x, (-1, x.shape[1] * x.shape[2]) + rest)
        out_spatial = indices.shape[:2]
        if weights is None:
            flat = ops.concatenate([flat, ops.zeros_like(flat[:, :1])], axis=1)
            y = ops.take(flat, ops.convert_to_tensor(indices.reshape(-1), "int32"), axis=1)
        else:
            taps = indices.shape[2]
            y = ops.take(flat, ops.convert_to_tensor(indices.reshape(-1), "int32"), axis=1)
            y = ops.reshape(y, (-1, out_spatial[0] * out_spatial[1], taps) + rest)
            kernel = weights.reshape(weights.shape[0] * weights.shape[1], taps, *[1] * len(rest))
            y = ops.sum(y * ops.convert_to_tensor(kernel, self.compute_dtype), axis=2)
        y = ops.reshape(y, (-1, *out_spatial) + rest)
        return ops.moveaxis(y, (1, 2), (first, second)) if first != 1 else y

    def output_shape_for(self, input_shape: tuple, out_spatial: tuple[int, int]) -> tuple:
        """`input_shape` with its spatial axes replaced by `out_spatial`."""
        shape = list(input_shape)
        first, second = self.spatial_axes
        shape[first], shape[second] = out_spatial
        return tuple(shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "spacing": self.spacing, "data_format": self.data_format}


@keras.saving.register_keras_serializable(package="groco_hexagonal")
class SquareToHexagonal(_SpatialResampling):
    """Samples square-pixel images on the hexagonal lattice (bilinear, centred), so that a
    hexagonal G-CNN can read ordinary images; `square_to_hexagonal` is the numpy reference.

    Args:
        size: odd side of the hexagonal image; the hexagon's radius is `(size − 1) / 2`
            lattice steps.
        spacing: lattice step in pixels of the input image.
        data_format: "channels_last" or "channels_first"; default from
            `keras.config.image_data_format()`.

    Input shape:
        `(batch, height, width, ...)` (`channels_first`: `(batch, channels, height, width,
        ...)`); the spatial size must be known at build time.

    Output shape:
        `(batch, size, size, ...)` (`channels_first`: `(batch, channels, size, size, ...)`),
        in axial storage, zero outside the hexagon.

    Raises:
        ValueError: for an even or non-positive `size`, a non-positive `spacing`, or inputs
            of unknown spatial size.

    Example:
        >>> import numpy as np
        >>> from groco_hexagonal.layers import SquareToHexagonal
        >>> tuple(SquareToHexagonal(15, spacing=0.6)(np.ones((2, 8, 8, 1))).shape)
        (2, 15, 15, 1)
    """

    def __init__(
        self, size: int, spacing: float = 1.0, data_format: str | None = None, **kwargs: Any
    ):
        super().__init__(spacing, data_format, **kwargs)
        self.size = check_size(size, "SquareToHexagonal")
        self._indices = self._weights = None

    def build(self, input_shape: tuple) -> None:
        spatial = self.spatial_shape(input_shape)
        self._indices, self._weights = square_to_hexagonal_taps(spatial, self.size, self.spacing)
        self.built = True

    def call(self, inputs: Any) -> Any:
        return self.resample(inputs, self._indices, self._weights)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return self.output_shape_for(input_shape, (self.size, self.size))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="groco_hexagonal")
class HexagonalToSquare(_SpatialResampling):
    """Draws hexagonal images on square pixels, each pixel taking its nearest lattice point
    (zero outside the hexagon), so a hexagonal network's dense outputs can be shown or
    compared as ordinary images; `hexagonal_to_square` is the numpy reference.

    Args:
        shape: `(height, width)` of the square image.
        spacing: lattice step in pixels of the output image.
        data_format: "channels_last" or "channels_first"; default from
            `keras.config.image_data_format()`.

    Input shape:
        `(batch, n, n, ...)` with `n` odd (`channels_first`: `(batch, channels, n, n, ...)`).

    Output shape:
        `(batch, height, width, ...)` (`channels_first`: `(batch, channels, height, width,
        ...)`).

    Raises:
        ValueError: for a bad `shape` or `spacing`, or inputs that are not odd squares.

    Example:
        >>> import numpy as np
        >>> from groco_hexagonal.layers import HexagonalToSquare
        >>> tuple(HexagonalToSquare((8, 8), spacing=0.6)(np.ones((2, 15, 15, 3))).shape)
        (2, 8, 8, 3)
    """

    def __init__(
        self,
        shape: tuple[int, int],
        spacing: float = 1.0,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(spacing, data_format, **kwargs)
        self.shape = check_shape(shape, "HexagonalToSquare")
        self._indices = None

    def build(self, input_shape: tuple) -> None:
        spatial = self.spatial_shape(input_shape)
        if spatial[0] != spatial[1] or spatial[0] % 2 == 0:
            raise ValueError(
                "HexagonalToSquare: inputs must be hexagonal images, odd squares in axial "
                f"storage. Received: input_shape={tuple(input_shape)} (spatial {spatial}); "
                "resample with SquareToHexagonal(size) and an odd size."
            )
        self._indices = nearest_lattice_indices(spatial[0], self.shape, self.spacing)
        self.built = True

    def call(self, inputs: Any) -> Any:
        return self.resample(inputs, self._indices, None)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return self.output_shape_for(input_shape, self.shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shape": self.shape}
