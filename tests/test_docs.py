"""Every ```python block of the README and docs/ runs, in order, one namespace per file."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_docs_exist_and_have_examples():
    assert (ROOT / "README.md") in DOCUMENTS and len(DOCUMENTS) > 1
    assert sum(len(PYTHON_BLOCK.findall(doc.read_text())) for doc in DOCUMENTS) >= 5


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_python_blocks_run(document, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save files write them here
    namespace: dict = {"__name__": f"docs_{document.stem}"}
    for number, block in enumerate(PYTHON_BLOCK.findall(document.read_text()), start=1):
        code = compile(block, f"{document.name}[block {number}]", "exec")
        exec(code, namespace)  # noqa: S102 - executing our own documentation is the test


def test_group_catalogue_is_up_to_date():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    committed = (ROOT / "docs" / "catalogue.md").read_text()
    assert committed == generate.catalogue_markdown(), (
        "docs/catalogue.md is out of date with the registry: regenerate it with "
        "`.venv/bin/python docs/generate.py catalogue` and commit it"
    )
