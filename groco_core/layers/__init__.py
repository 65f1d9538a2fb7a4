"""The generic group layers: each takes a `group` by name and works for any registered group
of the right dimension. `__all__` is what the core plugin registers."""

from groco_core.layers.conv import GroupConv1D, GroupConv2D, GroupConv3D
from groco_core.layers.conv_transpose import (
    GroupConv1DTranspose,
    GroupConv2DTranspose,
    GroupConv3DTranspose,
)
from groco_core.layers.dense import GroupDense
from groco_core.layers.normalization import GroupBatchNormalization
from groco_core.layers.pooling import (
    GlobalGroupAveragePooling1D,
    GlobalGroupAveragePooling2D,
    GlobalGroupAveragePooling3D,
    GlobalGroupMaxPooling1D,
    GlobalGroupMaxPooling2D,
    GlobalGroupMaxPooling3D,
    GroupAveragePooling1D,
    GroupAveragePooling2D,
    GroupAveragePooling3D,
    GroupMaxPooling1D,
    GroupMaxPooling2D,
    GroupMaxPooling3D,
)
from groco_core.layers.reduce import GroupReduce

__all__ = [
    "GlobalGroupAveragePooling1D",
    "GlobalGroupAveragePooling2D",
    "GlobalGroupAveragePooling3D",
    "GlobalGroupMaxPooling1D",
    "GlobalGroupMaxPooling2D",
    "GlobalGroupMaxPooling3D",
    "GroupAveragePooling1D",
    "GroupAveragePooling2D",
    "GroupAveragePooling3D",
    "GroupBatchNormalization",
    "GroupConv1D",
    "GroupConv1DTranspose",
    "GroupConv2D",
    "GroupConv2DTranspose",
    "GroupConv3D",
    "GroupConv3DTranspose",
    "GroupDense",
    "GroupMaxPooling1D",
    "GroupMaxPooling2D",
    "GroupMaxPooling3D",
    "GroupReduce",
]
