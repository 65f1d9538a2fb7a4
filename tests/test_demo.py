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
