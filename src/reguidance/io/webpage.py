"""Static HTML pages of a run (``report.html``): tables of pictures with their metrics, and text tables. Plain HTML5
and a few lines of CSS: no JavaScript, no server, no files besides the pictures, which are referenced by paths
relative to the page (percent-encoded, so any file name works). Every text that comes from a user or a file
(names, labels, notes) is escaped with :func:`html.escape`."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .files import atomic_write_text

__all__ = ["Cell", "image_table", "page", "relative_src", "text_table", "write_page"]

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #111; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
td.pic { text-align: center; font-size: 0.85em; }
td.pic img { display: block; margin: 0 auto 2px; image-rendering: pixelated; }
th.row { font-weight: normal; font-family: monospace; }
.none { color: #888; }
table.text td, table.text th { font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Cell:
    """One picture of an image table: ``src`` (a path relative to the page, see :func:`relative_src`; None: no
    picture) and the lines of text under it (its metrics)."""

    src: str | None
    lines: Sequence[str] = field(default_factory=tuple)


def relative_src(target: Path, page_dir: Path) -> str:
    """The ``src`` of ``target`` seen from a page in ``page_dir``: the relative POSIX path, percent-encoded
    (``a b#.png`` -> ``a%20b%23.png``), which a browser decodes back to the file name."""
    return quote(Path(os.path.relpath(target, page_dir)).as_posix(), safe="/")


def image_table(columns: Sequence[str], rows: Sequence[tuple[str, Sequence[Cell]]], width: int) -> str:
    """A table with a header of ``columns`` and one row per ``(label, cells)``: the label in the first column,
    then each cell's picture (shown ``width`` pixels wide) with its lines under it."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["image", *columns])
    body = []
    for label, cells in rows:
        tds = []
        for column, cell in zip(columns, cells, strict=True):
            if cell.src is None:
                tds.append('<td class="pic"><span class="none">(none)</span></td>')
                continue
            lines = "<br>".join(html.escape(t) for t in cell.lines)
            tds.append(
                f'<td class="pic"><img src="{html.escape(cell.src)}" width="{width}" '
                f'alt="{html.escape(f"{column}, {label}")}" loading="lazy">{lines}</td>'
            )
        body.append(f'<tr><th class="row" scope="row">{html.escape(label)}</th>{"".join(tds)}</tr>')
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain table of strings (escaped), from its data: one ``<th>`` per label of ``header``, one ``<td>`` per cell
    (no header row when ``header`` is empty). Tables are never parsed back from Markdown, whose ``|`` a label such as
    ``|fit_z|`` would split."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    thead = f"<thead><tr>{head}</tr></thead>\n" if header else ""
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="text">\n{thead}<tbody>\n{body}\n</tbody>\n</table>'


def page(title: str, parts: Sequence[str]) -> str:
    """A whole HTML5 document titled ``title`` (escaped) holding ``parts`` (HTML, in order)."""
    t = html.escape(title)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{t}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )


def write_page(path: Path, title: str, parts: Sequence[str]) -> Path:
    """Write :func:`page` to ``path`` atomically (UTF-8); returns the path."""
    return atomic_write_text(path, page(title, parts))
