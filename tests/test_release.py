"""The release's packaging: what the wheel ships, where the version lives, the changelog and
the dependency floors `make test-min` installs. (`make test-wheel` builds and installs the
wheel itself; these checks are the cheap ones that every test run makes.)"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

import groco_core

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def load_floors():
    spec = importlib.util.spec_from_file_location("floors", ROOT / ".ci" / "floors.py")
    floors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floors)
    return floors


def test_every_package_folder_is_in_the_wheel():
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {package: Path(folder) for package, folder in setuptools["package-dir"].items()}
    on_disk = set()
    for top, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((top, *relative)))
    missing = on_disk - set(setuptools["packages"])
    assert not missing, f"packages of the source not in pyproject's packages: {sorted(missing)}"


def test_the_version_lives_in_groco_core_alone():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "groco_core.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", groco_core.__version__)
    # The installed metadata was made from the same attribute.
    assert importlib.metadata.version("groco") == groco_core.__version__


def test_changelog_has_an_entry_for_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog")
    entries = re.findall(r"^## \[([^\]]+)\] - (\d{4}-\d{2}-\d{2})$", changelog, re.MULTILINE)
    assert groco_core.__version__ in [version for version, _ in entries]
    assert re.search(rf"^\[{re.escape(groco_core.__version__)}\]: ", changelog, re.MULTILINE)


def test_py_typed_is_shipped():
    assert (ROOT / "groco_core" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["groco_core"]


@pytest.mark.parametrize(
    "requirement, pinned",
    [
        ("keras>=3.14", "keras==3.14"),
        ("tensorflow-cpu>=2.16.1", "tensorflow-cpu==2.16.1"),
        ("torch==2.13.0", "torch==2.13.0"),
        ("numpy >= 1.26, <3", "numpy==1.26"),
        ("mkdocstrings[python]>=0.26", "mkdocstrings==0.26"),
        ("pytest", None),
        ("importlib-metadata>=6.0; python_version < '3.12'", "importlib-metadata==6.0"),
    ],
)
def test_floor_pins_a_requirement_to_its_lowest_version(requirement, pinned):
    assert load_floors().floor(requirement) == pinned


def test_every_runtime_dependency_and_backend_has_a_floor():
    """`make test-min` pins what has a floor; a dependency without one would float to the
    newest release there, and the floors would no longer be what the suite ran on."""
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    runtime = project["dependencies"] + extras["jax"] + extras["tensorflow"] + extras["torch"]
    floors = load_floors()
    assert [r for r in runtime if floors.floor(r) is None] == []
