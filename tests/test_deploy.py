"""Deployment: `groco export` to each format, run by the format's own runtime; Keras's and
PyTorch's exporters on a GroCo model directly; loading after `import keras, groco_core`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from groco_core import deploy, get_layer
from groco_core.cli import main
from groco_core.layers.conv import GroupConv2D
from groco_core.layers.global_pooling import GlobalGroupAveragePooling2D

BACKEND = keras.backend.backend()
ATOL = 1e-4
# What Keras 3.15 cannot write on a backend (every package installed): our message instead.
UNSUPPORTED = {("saved_model", "torch"), ("litert", "jax")}
RUNTIMES = {"saved_model": "tensorflow", "onnx": "onnxruntime", "litert": "ai_edge_litert"}


def _model(rng):
    """Lifting P4M convolution → P4M-to-P4 convolution → pooling over the group and the
    plane → Dense: every kind of group axis handling, on a small input."""
    inputs = keras.Input((8, 8, 2))
    x = GroupConv2D(3, 3, group="P4M", activation="relu")(inputs)
    x = GroupConv2D(3, 3, group="P4M", subgroup="P4", padding="same_equiv")(x)
    x = GlobalGroupAveragePooling2D(group="P4")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    weights = model.get_weights()  # scaled so that the outputs are of order one
    model.set_weights([0.3 * rng.normal(size=w.shape).astype("float32") for w in weights])
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A GroCo model saved as `.keras`, an input batch and the model's output on it."""
    rng = np.random.default_rng(7)
    model = _model(rng)
    images = rng.normal(size=(1, 8, 8, 2)).astype("float32")
    path = str(tmp_path_factory.mktemp("deploy") / "model.keras")
    model.save(path)
    return model, path, images, ops.convert_to_numpy(model(images))


def _run_written(format, output, images):
    """The written file run by its format's runtime, not by Keras or GroCo."""
    if format == "keras":
        plain = keras.saving.load_model(output)  # plain Keras: no custom objects given
        assert not any(type(layer).__module__.startswith("groco") for layer in plain.layers)
        return ops.convert_to_numpy(plain(images))
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(output)  # held: its variables live as long as it does
        return loaded.serve(tf.constant(images)).numpy()
    if format == "onnx":
        import onnx
        import onnxruntime

        onnx.checker.check_model(onnx.load(output), full_check=True)
        session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: images})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=output)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


_OUTPUTS = {
    "keras": "plain.keras",
    "saved_model": "serving",
    "onnx": "m.onnx",
    "litert": "m.tflite",
}


