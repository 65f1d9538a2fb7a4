"""Depthwise cross-correlation, channels last, in four formulations of plain `keras.ops`.

Each input channel `c` is correlated with its own `M` kernels: output channel `c·M + m` is
`Σ_r x(p·s + r·d, c) ψ(r, c, m)`. The formulations compute the same values in different
ways, and which one runs fastest depends on the backend and the number of spatial axes
(`fastest_formulation`, from each backend module's `fastest_depthwise_formulation`; figures
in docs/performance.md). A backend may run a formulation its own way (`groco_core.backend`):
PyTorch runs `depthwise_conv` and `grouped_conv` as one grouped convolution on the
channels-last memory, TensorFlow and JAX `shifts` with gradients of their own, TensorFlow a
large 2D `depthwise_conv` with its own kernel gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from groco_core import backend

FORMULATIONS = ("depthwise_conv", "grouped_conv", "patches", "shifts")

# What a layer runs where the backend names no fastest formulation: one that exists for any
# number of spatial axes (`keras.ops.depthwise_conv` has 1 or 2).
DEFAULT_FORMULATION = "grouped_conv"

Paddings = tuple[tuple[int, int], ...]
# `(kernel_size, out_size, strides, dilation_rate)` of a correlation, per spatial axis.
Geometry = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def fastest_formulation(rank: int) -> str:
    """The formulation the current backend runs fastest with `rank` spatial axes.

    Example:
        >>> from groco_core.toolkit import DEPTHWISE_FORMULATIONS, fastest_depthwise_formulation
        >>> fastest_depthwise_formulation(2) in DEPTHWISE_FORMULATIONS
        True
    """
    chosen = backend.call("fastest_depthwise_formulation", rank)
    return DEFAULT_FORMULATION if chosen is NotImplemented else chosen


def depthwise_correlation(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    formulation: str,
    paddings: Paddings | None = None,
    bias: Any = None,
) -> Any:
    """Depthwise cross-correlation, channels last, with one of four formulations.

    Args:
        x: `(batch, *spatial, C)`.
        kernel: `(*kernel_size, C, M)`; output channel `c·M + m` uses `kernel[..., c, m]`.
        strides, dilation_rate: per spatial axis.
        formulation: `"depthwise_conv"` (`keras.ops.depthwise_conv`, 1 or 2 spatial axes),
            `"grouped_conv"` (`keras.ops.conv` with `C` feature groups), `"patches"` (the
            shifted windows stacked on a new axis, contracted with the kernel by one einsum)
            or `"shifts"` (the shifted windows times their kernel point, summed).
        paddings: zeros `(before, after)` added to each spatial axis first; None: none
            ('valid').
        bias: `(C·M,)` added to the output, or None.

    Returns:
        `(batch, *out_spatial, C·M)`.

    Example:
        >>> import numpy as np
        >>> from groco_core.toolkit import depthwise_correlation
        >>> y = depthwise_correlation(
        ...     np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 1)), (1, 1), (1, 1), "patches"
        ... )
        >>> tuple(y.shape), float(y[0, 0, 0, 0])
        ((1, 3, 3, 2), 9.0)
    """
    rank = len(strides)
    paddings = ((0, 0),) * rank if paddings is None else tuple(paddings)
    arguments = (x, kernel, strides, dilation_rate, paddings, bias)
    if formulation in ("depthwise_conv", "grouped_conv"):
        y = backend.call("depthwise_conv", *arguments)
        if y is not NotImplemented:
            return y
    if formulation == "depthwise_conv":
        y = backend.call("depthwise_conv2d", *arguments)
    elif formulation == "shifts":
        y = backend.call("shifts", *arguments)
    else:
        y = NotImplemented
    if y is not NotImplemented:
        return y
    y = _correlation(pad(x, paddings), kernel, strides, dilation_rate, formulation)
    return y if bias is None else ops.add(y, bias)


def _correlation(
    x: Any, kernel: Any, strides: tuple[int, ...], dilation_rate: tuple[int, ...], formulation: str
) -> Any:
    """The 'valid' correlation of the padded `x` in plain `keras.ops`."""
    rank = len(strides)
    kernel_size = tuple(kernel.shape[:rank])
    channels, multiplier = kernel.shape[-2], kernel.shape[-1]
    if formulation == "depthwise_conv":
        return ops.depthwise_conv(
            x, kernel, strides, "valid", "channels_last", dilation_rate=dilation_rate
        )
    if formulation == "grouped_conv":
        grouped = ops.reshape(kernel, (*kernel_size, 1, channels * multiplier))
        return ops.conv(x, grouped, strides, "valid", "channels_last", dilation_rate)
    if formulation == "patches":
        geometry = correlation_geometry(x, kernel_size, strides, dilation_rate)
        patches = ops.stack(kernel_windows(x, geometry), axis=-2)  # (batch, *out, K, C)
        flat_kernel = ops.reshape(kernel, (-1, channels, multiplier))
        y = ops.einsum("...kc,kcm->...cm", patches, flat_kernel)
        return ops.reshape(y, (-1, *geometry[1], channels * multiplier))
    return sum_of_shifts(*shift_operands(x, kernel, strides, dilation_rate))


def pad(x: Any, paddings: Paddings) -> Any:
    """`x` `(batch, *spatial, C)` with zeros `paddings` around its spatial axes (itself where
    they are all zero)."""
    if not any(before or after for before, after in paddings):
        return x
    return ops.pad(x, [(0, 0), *paddings, (0, 0)])


def correlation_geometry(
    x: Any,
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    paddings: Paddings | None = None,
) -> Geometry:
    """`(kernel_size, out_size, strides, dilation_rate)` of the 'valid' correlation of `x`
    (after zero `paddings`, if given)."""
    rank = len(kernel_size)
    spatial = tuple(x.shape[1 : 1 + rank])
    if paddings is not None:
        spatial = tuple(n + sum(p) for n, p in zip(spatial, paddings, strict=True))
    out = tuple(
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate, strict=True)
    )
    return (kernel_size, out, tuple(strides), tuple(dilation_rate))


def shift_operands(
    x: Any,
    kernel: Any,
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    paddings: Paddings | None = None,
) -> tuple[Any, Any, Geometry]:
    """What `sum_of_shifts` takes: every output channel `c·M + m` is its own elementwise sum,
    so the input is repeated `M` times along the channels first and everything stays one
    channel axis. Returns `x` `(batch, *spatial, C·M)`, the kernel `(K, C·M)` and the
    geometry of the correlation (of `x` after zero `paddings`, if given)."""
    rank = len(strides)
    kernel_size = tuple(kernel.shape[:rank])
    channels, multiplier = kernel.shape[-2], kernel.shape[-1]
    if multiplier > 1:
        x = ops.repeat(x, multiplier, axis=-1)
    flat_kernel = ops.reshape(kernel, (-1, channels * multiplier))
    return x, flat_kernel, correlation_geometry(x, kernel_size, strides, dilation_rate, paddings)


def kernel_windows(x: Any, geometry: Geometry) -> list[Any]:
    """The inputs under each kernel point `r`, `(batch, *out, C)` each, in kernel order."""
    kernel_size, out, strides, dilation_rate = geometry
    windows = []
    for offset in np.ndindex(*kernel_size):
        index = [slice(None)]
        for o, n, s, d in zip(offset, out, strides, dilation_rate, strict=True):
            index.append(slice(o * d, o * d + (n - 1) * s + 1, s))
        windows.append(x[tuple(index)])
    return windows


def sum_of_shifts(x: Any, flat_kernel: Any, geometry: Geometry) -> Any:
    """`Σ_r window_r · ψ_r`, elementwise, with `flat_kernel` `(K, C)`: `(batch, *out, C)`."""
    return sum(
        ops.multiply(window, flat_kernel[r]) for r, window in enumerate(kernel_windows(x, geometry))
    )
