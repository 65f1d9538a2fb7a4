"""A griffe extension for the API reference of `make docs`: it teaches griffe, which reads the
source without running it, the two conventions of GroCo's docstrings and modules it cannot
read on its own.

- `__all__` built from `LAYER_NAMES` (`[..., *LAYER_NAMES]` in `groco_core`,
  `list(LAYER_NAMES)` in `groco_core.layers`): griffe expands only string literals, so the
  layer names are filled in here from `groco_core.layer_names`, which imports nothing.
- An `Example:` section holding doctests: griffe's Google parser knows `Examples:` only and
  would render `Example:` as a note whose `>>>` lines become nested quotes; it is read as
  `Examples:`, so the doctests render as code.
- Arguments documented together, in a list of names wrapped over several lines
  (`kernel_size, strides, ...,` then `*_regularizer, data_format: as in ...`): griffe reads
  an argument's name from one line, so the two lines are joined.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

from groco_core.layer_names import LAYER_NAMES

EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
NAMES = r"[\w*]+(?:,\s*[\w*]+)*"
# A line holding only names and a trailing comma, continued by more names: with a trailing
# comma again, or with the colon that ends the list.
WRAPPED_NAMES = re.compile(rf"^(\s*{NAMES},)[ \t]*\n\s+(?={NAMES}(?:,[ \t]*$|\s*:))", re.MULTILINE)
MODULES_EXPORTING_LAYERS = {"groco_core", "groco_core.layers"}


class GrocoDocstrings(griffe.Extension):
    """Fills in the layer names of `__all__`, reads `Example:` as `Examples:` and joins
    wrapped lists of argument names."""

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        if mod.path not in MODULES_EXPORTING_LAYERS:
            return
        literal = [name for name in (mod.exports or []) if isinstance(name, str)]
        mod.exports = literal + [name for name in LAYER_NAMES if name not in literal]

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
            joined = WRAPPED_NAMES.sub(r"\1 ", value)
            while joined != value:  # one line is joined per match: repeat for longer lists
                value, joined = joined, WRAPPED_NAMES.sub(r"\1 ", joined)
            obj.docstring.value = value
