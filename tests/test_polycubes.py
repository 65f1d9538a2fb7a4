"""examples/polycubes: the tetracube data, and the Oh G-CNN invariant under all 48 symmetries
of the cube, untrained and trained (transforms written here, with numpy)."""

from __future__ import annotations

import itertools
import json
import os
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples", "polycubes"))

import polycubes  # noqa: E402

SIZE, FIELDS = 6, (2, 2)


def cube_symmetries() -> list[np.ndarray]:
    """The 48 signed permutation matrices: every rotation and reflection of a cube."""
    return [
        np.eye(3, dtype=int)[list(order)] * np.asarray(signs)[:, None]
        for order in itertools.permutations(range(3))
        for signs in itertools.product((1, -1), repeat=3)
    ]


def move(volumes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`(g·f)(p) = f(Mᵀp)` on `(n, d, d, d, c)` volumes, p centred, by index arithmetic."""
    size = volumes.shape[1]
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1)
    centred = 2 * grid - (size - 1)  # doubled, to stay integer for even sizes
    source = (centred @ matrix + (size - 1)) // 2  # row vector p·M = (Mᵀp)ᵀ
    return volumes[:, source[..., 0], source[..., 1], source[..., 2]]


def canonical(cells: np.ndarray) -> tuple:
    """The smallest sorted cell list over the 48 symmetries, moved to the origin."""
    forms = []
    for matrix in cube_symmetries():
        moved = cells @ matrix.T
        moved = moved - moved.min(axis=0)
        forms.append(tuple(sorted(map(tuple, moved.tolist()))))
    return min(forms)


def test_the_seven_classes_are_the_free_tetracubes():
    forms = set()
    for cells in polycubes.TETRACUBES.values():
        cells = np.asarray(cells)
        assert len({tuple(c) for c in cells.tolist()}) == 4
        # Connected face to face: every cube touches another at distance 1.
        distances = np.abs(cells[:, None] - cells[None]).sum(-1)
        assert all((row == 1).any() for row in distances)
        forms.add(canonical(cells))
    assert len(forms) == 7  # no two classes are the same shape up to the 48 symmetries


def test_volumes_hold_the_labelled_shape_and_turning_moves_it():
    rng = np.random.default_rng(0)
    volumes, labels = polycubes.make_volumes(20, SIZE, rng, noise=0.0)
    assert volumes.shape == (20, SIZE, SIZE, SIZE, 1) and labels.dtype == np.int32
    for volume, label in zip(volumes, labels, strict=True):
        cells = np.argwhere(volume[..., 0] > 0)
        expected = np.asarray(polycubes.TETRACUBES[polycubes.CLASSES[label]])
        assert np.array_equal(cells - cells.min(0), expected - expected.min(0))
    turned, elements = polycubes.turn_volumes(volumes, rng)
    matrices = np.asarray(polycubes.get_group("Oh").matrices)
    for volume, moved, element in zip(volumes, turned, elements, strict=True):
        assert np.array_equal(moved, move(volume[None], matrices[element])[0])
    assert len(set(elements.tolist())) > 10


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Received: epochs=0"):
        polycubes.run(tmp_path, epochs=0)
    with pytest.raises(ValueError, match="Received: size=3"):
        polycubes.run(tmp_path, size=3)


def logits_under_all_symmetries(model: keras.Model, volumes: np.ndarray) -> np.ndarray:
    """The logits of `volumes` moved by each of the 48 symmetries: `(48, n, classes)`, from
    one forward pass."""
    moved = np.concatenate([move(volumes, matrix) for matrix in cube_symmetries()])
    logits = keras.ops.convert_to_numpy(model(moved, training=False))  # eager: no compile
    return logits.reshape(48, len(volumes), -1)


def test_gcnn_is_invariant_to_all_48_symmetries_untrained_and_trained():
    rng = np.random.default_rng(1)
    volumes, labels = polycubes.make_volumes(32, SIZE, rng)
    keras.utils.set_random_seed(0)
    model = polycubes.build_gcnn(SIZE, FIELDS)
    for state in ("untrained", "trained"):
        if state == "trained":
            polycubes.train(model, volumes, labels, epochs=1, verbose=0)
        logits = logits_under_all_symmetries(model, volumes[:2])
        assert np.allclose(logits, logits[:1], atol=1e-4), state
        assert not np.allclose(logits[0, 0], logits[0, 1], atol=1e-4)  # the volumes differ


def test_the_cnn_is_not_invariant_and_has_the_gcnns_parameters():
    keras.utils.set_random_seed(0)
    fields = polycubes.FIELDS
    target = polycubes.build_gcnn(SIZE, fields).count_params()
    cnn = polycubes.build_cnn(SIZE, polycubes.matched_widths(SIZE, target, fields))
    assert abs(cnn.count_params() / target - 1) <= 0.05
    volumes, _ = polycubes.make_volumes(2, SIZE, np.random.default_rng(2))
    logits = logits_under_all_symmetries(cnn, volumes)
    assert not np.allclose(logits, logits[:1], atol=1e-3)


def test_tiny_run_writes_results_and_picture(tmp_path):
    results = polycubes.run(
        tmp_path,
        epochs=1,
        train_count=32,
        test_count=24,
        fields=FIELDS,
        verbose=0,
        log=lambda line: None,
    )
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == results and written["classes"] == list(polycubes.CLASSES)
    for record in written["models"].values():
        assert {"group", "params", "train_seconds", "accuracy_upright", "accuracy_turned"} <= set(
            record
        )
    gcnn = written["models"]["gcnn"]
    # The turned test set is the upright one moved: an invariant network scores the same.
    assert gcnn["accuracy_upright"] == gcnn["accuracy_turned"] and gcnn["group"] == "Oh"
    png = (tmp_path / "polycubes.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    table = polycubes.format_table(results)
    assert table.count("\n") == 3 and "| G-CNN | Oh |" in table
