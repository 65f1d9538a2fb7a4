"""The names a mistyped name could mean, for the end of an error message.

`closest_match_note("P4N", names)` is `" Closest match: 'P4M'."`: every candidate that is the
name followed by `_` and a suffix (`C2` could mean `C2_a` and `C2_f`), then the one fewest
edits away. The registry ends its "Unknown group" and "not a subgroup" messages with it, and
the plugin loader its "unknown hook" warning.
"""

from __future__ import annotations

import difflib


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def extending(name: str, candidates: list[str]) -> list[str]:
    """The candidates that are `name` followed by `_` and a suffix (case-insensitive), sorted:
    for `"C2"`, `C2_a` and `C2_f`."""
    prefix = name.lower() + "_"
    return sorted(c for c in candidates if c.lower().startswith(prefix))


def _closest_matches(name: str, candidates: list[str], max_edits: int | None = None) -> list[str]:
    """Every candidate `name` could mean: those `extending` it, then the one fewest edits
    away (if at most `max_edits`). Ties of edits go to the same length (a typo more often
    replaces a character than drops one: "P4N" means "P4M" rather than "P4"), then to the
    most similar."""
    if not candidates:
        return []
    key = name.lower()
    best = min(
        candidates,
        key=lambda c: (
            _edit_distance(key, c.lower()),
            abs(len(c) - len(key)),
            -difflib.SequenceMatcher(None, key, c.lower()).ratio(),
            c,
        ),
    )
    extended = extending(name, candidates)
    if best in extended or (
        max_edits is not None and _edit_distance(key, best.lower()) > max_edits
    ):
        return extended
    return [*extended, best]


def closest_match_note(
    name: str, candidates: list[str], among: str = "", max_edits: int | None = None
) -> str:
    """The end of a message about a name that does not fit: `" Closest match: 'P4M'."`, or
    with `among=" among them"` `" Closest matches among them: 'C2_a', 'C2_f', 'C1'."`:
    every candidate that is `name` followed by `_` and a suffix, and the one fewest edits
    away (if at most `max_edits`). Empty when there is none."""
    matches = _closest_matches(name, candidates, max_edits)
    if not matches:
        return ""
    label = "Closest match" if len(matches) == 1 else "Closest matches"
    return f" {label}{among}: {', '.join(repr(m) for m in matches)}."
