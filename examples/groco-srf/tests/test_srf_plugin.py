"""The plugin as GroCo sees it: found through its entry point, without Keras at import,
in strict mode; its layers in a model that saves, loads and exports to stock Keras; and
docs/plugins.md's walkthrough showing this package's real code."""

from __future__ import annotations

import ast
import inspect
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import groco_srf
import keras
import numpy as np
import pytest
from groco_srf import BasisGroupConv2D, GroupBlurPool2D, basis_conv, blur_pool, filters

import groco_core

PLUGINS_DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def run_python(script: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GROCO_")}
    environment.update({"KERAS_BACKEND": "jax", **env})  # the quickest to import
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
    )


def test_layers_come_through_the_entry_point():
    info = {plugin.name: plugin for plugin in groco_core.list_plugins()}["srf"]
    assert info.source == "entry point of distribution 'groco-srf'"
    assert info.version == groco_srf.__version__
    assert sorted(info.layers) == ["BasisGroupConv2D", "GroupBlurPool2D"]
    assert not info.problems and not info.groups
    assert groco_core.get_layer("BasisGroupConv2D") is BasisGroupConv2D
    assert groco_core.get_layer("GroupBlurPool2D") is GroupBlurPool2D


def test_loading_the_plugin_for_its_groups_imports_no_keras():
    # `groco list-groups` loads every plugin: this one must not make it import Keras.
    result = run_python(
        """
        import sys
        import groco_core
        import groco_srf
        groco_core.list_groups()
        print("keras imported:", "keras" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "keras imported: False" in result.stdout


def test_the_fixture_re_registers_the_installed_plugin(register_plugin):
    # Registering directly is strict: any problem of the plugin would raise PluginError.
    register_plugin(groco_srf, name="srf_again")
    names = {plugin.name for plugin in groco_core.list_plugins()}
    assert "srf_again" in names and "srf" not in names
    assert groco_core.get_layer("BasisGroupConv2D") is BasisGroupConv2D


@pytest.fixture
def model() -> keras.Model:
    inputs = keras.Input((9, 9, 2))
    x = BasisGroupConv2D(3, 3, padding="same_equiv", group="P4M", activation="relu")(inputs)
    x = GroupBlurPool2D(3, group="P4M")(x)
    x = BasisGroupConv2D(2, 3, order=1, orthonormalize=True, group="P4M", subgroup="P4")(x)
    x = GroupBlurPool2D(2, strides=1, padding="same_equiv", group="P4")(x)
    return keras.Model(inputs, x)


def test_keras_file_round_trip(model, tmp_path, rng):
    x = rng.normal(size=(2, 9, 9, 2)).astype("float32")
    path = str(tmp_path / "srf.keras")
    model.save(path)
    expected = keras.ops.convert_to_numpy(model(x))
    for loaded in (groco_core.load_model(path), keras.saving.load_model(path)):
        assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), expected)


def test_export_gives_stock_keras_layers_and_equal_outputs(model, tmp_path, rng):
    x = rng.normal(size=(2, 9, 9, 2)).astype("float32")
    plain = groco_core.export(model)
    modules = {type(layer).__module__.split(".")[0] for layer in plain.layers}
    assert modules == {"keras"}, modules
    kinds = {type(layer).__name__ for layer in plain.layers}
    assert {"Conv2D", "DepthwiseConv2D", "ZeroPadding2D", "Reshape"} <= kinds
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )
    # The exported file loads with plain Keras, with no custom objects.
    path = str(tmp_path / "plain.keras")
    plain.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_channels_first_layers_export(rng):
    inputs = keras.Input((2, 9, 9))
    x = BasisGroupConv2D(2, 3, group="P4", data_format="channels_first")(inputs)
    x = GroupBlurPool2D(3, strides=1, group="P4", data_format="channels_first")(x)
    model = keras.Model(inputs, x)
    data = rng.normal(size=(1, 2, 9, 9)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(groco_core.export(model)(data)),
        keras.ops.convert_to_numpy(model(data)),
        atol=1e-5,
    )


# -- docs/plugins.md shows this package's code ---------------------------------------------


def definitions(tree: ast.AST) -> dict[str, str]:
    """Top-level functions and the methods of top-level classes, by qualified name, as
    `ast.dump`s without docstrings and decorators (the docs register their copies with
    Keras under another package)."""
    found = {}

    def dump(node: ast.AST) -> str:
        node = ast.parse(ast.unparse(node)).body[0]  # a copy
        node.decorator_list = []
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            node.body = body[1:] or [ast.Pass()]
        return ast.dump(node)

    for node in getattr(tree, "body", []):
        if isinstance(node, ast.FunctionDef):
            found[node.name] = dump(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = dump(item)
    return found


def test_the_walkthrough_shows_the_real_code():
    if not PLUGINS_DOC.exists():
        pytest.skip("docs/plugins.md is not next to this checkout")
    blocks = re.findall(r"^```python\n(.*?)^```", PLUGINS_DOC.read_text(), re.M | re.S)
    shown = {}
    for block in blocks:
        shown.update(definitions(ast.parse(block)))
    real = {}
    for module in (filters, basis_conv, blur_pool, groco_srf):
        real.update(definitions(ast.parse(inspect.getsource(module))))
    compared = sorted(set(shown) & set(real))
    assert {
        "BasisGroupConv2D.masked_kernel",
        "BasisGroupConv2D.build_kernel",
        "GroupBlurPool2D.call",
        "GroupBlurPool2D.export_plain",
        "gaussian_derivative_basis",
        "binomial_filter",
        "groco_register_layers",
    } <= set(compared)
    differ = [name for name in compared if shown[name] != real[name]]
    assert not differ, f"docs/plugins.md differs from groco_srf in {differ}"
