"""The conformance kit: `groco check` and `groco_core.testing.check_group`."""

from __future__ import annotations

import contextlib
import io
import re

import keras
import numpy as np
import pytest
import test_registry
from test_registry import write_distribution

from groco_core import registry
from groco_core.cli import main
from groco_core.groups import MatrixGroup
from groco_core.hookspecs import hookimpl
from groco_core.layers.serialization import RegisteredGroupsMixin
from groco_core.testing import (
    EquivarianceCase,
    assert_conforms,
    check_group,
    check_kernel_tables,
    check_layer_class,
)

site = test_registry.site  # the fixture: temporary distributions on sys.path

P2MM = [[[1, 0], [0, 1]], [[-1, 0], [0, 1]], [[1, 0], [0, -1]], [[-1, 0], [0, -1]]]
CASE_GROUPS = ("P2MM", "CMM")


class UntransformedKernels(MatrixGroup):
    """An override that forgets to transform the kernel: every row is the identity."""

    def kernel_permutation(self, shape):
        points = int(np.prod(shape))
        return np.tile(np.arange(points), (self.order, 1))


class Plugin:
    def __init__(self, *groups, layers=()):
        self.groups, self.layers = groups, layers

    @hookimpl
    def groco_register_groups(self, register):
        for group in self.groups:
            register(group)

    @hookimpl
    def groco_register_layers(self, register):
        for layer in self.layers:
            register(layer)


