"""Digits on two lattices: a `P6M` G-CNN on the hexagonal lattice against a `P4M` G-CNN and
a plain CNN on the square lattice, tested on turned digits.

The data are scikit-learn's `load_digits` (1,797 handwritten digits of 8×8 pixels, shipped
inside scikit-learn). Each digit is resampled (bilinear, centred, `resample.bilinear_sample`)
onto a 15×15 array of each lattice: the hexagonal lattice with a step of 0.6 pixel (the
hexagon's flat top and bottom sit 3.6 pixels from the centre, just outside the digit's
rows), the square lattice with a step of 0.5 pixel (the 15×15 points span the digit's pixel
centres). All three networks train on upright digits and are tested on the test digits
turned counter-clockwise by each of `ANGLES`. A turn is applied on the lattice itself,
exactly and by index arithmetic, where the lattice has it (multiples of 60° on the
hexagonal lattice with `resample.turn_hexagonal`, of 90° on the square one with
`numpy.rot90`); other angles resample the turned digit. (A lattice turn maps sample points
onto sample points, so it gives the samples of the turned digit exactly.)

The networks share one layout (`KERNEL_SIZES`, `STRIDES`): a 5×5 lifting convolution, a
3×3 convolution with stride 2, two more 3×3 convolutions (15 → 11 → 5 → 3 → 1), each
followed by batch normalization and ReLU; global max pooling; a Dense classifier. With valid
padding down to a single point, every output reads only points inside the hexagon of each
layer's input (the hexagon's radius shrinks by the kernel's), so the `P6M` network is
invariant to the lattice's turns and mirrors to float precision. The `P4M` network and the
CNN are wider, so that their parameter counts are within 5% of the `P6M` network's.

Run `python -m groco_hexagonal.digits` (needs the `digits` extra:
`pip install "groco-hexagonal[digits]"`); it prints a table (model, parameters, accuracy per
test angle) and writes it as JSON.

Example:
    >>> from groco_hexagonal.digits import run
    >>> results = run(epochs=1, train_size=64, test_size=32, verbose=0)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

DIGITS_EXTRA = 'pip install "groco-hexagonal[digits]"'

try:  # before Keras: without the extra the command answers at once
    import sklearn.datasets
except ImportError as error:
    raise ImportError(
        f"groco_hexagonal.digits needs scikit-learn, which comes with the `digits` extra; "
        f"{error.name} is not installed. Install it with: {DIGITS_EXTRA}"
    ) from error

import keras  # noqa: E402

from groco_core import (  # noqa: E402
    GlobalGroupMaxPooling2D,
    GroupBatchNormalization,
    GroupConv2D,
)
from groco_hexagonal.groups import hexagon_mask  # noqa: E402
from groco_hexagonal.resample import (  # noqa: E402
    bilinear_sample,
    hexagonal_positions,
    turn_hexagonal,
)

SIZE = 15
SPACING = {"hexagonal": 0.6, "square": 0.5}
LATTICE_TURN = {"hexagonal": 60, "square": 90}  # the smallest turn each lattice has
ANGLES = (0, 30, 60, 90, 120, 180)
KERNEL_SIZES = (5, 3, 3, 3)
STRIDES = (1, 2, 1, 1)
# Channels per layer. A group conv has |G| times the weights of a plain conv with the same
# channels, so the P4M network is √(12/8) and the CNN about √12 times as wide as the P6M
# network: 27,640, 27,799 and 26,590 parameters (within 5%, which the tests check).
P6M_FIELDS = (6, 6, 12, 12)
P4M_FIELDS = (7, 7, 15, 15)
CNN_FIELDS = (20, 20, 40, 40)
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
DEFAULT_EPOCHS = 15
TEST_FRACTION = 0.25
DEFAULT_OUT = "hexagonal-digits.json"


# -- data -------------------------------------------------------------------------------


def load_split(
    seed: int, train_size: int | None = None, test_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits scaled to [0, 1], split once with `seed`: `(x_train, y_train, x_test,
    y_test)`, images `(n, 8, 8)`. `train_size` / `test_size` keep only the first images of
    each part (for quick runs)."""
    digits = sklearn.datasets.load_digits()
    images = (digits.images / 16.0).astype("float32")
    labels = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(images))
    test_count = round(TEST_FRACTION * len(images))
    test, train = order[:test_count][:test_size], order[test_count:][:train_size]
    return images[train], labels[train], images[test], labels[test]


