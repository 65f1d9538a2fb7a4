"""The generic group layers: each takes a `group` by name and works for any registered group
of the right dimension. `__all__` is what the core plugin registers."""

# ruff: noqa: F401  (the names are re-exported through __all__ = LAYER_NAMES)

from groco_core.layer_names import LAYER_NAMES
from groco_core.layers.conv import GroupConv1D, GroupConv2D, GroupConv3D
from groco_core.layers.conv_transpose import (
    GroupConv1DTranspose,
    GroupConv2DTranspose,
    GroupConv3DTranspose,
)
from groco_core.layers.dense import GroupDense
from groco_core.layers.global_pooling import (
    GlobalGroupAveragePooling1D,
    GlobalGroupAveragePooling2D,
    GlobalGroupAveragePooling3D,
    GlobalGroupMaxPooling1D,
    GlobalGroupMaxPooling2D,
    GlobalGroupMaxPooling3D,
)
from groco_core.layers.normalization import GroupBatchNormalization
from groco_core.layers.pooling import (
    GroupAveragePooling1D,
    GroupAveragePooling2D,
    GroupAveragePooling3D,
    GroupMaxPooling1D,
    GroupMaxPooling2D,
    GroupMaxPooling3D,
)
from groco_core.layers.reduce import GroupReduce

__all__ = list(LAYER_NAMES)
