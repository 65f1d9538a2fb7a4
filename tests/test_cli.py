"""The `groco` command line, run as a user runs it (subprocesses) and in-process for errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from groco_p4m import SQUARE_GROUPS

from groco_core import cli

SQUARE_GROUP_NAMES = {"P4M", "P4", "P2MM", "CMM", "PMh", "PMv", "PMd", "PMa", "P2", "P1"}


def groco(*arguments: str) -> subprocess.CompletedProcess:
    """`python -m groco_core.cli ARGUMENTS`, on the JAX backend (the quickest to import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROCO_")}
    env["KERAS_BACKEND"] = "jax"
    return subprocess.run(
        [sys.executable, "-m", "groco_core.cli", *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def table_rows(text: str) -> dict[str, list[str]]:
    """First column → cells of a `groco list-*` table (cells split on 2+ spaces)."""
    lines = text.strip().splitlines()
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in lines[1:])}


def section(text: str, title: str) -> list[str]:
    """The table lines (header excluded) of one section of `groco show`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 2 : end]


# -- subprocesses -------------------------------------------------------------------------


def test_list_groups_table_shows_every_square_group():
    result = groco("list-groups")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header == ["name", "order", "dimension", "lattice", "plugin", "subgroups"]
    rows = table_rows(result.stdout)
    assert set(rows) >= SQUARE_GROUP_NAMES | {"LM", "L1"}
    assert rows["P4M"][:5] == ["P4M", "8", "2", "square", "p4m"]
    assert set(rows["P4M"][5].split(", ")) == SQUARE_GROUP_NAMES - {"P4M"}
    assert rows["P4"][5].split(", ") == ["P2", "P1"]
    assert rows["P1"][5] == "-"
    assert rows["LM"][1:6] == ["2", "1", "line", "p4m", "L1"]


def test_list_groups_json_filtered_by_dimension():
    result = groco("list-groups", "--dimension", "2", "--json")
    assert result.returncode == 0, result.stderr
    records = {record["name"]: record for record in json.loads(result.stdout)}
    assert set(records) >= SQUARE_GROUP_NAMES
    assert all(record["dimension"] == 2 for record in records.values())
    assert set(records["P4M"]) == {"name", "order", "dimension", "lattice", "plugin", "subgroups"}
    for name in SQUARE_GROUP_NAMES:
        assert records[name]["order"] == len(SQUARE_GROUPS[name][0])
        assert records[name]["plugin"] == "p4m"
    assert set(records["P4M"]["subgroups"]) == SQUARE_GROUP_NAMES - {"P4M"}
    assert set(records["CMM"]["subgroups"]) == {"P2", "PMd", "PMa", "P1"}


def test_show_prints_elements_cayley_table_subgroups_and_cosets():
    result = groco("show", "p4m")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("P4M: ")
    assert "order 8, dimension 2, square lattice, plugin p4m" in text

    elements = section(text, "Elements")
    matrices = np.array([json.loads(line.split(None, 1)[1]) for line in elements])
    np.testing.assert_array_equal(matrices, SQUARE_GROUPS["P4M"][0])

    cayley = section(text, "Cayley table")
    assert len(cayley) == 8
    for i, line in enumerate(cayley):
        label, *row = (int(cell) for cell in line.split())
        products = [matrices[i] @ matrices[j] for j in range(8)]
        expected = [next(k for k in range(8) if np.array_equal(matrices[k], p)) for p in products]
        assert (label, row) == (i, expected)

    inverses = re.search(r"^Inverses .*: ([\d ]+)$", text, re.MULTILINE).group(1).split()
    for i, inverse in enumerate(inverses):
        np.testing.assert_array_equal(matrices[i] @ matrices[int(inverse)], np.eye(2))

    subgroups = {line.split()[0]: line.split()[1:] for line in section(text, "Subgroups")}
    assert subgroups["P4M"] == [str(i) for i in range(8)]
    assert subgroups["P4"] == ["0", "1", "2", "3"]  # the turns are elements 0-3
    assert set(subgroups) == SQUARE_GROUP_NAMES

    cosets = {line.split()[0]: line.split(None, 1)[1] for line in section(text, "Left cosets")}
    assert "P4M" not in cosets
    p4_cosets = [set(map(int, c.split())) for c in re.findall(r"\{([^}]*)\}", cosets["P4"])]
    assert p4_cosets == [{0, 1, 2, 3}, {4, 5, 6, 7}]
    p1_cosets = re.findall(r"\{([^}]*)\}", cosets["P1"])
    assert p1_cosets == [str(i) for i in range(8)]


def test_list_plugins_shows_the_builtin_plugins():
    result = groco("list-plugins")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "source", "version", "status", "groups", "layers"]
    assert max(len(line) for line in lines) <= cli.TEXT_WIDTH
    rows = table_rows(result.stdout)
    assert rows["p4m"][1:4] == ["built-in", "0.1.0", "loaded"]
    # Wrapped cells: the groups and layers lists continue on the lines below their row.
    p4m = lines.index(next(line for line in lines if line.startswith("p4m ")))
    column = lines[0].index("groups")
    groups = []
    for line in lines[p4m:]:
        if line is not lines[p4m] and not line.startswith(" "):
            break
        groups.extend(g for g in line[column:].split()[:5] if g != "-")
    assert {g.rstrip(",") for g in groups} >= SQUARE_GROUP_NAMES | {"LM", "L1"}
    assert "GroupConv2D," in result.stdout.split()


def test_list_layers_shows_the_generic_layers():
    result = groco("list-layers")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    for name in ("GroupConv1D", "GroupConv2D", "GroupConv3D"):
        assert rows[name] == [name, "groco_core"]


def test_unknown_group_is_a_clean_error():
    result = groco("show", "P4N")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "groco: error: Unknown group 'P4N'" in result.stderr
    assert "Closest match: 'P4M'" in result.stderr
    available = result.stderr.split("Available groups: ")[1].split(".")[0].split(", ")
    assert set(available) >= SQUARE_GROUP_NAMES


# -- in-process -----------------------------------------------------------------------------


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: groco")
    for name in ("list-groups", "show", "list-plugins", "list-layers"):
        assert name in out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["list-groups", "--dimension", "4"], "invalid choice: 4"),
        (["list-groups", "--dimension", "two"], "invalid int value: 'two'"),
        (["show"], "the following arguments are required: group"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_with_code_2(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_show_group_without_proper_subgroups(capsys):
    assert cli.main(["show", "L1"]) == 0
    out = capsys.readouterr().out
    assert "order 1, dimension 1, line lattice" in out
    assert section(out, "Elements") == ["0      [[ 1]]"]
    assert "(none: the group has no registered proper subgroup)" in out


def test_a_new_command_is_one_decorated_function(capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))

    def arguments(parser):
        parser.add_argument("group")

    @cli.command("order", "print a group's order", arguments)
    def order(args):
        print(cli.registry.get_group(args.group).order)
        return 0

    assert cli.main(["order", "cmm"]) == 0
    assert capsys.readouterr().out == "4\n"


# -- cube groups -------------------------------------------------------------------------------


def _image_of(notation: str) -> np.ndarray:
    """The matrix of `M p` written as `(d, -c, r)`: the test's own reading of the notation."""
    matrix = np.zeros((3, 3), dtype=int)
    for row, term in enumerate(notation.strip("()").split(", ")):
        matrix[row, "drc".index(term[-1])] = -1 if term.startswith("-") else 1
    return matrix


def test_show_oh_is_readable_and_prints_the_big_tables_on_request(capsys):
    assert cli.main(["show", "oh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Oh: ") and "order 48, dimension 3, cubic lattice, plugin oh" in out
    elements = section(out, "Elements")
    matrices = np.array([_image_of(line.split(None, 1)[1]) for line in elements])
    np.testing.assert_array_equal(matrices, cli.registry.get_group("Oh").matrices)
    assert "Cayley table: 48 x 48, pass --cayley to print it." in out
    assert "Left cosets of 32 subgroups: pass --cosets to print them." in out
    assert max(len(line) for line in out.splitlines()) < 200
    subgroups = {line.split()[0] for line in section(out, "Subgroups")}
    assert len(subgroups) == 33 and {"O", "D4h", "D4", "Td", "C2v_f"} <= subgroups

    assert cli.main(["show", "Oh", "--cayley", "--cosets"]) == 0
    out = capsys.readouterr().out
    cayley = section(out, "Cayley table")
    assert len(cayley) == 48
    for i in (0, 5, 30, 47):
        row = [int(cell) for cell in cayley[i].split()[1:]]
        for j in (0, 7, 29, 46):
            np.testing.assert_array_equal(matrices[row[j]], matrices[i] @ matrices[j])
    cosets = {line.split()[0]: line.split(None, 1)[1] for line in section(out, "Left cosets")}
    assert len(re.findall(r"\{([^}]*)\}", cosets["D4h"])) == 3


def test_list_groups_dimension_3_lists_the_cube_groups(capsys):
    assert cli.main(["list-groups", "--dimension", "3"]) == 0
    rows = table_rows(capsys.readouterr().out)
    cube = {name: cells for name, cells in rows.items() if cells[4] == "oh"}
    assert len(cube) == 33
    assert cube["Oh"][1:4] == ["48", "3", "cubic"]
    assert len(cube["Oh"][5].split(", ")) == 32
    assert cube["D4"][5].split(", ") == ["C4", "D2_aa", "D2_af", "C2_a", "C2_f", "C1"]
    assert cube["C1"][5] == "-"


# -- --json on every command ---------------------------------------------------------------


def run_json(capsys, *arguments: str, code: int = 0):
    assert cli.main([*arguments, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def test_show_json_has_every_table(capsys):
    record = run_json(capsys, "show", "p4")
    assert (record["name"], record["order"], record["plugin"]) == ("P4", 4, "p4m")
    matrices = np.array(record["matrices"])
    assert matrices.shape == (4, 2, 2)
    for i in range(4):  # the Cayley table and inverses against the matrices' own products
        for j in range(4):
            product = matrices[i] @ matrices[j]
            assert np.array_equal(matrices[record["cayley"][i][j]], product)
        assert np.array_equal(matrices[i] @ matrices[record["inverses"][i]], np.eye(2))
    assert record["subgroups"] == {"P4": [0, 1, 2, 3], "P2": [0, 2], "P1": [0]}
    assert record["cosets"]["P2"] == [[0, 2], [1, 3]]
    assert record["aliases"] == []


def test_list_plugins_and_list_layers_json(capsys):
    listing = run_json(capsys, "list-plugins")
    plugins = {plugin["name"]: plugin for plugin in listing["plugins"]}
    assert set(plugins["p4m"]["groups"]) >= SQUARE_GROUP_NAMES
    assert plugins["p4m"]["status"] == "loaded" and plugins["p4m"]["problems"] == []
    assert "GroupConv2D" in plugins["groco_core"]["layers"]
    assert listing["disabled"] == [] and isinstance(listing["skipped"], list)
    layers = {layer["name"]: layer for layer in run_json(capsys, "list-layers")}
    assert layers["GroupConv2D"]["plugin"] == "groco_core"
    assert layers["DepthwiseGroupConv2D"]["plugin"] == "separable"


def test_disabled_plugin_in_list_plugins_json(capsys):
    listing = run_json(capsys, "--disable-plugin", "separable", "list-plugins")
    assert [p["name"] for p in listing["disabled"]] == ["separable"]
    assert listing["disabled"][0]["status"] == "disabled"
    assert "separable" not in {plugin["name"] for plugin in listing["plugins"]}
    assert "separable" in {info.name for info in cli.registry.list_plugins()}  # restored


def test_check_json_rows(capsys, monkeypatch):
    # The rows' JSON, not the checks themselves (tests/test_check.py runs those): rows made
    # here, a failed one without an error among them, stand in for check_group's.
    from groco_core import check

    made = [
        check.CheckRow("P2", "axioms", 0.0, True),
        check.CheckRow("P2", "GroupConv2D lifting", 2.5e-7, True),
        check.CheckRow("P2", "network", None, False, "ValueError: broken"),
        check.CheckRow("P2", "network at 9", float("nan"), False),
    ]
    monkeypatch.setattr(check, "check_group", lambda group, quick: made if quick else [])
    made_keys = ("group", "check", "max_error", "passed", "detail", "skipped", "status")
    result = run_json(capsys, "check", "p2", "--quick", code=1)
    assert {key: result[key] for key in ("checks", "groups", "failed", "passed")} == {
        "checks": 4,
        "groups": 1,
        "failed": 2,
        "passed": False,
    }
    # Every CheckRow field is there (dataclasses.asdict), whichever fields it grows.
    assert set(result["rows"][1]) == {f.name for f in dataclasses.fields(check.CheckRow)} | {
        "status"
    }
    assert {key: result["rows"][1][key] for key in made_keys} == {
        "group": "P2",
        "check": "GroupConv2D lifting",
        "max_error": 2.5e-7,
        "passed": True,
        "detail": "",
        "skipped": False,
        "status": "ok",
    }
    assert result["rows"][2]["max_error"] is None and result["rows"][2]["status"] == "FAIL"
    assert result["rows"][2]["detail"] == "ValueError: broken"
    assert result["rows"][3]["max_error"] == "nan"  # JSON has no NaN


def test_every_command_takes_json_and_a_text_command_is_wrapped(capsys, monkeypatch):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        assert "--json" in capsys.readouterr().out, name
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))

    @cli.command("order", "print a group's order", lambda parser: parser.add_argument("group"))
    def order(args):
        print(cli.registry.get_group(args.group).order)
        return 0

    assert cli.main(["order", "cmm", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "command": "order",
        "exit_code": 0,
        "arguments": {"group": "cmm"},
        "output": "4\n",
    }
    assert captured.err == "4\n"  # the text itself still shows, on stderr


def test_format_table_wraps_to_the_width():
    text = cli.format_table(["a", "b"], [["x", "one two three four"]], width=12)
    assert text.splitlines() == ["a  b", "x  one two", "   three", "   four"]
    assert cli.format_table(["a", "b"], [["x", "one two"]]) == "a  b\nx  one two"