def lattice_positions(lattice: str) -> np.ndarray:
    """(x, y) of the `SIZE × SIZE` points of a lattice relative to the centre, in pixels of
    the digits, `(SIZE, SIZE, 2)`; rows downward."""
    if lattice == "hexagonal":
        return hexagonal_positions(SIZE, SPACING["hexagonal"])
    if lattice != "square":
        raise ValueError(f"lattice must be 'hexagonal' or 'square'. Received: lattice={lattice!r}")
    steps = SPACING["square"] * (np.arange(SIZE) - (SIZE - 1) / 2)
    rows, cols = np.meshgrid(steps, steps, indexing="ij")
    return np.stack([cols, rows], axis=-1)


def sample_turned(images: np.ndarray, lattice: str, degrees: float) -> np.ndarray:
    """The digits `(n, h, w)` turned by `degrees` counter-clockwise as displayed, sampled
    (bilinear) on the lattice's points: `(n, SIZE, SIZE)`, zero outside the hexagon on the
    hexagonal lattice."""
    positions = lattice_positions(lattice)
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = positions[..., 0], positions[..., 1]
    # (f turned)(p) = f(R⁻¹ p); with y downward a counter-clockwise turn on screen is
    # R = [[cos, sin], [−sin, cos]] in (x, y).
    source_x, source_y = cos * x - sin * y, sin * x + cos * y
    height, width = images.shape[1:]
    stacked = np.moveaxis(images, 0, -1)  # the images ride along as trailing channels
    samples = bilinear_sample(stacked, (width - 1) / 2 + source_x, (height - 1) / 2 + source_y)
    samples = np.moveaxis(samples, -1, 0)
    if lattice == "hexagonal":
        samples = samples * hexagon_mask((SIZE, SIZE))
    return samples.astype("float32")


