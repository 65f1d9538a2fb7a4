"""The names of the core's layers, without importing Keras: `groco_core` offers them (loaded
on first access) and `groco_core.layers` defines them."""

LAYER_NAMES = (
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
)
