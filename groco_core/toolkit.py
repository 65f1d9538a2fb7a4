"""The toolkit for layer authors: the pieces GroCo's own layers are made of, for plugins
that add layers of their own.

A convolution-like layer subclasses `BaseGroupConv` (a kernel transformed by every output
element, overriding `build_kernel` and `transformed_kernel`) or `BaseGroupKernelLayer` (the
arguments and checks only); any other layer takes `RegisteredGroupsMixin` first among its
bases, which makes it a `groco_core.GroupLayer`. The functions below do the rest: groups by
name, argument checks with the standard messages, the equivariant padding rule and the
input sizes it refuses (`PaddingRule`, `equivariant_padding`, `check_centre_point`), the
image support of a masked lattice (`image_support`, `mask_to_support`: a layer reads and
writes only there), the kernel's gather, the group axis next to the channels, a depthwise
correlation in the formulations of `DEPTHWISE_FORMULATIONS`, the backend's fast paths, and
the stock Keras layers an `export_plain` is made of (`plain_*`).

Stability: the names in `__all__` follow semantic versioning. Within a major version a name
is neither removed nor changed in a way that breaks a caller (new optional arguments may
appear); everything else in `groco_core.layers` may change in any release. Importing this
module imports Keras.
"""

from __future__ import annotations

from groco_core.backend import call as backend_call
from groco_core.backend import eager_torch, on_jax_cpu, torch_compiling
from groco_core.exporting import apply_activation as plain_activation
from groco_core.exporting import crop_spatial as plain_crop_spatial
from groco_core.exporting import fixed_dense as plain_fixed_dense
from groco_core.exporting import known_paddings as plain_known_paddings
from groco_core.exporting import pad_spatial as plain_pad_spatial
from groco_core.exporting import plain_merge_group_axis, plain_split_group_axis
from groco_core.exporting import selection_kernel as plain_selection_kernel
from groco_core.exporting import swap_last_axes as plain_swap_last_axes
from groco_core.exporting import to_channels_first as plain_to_channels_first
from groco_core.exporting import to_channels_last as plain_to_channels_last
from groco_core.layers.arguments import (
    check_group_axis,
    check_invariant_under_group,
    check_positive_int,
    check_window_in_support,
    keyword_arguments,
    normalize_data_format,
    normalize_padding,
    normalize_tuple,
    resolve_groups,
)
from groco_core.layers.conv import BaseGroupConv
from groco_core.layers.depthwise_ops import FORMULATIONS as DEPTHWISE_FORMULATIONS
from groco_core.layers.depthwise_ops import depthwise_correlation
from groco_core.layers.depthwise_ops import fastest_formulation as fastest_depthwise_formulation
from groco_core.layers.group_axis import (
    merge_group_axis,
    reshape,
    split_group_axis,
    tile_over_group,
)
from groco_core.layers.kernel_cache import cached_transformed_kernel
from groco_core.layers.kernel_layer import BaseGroupKernelLayer
from groco_core.layers.kernels import KernelGather, add_kernel_and_bias, group_kernel_indices
from groco_core.layers.lora import LoRAKernelMixin
from groco_core.layers.padding import PaddingRule, check_centre_point, equivariant_padding
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.layers.support import image_support, mask_to_support

__all__ = [
    # Layer bases
    "BaseGroupConv",
    "BaseGroupKernelLayer",
    "LoRAKernelMixin",
    "RegisteredGroupsMixin",
    # Groups and arguments
    "check_group_axis",
    "check_invariant_under_group",
    "check_positive_int",
    "check_window_in_support",
    "keyword_arguments",
    "normalize_data_format",
    "normalize_padding",
    "normalize_tuple",
    "resolve_groups",
    # Padding and the sizes a layer accepts
    "PaddingRule",
    "check_centre_point",
    "equivariant_padding",
    # Masked lattices: the image support
    "image_support",
    "mask_to_support",
    # Kernels
    "KernelGather",
    "add_kernel_and_bias",
    "cached_transformed_kernel",
    "group_kernel_indices",
    # Depthwise correlation
    "DEPTHWISE_FORMULATIONS",
    "depthwise_correlation",
    "fastest_depthwise_formulation",
    # The group axis
    "merge_group_axis",
    "reshape",
    "split_group_axis",
    "tile_over_group",
    # Backends
    "backend_call",
    "eager_torch",
    "on_jax_cpu",
    "torch_compiling",
    # Export with stock Keras layers
    "plain_activation",
    "plain_crop_spatial",
    "plain_fixed_dense",
    "plain_known_paddings",
    "plain_merge_group_axis",
    "plain_pad_spatial",
    "plain_selection_kernel",
    "plain_split_group_axis",
    "plain_swap_last_axes",
    "plain_to_channels_first",
    "plain_to_channels_last",
]
