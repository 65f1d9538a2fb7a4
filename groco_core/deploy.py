"""`groco export`: a model with GroCo layers written as `.keras`, SavedModel, ONNX or LiteRT.

The model is first turned into stock Keras layers (`groco_core.export`: kernels transformed
once, no group machinery left), then written by Keras's own exporters on the backend Keras
runs on. The plain model is what makes every format possible: the runtimes (onnxruntime,
the LiteRT interpreter, TensorFlow Serving) see only ordinary convolutions, and its cost of
inference is that of the plain CNN. The written file is then run by its runtime on a random
input and compared with the model (`check_written`), so that a file an exporter wrote wrong
fails here rather than in deployment.

Which backend writes which format (Keras 3.15):

| format        | TensorFlow     | JAX                     | PyTorch                      |
|---------------|----------------|-------------------------|------------------------------|
| `keras`       | yes            | yes                     | yes                          |
| `saved_model` | yes            | yes (needs TensorFlow)  | no (Keras cannot)            |
| `onnx`        | yes (tf2onnx)  | yes (jax2onnx)          | yes (torch.onnx)             |
| `litert`      | yes            | no (Keras cannot)       | with `litert-torch` only     |

Example:
    >>> import keras
    >>> from groco_core import GroupConv2D
    >>> from groco_core.deploy import export_model
    >>> inputs = keras.Input((9, 9, 3))
    >>> model = keras.Model(inputs, GroupConv2D(4, 3, group="P4")(inputs))
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "plain.keras")
    >>> written = export_model(model, path)
    >>> written.format, written.runtime, written.difference < 1e-4
    ('keras', 'keras', True)
    >>> plain = keras.saving.load_model(path)  # plain Keras: no GroCo layer left
    >>> sorted({type(layer).__module__.split(".")[0] for layer in plain.layers})
    ['keras']
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import Any, NamedTuple

import keras
import numpy as np

FORMATS = ("keras", "saved_model", "onnx", "litert")
SUFFIXES = {".keras": "keras", ".onnx": "onnx", ".tflite": "litert"}
INSTALL = 'pip install "groco[deploy]"'

# Per format and backend: the Python packages Keras's exporter imports there.
_NEEDS = {
    ("saved_model", "jax"): ("tensorflow",),
    ("onnx", "tensorflow"): ("tf2onnx", "onnx"),
    ("onnx", "jax"): ("jax2onnx", "onnx"),
    ("onnx", "torch"): ("onnx",),
    ("litert", "torch"): ("litert_torch",),
}
# Formats Keras cannot write on a backend, even with every package installed.
_UNSUPPORTED = {
    ("saved_model", "torch"): "Keras's SavedModel export fails on the PyTorch backend",
    ("litert", "jax"): "Keras writes LiteRT from the TensorFlow and PyTorch backends only",
}
_BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
# The package that runs each format, for the check after writing.
RUNTIMES = {
    "keras": "keras",
    "saved_model": "tensorflow",
    "onnx": "onnxruntime",
    "litert": "ai_edge_litert",
}
# The largest difference, relative to the output's largest magnitude (at least 1), that the
# check allows between the written file, run by its runtime, and the model.
TOLERANCE = 1e-4


class Written(NamedTuple):
    """What `export_model` wrote, and how its runtime's output compared with the model's.

    `runtime` is the package that ran the written file on a random input, `difference` the
    largest difference from the model's output; both None where the check did not run (not
    asked for, the runtime not installed, or an input of unknown size).
    """

    format: str
    runtime: str | None
    difference: float | None


def format_for(output: str | os.PathLike, format: str | None = None) -> str:
    """The format to write `output` in: `format` when given, else from the suffix (`.keras`,
    `.onnx`, `.tflite`; a path without a suffix, or an existing directory, is a SavedModel
    directory). Guessing wrong would write a file no runtime opens, so a suffix that names
    another format, or no format, is refused.

    Raises:
        ValueError: for an unknown format, or a suffix that names none or another format.

    Example:
        >>> from groco_core.deploy import format_for
        >>> format_for("model.tflite"), format_for("serving/model"), format_for("m.bin", "onnx")
        ('litert', 'saved_model', 'onnx')
    """
    output = os.fspath(output)
    suffix = os.path.splitext(output.rstrip("/\\"))[1].lower()
    implied = SUFFIXES.get(suffix)
    if format is not None:
        if format not in FORMATS:
            raise ValueError(
                f"format must be one of {', '.join(FORMATS)}. Received: format={format!r}"
            )
        if (implied is not None and implied != format) or (format == "keras" and not implied):
            raise ValueError(
                f"The output's suffix does not match format={format!r}. Received: "
                f"output={output!r}. Name the output "
                + (
                    "with a suffix other than .keras, .onnx and .tflite (a directory)"
                    if format == "saved_model"
                    else f"with the suffix {_suffix_of(format)}"
                )
                + ", or pass the format the suffix names."
            )
        return format
    if implied is not None:
        return implied
    if not suffix or os.path.isdir(output) or output.endswith(("/", "\\")):
        return "saved_model"
    raise ValueError(
        f"Cannot tell the format from the output's suffix {suffix!r}. Received: "
        f"output={output!r}. Use .keras, .onnx or .tflite, a directory name without a suffix "
        "for a SavedModel, or pass the format (--format keras|saved_model|onnx|litert)."
    )


def _suffix_of(format: str) -> str:
    return next(suffix for suffix, name in SUFFIXES.items() if name == format)


def check_format_available(format: str, backend: str | None = None) -> None:
    """Refuses, before any work, a format that the backend's Keras cannot write, or whose
    exporter needs a package that is not installed; each message says what to do instead.

    Raises:
        ValueError: naming the format, the backend, and the extra to install or the backend
            to run on (`KERAS_BACKEND=tensorflow`).

    Example:
        >>> from groco_core.deploy import check_format_available
        >>> check_format_available("keras")  # every backend writes .keras
    """
    backend = backend or keras.backend.backend()
    name = _BACKEND_NAMES.get(backend, backend)
    reason = _UNSUPPORTED.get((format, backend))
    if reason is not None:
        raise ValueError(
            f"Cannot write format={format!r} from the {name} backend: {reason}. The exported "
            "model is made of stock Keras layers, so any backend can write it: run "
            f"`KERAS_BACKEND=tensorflow groco export MODEL OUTPUT --format {format}` (or call "
            "export_model with KERAS_BACKEND=tensorflow set before Keras is imported)."
        )
    missing = [
        package
        for package in _NEEDS.get((format, backend), ())
        if importlib.util.find_spec(package) is None
    ]
    if missing:
        extra = (
            "pip install litert-torch, or run with KERAS_BACKEND=tensorflow"
            if "litert_torch" in missing
            else INSTALL
        )
        raise ValueError(
            f"Writing format={format!r} from the {name} backend needs "
            f"{', '.join(missing)}, which is not installed. Install it: {extra}."
        )


def export_model(
    model: keras.Model | str | os.PathLike,
    output: str | os.PathLike,
    format: str | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    check: bool = True,
) -> Written:
    """Writes `model` as stock Keras layers in `format`, with Keras's own exporter, and checks
    the written file with its runtime.

    The model (or the `.keras` file, loaded with `groco_core.load_model`) goes through
    `groco_core.export` first, so the written file needs neither GroCo nor its plugins:
    `.keras` loads with plain Keras, a SavedModel with `tf.saved_model.load`, ONNX with
    onnxruntime, LiteRT with the LiteRT interpreter. An exporter can write a file its runtime
    cannot run, or runs differently (on JAX, jax2onnx writes Keras's `MaxPooling2D` as a
    `MaxPool` that onnxruntime refuses), so the file is run on a random input by that runtime,
    where it is installed, and compared with the model.

    Args:
        model: a built functional or Sequential model, or the path of a `.keras` file.
        output: the file (`.keras`, `.onnx`, `.tflite`) or directory (SavedModel) to write.
        format: `"keras"`, `"saved_model"`, `"onnx"` or `"litert"`; default from `output`
            (see `format_for`).
        input_shape: the input shape without the batch axis to export for, where the model
            was built on unknown sizes (see `groco_core.export`).
        check: whether to run the written file with its runtime and compare.

    Returns:
        The format written, the runtime that checked it and the largest difference found.

    Raises:
        ValueError: for a format the suffix contradicts, one the backend cannot write, one
            whose exporter is not installed (naming `pip install "groco[deploy]"`), or a
            written file whose runtime fails on it or differs from the model by more than
            `TOLERANCE` (relative to the output's largest magnitude).
        TypeError: when `model` is neither a Keras model nor a path.
    """
    format = format_for(output, format)
    check_format_available(format)
    if isinstance(model, (str, os.PathLike)):
        from groco_core.layers.serialization import load_model

        model = load_model(model)
    if not isinstance(model, keras.Model):
        raise TypeError(
            "export_model takes a keras.Model or the path of a .keras file. Received: model "
            f"of type {type(model).__name__}"
        )
    from groco_core.exporting import export

    plain = export(model, input_shape=input_shape)
    output = os.fspath(output)
    if format == "keras":
        plain.save(output)
    else:
        keras_format = "tf_saved_model" if format == "saved_model" else format
        plain.export(
            output, format=keras_format, verbose=False, input_signature=_input_signature(plain)
        )
    if not check:
        return Written(format, None, None)
    return Written(format, *check_written(plain, output, format))


def check_written(model: keras.Model, output: str, format: str) -> tuple[str | None, float | None]:
    """Runs the file written from `model` with its format's runtime on a random input and
    compares the output with the model's, so that a file its runtime cannot run, or runs
    differently, is reported where it is written rather than where it is deployed.

    Returns:
        The runtime's name and the largest difference; `(None, None)` where the runtime is
        not installed, or the model has several inputs or outputs or an input of unknown
        size.

    Raises:
        ValueError: when the runtime fails on the file or the difference exceeds
            `TOLERANCE` times the output's largest magnitude (at least 1).
    """
    runtime = RUNTIMES[format]
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else (None,)
    if len(model.outputs) != 1 or None in shape or importlib.util.find_spec(runtime) is None:
        return None, None
    inputs = np.random.default_rng(0).normal(size=(1, *shape)).astype(model.inputs[0].dtype)
    expected = keras.ops.convert_to_numpy(model(inputs))
    where = f"the {format} file {output!r} written from the {_backend_name()} backend"
    try:
        outputs = np.asarray(_run_file(format, output, inputs)).reshape(expected.shape)
    except Exception as error:  # noqa: BLE001 - any failure of the runtime is reported
        raise ValueError(
            f"{runtime} cannot run {where}: {type(error).__name__}: {error} Write it from "
            f"another backend, e.g. `KERAS_BACKEND=tensorflow groco export MODEL {output}`."
        ) from error
    difference = float(np.max(np.abs(outputs - expected)))
    if not difference <= TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
        raise ValueError(
            f"{runtime} runs {where}, but its output differs from the model's by "
            f"{difference:.3g} (largest output {float(np.max(np.abs(expected))):.3g}). Write "
            f"it from another backend, e.g. `KERAS_BACKEND=tensorflow groco export MODEL "
            f"{output}`."
        )
    return runtime, difference


def _backend_name() -> str:
    backend = keras.backend.backend()
    return _BACKEND_NAMES.get(backend, backend)


def _run_file(format: str, output: str, inputs: np.ndarray) -> Any:
    """The written file's output on `inputs`, computed by its format's runtime."""
    if format == "keras":
        return keras.ops.convert_to_numpy(keras.saving.load_model(output)(inputs))
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(output)  # held: its variables live as long as it does
        return loaded.serve(tf.constant(inputs)).numpy()
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: inputs})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=output)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], inputs)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _input_signature(model: keras.Model) -> list:
    """The model's inputs as `keras.InputSpec`s, in the structure `model.export` takes: Keras
    reads the signature from a model's first call otherwise, and a freshly exported (or
    loaded) model has not been called."""
    specs = [
        keras.InputSpec(shape=tuple(tensor.shape), dtype=tensor.dtype, name=tensor.name)
        for tensor in model.inputs
    ]
    return specs if len(specs) == 1 else [specs]


def main(args: argparse.Namespace) -> int:
    """`groco export MODEL OUTPUT [--format ...]`: what `export_model` does, from the command
    line, and what it checked.

    Raises:
        ValueError: for a MODEL that is not an existing `.keras` file, and as `export_model`
            (the command prints it as one line on stderr, exit code 2).
    """
    if not os.path.isfile(args.model) or not args.model.endswith(".keras"):
        raise ValueError(
            f"MODEL must be an existing .keras file. Received: {args.model!r}. Save the model "
            "with model.save('model.keras') first."
        )
    written = export_model(args.model, args.output, args.format)
    print(f"wrote {args.output} ({written.format}, stock Keras layers, {_backend_name()} backend)")
    if written.runtime is None:
        print(
            f"not run by its runtime: {RUNTIMES[written.format]} is not installed ({INSTALL}), "
            "or the model's input size is not fixed"
        )
    else:
        print(f"checked with {written.runtime}: largest difference {written.difference:.2g}")
    return 0
