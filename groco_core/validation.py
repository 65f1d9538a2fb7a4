"""Validation of point-group definitions (pydantic), shared by `MatrixGroup` and the registry."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

GROUP_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"


class GroupDefinition(BaseModel):
    """The data that defines a point group: a name and a closed set of integer matrices."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=False)

    name: str = Field(pattern=GROUP_NAME_PATTERN)
    matrices: list[list[list[int]]]
    lattice: str = Field(default="square", pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""

    @field_validator("matrices", mode="before")
    @classmethod
    def _to_nested_lists(cls, value: Any) -> Any:
        array = np.asarray(value)
        if array.dtype == bool or array.dtype.kind not in "iuf":
            raise ValueError(f"matrices must be numbers, got dtype {array.dtype}")
        if array.ndim != 3 or array.shape[1] != array.shape[2] or array.shape[0] == 0:
            raise ValueError(
                f"matrices must have shape (order, d, d) with order >= 1, got shape {array.shape}"
            )
        if not 1 <= array.shape[1] <= 3:
            raise ValueError(f"the dimension d must be 1, 2 or 3, got {array.shape[1]}")
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise ValueError("matrices must have integer entries")
        return array.astype(np.int64).tolist()

    @model_validator(mode="after")
    def _check_group_axioms(self) -> GroupDefinition:
        matrices = np.asarray(self.matrices, dtype=np.int64)
        order, dim, _ = matrices.shape
        determinants = np.rint(np.linalg.det(matrices)).astype(int)
        bad = [i for i, det in enumerate(determinants) if abs(det) != 1]
        if bad:
            raise ValueError(
                f"every matrix must have determinant +1 or -1; matrices[{bad[0]}] has "
                f"determinant {determinants[bad[0]]}"
            )
        if not np.array_equal(matrices[0], np.eye(dim, dtype=np.int64)):
            raise ValueError("the first matrix (element 0) must be the identity")
        keys = [m.tobytes() for m in matrices]
        if len(set(keys)) != order:
            first = next(i for i, key in enumerate(keys) if keys.index(key) != i)
            raise ValueError(
                f"elements must be unique; matrices[{first}] repeats "
                f"matrices[{keys.index(keys[first])}]"
            )
        known = set(keys)
        for i in range(order):
            for j in range(order):
                if (matrices[i] @ matrices[j]).tobytes() not in known:
                    raise ValueError(
                        "the matrices are not closed under multiplication: "
                        f"matrices[{i}] @ matrices[{j}] is not among them"
                    )
        return self


def validate_group_definition(
    name: Any, matrices: Any, lattice: Any = "square", description: Any = ""
) -> GroupDefinition:
    """Validates a group definition, raising `ValueError` with a readable summary.

    Raises:
        ValueError: naming the group and every problem pydantic found.
    """
    try:
        return GroupDefinition(
            name=name, matrices=matrices, lattice=lattice, description=description
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'definition'}: "
            f"{item['msg'].removeprefix('Value error, ')}"
            for item in error.errors()
        )
        raise ValueError(f"Invalid group definition {name!r}: {problems}") from None