def run_cli(arguments: list[str]) -> tuple[int, str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(arguments)
    return code, output.getvalue()


def test_check_passes_on_a_square_group_with_every_layer_row():
    rows = check_group("P2MM")
    checks = [row.check for row in rows]
    assert all(row.passed for row in rows), [r for r in rows if not r.passed]
    for expected in (
        "axioms: matrices, Cayley table, inverses",
        "kernel index tables and support",
        "signal transform",
        "GroupConv2D lifting",
        "GroupConv2D group",
        "GroupConv2D onto P2",
        "GroupConv2DTranspose",
        "GroupMaxPooling2D onto P2",
        "GlobalGroupMaxPooling2D",
        "GroupBatchNormalization (training)",
        "GroupConv2D lifting, even size 6",
        "network: 2 convolutions (bias, ReLU), max pooling, batch norm, global pooling; size 6",
        "network: 2 convolutions (bias, ReLU), max pooling, batch norm, global pooling; size 7",
        ".keras round trip",
    ):
        assert expected in checks
    layer_rows = [row for row in rows if row.check.startswith(("GroupConv2D", "network"))]
    assert all(0 < row.max_error < 1e-4 for row in layer_rows)


def test_a_kernel_table_that_forgets_to_transform_fails(register_plugin):
    register_plugin(Plugin(UntransformedKernels("Lazy", P2MM)), name="lazy")
    row = check_kernel_tables("Lazy")
    assert not row.passed and row.max_error > 0
    rows = check_group("Lazy")
    assert [row.status for row in rows] == ["ok", "FAIL"]
    with pytest.raises(AssertionError, match="Lazy does not conform:\nLazy  kernel index tables"):
        assert_conforms("Lazy")
    code, output = run_cli(["check", "lazy", "P2MM"])
    assert code == 1
    assert "Lazy   kernel index tables and support" in output and "FAIL" in output
    assert "1 FAILED" in output


def test_the_layers_catch_a_wrong_table_the_table_check_skips(register_plugin):
    # With the table check passed over, the layer rows alone fail on the same group.
    register_plugin(Plugin(UntransformedKernels("Lazy", P2MM)), name="lazy")
    from groco_core.check import check_layers

    failed = {row.check for row in check_layers("Lazy") if not row.passed}
    assert {"GroupConv2D lifting", "GroupConv2D group"} <= failed


def test_cli_check_groups_exit_zero_and_bad_arguments(capsys):
    # Groups of order 4 only: on JAX, each new group order compiles every op anew.
    code, output = run_cli(["check", "P2MM", "CMM", "--quick"])
    assert code == 0
    assert "CMM    GroupConv2D lifting" in output
    assert "checks on 2 group(s)" in output and "all passed" in output
    assert main(["check"]) == 2
    assert (
        "check needs exactly one of: group names, --all, --plugin NAME" in capsys.readouterr().err
    )
    assert main(["check", "P9"]) == 2
    assert "Unknown group 'P9'" in capsys.readouterr().err


def test_cli_check_plugin_is_strict_and_covers_its_groups(site, capsys):
    source = (
        "from groco_core import MatrixGroup, hookimpl\n\n\n@hookimpl\n"
        "def groco_register_groups(register):\n"
        f"    register(MatrixGroup('TmpRectMM', {P2MM!r}, lattice='rect'))\n"
        "    return 'a value'\n"
    )
    write_distribution(site, "tmp_groco_checked", source, "checked")
    registry.reload_plugins()
    # Loading now, in strict mode: the plugin's problem is an error (exit code 1).
    assert main(["check", "--plugin", "checked"]) == 1
    assert "groco plugin 'checked'" in capsys.readouterr().err
    # Loaded earlier without the switch: the problem is a failed row.
    with pytest.warns(registry.GrocoPluginWarning, match="returned 'a value'"):
        registry.list_groups()
    code, output = run_cli(["check", "--plugin", "checked", "--quick"])
    assert code == 1
    assert "plugin checked  loads without problems" in output and "returned 'a value'" in output
    assert re.search(r"TmpRectMM +GroupConv2D lifting +\S+ +ok", output)
    assert main(["check", "--plugin", "nope"]) == 2
    assert "Unknown plugin 'nope'" in capsys.readouterr().err


@keras.saving.register_keras_serializable(package="tests_check")
class Doubler(RegisteredGroupsMixin, keras.layers.Layer):
    """A pointwise layer: equivariant under every group."""

    def __init__(self, group=None, **kwargs):
        super().__init__(**kwargs)
        self.group = group

    def call(self, x):
        return 2.0 * x

    @classmethod
    def equivariance_cases(cls, group):
        if group.name not in CASE_GROUPS:  # keeps the test quick: one group order
            return []
        return [EquivarianceCase("pointwise", cls(group=group), (1, 5, 5, group.order, 2))]


@keras.saving.register_keras_serializable(package="tests_check")
class Unchecked(RegisteredGroupsMixin, keras.layers.Layer):
    pass


@keras.saving.register_keras_serializable(package="tests_check")
class FlipsRows(RegisteredGroupsMixin, keras.layers.Layer):
    """Not equivariant under a mirror of the columns: must fail."""

    def __init__(self, group=None, **kwargs):
        super().__init__(**kwargs)
        self.group = group

    def call(self, x):
        return keras.ops.flip(x, axis=1) + x[:, :1]

    @classmethod
    def equivariance_cases(cls, group):
        if group.name not in CASE_GROUPS:
            return []
        return [EquivarianceCase("flip", cls(group=group), (1, 5, 5, group.order, 2))]


def test_plugin_layers_get_rows_through_equivariance_cases(register_plugin):
    register_plugin(Plugin(layers=(Doubler, Unchecked, FlipsRows)), name="extra")
    (doubler,) = check_layer_class(Doubler, "P2MM")
    assert (doubler.check, doubler.status, doubler.max_error) == ("Doubler: pointwise", "ok", 0.0)
    (unchecked,) = check_layer_class(Unchecked, "P2MM")
    assert unchecked.status == "skip" and "no equivariance_cases" in unchecked.detail
    (flip,) = check_layer_class(FlipsRows, "P2MM")
    assert flip.status == "FAIL" and flip.max_error > 0.1
    rows = {row.check: row for row in check_group("P2MM", quick=True)}
    assert rows["Doubler: pointwise"].passed and not rows["FlipsRows: flip"].passed
    code, output = run_cli(["check", "--plugin", "extra"])
    assert code == 1 and "FlipsRows: flip" in output
    assert {line.split()[0] for line in output.splitlines()[1:-2]} >= {"P4M", "P1", "LM"}
    assert registry.layer_plugin("Doubler") == "extra"
