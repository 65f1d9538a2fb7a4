"""The equivariant padding rule: how much a layer pads so that its output grid stays
centred on its input grid, and the messages when no padding can.

`PaddingRule` is the rule of one layer (its window, strides, dilation and `padding`
argument); the functions below it compute one axis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from keras import ops

from groco_core import backend
from groco_core.groups import PointGroup
from groco_core.layers.arguments import normalize_padding, normalize_tuple

Paddings = tuple[tuple[int, int] | None, ...]


class PaddingRule:
    """The equivariant padding of one layer, for every input size it meets.

    `valid_equiv` / `same_equiv` start from Keras's `valid` / `same` padding and add the
    minimum, equal on both sides, that centres the output grid on the input grid; `valid` /
    `same` are Keras's own, accepted where they are centred. On a group that needs a centre
    point (one that is not a signed permutation, e.g. the hexagonal lattice's turns) the
    output grid must also have odd sizes. Results are kept per input size.

    Args:
        padding: the layer's `padding` argument.
        window_size: the kernel (or pooling window) size per spatial axis.
        strides: per spatial axis.
        group: the group the output lives on (whose centre point matters).
        layer_name: the layer's class name, for the messages.
        dilation_rate: per spatial axis; default 1.
        allow_non_equivariance: give Keras's padding instead of refusing.
        window: `"kernel"` or `"pool"`, for the messages.

    Example:
        >>> from groco_core import get_group
        >>> from groco_core.toolkit import PaddingRule
        >>> rule = PaddingRule("same_equiv", (3, 3), (2, 2), get_group("P4M"), "MyConv")
        >>> rule.paddings((9, 9))
        ((1, 1), (1, 1))
        >>> rule.output_spatial((9, 9))
        (5, 5)
        >>> PaddingRule("valid_equiv", (3, 3), (2, 2), get_group("P4M"), "MyConv").paddings((8, 8))
        Traceback (most recent call last):
        ...
        ValueError: MyConv: no padding makes this layer equivariant for input size 8, ...
    """

    def __init__(
        self,
        padding: str,
        window_size: tuple[int, ...],
        strides: tuple[int, ...],
        group: PointGroup,
        layer_name: str,
        dilation_rate: tuple[int, ...] | None = None,
        allow_non_equivariance: bool = False,
        window: str = "kernel",
    ):
        rank = len(window_size)
        self.padding = normalize_padding(padding)
        self.window_size = normalize_tuple(window_size, rank, f"{window}_size")
        self.strides = normalize_tuple(strides, rank, "strides")
        self.dilation_rate = normalize_tuple(
            1 if dilation_rate is None else dilation_rate, rank, "dilation_rate"
        )
        self.group = group
        self.layer_name = layer_name
        self.allow_non_equivariance = bool(allow_non_equivariance)
        self.window = window
        self.extents = tuple(
            d * (k - 1) + 1 for k, d in zip(self.window_size, self.dilation_rate, strict=True)
        )
        self._cache: dict[tuple, Paddings] = {}
        self._taps: dict[tuple, Any] = {}

    def paddings(self, spatial: tuple) -> Paddings:
        """`(before, after)` per axis for an input of spatial size `spatial`; None on an axis
        whose size is unknown (None) at a stride > 1, decided when the computation runs
        (`resolve`).

        Raises:
            ValueError: when no padding keeps the layer equivariant for this size (unless
                `allow_non_equivariance`), naming sizes and window sizes that work.
        """
        key = tuple(None if n is None else int(n) for n in spatial)
        found = self._cache.get(key)
        if found is not None:
            return found
        found = tuple(
            equivariant_padding(
                n,
                e,
                s,
                self.padding,
                self.allow_non_equivariance,
                self.layer_name,
                window=self.window,
                window_size=k,
                dilation=d,
                rank=len(key),
            )
            for n, e, s, k, d in zip(
                key, self.extents, self.strides, self.window_size, self.dilation_rate, strict=True
            )
        )
        if not self.allow_non_equivariance:
            check_centre_point(self.layer_name, self.group, key, found, self.extents, self.strides)
        self._cache[key] = found
        return found

    def output_spatial(self, spatial: tuple) -> tuple:
        """The output's spatial size (None where the input's is unknown)."""
        return tuple(
            None if n is None else (n + sum(padding) - e) // s + 1
            for n, e, s, padding in zip(
                spatial, self.extents, self.strides, self.paddings(spatial), strict=True
            )
        )

    def conv_padding(self, spatial: tuple) -> tuple[str, Paddings | None]:
        """`(padding for keras.ops.conv, explicit padding or None)`.

        Where the equivariant padding is Keras's own `"same"` (e.g. an odd kernel extent at
        stride 1) the convolution pads by itself, which is quicker than a separate
        `keras.ops.pad` (whose gradient is a slice) on every backend; otherwise the input is
        padded explicitly (with None entries where `resolve` must decide).
        """
        paddings = self.paddings(spatial)
        if None in paddings:
            return "valid", paddings
        if not any(before or after for before, after in paddings):
            return "valid", None
        # With an unknown size the stride is 1, where "same" does not depend on the size.
        sizes = [e if n is None else int(n) for n, e in zip(spatial, self.extents, strict=True)]
        same = [
            keras_padding(n, e, s, "same")
            for n, e, s in zip(sizes, self.extents, self.strides, strict=True)
        ]
        if list(paddings) == same:
            return "same", None
        return "valid", paddings

    def meeting_taps(self, spatial: tuple) -> tuple[tuple[tuple[int, int], ...], Paddings] | None:
        """The window taps that meet the input, where some meet only padding, and the padding
        that keeps the output the same with the window cropped to them.

        On an input smaller than the window (a network's last stages: 1×1 or 2×2 maps under a
        3×3 or 4×4 kernel) most taps read only zeros for every output point; a convolution
        with the cropped kernel computes the same output with a fraction of the kernel.

        Returns:
            `(((first, stop) per axis), paddings)`: taps `first … stop − 1` of each axis meet
            the input at some output point, and the cropped window with `paddings` gives
            the same output points. None where every tap meets the input, a size is
            unknown, or the dilation is not 1.
        """
        key = tuple(None if n is None else int(n) for n in spatial)
        if None in key or any(d != 1 for d in self.dilation_rate):
            return None
        found = self._taps.get(key, False)
        if found is not False:
            return found
        paddings = self.paddings(key)
        boxes, cropped = [], []
        for n, k, s, (before, after) in zip(
            key, self.window_size, self.strides, paddings, strict=True
        ):
            outputs = (n + before + after - k) // s + 1
            # Tap t reads input point o·s + t − before at output point o.
            reads = np.arange(outputs)[:, None] * s + np.arange(k)[None, :] - before
            meets = np.flatnonzero(((reads >= 0) & (reads < n)).any(axis=0))
            first, stop = int(meets[0]), int(meets[-1]) + 1
            start = before - first  # the cropped window starts reading where tap `first` did
            end = (outputs - 1) * s + (stop - first) - n - start
            boxes.append((first, stop))
            cropped.append((start, max(end, 0)))
        whole = all(box == (0, k) for box, k in zip(boxes, self.window_size, strict=True))
        found = None if whole else (tuple(boxes), tuple(cropped))
        self._taps[key] = found
        return found

    def resolve(self, x: Any, paddings: Paddings) -> list:
        """`paddings` of the channels-last `x`, each None entry (an unknown size at a stride
        > 1, only in a TensorFlow graph) computed from the size `x` has when the computation
        runs (`runtime_padding`)."""
        shape = ops.shape(x)
        return [
            runtime_padding(
                shape[1 + axis],
                e,
                s,
                self.padding,
                self.allow_non_equivariance,
                self.layer_name,
                self.window,
            )
            if pad is None
            else pad
            for axis, (pad, e, s) in enumerate(
                zip(paddings, self.extents, self.strides, strict=True)
            )
        ]


def check_centre_point(
    layer_name: str,
    group: PointGroup,
    spatial: tuple,
    paddings: tuple,
    extents: tuple[int, ...],
    strides: tuple[int, ...],
) -> None:
    """Refuses an output grid of even size where `group` needs a centre point.

    A centred grid of even size has its centre between points; the flips and axis swaps of
    a signed permutation map such a grid onto itself, other matrices do not (the hexagonal
    lattice's 60° turn, in axial coordinates, moves the offset `(½, ½)` to `(−½, 1)`). On
    such a group the output grid must contain the input's centre point: an odd size on every
    axis. Sizes not known yet (None) are not checked. A layer calls it with the paddings
    `equivariant_padding` chose (`PaddingRule.paddings` does both).

    Raises:
        ValueError: naming the input size, the even output size and the fix.

    Example:
        >>> from groco_core import MatrixGroup
        >>> from groco_core.toolkit import check_centre_point
        >>> turn = MatrixGroup("Turn3", [[[1, 0], [0, 1]], [[0, -1], [1, -1]], [[-1, 1], [-1, 0]]])
        >>> check_centre_point("MyLayer", turn, (7, 7), ((1, 1), (1, 1)), (3, 3), (1, 1))
        >>> check_centre_point("MyLayer", turn, (8, 8), ((1, 1), (1, 1)), (3, 3), (1, 1))
        Traceback (most recent call last):
        ...
        ValueError: MyLayer: group Turn3 (square lattice) maps an output grid onto itself ...
    """
    matrices = np.abs(np.asarray(group.matrices))
    if np.all(matrices.sum(axis=-2) == 1) and np.all(matrices <= 1):
        return
    for n, padding, extent, stride in zip(spatial, paddings, extents, strides, strict=True):
        if n is None or padding is None:
            continue
        out = (n + sum(padding) - extent) // stride + 1
        if out >= 1 and out % 2 == 0:
            raise ValueError(
                f"{layer_name}: group {group.name} ({group.lattice} lattice) maps an output "
                f"grid onto itself only when it has a centre point, but input size {n} gives "
                f"output size {out}, which is even. Received: input size {n}, kernel extent "
                f"{extent}, strides={stride}, padding {padding}. Use an input size whose "
                "output size is odd, or pass allow_non_equivariance=True."
            )


def keras_padding(size: int, extent: int, stride: int, padding: str) -> tuple[int, int]:
    """The (before, after) padding Keras uses for "valid" or "same"."""
    if padding == "valid":
        return 0, 0
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def is_centred(size: int, extent: int, stride: int, before: int, after: int) -> bool:
    """Whether the output grid is centred on the input grid (so flips map it to itself).

    Kernel centres sit at input coordinate `-before + (extent - 1)/2 - (size - 1)/2 + j·stride`;
    the first and last of them are symmetric exactly when
    `after - before == (size + before + after - extent) mod stride`.
    """
    span = size + before + after - extent
    return span >= 0 and after - before == span % stride


_PARITY = ("even", "odd")


def _centred_padding(size: int, extent: int, stride: int, padding: str) -> tuple[int, int] | None:
    """The padding of `equivariant_padding` when it exists, else None."""
    base = "same" if padding.startswith("same") else "valid"
    before, after = keras_padding(size, extent, stride, base)
    if not padding.endswith("_equiv"):
        return (before, after) if is_centred(size, extent, stride, before, after) else None
    start = max(before, after)
    for pad in range(start, start + stride):
        if is_centred(size, extent, stride, pad, pad):
            return pad, pad
    return None


def _working_alternatives(
    size: int, window_size: int, dilation: int, stride: int, padding: str, window: str, rank: int
) -> list[str]:
    """Concrete changes that make `_centred_padding` exist, for the parity message."""
    extent = dilation * (window_size - 1) + 1
    same = padding.startswith("same")

    def works(n: int, e: int) -> bool:
        return n >= 1 and (same or n >= e) and _centred_padding(n, e, stride, padding) is not None

    sizes = [n for n in (size - 2, size - 1, size + 1, size + 2) if works(n, extent)]
    windows = [
        k
        for k in (window_size - 2, window_size - 1, window_size + 1, window_size + 2)
        if k >= (1 if window == "kernel" else 2) and works(size, dilation * (k - 1) + 1)
    ]
    sizes, windows = sorted(sizes, key=lambda n: (abs(n - size), n))[:2], windows[:2]
    sizes.sort()
    windows = sorted(sorted(windows, key=lambda k: (abs(k - window_size), k))[:2])
    options = []
    if sizes:
        options.append(f"an input of size {' or '.join(map(str, sizes))}")
    if windows:
        options.append(f"{window}_size {' or '.join(map(str, windows))}")
    if window == "kernel":
        # Stride 1 keeps every size; a pooling window of the right parity then downsamples.
        reduced = size if same else size - extent + 1
        pools = [p for p in range(2, 2 + stride) if _centred_padding(reduced, p, stride, "valid")]
        if reduced >= 1 and pools:
            options.append(
                f"strides=1 followed by GroupMaxPooling{rank}D(pool_size={pools[0]}, "
                f"strides={stride}) (the stride-1 output has size {reduced})"
            )
    return options


def equivariant_padding(
    size: int | None,
    extent: int,
    stride: int,
    padding: str,
    allow_non_equivariance: bool,
    layer_name: str,
    window: str = "kernel",
    window_size: int | None = None,
    dilation: int = 1,
    rank: int = 2,
) -> tuple[int, int] | None:
    """(before, after) padding of one spatial axis; None when the size is unknown and the
    padding depends on it (a stride > 1): it is then decided at call time, from the size the
    input has there.

    `valid_equiv` / `same_equiv` start from Keras's `valid` / `same` padding and add the
    minimum, equal on both sides, that centres the output grid on the input grid. `valid` /
    `same` are Keras's own, accepted when they are centred.

    Args:
        size, extent, stride: the input size, the (dilated) window extent and the stride.
        padding, allow_non_equivariance: the layer's arguments.
        layer_name, window, window_size, dilation, rank: for the messages (`window` is
            `"kernel"` or `"pool"`; `window_size` defaults to `extent`).

    Raises:
        ValueError: when the output would be empty, or the padding (any padding, for the
            `_equiv` options) breaks equivariance, unless `allow_non_equivariance` is set;
            the message names sizes that work.

    Example:
        >>> from groco_core.toolkit import equivariant_padding
        >>> equivariant_padding(9, 3, 2, "valid_equiv", False, "MyLayer")
        (0, 0)
        >>> equivariant_padding(8, 2, 2, "same_equiv", False, "MyLayer")
        (0, 0)
        >>> equivariant_padding(8, 3, 2, "valid_equiv", False, "MyLayer")
        Traceback (most recent call last):
        ...
        ValueError: MyLayer: no padding makes this layer equivariant for input size 8, ...
    """
    if size is None:
        if stride > 1:
            return None
        size = extent  # with stride 1 the padding does not depend on the size
    window_size = extent if window_size is None else window_size
    if padding.startswith("valid") and size < extent:
        raise ValueError(
            f"{layer_name}: the {window} extent {extent} is larger than the input size {size}, "
            f"so the output would be empty. Received: input size {size}, "
            f"{window}_size={window_size}. Use a larger input, a smaller {window}_size, or "
            "padding='same_equiv'."
        )
    result = _centred_padding(size, extent, stride, padding)
    if result is not None:
        return result
    base = "same" if padding.startswith("same") else "valid"
    if allow_non_equivariance:
        return keras_padding(size, extent, stride, base)
    if not padding.endswith("_equiv"):
        raise ValueError(
            f"{layer_name}: padding={padding!r} breaks equivariance for input size {size}, "
            f"{window} extent {extent} and stride {stride}: the output grid is not centred on "
            f"the input grid. Received: padding={padding!r}, input size {size}, "
            f"{window}_size={window_size}, strides={stride}. Use padding='{padding}_equiv', "
            "which pads the minimum extra, or pass allow_non_equivariance=True."
        )
    rule = (
        f"with an even stride, the input size and the {window} extent must have the same "
        f"parity, and {size} is {_PARITY[size % 2]} while the extent {extent} is "
        f"{_PARITY[extent % 2]}"
        if stride % 2 == 0
        else "the output grid cannot be centred on the input grid"
    )
    options = _working_alternatives(size, window_size, dilation, stride, padding, window, rank)
    fixes = "; ".join(options) + "; or " if options else ""
    raise ValueError(
        f"{layer_name}: no padding makes this layer equivariant for input size {size}, "
        f"{window} extent {extent} and stride {stride}: {rule}. Received: input size {size}, "
        f"{window}_size={window_size}, strides={stride}, padding={padding!r}. What works here: "
        f"{fixes}pass allow_non_equivariance=True. See docs/designing.md."
    )


def runtime_padding(
    size: Any,
    extent: int,
    stride: int,
    padding: str,
    allow_non_equivariance: bool,
    layer_name: str,
    window: str = "kernel",
) -> tuple[Any, Any]:
    """`equivariant_padding` for a size that is known only when the computation runs (a
    TensorFlow graph traced with an unknown spatial size): integer tensors `(before, after)`.

    A size that no padding makes equivariant fails at run time with the rule in the message
    (TensorFlow's `InvalidArgumentError`), unless `allow_non_equivariance` is set.
    """
    n = ops.cast(size, "int32")
    if padding.startswith("same"):
        total = ops.maximum((ops.floor_divide(n + stride - 1, stride) - 1) * stride + extent - n, 0)
    else:
        total = ops.zeros((), "int32")
    before = ops.floor_divide(total, 2)
    after = total - before
    if padding.endswith("_equiv"):
        found = ops.full((), -1, "int32")
        start = ops.maximum(before, after)
        for step in reversed(range(stride)):  # the smallest centring padding wins
            span = n + 2 * (start + step) - extent
            centred = ops.logical_and(span >= 0, ops.equal(ops.mod(span, stride), 0))
            found = ops.where(centred, start + step, found)
        ok = found >= 0
        before, after = ops.where(ok, found, before), ops.where(ok, found, after)
    else:
        span = n + before + after - extent
        ok = ops.logical_and(span >= 0, ops.equal(after - before, ops.mod(span, stride)))
    if allow_non_equivariance:
        return before, after
    rule = (
        f"with stride {stride} the size must have the parity of the {window} extent {extent}"
        if stride == 2
        else f"the output grid cannot be centred for this size at stride {stride}"
    )
    message = (
        f"{layer_name}: no padding={padding!r} makes this layer equivariant for the input's "
        f"spatial size: {rule}. Crop or pad the input, or pass allow_non_equivariance=True. "
        "Input size:"
    )
    return _checked(ok, message, n, before), after


def _checked(ok: Any, message: str, size: Any, value: Any) -> Any:
    """`value`, once `ok` holds: the backend's run-time assertion where `ok` is only known
    when the computation runs (a TensorFlow graph), a ValueError where it is concrete."""
    checked = backend.call("assert_at_run_time", ok, message, size, value)
    if checked is not NotImplemented:
        return checked
    if not bool(ops.convert_to_numpy(ok)):
        raise ValueError(f"{message} {int(ops.convert_to_numpy(size))}")
    return value
