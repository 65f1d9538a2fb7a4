"""The digits example: lattice turns, exact invariance of its networks, a tiny training run.

The networks' inputs are transformed here with this file's own code (integer index
arithmetic from the groups' matrices on the hexagonal lattice, numpy turns and flips on the
square one), independently of `groco_core` and of `groco_hexagonal.resample`.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

# scikit-learn comes with this package's `digits` extra and groco's `demo` extra (which
# `make test` installs); the wheel smoke test of `make test-wheel` has neither.
pytest.importorskip("sklearn")

from groco_hexagonal import digits  # noqa: E402

from groco_core import get_group  # noqa: E402


def hexagon(size: int) -> np.ndarray:
    radius = (size - 1) // 2
    i, j = np.meshgrid(*2 * [np.arange(-radius, radius + 1)], indexing="ij")
    return (np.abs(i) <= radius) & (np.abs(j) <= radius) & (np.abs(i + j) <= radius)


def act(images: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """out[:, p] = images[:, M⁻¹ p] on axes 1, 2 (axial coordinates centred on the array)."""
    size = images.shape[1]
    radius = (size - 1) // 2
    inverse = np.rint(np.linalg.inv(matrix)).astype(int)
    out = np.zeros_like(images)
    for i in range(-radius, radius + 1):
        for j in range(-radius, radius + 1):
            si, sj = inverse @ np.array([i, j])
            if max(abs(si), abs(sj), abs(si + sj)) <= radius:
                out[:, i + radius, j + radius] = images[:, si + radius, sj + radius]
    return out


@pytest.fixture(scope="module")
def digit_images() -> np.ndarray:
    return digits.load_split(0, train_size=8, test_size=4)[2]


def test_lattice_turns_agree_with_turning_the_digit(digit_images):
    # On the square lattice a quarter turn of the samples is the samples of the turned digit
    # (bilinear interpolation commutes with quarter turns about the centre).
    np.testing.assert_allclose(
        digits.to_lattice(digit_images, "square", 90)[..., 0],
        digits.sample_turned(digit_images, "square", 90),
        atol=1e-6,
    )
    # On the hexagonal lattice too: a turn of the lattice maps sample points onto sample
    # points, so turning the samples is sampling the turned digit (and not the other way).
    lattice = digits.to_lattice(digit_images, "hexagonal", 60)[..., 0]
    np.testing.assert_allclose(
        lattice, digits.sample_turned(digit_images, "hexagonal", 60), atol=1e-6
    )
    other_way = digits.sample_turned(digit_images, "hexagonal", -60)
    assert np.abs(lattice - other_way).max() > 0.3
    expected = act(digits.to_lattice(digit_images, "hexagonal"), get_group("P6").matrices[1])
    np.testing.assert_allclose(lattice[..., None], expected, atol=1e-7)


def test_p6m_network_is_invariant_under_all_12_elements(digit_images):
    keras.utils.set_random_seed(1)
    model = digits.build_gcnn("P6M", digits.P6M_FIELDS, "p6m")
    # Give batch norm non-trivial statistics and biases so that they are tested too.
    for layer in model.layers:
        if "batch_normalization" in layer.name:
            for weight in layer.weights:
                weight.assign(np.random.default_rng(2).uniform(0.5, 1.5, weight.shape))
    image = digits.to_lattice(digit_images[:1], "hexagonal")
    turned = digits.to_lattice(digit_images[:1], "hexagonal", 30)  # not in the group
    assert np.all(image[0, ~hexagon(digits.SIZE)] == 0) and image.max() > 0.5
    batch = np.concatenate([act(image, matrix) for matrix in get_group("P6M").matrices])
    logits, other = np.split(model.predict(np.concatenate([batch, turned]), verbose=0), [12])
    scale = np.abs(logits).max()
    assert scale > 1e-2
    np.testing.assert_allclose(logits, np.broadcast_to(logits[:1], logits.shape), atol=1e-5 * scale)
    # Not invariant to what is not in the group: a 30° turn (resampled) changes the output.
    assert np.abs(other - logits[:1]).max() > 1e-3 * scale


def test_p4m_network_is_invariant_under_its_8_elements(digit_images):
    keras.utils.set_random_seed(1)
    model = digits.build_gcnn("P4M", (3, 3, 4, 4), "p4m")
    image = digits.to_lattice(digit_images[:1], "square")
    turns = [np.rot90(image, k, axes=(1, 2)) for k in range(4)]
    batch = np.concatenate(turns + [t[:, :, ::-1] for t in turns])
    logits = model.predict(batch, verbose=0)
    scale = np.abs(logits).max()
    assert scale > 1e-2
    np.testing.assert_allclose(logits, np.broadcast_to(logits[:1], logits.shape), atol=1e-5 * scale)


def test_tiny_training_run_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "digits.json"
    results = digits.main(
        ["--epochs", "1", "--train-size", "64", "--test-size", "24", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == results
    models = results["models"]
    assert list(models) == ["P6M G-CNN", "P4M G-CNN", "CNN"]
    params = [record["params"] for record in models.values()]
    assert all(abs(count / params[0] - 1) < 0.05 for count in params)  # comparable sizes
    assert [m["lattice"] for m in models.values()] == ["hexagonal", "square", "square"]
    assert results["test_images"] == 24 and results["train_images"] == 64
    for record in models.values():
        assert set(record["accuracy"]) == {str(angle) for angle in digits.ANGLES}
        assert all(0 <= value <= 1 for value in record["accuracy"].values())
    # Exact invariance shows in the accuracies: the same on every turn of the lattice.
    p6m, p4m = models["P6M G-CNN"]["accuracy"], models["P4M G-CNN"]["accuracy"]
    assert p6m["0"] == p6m["60"] == p6m["120"] == p6m["180"]
    assert p4m["0"] == p4m["90"] == p4m["180"]
    printed = capsys.readouterr().out
    assert "| model | lattice | params | 0° | 30° | 60° | 90° | 120° | 180° |" in printed
    assert f"| P6M G-CNN | hexagonal | {params[0]} |" in printed


def test_bad_epochs_get_a_clear_message():
    with pytest.raises(ValueError, match=r"epochs must be a positive int. Received: epochs=0"):
        digits.run(epochs=0)
