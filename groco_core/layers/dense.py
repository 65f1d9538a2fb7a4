"""Dense layer for signals on a group with no spatial axes: a group convolution over G only.

`out(h, u) = Σ_k Σ_c f(k, c) ψ(h⁻¹k, c, u) + b(u)`. The kernel `ψ` is transformed by every
output element `h` with one gather (indices built in numpy at build time) into the matrix of
one ordinary matmul, the group axis merged into the channels.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from groco_core.exporting import fixed_dense, static_shape
from groco_core.groups import PointGroup
from groco_core.layers.arguments import check_group_axis, check_positive_int, resolve_groups
from groco_core.layers.group_axis import split_group_axis
from groco_core.layers.kernel_cache import cached_transformed_kernel
from groco_core.layers.kernels import KernelGather, add_kernel_and_bias
from groco_core.layers.lora import LoRAKernelMixin
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.registry import get_group


@keras.saving.register_keras_serializable(package="groco")
class GroupDense(LoRAKernelMixin, RegisteredGroupsMixin, keras.layers.Layer):
    """Fully connected layer between signals on groups: `(…, |G|, C)` → `(…, |H|, units)`.

    The group analogue of `keras.layers.Dense`: equivariant under H, with the bias shared
    over the group axis. Leading axes beyond the batch (for instance space) are treated
    pointwise, as `Dense` treats them.

    Args:
        units: output channels per element of H.
        group: the group the input lives on (name or object), any dimension; keyword only,
            required.
        subgroup: the subgroup H the output lives on; default `group`.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint,
            lora_rank, lora_alpha: as in `keras.layers.Dense`. The LoRA update
            (`enable_lora`) is added to the untransformed kernel, so the layer stays
            equivariant.

    Input shape:
        `(batch, …, |G|, channels)`, rank ≥ 3: channels last, as `Dense` takes them (its
        `data_format` is always `"channels_last"`).

    Output shape:
        `(batch, …, |H|, units)`.

    Raises:
        ValueError / TypeError: for bad `units`, a subgroup that is not one, a rank-2 input
            (no group axis) or a group axis of the wrong length.

    Example:
        >>> import numpy as np
        >>> GroupDense(5, group="P4M", subgroup="P4")(np.zeros((2, 8, 3))).shape
        (2, 4, 5)
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        *,
        group: str | PointGroup | None = None,
        subgroup: str | PointGroup | None = None,
        **kwargs: Any,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = check_positive_int(units, "units")
        if group is None:  # of any dimension, unlike the layers `resolve_groups` names
            raise ValueError(
                "GroupDense needs a `group`: the name of the registered point group its input "
                "lives on, e.g. GroupDense(units, group='P4M'). Received: group=None. See "
                "`groco list-groups`."
            )
        group = get_group(group)
        self.group, self.subgroup, output_elements = resolve_groups(
            "GroupDense", group, subgroup, group.dimension
        )
        self._output_elements = np.asarray(output_elements)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.init_lora(lora_rank, lora_alpha)

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) < 3:
            raise ValueError(
                "GroupDense takes a signal on a group, (batch, |G|, channels); lifting from "
                "(batch, channels) is not meaningful: there are no spatial axes for the group "
                f"to act on. Received: input_shape={tuple(input_shape)}. Use keras.layers.Dense "
                "for plain vectors, or a lifting GroupConv before GroupDense."
            )
        check_group_axis("GroupDense", self.group, tuple(input_shape), -2)
        if input_shape[-1] is None:
            raise ValueError(
                "GroupDense needs a known number of input channels. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.in_channels = int(input_shape[-1])
        add_kernel_and_bias(self, (self.group.order, self.in_channels, self.units))
        # Kept in numpy: a backend tensor made here could belong to a graph being traced.
        self._kernel_gather = KernelGather(self.transformed_kernel_indices())
        self.built = True
        self.build_lora()

    def transformed_kernel_indices(self) -> np.ndarray:
        """Table `(|H|, |G|)`: row `h` lists the index of `h⁻¹k` for every `k` in G."""
        return self.group.cayley[self.group.inverses[self._output_elements]]

    def transformed_kernel(self) -> Any:
        """The matrix of the equivalent Dense, `(|G|·channels, |H|·units)`, rows `k·C + c`
        and columns `h·units + u`."""
        moved = self._kernel_gather.moved(self.kernel, 1)  # (|G|, C, |H|, U)
        return ops.reshape(
            moved,
            (self.group.order * self.in_channels, len(self._output_elements) * self.units),
        )

    def call(self, inputs: Any, training: Any = None) -> Any:
        shape = ops.shape(inputs)
        x = ops.reshape(inputs, (shape[0], *shape[1:-2], shape[-2] * shape[-1]))
        y = ops.matmul(x, cached_transformed_kernel(self, training))
        y = split_group_axis(
            y, len(self._output_elements), self.units, self.bias if self.use_bias else None
        )
        if self.activation is not None:
            y = self.activation(y)
        return y

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-2], len(self._output_elements), self.units)

    def export_plain(self, inputs: Any) -> Any:
        """The same map from stock Keras layers: Reshape, a Dense holding the transformed
        kernel (bias tiled over H, same activation), Reshape."""
        shape = static_shape(inputs, "GroupDense")
        if not self.built:
            self.build((None, *shape))
        lead = shape[:-2]
        x = keras.layers.Reshape((*lead, shape[-2] * shape[-1]), name=f"{self.name}_merge_group")(
            inputs
        )
        kernel = ops.convert_to_numpy(self.transformed_kernel())
        bias = (
            np.tile(ops.convert_to_numpy(self.bias), len(self._output_elements))
            if self.use_bias
            else None
        )
        x = fixed_dense(x, kernel, self.name, bias=bias, activation=self.activation)
        return keras.layers.Reshape(
            (*lead, len(self._output_elements), self.units), name=f"{self.name}_split_group"
        )(x)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "group": self.group.name,
                "subgroup": None if self.subgroup == self.group else self.subgroup.name,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                **self.lora_config(),
            }
        )
        return config
