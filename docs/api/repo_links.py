"""An mkdocs hook for `make docs`: links from a page to a repository file outside docs/
(`../benchmarks/RESULTS.md`, `../examples/groco-srf`) are checked and shown as the file's path.

The pages are read in the repository too, where such a link opens the file; the site holds
docs/ only, where it would be a dead link. So the build fails on a link to a file that does
not exist (as for a link between pages), and writes a link to an existing file as its path in
code, e.g. `examples/groco-srf`, instead of a link.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

# A child of mkdocs's logger: its warnings fail `mkdocs build --strict`.
log = logging.getLogger("mkdocs.hooks.repo_links")

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    repository = docs_dir.parent
    page_dir = (docs_dir / page.file.src_path).parent

    def rewrite(match: re.Match[str]) -> str:
        target = match.group("target")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match.group(0)  # a URL or an absolute path: mkdocs checks those
        path = (page_dir / target).resolve()
        if path.is_relative_to(docs_dir) or not path.is_relative_to(repository):
            return match.group(0)  # a page or file of the site: mkdocs checks it
        shown = path.relative_to(repository).as_posix()
        if not path.exists():
            log.warning(
                "Doc file '%s' links to '%s', which is not in the repository.",
                page.file.src_path,
                shown,
            )
            return match.group(0)
        text = match.group("text")
        return text if text.strip("`") == shown else f"{text} (`{shown}`)"

    lines, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        lines.append(line if fenced else LINK.sub(rewrite, line))
    return "".join(lines)
