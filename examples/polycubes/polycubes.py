"""Tetracubes in random orientations: an Oh-invariant 3D G-CNN against a 3D CNN.

The seven free tetracubes (the shapes made of four unit cubes joined face to face, a shape and
its mirror image counted once) are the classes. A sample is a small volume holding one of them
at a random position, each cube a voxel of random brightness, with Gaussian noise on every
voxel. Classes are defined up to rotation and reflection, so the right network is invariant to
`Oh`, the 48 symmetries of the cube.

Both networks train on the shapes in one orientation only (as listed in `TETRACUBES`) and are
tested on test volumes as drawn and on the same volumes each moved by a symmetry of the cube
drawn at random from the 48. The G-CNN (a 4×4×4 lifting convolution and a 1×1×1 `Oh` group
convolution, global max pooling over space and the group) gives the same answer for a volume
and its 48 transforms, so it scores the same on both test sets without ever seeing a turned
shape; the 3D CNN with the same layers and number of parameters only knows the orientation it
saw.

Run it as a script (JAX is the fastest backend on CPU):

    KERAS_BACKEND=jax python examples/polycubes/polycubes.py --out polycubes-run

It writes `results.json` and `polycubes.png` into `--out` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from groco_core import (
    GlobalGroupMaxPooling3D,
    GroupBatchNormalization,
    GroupConv3D,
    get_group,
)

# The seven free tetracubes as (depth, row, col) cells, each in the orientation used for
# training. "skew" stands for both chiral tetracubes, mirror images of each other.
TETRACUBES = {
    "I": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)),
    "O": ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)),
    "T": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)),
    "L": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 2)),
    "S": ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 2)),
    "skew": ((0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1)),
    "tripod": ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)),
}
CLASSES = tuple(TETRACUBES)
GROUP = "Oh"
SIZE = 6
# A 4×4×4 lifting convolution (6³ → 3³: every tetracube fits in one of its windows, wherever it
# lies), then a 1×1×1 group convolution that mixes the 48 orientations at each position.
KERNELS = (4, 1)
FIELDS = (16, 16)  # fields of the G-CNN's convolutions (×48 channels each)
NOISE = 0.1
TRAIN_COUNT, TEST_COUNT = 700, 700
EPOCHS = 12
BATCH_SIZE = 32
LEARNING_RATE = 1e-2


# -- data -------------------------------------------------------------------------------


def make_volumes(
    count: int, size: int, rng: np.random.Generator, noise: float = NOISE
) -> tuple[np.ndarray, np.ndarray]:
    """`count` volumes `(count, size, size, size, 1)` and their labels: a random tetracube, in
    its orientation of `TETRACUBES`, at a random position, each cube a voxel of brightness in
    [0.6, 1.0], plus Gaussian noise of deviation `noise` on every voxel."""
    labels = rng.integers(0, len(CLASSES), count).astype("int32")
    volumes = rng.normal(0.0, noise, (count, size, size, size)).astype("float32")
    for volume, label in zip(volumes, labels, strict=True):
        cells = np.asarray(TETRACUBES[CLASSES[label]], "int64")
        cells += rng.integers(0, size - cells.max(axis=0))  # a random position inside
        volume[tuple(cells.T)] += rng.uniform(0.6, 1.0, len(cells)).astype("float32")
    return volumes[..., None], labels


def turn_volumes(volumes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each volume `(n, d, d, d, 1)` moved by one of the 48 symmetries of the cube, drawn at
    random: returns the moved volumes and the elements' indices in `Oh`. For a matrix `M`
    (a signed permutation), `(g·f)(p) = f(Mᵀp)`: output axis `i` reads input axis `σ(i)`,
    reversed where `M[i, σ(i)] = −1`."""
    matrices = np.asarray(get_group(GROUP).matrices, "int64")
    elements = rng.integers(0, len(matrices), len(volumes))
    out = np.empty_like(volumes)
    for number, (volume, element) in enumerate(zip(volumes, elements, strict=True)):
        matrix = matrices[element]
        source = np.argmax(np.abs(matrix), axis=1)
        moved = np.transpose(volume, (*source, 3))
        flips = tuple(axis for axis in range(3) if matrix[axis, source[axis]] < 0)
        out[number] = np.flip(moved, flips) if flips else moved
    return out, elements


# -- models -----------------------------------------------------------------------------


