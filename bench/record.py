"""Append benchmark rows to a section of BENCHMARKS.md (shared by the scripts in bench/)."""

from __future__ import annotations

from pathlib import Path


def append_rows(path: Path, section: str, intro: str, table_head: str, align: str, rows: list[str]) -> None:
    """Add ``rows`` to the table of ``section`` in the Markdown file ``path``.

    ``section`` is the heading line (``## ...``). If the file has it, the rows go right after the
    last row of the first table below it, so any prose after the table stays after it. If not,
    the section is appended: heading, ``intro`` (stripped), ``table_head``, ``align`` (the
    ``|---|...`` line) and the rows. A missing file starts as ``# Benchmarks``.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    if section not in lines:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [section, "", *intro.strip().splitlines(), "", table_head, align]
        at = len(lines)
    else:
        at = lines.index(section) + 1
        while at < len(lines) and not lines[at].startswith("|"):
            at += 1
        while at < len(lines) and lines[at].startswith("|"):
            at += 1
    lines[at:at] = rows
    path.write_text("\n".join(lines) + "\n")
