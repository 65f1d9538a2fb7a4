"""Every layer on every 2D group of the p4m plugin: equivariance with the tests' own transforms.

The per-layer test files go deep on a representative set of groups; this file goes wide.
"""

from __future__ import annotations

import numpy as np
import pytest
from transforms import max_equivariance_error

from groco_core import (
    GlobalGroupAveragePooling2D,
    GlobalGroupMaxPooling2D,
    GroupAveragePooling2D,
    GroupBatchNormalization,
    GroupConv2DTranspose,
    GroupDense,
    GroupMaxPooling2D,
    GroupReduce,
    get_group,
)
from groco_core.registry import subgroups_of

SQUARE_GROUPS = ["P4M", "P4", "P2MM", "CMM", "PMh", "PMv", "PMd", "PMa", "P2", "P1"]


def largest_proper_subgroup(name: str) -> str:
    proper = [sub for sub in subgroups_of(name) if sub != get_group(name).name]
    return proper[0] if proper else name  # subgroups are listed largest first


def layers_for(name: str):
    """(layer, input group, output group, acting group, input shape without batch)."""
    group = get_group(name)
    sub = largest_proper_subgroup(name)
    order = group.order
    signal = (7, 7, order, 2)
    return [
        (GroupMaxPooling2D(group=name, pool_size=3), name, name, name, signal),
        (GroupMaxPooling2D(group=name, subgroup=sub, pool_size=3), name, sub, sub, signal),
        (
            GroupAveragePooling2D(group=name, pool_size=2, strides=1, padding="same_equiv"),
            name,
            name,
            name,
            signal,
        ),
        (GlobalGroupMaxPooling2D(group=name), name, None, name, signal),
        (GlobalGroupAveragePooling2D(group=name), name, None, name, signal),
        (GroupBatchNormalization(group=name), name, name, name, signal),
        (GroupDense(3, group=name, subgroup=sub), name, sub, sub, (order, 2)),
        (GroupReduce(group=name, subgroup=sub), name, sub, sub, signal),
        (GroupConv2DTranspose(3, 3, group=name), name, name, name, (4, 4, order, 2)),
        (
            GroupConv2DTranspose(3, 2, group=name, subgroup=sub, strides=2),
            sub,
            name,
            sub,
            (4, 4, get_group(sub).order, 2),
        ),
    ]


@pytest.mark.parametrize("name", SQUARE_GROUPS)
def test_every_layer_is_equivariant_on_every_square_group(name, rng):
    for layer, in_group, out_group, acting, shape in layers_for(name):
        x = rng.normal(size=(2, *shape)).astype("float32")
        spatial_dims = 0 if isinstance(layer, GroupDense) else 2
        matrices = get_group(acting).matrices
        if spatial_dims == 0:
            # No space: only the group axis moves, g acting by g⁻¹h on it.
            error = max_equivariance_error(
                layer,
                x,
                matrices,
                get_group(in_group).matrices,
                get_group(out_group).matrices,
                spatial_dims=0,
            )
        else:
            error = max_equivariance_error(
                layer,
                x,
                matrices,
                get_group(in_group).matrices,
                None if out_group is None else get_group(out_group).matrices,
            )
        assert error < 1e-4, (type(layer).__name__, name, error)
    assert np.isfinite(error)