@pytest.mark.parametrize("format", deploy.FORMATS)
def test_groco_export_writes_each_format_that_its_runtime_runs(saved, format, tmp_path, capsys):
    _, path, images, expected = saved
    output = str(tmp_path / _OUTPUTS[format])
    if (format, BACKEND) in UNSUPPORTED:
        assert main(["export", path, output]) == 2
        error = capsys.readouterr().err
        assert f"Cannot write format={format!r}" in error
        assert "KERAS_BACKEND=tensorflow groco export" in error
        assert not os.path.exists(output)
        return
    if format == "litert" and BACKEND == "torch" and not importlib.util.find_spec("litert_torch"):
        assert main(["export", path, output, "--format", "litert"]) == 2
        assert "needs litert_torch, which is not installed" in capsys.readouterr().err
        return
    if format in RUNTIMES:
        pytest.importorskip(RUNTIMES[format])
    assert main(["export", path, output]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"({format}, stock Keras layers" in printed
    assert f"checked with {deploy.RUNTIMES[format]}: largest difference" in printed
    np.testing.assert_allclose(_run_written(format, output, images), expected, atol=ATOL)


def test_export_format_comes_from_the_suffix_and_contradictions_are_refused(saved, capsys):
    assert deploy.format_for("m.keras") == "keras"
    assert deploy.format_for("m.ONNX") == "onnx"
    assert deploy.format_for("m.tflite") == "litert"
    assert deploy.format_for("exported/serving") == "saved_model"
    assert deploy.format_for("m.bin", "onnx") == "onnx"
    with pytest.raises(ValueError, match=r"Cannot tell the format .* Received: output='m\.h5'"):
        deploy.format_for("m.h5")
    with pytest.raises(ValueError, match=r"does not match format='onnx'.*suffix \.onnx"):
        deploy.format_for("m.tflite", "onnx")
    with pytest.raises(ValueError, match=r"does not match format='saved_model'.*a directory"):
        deploy.format_for("m.keras", "saved_model")
    with pytest.raises(ValueError, match=r"does not match format='keras'.*suffix \.keras"):
        deploy.format_for("m.bin", "keras")
    with pytest.raises(ValueError, match=r"format must be one of .* Received: format='tflite'"):
        deploy.format_for("m.tflite", "tflite")
    _, path, _, _ = saved
    assert main(["export", path, "m.h5"]) == 2
    assert "groco: error: Cannot tell the format" in capsys.readouterr().err
    assert main(["export", "missing.keras", "m.onnx"]) == 2
    assert "MODEL must be an existing .keras file. Received: 'missing.keras'" in (
        capsys.readouterr().err
    )
    with pytest.raises(TypeError, match="Received: model of type list"):
        deploy.export_model([], "m.keras")


def test_a_missing_exporter_names_the_extra_to_install(saved, monkeypatch, tmp_path):
    model, _, _, _ = saved
    absent = {"tf2onnx", "jax2onnx", "onnx"}
    real = importlib.util.find_spec
    monkeypatch.setattr(
        deploy.importlib.util, "find_spec", lambda name: None if name in absent else real(name)
    )
    with pytest.raises(
        ValueError, match=r'not installed\. Install it: pip install "groco\[deploy\]"'
    ):
        deploy.export_model(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_written_file_that_its_runtime_runs_differently_is_reported(saved, monkeypatch, tmp_path):
    model, _, _, _ = saved
    run_file = deploy._run_file
    monkeypatch.setattr(deploy, "_run_file", lambda *args: run_file(*args) + 0.01)
    with pytest.raises(ValueError, match=r"keras runs the keras file .* differs from the model's"):
        deploy.export_model(model, tmp_path / "m.keras")

    def refuse(*args):
        raise RuntimeError("Unsupported pooling size.")

    monkeypatch.setattr(deploy, "_run_file", refuse)
    with pytest.raises(ValueError, match=r"cannot run .*Unsupported pooling size\. Write it from"):
        deploy.export_model(model, tmp_path / "m.keras")
    assert deploy.export_model(model, tmp_path / "m.keras", check=False).runtime is None


# -- the exporters of Keras and PyTorch, on the GroCo model itself ----------------------------


def test_keras_export_on_the_groco_model_directly(saved, tmp_path):
    # ONNX where Keras writes it with tf2onnx or torch.onnx; on JAX, whose ONNX writer
    # (jax2onnx) takes over ten seconds for this model and runs in the `groco export` test,
    # the SavedModel that jax2tf writes.
    format = "saved_model" if BACKEND == "jax" else "onnx"
    pytest.importorskip(RUNTIMES[format])
    model, _, images, expected = saved
    output = str(tmp_path / ("direct" if format == "saved_model" else "direct.onnx"))
    keras_format = "tf_saved_model" if format == "saved_model" else format
    model.export(output, format=keras_format, verbose=False)
    np.testing.assert_allclose(_run_written(format, output, images), expected, atol=ATOL)


@pytest.mark.skipif(BACKEND != "torch", reason="torch.export and torch.onnx need PyTorch")
def test_torch_export_and_torch_onnx_export_on_the_groco_model_directly(saved, tmp_path):
    import torch

    pytest.importorskip("onnxruntime")
    model, _, images, expected = saved
    program = torch.export.export(model, (torch.from_numpy(images),))
    np.testing.assert_allclose(
        program.module()(torch.from_numpy(images)).detach().numpy(), expected, atol=ATOL
    )
    # The TorchScript exporter traces the eager layers (sizes become tensors there).
    output = str(tmp_path / "traced.onnx")
    torch.onnx.export(model, (torch.from_numpy(images),), output, dynamo=False)
    np.testing.assert_allclose(_run_written("onnx", output, images), expected, atol=ATOL)
    # The torch.export-based exporter (Keras's first choice) records the keras.ops gather;
    # onnx.checker, in _run_written, rejected the Squeeze after keras.ops.take's index_select.
    pytest.importorskip("onnxscript")
    output = str(tmp_path / "dynamo.onnx")
    torch.onnx.export(model, (torch.from_numpy(images),), output, dynamo=True, verbose=False)
    np.testing.assert_allclose(_run_written("onnx", output, images), expected, atol=ATOL)


# -- loading as Keras users expect ----------------------------------------------------------


def _python(code, tmp_path):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )


@pytest.fixture(scope="module")
def plugin_model(tmp_path_factory):
    """A folder with `m.keras` (GroCo and plugin layers), an input `x.npy` and its output
    `y.npy`."""
    folder = tmp_path_factory.mktemp("load")
    rng = np.random.default_rng(3)
    inputs = keras.Input((7, 7, 2))
    x = GroupConv2D(2, 3, group="P4")(inputs)
    outputs = get_layer("SeparableGroupConv2D")(2, 3, group="P4")(x)  # a plugin's layer
    model = keras.Model(inputs, outputs)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    images = rng.normal(size=(1, 7, 7, 2)).astype("float32")
    model.save(folder / "m.keras")
    np.save(folder / "x.npy", images)
    np.save(folder / "y.npy", ops.convert_to_numpy(model(images)))
    return folder


def test_keras_load_model_after_import_keras_groco_core_in_a_fresh_process(plugin_model):
    loaded = _python(
        """
        import keras, groco_core
        import numpy as np
        model = keras.models.load_model("m.keras")
        y = keras.ops.convert_to_numpy(model(np.load("x.npy")))
        print(sorted(type(layer).__name__ for layer in model.layers))
        print(float(np.abs(y - np.load("y.npy")).max()))
        """,
        plugin_model,
    )
    assert loaded.returncode == 0, loaded.stderr
    names, difference = loaded.stdout.strip().splitlines()[-2:]
    assert names == "['GroupConv2D', 'InputLayer', 'SeparableGroupConv2D']"
    assert float(difference) <= 1e-5


@pytest.mark.skipif(BACKEND != "torch", reason="Keras's lookup of classes, the same everywhere")
def test_keras_imported_after_groco_core_loads_through_groco_load_model(plugin_model):
    # The README's save/load section: Keras imported after groco_core cannot locate the
    # classes until the layers are loaded; groco_core.load_model loads them first.
    late = _python(
        """
        import sys
        import groco_core
        assert "keras" not in sys.modules, "import groco_core imported Keras"
        import keras
        try:
            keras.models.load_model("m.keras")
        except Exception as error:
            print("refused:", "Could not locate class" in str(error))
        model = groco_core.load_model("m.keras")
        print(sorted(type(layer).__name__ for layer in model.layers))
        """,
        plugin_model,
    )
    assert late.returncode == 0, late.stderr
    assert late.stdout.strip().splitlines()[-2:] == [
        "refused: True",
        "['GroupConv2D', 'InputLayer', 'SeparableGroupConv2D']",
    ]