def build_gcnn(
    size: int = SIZE, fields: tuple[int, ...] = FIELDS, group: str = GROUP
) -> keras.Model:
    """A 3×3×3 lifting convolution and 3×3×3 group convolutions on `group`, each followed
    by group batch norm and ReLU; global max pooling over space and the group (features
    invariant to the group), a Dense classifier."""
    inputs = keras.Input((size, size, size, 1))
    x = inputs
    for width, kernel in zip(fields, KERNELS, strict=True):
        x = GroupConv3D(width, kernel, group=group, use_bias=False)(x)
        x = GroupBatchNormalization(group=group, momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
    x = GlobalGroupMaxPooling3D(group=group)(x)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES))(x), name="gcnn")


def build_cnn(size: int, widths: tuple[int, ...]) -> keras.Model:
    """The same network with plain Keras layers: `widths` channels per convolution."""
    inputs = keras.Input((size, size, size, 1))
    x = inputs
    for width, kernel in zip(widths, KERNELS, strict=True):
        x = keras.layers.Conv3D(width, kernel, use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalMaxPooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES))(x), name="cnn")


def matched_widths(size: int, target_params: int, fields: tuple[int, ...]) -> tuple[int, ...]:
    """Widths for `build_cnn`: `fields` times one factor, chosen so the CNN's parameter count
    is within 5% of `target_params` where whole widths allow."""
    scale = math.sqrt(get_group(GROUP).order)  # |G| times the weights of the fields' conv
    for _ in range(6):
        widths = tuple(max(1, round(scale * f)) for f in fields)
        params = build_cnn(size, widths).count_params()
        if abs(params / target_params - 1) < 0.05:
            break
        scale *= math.sqrt(target_params / params)
    return widths


# -- experiment -------------------------------------------------------------------------


