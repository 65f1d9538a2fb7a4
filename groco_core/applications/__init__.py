"""Equivariant reference architectures, shaped like `keras.applications`.

`GroupResNet18`, `GroupResNet34`, `GroupResNet50` (invariant classifiers) and `GroupUNet`
(per-point segmentation of the input's size), 2D or 3D by the input's rank and the group's
dimension, exactly equivariant on every size they accept; `group="P1"` builds the plain
network. See docs/applications.md.
"""

from groco_core.applications.resnet import GroupResNet18, GroupResNet34, GroupResNet50
from groco_core.applications.unet import GroupUNet

__all__ = ["GroupResNet18", "GroupResNet34", "GroupResNet50", "GroupUNet"]
