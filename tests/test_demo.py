"""`groco demo` on a tiny budget, the data's transforms, and the missing-extra message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from groco_core import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_upsample_commutes_with_the_test_transforms():
    images = np.random.default_rng(0).random((3, 8, 8)).astype("float32")
    big = demo.upsample(images)
    assert big.shape == (3, 15, 15, 1)
    assert np.array_equal(big[:, ::2, ::2, 0], images)  # every pixel kept
    for name in demo.TEST_TRANSFORMS:
        turned_big = demo.transform_digits(big[..., 0], name)
        assert np.allclose(demo.upsample(demo.transform_digits(images, name))[..., 0], turned_big)
    # Independent of transform_digits: numpy's own turn and flip.
    assert np.array_equal(demo.transform_digits(images, "90"), np.rot90(images, 1, axes=(1, 2)))
    assert np.array_equal(demo.transform_digits(images, "mirror"), images[:, :, ::-1])


def test_bad_transform_and_group_are_refused():
    with pytest.raises(ValueError, match=r"Received: transform='45'"):
        demo.transform_digits(np.zeros((1, 8, 8)), "45")
    with pytest.raises(ValueError, match="acts on 1. Received: group='LM'"):
        demo.run_demo(group="LM", epochs=1)
    with pytest.raises(ValueError, match="Received: epochs=0"):
        demo.run_demo(epochs=0)


def test_invariant_transforms_are_the_groups_elements():
    assert demo.invariant_transforms(demo.get_group("P4M")) == list(demo.TEST_TRANSFORMS)
    assert demo.invariant_transforms(demo.get_group("P4")) == ["0", "90", "180", "270"]
    assert demo.invariant_transforms(demo.get_group("PMv")) == ["0", "mirror"]


def test_tiny_demo_writes_results_and_picture(tmp_path):
    results = demo.run_demo(
        epochs=1, out=tmp_path, train_size=64, test_size=48, verbose=0, log=lambda line: None
    )
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == results
    assert set(written["experiments"]) == {"upright", "augmented"}
    for experiment in written["experiments"].values():
        assert set(experiment) == {"gcnn", "cnn"}
        for record in experiment.values():
            assert set(record) == {"params", "train_seconds", "accuracy"}
            assert set(record["accuracy"]) == set(demo.TEST_TRANSFORMS)
            assert all(0.0 <= value <= 1.0 for value in record["accuracy"].values())
        gcnn, cnn = experiment["gcnn"]["params"], experiment["cnn"]["params"]
        assert abs(cnn / gcnn - 1) <= 0.10
        # Invariant to P4M, which holds every test transform: one accuracy for all.
        assert len(set(experiment["gcnn"]["accuracy"].values())) == 1
    png = (tmp_path / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    table = demo.format_results(results)
    assert table.count("\n") == 5 and "| upright | G-CNN | P4M |" in table
    assert "ratio" in demo.summarize(results)


def test_missing_extra_names_it_and_exits_2():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'sklearn':\n"
        "            raise ImportError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from groco_core.cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert 'pip install "groco[demo]"' in result.stderr
    assert "sklearn is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_a_group_in_one_dimension(capsys):
    from groco_core.cli import main

    assert main(["demo", "--group", "LM"]) == 2
    assert "demo needs a group acting on 2 dimensions" in capsys.readouterr().err


def test_readme_and_demo_page_show_the_committed_results():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_generate", f"{ROOT}/docs/generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    table = generate.demo_table()
    for page in ("README.md", "docs/demo.md"):
        with open(os.path.join(ROOT, page)) as text:
            assert table in text.read(), (
                f"{page}'s demo table differs from docs/demo_results.json: run "
                "`KERAS_BACKEND=jax .venv/bin/python docs/generate.py demo`"
            )


# -- mnist-rot ----------------------------------------------------------------------------


def test_rotate_images_turns_like_rot90_and_about_the_centre():
    images = np.random.default_rng(1).random((4, 28, 28)).astype("float32")
    assert np.allclose(demo.rotate_images(images, 0.0), images)
    for turns in (1, 2, 3):  # numpy's own quarter turns, counter-clockwise
        expected = np.rot90(images, turns, axes=(1, 2))
        assert np.allclose(demo.rotate_images(images, 90.0 * turns), expected, atol=1e-5)
    # One angle per image: a round blob right of the centre, turned by 30° and by 135°, moves
    # to where the turn (counter-clockwise as displayed: rows go down) takes its centre.
    rows, cols = np.mgrid[0:28, 0:28] - 13.5
    blob = np.exp(-((rows - 0.0) ** 2 + (cols - 8.0) ** 2) / (2 * 1.5**2)).astype("float32")
    angles = np.array([30.0, 135.0])
    turned = demo.rotate_images(np.stack([blob, blob]), angles)
    for image, angle in zip(turned, np.radians(angles), strict=True):
        assert image.sum() == pytest.approx(blob.sum(), rel=0.01)
        centroid = [(image * axis).sum() / image.sum() for axis in (rows, cols)]
        assert centroid == pytest.approx([-8 * np.sin(angle), 8 * np.cos(angle)], abs=0.05)


def test_mnist_rot_split_and_sweep_sets():
    data = demo.load_mnist_rot(seed=3, train_size=20, test_size=10)
    assert data["x_train"].shape == (20, 28, 28) and data["x_test"].shape == (10, 28, 28)
    assert set(data["y_train"]) <= set(range(10)) and data["y_test"].dtype == np.int32
    angles = data["test_angles"]
    assert np.all((angles >= 0) & (angles < 360)) and len(set(angles.round(3))) == 10
    again = demo.load_mnist_rot(seed=3, train_size=20, test_size=10)
    assert np.array_equal(again["x_test"], data["x_test"])  # the seed fixes split and angles
    sets = demo.sweep_sets(data, (0, 90, 15, 270))
    assert np.array_equal(sets[0], data["x_test"])
    assert np.array_equal(sets[1], np.rot90(data["x_test"], 1, axes=(1, 2)))
    assert np.array_equal(sets[3], np.rot90(data["x_test"], 3, axes=(1, 2)))
    # 15°: the same digits turned a little further; close to the set itself, not equal.
    assert 0 < np.abs(sets[2] - data["x_test"]).mean() < np.abs(sets[1] - data["x_test"]).mean()


def test_mnist_rot_refuses_other_lattices_and_bad_epochs():
    with pytest.raises(ValueError, match="square lattice.*Received: group='P6M'.*Use P4"):
        demo.run_mnist_rot(group="P6M", epochs=1)
    with pytest.raises(ValueError, match="Received: group='Oh'"):
        demo.run_mnist_rot(group="Oh", epochs=1)
    with pytest.raises(ValueError, match="Received: epochs=0"):
        demo.run_mnist_rot(epochs=0)


def test_tiny_mnist_rot_demo_writes_results_and_is_invariant(tmp_path):
    results = demo.run_mnist_rot(
        group="P4",
        epochs=1,
        out=tmp_path,
        train_size=64,  # one batch of 64, and the 24 turned test sets of 20 in one predict
        test_size=20,  # batch: one compiled step each on JAX
        verbose=0,
        log=lambda line: None,
    )
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == results and written["dataset"] == "mnist-rot"
    assert set(written["models"]) == {"gcnn", "cnn"}
    for record in written["models"].values():
        assert {"group", "params", "test_error", "train_seconds"} <= set(record)
        assert 0.0 <= record["test_error"] <= 1.0 and record["train_seconds"] > 0
    assert written["models"]["gcnn"]["group"] == "P4"
    gcnn, cnn = written["models"]["gcnn"]["params"], written["models"]["cnn"]["params"]
    assert abs(cnn / gcnn - 1) <= 0.10
    sweep = written["angle_sweep"]
    assert sweep["angles"] == list(range(0, 360, 15))
    for kind in ("gcnn", "cnn"):
        assert len(sweep[kind]) == 24 and all(0.0 <= value <= 1.0 for value in sweep[kind])
        assert written["models"][kind]["test_error"] == pytest.approx(1 - sweep[kind][0], abs=1e-4)
    # Exactly invariant to P4: the same accuracy on the test set turned by 0°, 90°, 180°, 270°.
    quarter = [sweep["gcnn"][sweep["angles"].index(angle)] for angle in (0, 90, 180, 270)]
    assert len(set(quarter)) == 1, quarter
    png = (tmp_path / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    table = demo.format_mnist_rot(results)
    assert table.count("\n") == 3 and "| G-CNN | P4 |" in table
    assert "ratio" in demo.summarize_mnist_rot(results)


def test_gcnn_of_mnist_rot_is_invariant_to_quarter_turns_untrained():
    # Logits, not accuracies: the untrained network's outputs for a digit and its turns.
    import keras

    keras.utils.set_random_seed(0)
    model = demo.build_rot_gcnn("P4M", demo.rot_fields(demo.get_group("P4M")))
    images = np.random.default_rng(2).random((3, 28, 28)).astype("float32")
    turned = [np.rot90(images, k, axes=(1, 2)) for k in range(4)] + [images[:, ::-1]]
    logits = model.predict(np.concatenate(turned)[..., None], verbose=0).reshape(5, 3, 10)
    assert np.allclose(logits, logits[:1], atol=1e-4)
    assert not np.allclose(logits[0], logits[0, ::-1], atol=1e-3)  # the digits differ