def train(
    model: keras.Model, volumes: np.ndarray, labels: np.ndarray, epochs: int, verbose: int
) -> float:
    """Adam with a cosine-decaying learning rate; returns the seconds taken (compilation
    included)."""
    steps = epochs * math.ceil(len(volumes) / BATCH_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(volumes, labels, batch_size=BATCH_SIZE, epochs=epochs, verbose=verbose)
    return time.perf_counter() - start


def accuracy(model: keras.Model, volumes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of `volumes` classified as `labels`."""
    logits = model.predict(volumes, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def run(
    out: str | pathlib.Path,
    epochs: int = EPOCHS,
    seed: int = 0,
    size: int = SIZE,
    train_count: int = TRAIN_COUNT,
    test_count: int = TEST_COUNT,
    fields: tuple[int, ...] = FIELDS,
    verbose: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains both networks on upright shapes, tests them on upright and on randomly turned
    shapes; writes `results.json` and `polycubes.png` into `out` and returns the results.

    Raises:
        ValueError: for `epochs < 1` or a volume smaller than the longest tetracube (4).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int. Received: epochs={epochs!r}")
    if not isinstance(size, int) or size < 4:
        raise ValueError(
            f"size must be an int of at least 4, to hold the 4-cube bar. Received: size={size!r}"
        )
    start, start_cpu = time.perf_counter(), time.process_time()
    if keras.backend.backend() == "jax":
        import jax

        # JAX's default random generator compiles anew for every weight shape (seconds each).
        jax.config.update("jax_threefry_partitionable", False)
    rng = np.random.default_rng(seed)
    x_train, y_train = make_volumes(train_count, size, rng)
    x_upright, y_test = make_volumes(test_count, size, rng)
    x_turned, _ = turn_volumes(x_upright, rng)
    log(
        f"Tetracubes: {train_count} training volumes {size}³ (one orientation), "
        f"{test_count} test volumes, upright and each moved by a random symmetry of the cube; "
        "backend "
        f"{keras.backend.backend()}, {epochs} epochs, seed {seed}."
    )
    gcnn_params = build_gcnn(size, fields).count_params()
    widths = matched_widths(size, gcnn_params, fields)
    models: dict[str, dict[str, Any]] = {}
    trained = {}
    for kind in ("gcnn", "cnn"):
        keras.utils.set_random_seed(seed)
        model = build_gcnn(size, fields) if kind == "gcnn" else build_cnn(size, widths)
        log(f"\n{'G-CNN ' + GROUP if kind == 'gcnn' else 'CNN'}: {model.count_params()} parameters")
        cpu = time.process_time()
        seconds = train(model, x_train, y_train, epochs, verbose)
        cpu = time.process_time() - cpu
        models[kind] = {
            "group": GROUP if kind == "gcnn" else "C1",
            "params": int(model.count_params()),
            "widths": list(fields if kind == "gcnn" else widths),
            "train_seconds": round(seconds, 2),
            "train_cpu_seconds": round(cpu, 2),
            "accuracy_upright": accuracy(model, x_upright, y_test),
            "accuracy_turned": accuracy(model, x_turned, y_test),
        }
        trained[kind] = model
    results = {
        "classes": list(CLASSES),
        "backend": keras.backend.backend(),
        "size": size,
        "epochs": epochs,
        "seed": seed,
        "train_volumes": train_count,
        "test_volumes": test_count,
        "models": models,
    }
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    results["total_cpu_seconds"] = round(time.process_time() - start_cpu, 1)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(out / "polycubes.png", results, x_turned, y_test, trained)
    return results


# -- report -----------------------------------------------------------------------------


def format_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table: one row per model."""
    headers = ["model", "group", "params", "train s", "train CPU s", "acc upright", "acc turned"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for kind, record in results["models"].items():
        cells = [
            "G-CNN" if kind == "gcnn" else "3D CNN",
            record["group"],
            str(record["params"]),
            f"{record['train_seconds']:.1f}",
            f"{record['train_cpu_seconds']:.1f}",
            f"{record['accuracy_upright']:.3f}",
            f"{record['accuracy_turned']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(
    path: pathlib.Path,
    results: dict[str, Any],
    volumes: np.ndarray,
    labels: np.ndarray,
    models: dict[str, keras.Model],
) -> None:
    """polycubes.png: the seven classes as voxels, then turned test shapes with each model's
    answer, then the accuracies."""
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams["font.size"] = 9
    figure = Figure(figsize=(11, 7), layout="constrained")
    rows = figure.subfigures(3, 1, height_ratios=[1.0, 1.1, 1.2])
    for number, name in enumerate(CLASSES):
        ax = rows[0].add_subplot(1, len(CLASSES), number + 1, projection="3d")
        cells = np.asarray(TETRACUBES[name])
        filled = np.zeros((4, 4, 4), bool)
        filled[tuple(cells.T)] = True
        ax.voxels(filled, facecolors="C0", edgecolor="k", linewidth=0.3)
        _cube_axes(ax, 4)
        ax.set_title(name)
    rows[0].suptitle(
        "(a) The seven classes, in the orientation seen in training", x=0.02, ha="left"
    )

    shown = 7
    predicted = {
        kind: np.argmax(model.predict(volumes[:shown], verbose=0), axis=-1)
        for kind, model in models.items()
    }
    for number in range(shown):
        ax = rows[1].add_subplot(1, shown, number + 1, projection="3d")
        ax.voxels(volumes[number, ..., 0] > 0.5, facecolors="0.6", edgecolor="k", linewidth=0.3)
        _cube_axes(ax, volumes.shape[1])
        ax.set_title(
            f"{CLASSES[labels[number]]}: G-CNN {CLASSES[predicted['gcnn'][number]]}, "
            f"CNN {CLASSES[predicted['cnn'][number]]}",
            fontsize=7,
        )
    rows[1].suptitle(
        "(b) Turned test shapes (voxels above 0.5): the true class and each network's answer",
        x=0.02,
        ha="left",
    )

    ax = rows[2].subplots()
    positions = np.arange(2)
    for offset, kind, color in ((-0.2, "gcnn", "C0"), (0.2, "cnn", "C1")):
        record = results["models"][kind]
        label = (
            f"G-CNN {record['group']}" if kind == "gcnn" else "3D CNN"
        ) + f" ({record['params']} parameters)"
        values = [record["accuracy_upright"], record["accuracy_turned"]]
        ax.bar(positions + offset, values, 0.4, color=color, label=label)
    ax.set_xticks(positions, ["test shapes upright", "test shapes turned at random"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.axhline(1 / len(CLASSES), color="0.5", linestyle=":", linewidth=0.8)
    ax.legend(loc="upper right")
    rows[2].suptitle("(c) Accuracy (dotted: chance)", x=0.02, ha="left")
    figure.savefig(path, dpi=90)


def _cube_axes(ax: Any, size: int) -> None:
    """Equal scales on the three axes of a 3D plot of a `size`³ volume, no axis lines, so
    shapes keep their proportions."""
    for limits in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        limits(0, size)
    ax.set_box_aspect((1, 1, 1))
    ax.set_axis_off()


def main(argv: list[str] | None = None) -> int:
    """The command line: trains, prints the table, writes the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="polycubes-run", help="folder for the results")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = run(args.out, epochs=args.epochs, seed=args.seed)
    print("\n" + format_table(results))
    print(
        f"\n{results['total_seconds']} s in all ({results['total_cpu_seconds']} s of CPU time); "
        f"wrote {args.out}/results.json and polycubes.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
