"""Print pip constraints that pin each dependency of pyproject.toml to its declared floor.

`make test-min` installs with these constraints, so the suite runs against the lowest
versions the package claims to support rather than the newest ones pip would pick.

Usage: python .ci/floors.py [EXTRA ...]  (the runtime dependencies, plus those extras)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$")


def floor(requirement: str) -> str | None:
    """Return `name==version` for a requirement's `>=` or `==` bound, or None without one."""
    match = REQUIREMENT.match(requirement.split(";")[0])
    if match is None:
        raise ValueError(f"Cannot read the requirement {requirement!r} of pyproject.toml.")
    name, _, specifiers = match.groups()
    for specifier in specifiers.split(","):
        bound = re.match(r"^\s*(>=|==)\s*([^\s,]+)", specifier)
        if bound is not None:
            return f"{name}=={bound.group(2)}"
    return None


def main(extras: list[str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        if extra not in project["optional-dependencies"]:
            known = ", ".join(project["optional-dependencies"])
            raise SystemExit(f"Unknown extra {extra!r}. Received: {extra}; known: {known}.")
        requirements += project["optional-dependencies"][extra]
    for requirement in requirements:
        pinned = floor(requirement)
        if pinned is not None:
            print(pinned)


if __name__ == "__main__":
    main(sys.argv[1:])
