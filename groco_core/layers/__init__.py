"""The generic group layers: each takes a `group` by name and works for any registered group
of the right dimension. `__all__` is what the core plugin registers."""

from groco_core.layers.conv import BaseGroupConv, GroupConv1D, GroupConv2D, GroupConv3D

__all__ = ["GroupConv1D", "GroupConv2D", "GroupConv3D"]
