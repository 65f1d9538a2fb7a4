"""Draws docs/rotation.png: a square image, its hexagonal samples, and their 60° turn.

Run from anywhere: `python examples/groco-hexagonal/scripts/make_figure.py`. The turn is
applied by the registered group P6 (`group.transform`), on the axial storage.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from groco_hexagonal.groups import hexagon_mask  # noqa: E402
from groco_hexagonal.resample import (  # noqa: E402
    hexagonal_positions,
    hexagonal_to_square,
    square_to_hexagonal,
)
from keras import ops  # noqa: E402

from groco_core import get_group  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "rotation.png"
SIZE, SPACING, PIXELS = 31, 2.0, 64


def letter_image(pixels: int) -> np.ndarray:
    """A blurred capital F: no symmetry, so every turn is visible."""
    image = np.zeros((pixels, pixels))
    image[14:50, 22:29] = 1.0  # stem
    image[14:21, 22:46] = 1.0  # top bar
    image[29:35, 22:40] = 1.0  # middle bar
    kernel = np.exp(-(np.linspace(-2, 2, 7) ** 2))
    kernel /= kernel.sum()
    for axis in (0, 1):
        image = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, image)
    return image


def draw_hexagonal(axis, samples: np.ndarray, title: str) -> None:
    positions = hexagonal_positions(SIZE, SPACING)
    inside = hexagon_mask((SIZE, SIZE))
    axis.scatter(
        positions[..., 0][inside],
        positions[..., 1][inside],
        c=samples[inside],
        marker="h",
        s=34,
        cmap="viridis",
        vmin=0,
        vmax=1,
    )
    axis.set_aspect("equal")
    axis.invert_yaxis()  # rows downward, as an image is displayed
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def main() -> None:
    image = letter_image(PIXELS)
    hexagonal = square_to_hexagonal(image, SIZE, SPACING)
    p6 = get_group("P6")
    turned = ops.convert_to_numpy(p6.transform(hexagonal[None, :, :, None], 1, (1, 2)))[0, ..., 0]
    back = hexagonal_to_square(turned, (PIXELS, PIXELS), SPACING)
    figure, axes = plt.subplots(1, 4, figsize=(12, 3.3))
    axes[0].imshow(image, cmap="viridis", vmin=0, vmax=1)
    axes[0].set_title("square image", fontsize=9)
    axes[0].axis("off")
    draw_hexagonal(axes[1], hexagonal, "hexagonal samples (square_to_hexagonal)")
    draw_hexagonal(axes[2], turned, "P6 element 1: the 60° turn")
    axes[3].imshow(back, cmap="viridis", vmin=0, vmax=1)
    axes[3].set_title("turned, back on square pixels", fontsize=9)
    axes[3].axis("off")
    figure.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    figure.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
