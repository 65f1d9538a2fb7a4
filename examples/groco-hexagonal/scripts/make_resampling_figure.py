"""Draws docs/resampling.png: a square digit, its hexagonal resampling, and the round trip.

Run from anywhere: `python examples/groco-hexagonal/scripts/make_resampling_figure.py`
(needs the `figures` extra: matplotlib and scikit-learn). The resampling is done by the
Keras layers `SquareToHexagonal` and `HexagonalToSquare`, with the settings of
`groco_hexagonal.digits` (15×15 axial array, a lattice step of 0.6 pixel).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sklearn.datasets  # noqa: E402
from groco_hexagonal.digits import SIZE, SPACING  # noqa: E402
from groco_hexagonal.groups import hexagon_mask  # noqa: E402
from groco_hexagonal.layers import HexagonalToSquare, SquareToHexagonal  # noqa: E402
from groco_hexagonal.resample import hexagonal_positions  # noqa: E402
from keras import ops  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "resampling.png"
DIGIT_INDEX = 2  # a 2: no symmetry that would hide a misplaced sample
FINE = 64  # pixels of the finer round trip


def draw_hexagonal(axis, samples: np.ndarray, title: str) -> None:
    """The lattice points at their places in the picture, coloured by their samples."""
    positions = hexagonal_positions(SIZE, SPACING["hexagonal"])
    inside = hexagon_mask((SIZE, SIZE))
    axis.scatter(
        positions[..., 0][inside],
        positions[..., 1][inside],
        c=samples[inside],
        marker="h",
        s=150,
        cmap="gray_r",
        vmin=0,
        vmax=1,
    )
    axis.set_xlim(-4.5, 4.5)
    axis.set_ylim(4.5, -4.5)  # rows downward, as an image is displayed
    axis.set_aspect("equal")
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def show(axis, image: np.ndarray, title: str) -> None:
    axis.imshow(image, cmap="gray_r", vmin=0, vmax=1)
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def main() -> None:
    digit = (sklearn.datasets.load_digits().images[DIGIT_INDEX] / 16.0).astype("float32")
    spacing = SPACING["hexagonal"]
    hexagonal = ops.convert_to_numpy(SquareToHexagonal(SIZE, spacing)(digit[None, :, :, None]))
    back = ops.convert_to_numpy(HexagonalToSquare((8, 8), spacing)(hexagonal))[0, ..., 0]
    # The same hexagonal image drawn on 8× finer pixels: the lattice's cells become visible.
    fine = HexagonalToSquare((FINE, FINE), spacing * FINE / 8)(hexagonal)
    fine = ops.convert_to_numpy(fine)[0, ..., 0]
    hexagonal = hexagonal[0, ..., 0]
    figure, axes = plt.subplots(1, 5, figsize=(14, 3.2))
    show(axes[0], digit, "square digit, 8×8 pixels")
    draw_hexagonal(axes[1], hexagonal, f"SquareToHexagonal({SIZE}, spacing={spacing})")
    show(
        axes[2],
        np.where(hexagon_mask((SIZE, SIZE)), hexagonal, np.nan),
        f"as stored: {SIZE}×{SIZE} axial array",
    )
    show(axes[3], fine, f"on {FINE}×{FINE} pixels: the lattice cells")
    show(axes[4], back, "round trip: back on 8×8 pixels")
    figure.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    figure.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