def to_lattice(images: np.ndarray, lattice: str, degrees: int = 0) -> np.ndarray:
    """The digits `(n, h, w)` on a lattice, turned by `degrees`: `(n, SIZE, SIZE, 1)`.

    A multiple of the lattice's own turn (60° hexagonal, 90° square) turns the upright
    samples exactly, by index arithmetic; any other angle samples the turned digits.
    """
    step = LATTICE_TURN[lattice]
    if degrees % step:
        return sample_turned(images, lattice, degrees)[..., None]
    upright = sample_turned(images, lattice, 0)
    turns = (degrees // step) % (360 // step)
    if lattice == "hexagonal":
        turned = turn_hexagonal(np.moveaxis(upright, 0, -1), turns)
        return np.moveaxis(turned, -1, 0)[..., None]
    return np.ascontiguousarray(np.rot90(upright, turns, axes=(1, 2)))[..., None]


# -- models -----------------------------------------------------------------------------


def build_gcnn(group: str, fields: Sequence[int], name: str) -> keras.Model:
    """Lifting conv, then group convs, each followed by group batch norm and ReLU; global
    max pooling over space and the group (invariant features), then a Dense classifier."""
    inputs = keras.Input((SIZE, SIZE, 1))
    x = inputs
    for number, (width, size, stride) in enumerate(zip(fields, KERNEL_SIZES, STRIDES, strict=True)):
        x = GroupConv2D(width, size, group=group, strides=stride, use_bias=False)(x)
        x = GroupBatchNormalization(group=group, momentum=0.9)(x)
        x = keras.layers.Activation("relu", name=f"relu{number}")(x)
    x = GlobalGroupMaxPooling2D(group=group)(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=name)


def build_cnn(fields: Sequence[int], name: str = "cnn") -> keras.Model:
    """The same layout with plain Keras layers: `fields` channels per layer."""
    inputs = keras.Input((SIZE, SIZE, 1))
    x = inputs
    for width, size, stride in zip(fields, KERNEL_SIZES, STRIDES, strict=True):
        x = keras.layers.Conv2D(width, size, strides=stride, use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=name)


def build_models() -> dict[str, tuple[str, Callable[[], keras.Model]]]:
    """`{name: (lattice, build)}`: the `P6M` G-CNN, the `P4M` G-CNN and the CNN, each built
    when called (so that each starts from the seed)."""
    return {
        "P6M G-CNN": ("hexagonal", lambda: build_gcnn("P6M", P6M_FIELDS, "p6m")),
        "P4M G-CNN": ("square", lambda: build_gcnn("P4M", P4M_FIELDS, "p4m")),
        "CNN": ("square", lambda: build_cnn(CNN_FIELDS)),
    }


# -- training and evaluation ------------------------------------------------------------


def train(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, epochs: int, verbose: int
) -> float:
    """Trains with Adam and a cosine-decaying learning rate on the lattice images; returns
    the seconds taken (first-step compilation included)."""
    steps = epochs * math.ceil(len(images) / BATCH_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(images, labels, batch_size=BATCH_SIZE, epochs=epochs, verbose=verbose)
    return time.perf_counter() - start


def evaluate(
    model: keras.Model, lattice: str, images: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Accuracy on the test digits turned by each of `ANGLES` (one predict call)."""
    batches = [to_lattice(images, lattice, angle) for angle in ANGLES]
    logits = model.predict(np.concatenate(batches), batch_size=512, verbose=0)
    predicted = np.argmax(logits, axis=-1).reshape(len(ANGLES), len(images))
    return {
        str(angle): float(np.mean(row == labels))
        for angle, row in zip(ANGLES, predicted, strict=True)
    }


def run(
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    verbose: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains the three networks on upright digits and tests them on turned ones.

    Args:
        epochs: training epochs of each network.
        seed: the split and the initial weights.
        train_size, test_size: keep only that many training / test images (quick runs).
        verbose: Keras's `fit` verbosity.
        log: where the progress lines go.

    Returns:
        The results: settings, and per model its lattice, parameters, training seconds and
        accuracy per test angle (keys are the angles in degrees, as strings).

    Raises:
        ValueError: for `epochs` that is not a positive int.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int. Received: epochs={epochs!r}")
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_split(seed, train_size, test_size)
    log(
        f"Digits: {len(x_train)} training and {len(x_test)} test images, 8×8 resampled onto "
        f"{SIZE}×{SIZE} lattices; backend {keras.backend.backend()}, {epochs} epochs, "
        f"seed {seed}."
    )
    records = {}
    for name, (lattice, build) in build_models().items():
        keras.utils.set_random_seed(seed)
        model = build()
        seconds = train(model, to_lattice(x_train, lattice), y_train, epochs, verbose)
        records[name] = {
            "lattice": lattice,
            "params": int(model.count_params()),
            "train_seconds": round(seconds, 2),
            "accuracy": evaluate(model, lattice, x_test, y_test),
        }
        log(f"{name}: trained in {seconds:.1f} s")
    return {
        "backend": keras.backend.backend(),
        "epochs": epochs,
        "seed": seed,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "size": SIZE,
        "spacing": SPACING,
        "angles": list(ANGLES),
        "models": records,
        "seconds": round(time.perf_counter() - start, 1),
    }


def format_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table: model, lattice, parameters, accuracy per angle."""
    angles = [str(angle) for angle in results["angles"]]
    headers = ["model", "lattice", "params"] + [f"{angle}°" for angle in angles]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, record in results["models"].items():
        cells = [name, record["lattice"], str(record["params"])]
        cells += [f"{record['accuracy'][angle]:.3f}" for angle in angles]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """`python -m groco_hexagonal.digits`: runs `run`, prints the table, writes the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m groco_hexagonal.digits", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=None, help="default: all")
    parser.add_argument("--test-size", type=int, default=None, help="default: all")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument("--verbose", type=int, default=0, help="Keras fit verbosity")
    args = parser.parse_args(argv)
    if keras.backend.backend() == "jax":
        import jax

        # JAX's default random generator compiles anew for every weight shape (seconds each).
        jax.config.update("jax_threefry_partitionable", False)
    results = run(args.epochs, args.seed, args.train_size, args.test_size, args.verbose)
    print()
    print(format_table(results))
    print(f"\n{results['seconds']} s in all; results written to {args.out}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
