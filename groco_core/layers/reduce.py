"""Restriction of a signal on G to a subgroup H, and the coset tables pooling shares.

Every `g` in G factors uniquely as `g = k·r_j` with `k` in H and `r_j` the representative of
its right coset `H·r_j`. For `h` in H, `h⁻¹·(k·r_j) = (h⁻¹k)·r_j`: the action of H moves `k`
and leaves the coset index `j` alone. So regrouping the group axis by `(k, j)` gives, for each
`j`, a signal on H, and everything built from it is H-equivariant.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.exporting import (
    channels_to_first,
    channels_to_last,
    fixed_dense,
    selection_kernel,
    static_shape,
    swap_last_axes,
)
from groco_core.groups import PointGroup
from groco_core.layers.arguments import check_group_axis, normalize_data_format, resolve_groups
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.registry import get_group


def coset_indices(group: PointGroup, subgroup: PointGroup) -> np.ndarray:
    """Table `(|H|, [G:H])`: entry `[k, j]` is the index in G of `h_k·r_j`.

    `h_k` runs over H in its own element order and `r_j` over the representatives of the
    right cosets `H·r_j` (the first one is the identity, so column 0 lists H itself).
    """
    members = np.asarray(group.subgroup_indices(subgroup))
    representatives = np.asarray([coset[0] for coset in group.cosets(subgroup, side="right")])
    return group.cayley[members[:, None], representatives[None, :]]


@keras.saving.register_keras_serializable(package="groco")
class GroupReduce(RegisteredGroupsMixin, keras.layers.Layer):
    """Restricts a signal on G to a subgroup H, moving the cosets into the channels.

    Nothing is lost: the `|G|·C` values at each point become `|H|·([G:H]·C)` values,
    `out(p, k, j·C + c) = f(p, h_k·r_j, c)` with `h_k` the k-th element of H and `r_j`
    the representative of the j-th right coset `H·r_j`. Channel block `j` holds the input's
    channels seen through `r_j`; block 0 (`r_0` = identity) is the plain restriction of the
    input to H. The output is equivariant under H.

    Args:
        group: the group the input lives on (name or object).
        subgroup: the subgroup H the output lives on (name or object).
        data_format: "channels_last" (default from `keras.config.image_data_format()`) or
            "channels_first".

    Input shape:
        Any rank ≥ 3: `(batch, *spatial, |G|, C)` (`channels_first`:
        `(batch, C, *spatial, |G|)`), with zero or more spatial axes.

    Output shape:
        `(batch, *spatial, |H|, [G:H]·C)` (`channels_first`: `(batch, [G:H]·C, *spatial, |H|)`).

    Raises:
        ValueError: when `subgroup` is not a subgroup of `group`, or the input's group axis
            does not have length `|G|`.

    Example:
        >>> import numpy as np
        >>> GroupReduce("P4M", "P4")(np.zeros((2, 5, 5, 8, 3))).shape
        (2, 5, 5, 4, 6)
    """

    def __init__(
        self,
        group: str | PointGroup,
        subgroup: str | PointGroup,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if subgroup is None:
            raise ValueError(
                "GroupReduce needs the subgroup to restrict to. Received: subgroup=None. "
                "Pass e.g. subgroup='P4' with group='P4M'."
            )
        group = get_group(group)  # of any dimension
        self.group, self.subgroup, _ = resolve_groups(
            type(self).__name__, group, subgroup, group.dimension
        )
        self.num_cosets = self.group.order // self.subgroup.order
        self.data_format = normalize_data_format(data_format)
        self._flat_indices = coset_indices(self.group, self.subgroup).reshape(-1)
        self.input_spec = keras.layers.InputSpec(min_ndim=3)

    def _group_axis(self, rank: int) -> int:
        return rank - 2 if self.data_format == "channels_last" else rank - 1

    def build(self, input_shape: tuple) -> None:
        check_group_axis(
            type(self).__name__, self.group, input_shape, self._group_axis(len(input_shape))
        )
        self._gather = self._flat_indices.astype("int32")  # numpy: safe in traces
        self.built = True

    def call(self, inputs: Any) -> Any:
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(inputs, 1, -1) if channels_first else inputs
        # Index k·[G:H] + j on the group axis, so merging (j, c) puts the channel at j·C + c.
        x = ops.take(x, self._gather, axis=-2)
        shape = ops.shape(x)
        y = ops.reshape(
            x, (shape[0], *shape[1:-2], self.subgroup.order, self.num_cosets * shape[-1])
        )
        return ops.moveaxis(y, -1, 1) if channels_first else y

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        shape = list(input_shape)
        channel_axis = -1 if self.data_format == "channels_last" else 1
        group_axis = self._group_axis(len(shape))
        shape[group_axis] = self.subgroup.order
        if shape[channel_axis] is not None:
            shape[channel_axis] = shape[channel_axis] * self.num_cosets
        return tuple(shape)

    def export_plain(self, inputs: Any) -> Any:
        """The same map from stock Keras layers: a Permute, a 0/1 Dense gather, reshapes."""
        channels_first = self.data_format == "channels_first"
        x = channels_to_last(inputs, f"{self.name}_to_channels_last") if channels_first else inputs
        shape = static_shape(x, type(self).__name__)
        x = swap_last_axes(x, f"{self.name}_group_last")
        x = fixed_dense(
            x, selection_kernel(self._flat_indices, self.group.order), f"{self.name}_gather"
        )
        x = swap_last_axes(x, f"{self.name}_group_back")
        y = keras.layers.Reshape(
            (*shape[:-2], self.subgroup.order, self.num_cosets * shape[-1]),
            name=f"{self.name}_merge_cosets",
        )(x)
        return channels_to_first(y, f"{self.name}_to_channels_first") if channels_first else y

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "group": self.group.name,
                "subgroup": self.subgroup.name,
                "data_format": self.data_format,
            }
        )
        return config
