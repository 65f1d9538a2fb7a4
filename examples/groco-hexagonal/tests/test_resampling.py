"""Resampling square images onto the hexagonal lattice and back: the numpy tables against
the geometry (computed here from the lattice's definition), the Keras layers against the
numpy functions, on every backend."""

from __future__ import annotations

import doctest
import importlib.metadata
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from groco_hexagonal.layers import HexagonalToSquare, SquareToHexagonal
from groco_hexagonal.resample import (
    hexagonal_to_square,
    nearest_lattice_indices,
    square_to_hexagonal,
    turn_hexagonal,
)

from groco_core import get_group

SQRT3 = np.sqrt(3.0)


def hexagon(size: int) -> np.ndarray:
    radius = (size - 1) // 2
    i, j = np.meshgrid(*2 * [np.arange(-radius, radius + 1)], indexing="ij")
    return (np.abs(i) <= radius) & (np.abs(j) <= radius) & (np.abs(i + j) <= radius)


def lattice_xy(i: np.ndarray, j: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """The point i·a_row + j·a_col in pixels (x right, y down): a_col = (1, 0),
    a_row = (1/2, √3/2), both `spacing` long."""
    return spacing * (i / 2 + j), spacing * (SQRT3 / 2) * i


def gaussian(shape: tuple[int, int], sigma: float) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    centre_y, centre_x = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return np.exp(-((rows - centre_y) ** 2 + (cols - centre_x) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("spacing", [1.0, 0.6])
def test_square_to_hexagonal_to_square_on_a_smooth_image_is_within_its_error_bound(spacing):
    sigma, pixels = 4.0, 33
    image = gaussian((pixels, pixels), sigma)
    size = 2 * int(14 / spacing) + 1  # the hexagon's flat sides sit ≥ 12 pixels out
    hexagonal = square_to_hexagonal(image, size, spacing)
    assert hexagonal.shape == (size, size) and np.all(hexagonal[~hexagon(size)] == 0)
    back = hexagonal_to_square(hexagonal, (pixels, pixels), spacing)
    # Two errors add up. Bilinear interpolation on unit pixels is off by at most
    # (max|f_xx| + max|f_yy|) / 8, and a Gaussian's second derivatives peak at 1/σ² (centre).
    # The nearest lattice point is at most spacing/√3 away (the circumradius of its
    # hexagonal cell), where f moves by at most max|∇f| · spacing/√3, max|∇f| = e^(−1/2)/σ.
    bound = 2 / sigma**2 / 8 + np.exp(-0.5) / sigma * spacing / SQRT3
    centre = slice(pixels // 2 - 10, pixels // 2 + 11)  # well inside the hexagon
    error = np.abs(back - image)[centre, centre].max()
    assert 0 < error <= bound
    # The picture is drawn inside the hexagon only: far corners are zero.
    assert back[0, 0] == 0


def test_hexagonal_to_square_to_hexagonal_is_exact_on_the_lattice(rng):
    # With a step of 4 pixels, the four pixels around a lattice point are within √2 of it,
    # closer than half a step (2, the inscribed radius of its cell): they all take its value,
    # and bilinear weights summing to 1 give it back.
    size, spacing = 9, 4.0
    hexagonal = rng.normal(size=(size, size, 2)) * hexagon(size)[..., None]
    square = hexagonal_to_square(hexagonal, (40, 40), spacing)
    assert square.shape == (40, 40, 2)
    again = square_to_hexagonal(square, size, spacing)
    np.testing.assert_allclose(again, hexagonal, atol=1e-6)


def test_nearest_lattice_indices_pick_the_nearest_point():
    size, spacing, shape = 9, 1.3, (14, 17)
    radius = (size - 1) // 2
    indices = nearest_lattice_indices(size, shape, spacing)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    px, py = cols - (shape[1] - 1) / 2, rows - (shape[0] - 1) / 2
    # Every lattice point of a larger hexagon, with its flat index (or "outside").
    big = radius + 3
    i, j = (a.ravel() for a in np.meshgrid(*2 * [np.arange(-big, big + 1)], indexing="ij"))
    inside = (np.abs(i) <= radius) & (np.abs(j) <= radius) & (np.abs(i + j) <= radius)
    flat = np.where(inside, (i + radius) * size + (j + radius), size * size)
    x, y = lattice_xy(i, j, spacing)
    distances = np.hypot(px[..., None] - x, py[..., None] - y)
    nearest = distances.min(axis=-1)
    chosen = np.take_along_axis(
        distances, np.argmax(flat == indices[..., None], axis=-1)[..., None], axis=-1
    )[..., 0]
    # A pixel marked outside has a nearest point outside the hexagon; the others name one
    # of their nearest points (ties are equally near).
    marked_inside = indices < size * size
    np.testing.assert_allclose(chosen[marked_inside], nearest[marked_inside], atol=1e-9)
    outside_nearest = np.where(flat == size * size, distances, np.inf).min(axis=-1)
    assert np.all(outside_nearest[~marked_inside] <= nearest[~marked_inside] + 1e-9)
    assert marked_inside.sum() > 60 and (~marked_inside).sum() > 10


def test_bilinear_sampling_reproduces_an_affine_image_exactly():
    size, spacing = 21, 1.3
    rows, cols = np.mgrid[0:40, 0:40].astype(float)
    image = 0.3 + 0.05 * (cols - 19.5) - 0.02 * (rows - 19.5)
    hexagonal = square_to_hexagonal(image, size, spacing)
    radius = (size - 1) // 2
    i, j = np.meshgrid(*2 * [np.arange(-radius, radius + 1)], indexing="ij")
    x, y = lattice_xy(i, j, spacing)
    expected = (0.3 + 0.05 * x - 0.02 * y) * hexagon(size)
    np.testing.assert_allclose(hexagonal, expected, atol=1e-6)


def test_turn_hexagonal_is_the_groups_turn(rng):
    # groco_core's transform of P6 (its own index tables) against the index arithmetic here.
    size = 9
    image = rng.normal(size=(size, size, 3)) * hexagon(size)[..., None]
    p6 = get_group("P6")
    for turns in range(6):
        expected = keras.ops.convert_to_numpy(p6.transform(image[None], turns, (1, 2)))[0]
        np.testing.assert_allclose(turn_hexagonal(image, turns), expected, atol=1e-6)
    np.testing.assert_array_equal(turn_hexagonal(turn_hexagonal(image, 2), 4), image)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layers_equal_the_numpy_functions(rng, data_format):
    # A group axis (3) rides along with the channels (2), as for signals on a group.
    images = rng.normal(size=(2, 10, 12, 3, 2)).astype("float32")
    expected = np.stack([square_to_hexagonal(image, 13, 0.9) for image in images])
    back_expected = np.stack([hexagonal_to_square(h, (10, 12), 0.9) for h in expected])
    to_layout = (0, 4, 1, 2, 3) if data_format == "channels_first" else (0, 1, 2, 3, 4)
    from_layout = np.argsort(to_layout)
    to_hex = SquareToHexagonal(13, spacing=0.9, data_format=data_format)
    to_square = HexagonalToSquare((10, 12), spacing=0.9, data_format=data_format)
    hexagonal = to_hex(images.transpose(to_layout))
    back = keras.ops.convert_to_numpy(to_square(hexagonal))
    hexagonal = keras.ops.convert_to_numpy(hexagonal)
    np.testing.assert_allclose(hexagonal.transpose(from_layout), expected, atol=1e-6)
    np.testing.assert_allclose(back.transpose(from_layout), back_expected, atol=1e-6)
    assert to_hex.compute_output_shape((None,) + images.transpose(to_layout).shape[1:]) == (
        (None, 13, 13, 3, 2) if data_format == "channels_last" else (None, 2, 13, 13, 3)
    )


def test_layers_save_and_load(tmp_path, rng):
    inputs = keras.Input((8, 8, 2))
    hexagonal = SquareToHexagonal(15, spacing=0.6, name="to_hex")(inputs)
    outputs = HexagonalToSquare((8, 8), spacing=0.6, name="to_square")(hexagonal)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "resample.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("to_hex"), SquareToHexagonal)
    config = loaded.get_layer("to_square").get_config()
    assert (config["shape"], config["spacing"]) == ((8, 8), 0.6)
    assert loaded.get_layer("to_hex").get_config()["size"] == 15
    x = rng.random((3, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-7
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x))[0],
        hexagonal_to_square(square_to_hexagonal(x[0], 15, 0.6), (8, 8), 0.6),
        atol=1e-6,
    )


def test_bad_sizes_get_a_clear_message():
    with pytest.raises(ValueError, match=r"size must be an odd positive int.*Received: size=4;"):
        SquareToHexagonal(4)
    with pytest.raises(ValueError, match=r"square_to_hexagonal: size must be.*Received: size=0"):
        square_to_hexagonal(np.zeros((5, 5)), 0)
    with pytest.raises(ValueError, match=r"spacing must be a positive number.*spacing=0"):
        SquareToHexagonal(5, spacing=0)
    with pytest.raises(ValueError, match=r"shape must be \(height, width\).*shape=\(0, 5\)"):
        HexagonalToSquare((0, 5))
    with pytest.raises(ValueError, match=r"odd squares in axial.*input_shape=\(1, 8, 8, 1\)"):
        HexagonalToSquare((8, 8))(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match=r"spatial size must be known.*Received: input_shape"):
        SquareToHexagonal(5)(keras.Input((None, None, 1)))
    with pytest.raises(ValueError, match=r"hexagonal must be \(n, n, ...\).*shape=\(4, 5\)"):
        hexagonal_to_square(np.zeros((4, 5)), (8, 8))


def test_the_readme_example_runs():
    # The package README's Python block, run as written: SquareToHexagonal in a P6M network.
    # From the source tree, or from the installed wheel's long description (`make
    # test-wheel` copies the tests alone).
    path = Path(__file__).resolve().parents[1] / "README.md"
    if path.exists():
        readme = path.read_text()
    else:
        readme = importlib.metadata.metadata("groco-hexagonal").get_payload()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    model = keras.Model(namespace["inputs"], namespace["outputs"])
    assert model.output_shape == (None, 4)
    assert model.layers[1].compute_output_shape((None, 8, 8, 1)) == (None, 15, 15, 1)


def test_the_layers_docstring_examples_run():
    import groco_hexagonal.layers

    results = doctest.testmod(groco_hexagonal.layers)
    assert results.attempted >= 4 and results.failed == 0
