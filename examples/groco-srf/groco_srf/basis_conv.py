"""`BasisGroupConv2D`: a group convolution whose kernel is a learned combination of fixed
Gaussian derivatives (structured receptive fields, Jacobsen et al. 2016).

Built on the toolkit's `BaseGroupConv`: only the kernel differs. The learned weight
`kernel` `(n_basis, [|G|,] in_channels, filters)` holds the coefficients; `masked_kernel`
combines the basis with them into the ordinary kernel `(*kernel_size, [|G|,] in_channels,
filters)`, which the core then transforms by every output element with its gather. So the
layer is exactly equivariant on any group, whether or not the basis is invariant, and the
padding rule, input checks, output shape, call, kernel cache and `export_plain` are the
core's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
from keras import ops

from groco_core import PointGroup, subgroups_of
from groco_core.toolkit import (
    BaseGroupConv,
    KernelGather,
    add_kernel_and_bias,
    keyword_arguments,
    reshape,
)
from groco_srf.filters import check_order, check_sigma, gaussian_derivative_basis

if TYPE_CHECKING:
    from groco_core.testing import EquivarianceCase


@keras.saving.register_keras_serializable(package="groco_srf")
class BasisGroupConv2D(BaseGroupConv):
    """2D group convolution with a kernel made of `(order + 1)(order + 2) / 2` Gaussian
    derivatives of scale `sigma`, combined with learned coefficients.

    Args:
        filters: output fields (channels per element of the output group).
        kernel_size: the grid the basis is sampled on (int or pair).
        order: the largest total derivative order of the basis (0: the Gaussian only).
        sigma: the Gaussian's scale, in grid steps.
        orthonormalize: make the basis orthonormal (Gram–Schmidt); default: each filter
            scaled to unit norm.
        strides, padding, data_format, dilation_rate, activation, use_bias,
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint: as in
            `groco_core.GroupConv2D`; the `kernel_*` ones apply to the coefficients.
        group: the point group, by name or object; keyword only, required.
        subgroup: the subgroup the output lives on; default `group`.
        allow_non_equivariance: accept configurations that break equivariance.

    Input shape:
        Lifting: `(batch, rows, cols, channels)`; group: `(batch, rows, cols, |G|, channels)`
        (`channels_first`: channels on axis 1, the group axis last).

    Output shape:
        `(batch, new_rows, new_cols, |subgroup|, filters)`.

    Raises:
        ValueError / TypeError: for a bad argument (an `order` too high for the kernel, a
            non-positive `sigma`, `groups` other than 1, and the checks of
            `groco_core.GroupConv2D`), naming the argument, the value and the fix.

    Example:
        >>> import numpy as np
        >>> from groco_srf import BasisGroupConv2D
        >>> layer = BasisGroupConv2D(4, 5, order=2, sigma=1.0, group="P4M")
        >>> layer(np.zeros((1, 9, 9, 3))).shape, layer.basis.shape, tuple(layer.kernel.shape)
        ((1, 5, 5, 8, 4), (6, 5, 5), (6, 3, 4))
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        order: int = 2,
        sigma: float = 1.0,
        orthonormalize: bool = False,
        strides: int | tuple[int, int] = 1,
        padding: str = "valid_equiv",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        allow_non_equivariance: bool = False,
        **kwargs: Any,
    ):
        arguments = keyword_arguments(locals())
        order = check_order(arguments.pop("order"))
        sigma = check_sigma(arguments.pop("sigma"))
        orthonormalize = bool(arguments.pop("orthonormalize"))
        super().__init__(2, **arguments)
        if self.groups != 1:
            raise ValueError(
                f"{type(self).__name__} does not split its fields into groups. Received: "
                f"groups={self.groups}. Use groups=1, or groco_core.GroupConv2D."
            )
        self.order, self.sigma, self.orthonormalize = order, sigma, orthonormalize
        # (n_basis, *kernel_size), zero outside the lattice's support: numpy, made once.
        self.basis = gaussian_derivative_basis(
            self.kernel_size, order, sigma, self.kernel_mask, orthonormalize
        )

    def build_kernel(self) -> None:
        """The coefficients `kernel` `(n_basis, [|G|,] in_channels, filters)`, the bias and
        the gather that transforms the combined kernel by every output element."""
        group_axis = () if self.lifting else (self.group.order,)
        add_kernel_and_bias(self, (len(self.basis), *group_axis, self.in_channels, self.filters))
        self.kernel_gather = KernelGather(self.transformed_kernel_indices())

    def masked_kernel(self) -> Any:
        """The kernel the coefficients make, `(*kernel_size, [|G|,] in_channels, filters)`:
        `Σ_i basis[i] ⊗ kernel[i]`, zero outside the lattice's support like the basis."""
        coefficients = self.kernel  # (n_basis, [|G|,] C, F); with LoRA, its update included
        n_basis = len(self.basis)
        basis = ops.cast(self.basis.reshape(n_basis, -1).T, coefficients.dtype)
        combined = ops.matmul(basis, reshape(coefficients, (n_basis, -1)))
        return reshape(combined, (*self.kernel_size, *coefficients.shape[1:]))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {"order": self.order, "sigma": self.sigma, "orthonormalize": self.orthonormalize}
        )
        return config

    @classmethod
    def equivariance_cases(cls, group: PointGroup) -> list[EquivarianceCase]:
        """Lifting, group, strided and (where there is one) onto-a-subgroup layers on a 2D
        group; none on groups of other dimensions."""
        if group.dimension != 2:
            return []
        from groco_core.testing import EquivarianceCase  # the kit: for `groco check` only

        order = group.order
        cases = [
            EquivarianceCase("lifting", cls(2, 3, group=group), (1, 7, 7, 2)),
            EquivarianceCase("group", cls(2, 3, group=group), (1, 7, 7, order, 2)),
            EquivarianceCase(
                "group, strides 2, same_equiv",
                cls(2, 3, strides=2, padding="same_equiv", group=group),
                (1, 9, 9, order, 2),
            ),
        ]
        # Registered subgroups come largest first, the group itself at the head.
        proper = [name for name, indices in subgroups_of(group).items() if len(indices) < order]
        if proper:
            cases.append(
                EquivarianceCase(
                    f"onto {proper[0]}",
                    cls(2, 3, group=group, subgroup=proper[0]),
                    (1, 7, 7, order, 2),
                )
            )
        return cases
