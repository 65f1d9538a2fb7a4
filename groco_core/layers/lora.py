"""LoRA (low-rank adaptation) of a group layer's kernel, with the semantics of Keras's
`Dense` and `Conv` layers: `kernel = base + (lora_alpha / lora_rank) · A @ B`, the base kernel
frozen, `A` and `B` trainable.

The update is added to the *untransformed* kernel, before the group transforms it, so a
fine-tuned layer is exactly as equivariant as the original. As in Keras, saving stores the
merged kernel (and loading puts it in the base kernel and zeroes `A` and `B`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def normalize_lora_rank(rank: Any, name: str = "lora_rank") -> int | None:
    """`rank` as a positive int, None for None."""
    if rank is None:
        return None
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{name} must be a positive int or None. Received: {name}={rank!r}")
    return rank


class LoRAKernelMixin:
    """`kernel` as a property (base kernel plus the LoRA update when enabled), and
    `enable_lora`, for group layers whose own weights are `kernel` and `bias`: the update is
    added to the untransformed kernel, so the layer stays equivariant. The layer calls
    `init_lora(lora_rank, lora_alpha)` in its constructor, `build_lora()` at the end of
    `build`, and adds `lora_config()` to its config (as `BaseGroupConv` does).

    Example:
        >>> import numpy as np
        >>> from groco_core import GroupConv2D
        >>> layer = GroupConv2D(4, 3, group="P4")
        >>> layer.build((None, 9, 9, 2))
        >>> layer.enable_lora(2)
        >>> tuple(layer.lora_kernel_a.shape), tuple(layer.lora_kernel_b.shape)
        ((3, 3, 2, 2), (2, 4))
    """

    lora_enabled = False

    def init_lora(self, lora_rank: Any, lora_alpha: Any) -> None:
        """Records the constructor's `lora_rank` (None: no LoRA) and `lora_alpha`."""
        self.lora_rank = normalize_lora_rank(lora_rank)
        self.lora_alpha = self.lora_rank if lora_alpha is None else lora_alpha
        self.lora_enabled = False

    @property
    def kernel(self) -> Any:
        """The kernel the layer uses: the base kernel, plus `(alpha/rank)·A @ B` when LoRA
        is enabled."""
        kernel = self._kernel
        if self.lora_enabled:
            update = ops.matmul(self.lora_kernel_a, self.lora_kernel_b)
            kernel = ops.add(
                kernel, ops.cast((self.lora_alpha / self.lora_rank) * update, kernel.dtype)
            )
        return kernel

    @kernel.setter
    def kernel(self, value: Any) -> None:
        self._kernel = value

    def enable_lora(
        self,
        rank: int,
        lora_alpha: float | None = None,
        a_initializer: Any = "he_uniform",
        b_initializer: Any = "zeros",
    ) -> None:
        """Freezes the kernel and adds trainable low-rank factors `lora_kernel_a`
        (`kernel.shape[:-1] + (rank,)`) and `lora_kernel_b` (`(rank, kernel.shape[-1])`),
        as `keras.layers.Dense.enable_lora` does.

        Raises:
            ValueError: for a bad rank, a layer that is not built, has a kernel constraint,
                or already has LoRA enabled.
        """
        layer_name = type(self).__name__
        rank = normalize_lora_rank(rank, "rank")
        if rank is None:
            raise ValueError(f"{layer_name}.enable_lora needs a rank. Received: rank=None")
        if self.kernel_constraint:
            raise ValueError(
                f"{layer_name}: LoRA is incompatible with a kernel constraint, as in Keras. "
                f"Received: kernel_constraint={self.kernel_constraint!r}. Remove the "
                "kernel_constraint argument to enable LoRA."
            )
        if not self.built:
            raise ValueError(
                f"{layer_name}.enable_lora needs a built layer: call it on data (or build it) "
                "first, or pass lora_rank to the constructor."
            )
        if self.lora_enabled:
            raise ValueError(
                f"{layer_name}: LoRA is already enabled (rank {self.lora_rank}); it can be "
                "enabled once per layer."
            )
        tracker = getattr(self, "_tracker", None)
        if tracker is not None:
            tracker.unlock()
        # float32 factors, as in Keras: they are fine-tuned and merged at deployment.
        self.lora_kernel_a = self.add_weight(
            name="lora_kernel_a",
            shape=tuple(self._kernel.shape[:-1]) + (rank,),
            initializer=keras.initializers.get(a_initializer),
            dtype="float32",
            regularizer=self.kernel_regularizer,
        )
        self.lora_kernel_b = self.add_weight(
            name="lora_kernel_b",
            shape=(rank, self._kernel.shape[-1]),
            initializer=keras.initializers.get(b_initializer),
            dtype="float32",
            regularizer=self.kernel_regularizer,
        )
        self._kernel.trainable = False
        if tracker is not None:
            tracker.lock()
        self.lora_enabled = True
        self.lora_rank = rank
        self.lora_alpha = rank if lora_alpha is None else lora_alpha

    def build_lora(self) -> None:
        """Enables LoRA at build time when the constructor was given `lora_rank`."""
        if self.lora_rank and not self.lora_enabled:
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    def save_own_variables(self, store: Any) -> None:
        if not self.lora_enabled:
            return super().save_own_variables(store)
        # As in Keras: the merged kernel, then the bias; the factors are not stored.
        for i, value in enumerate([self.kernel] + ([self.bias] if self.use_bias else [])):
            store[str(i)] = value

    def load_own_variables(self, store: Any) -> None:
        if not self.lora_enabled:
            return super().load_own_variables(store)
        for i, variable in enumerate([self._kernel] + ([self.bias] if self.use_bias else [])):
            variable.assign(store[str(i)])
        self.lora_kernel_a.assign(ops.zeros(self.lora_kernel_a.shape))
        self.lora_kernel_b.assign(ops.zeros(self.lora_kernel_b.shape))

    def lora_config(self) -> dict[str, Any]:
        """The LoRA entries of `get_config` (none when LoRA is off, as in Keras)."""
        if not self.lora_rank:
            return {}
        return {"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha}
