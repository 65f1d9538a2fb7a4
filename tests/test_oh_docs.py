"""docs/cube_groups.md: its table is the one generated from the registry."""

from __future__ import annotations

from pathlib import Path

from groco_oh.docs_table import BEGIN, END, cube_groups_table, replace_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "cube_groups.md"


def test_the_table_in_the_docs_is_generated_from_the_registry():
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert replace_table(text, cube_groups_table()) == text, (
        "docs/cube_groups.md is out of date: run "
        "`python -m groco_oh.docs_table docs/cube_groups.md`"
    )
    rows = [line for line in cube_groups_table().splitlines()[2:]]
    assert len(rows) == 33
    assert sum(int(row.split("|")[5]) for row in rows) == 98
