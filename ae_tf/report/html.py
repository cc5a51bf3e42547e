"""The report's HTML page: one file that opens offline, in any browser, with nothing else beside it.

Figures are embedded as base64 PNG data URIs (so the page alone is the whole report: mail it, attach it
to a ticket) and each links to its PNG file beside the page (full size, for slides). Styles are inline;
there is no JavaScript and no external resource.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from collections.abc import Sequence

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 860px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.2rem 0.8rem 0.2rem 0; vertical-align: top; }
th { color: #555; font-weight: 600; white-space: nowrap; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #444; }
.note { color: #8a5a00; } .skipped li { margin: 0.3rem 0; } code { font-size: 0.85rem; }
"""


@dataclasses.dataclass
class Table:
    """A titled two-column table of (label, value) rows."""

    title: str
    rows: list[tuple[str, str]]


@dataclasses.dataclass
class Figure:
    """A figure on the page: its PNG bytes, the file beside the page, and what it shows."""

    title: str
    file: str
    png: bytes
    width: int
    height: int
    caption: str = ""


def _text(text: str) -> str:
    """Escaped text in which `quoted` names (a flag, a signature) become <code>, not literal backticks."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _table(table: Table) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_text(v)}</td></tr>" for k, v in table.rows)
    return f"<h2>{html.escape(table.title)}</h2>\n<table>{body}</table>"


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    file = html.escape(figure.file)
    return (f'<figure id="{file}"><h2>{html.escape(figure.title)}</h2>'
            f'<a href="{file}"><img src="data:image/png;base64,{data}" alt="{html.escape(figure.title)}" '
            f'width="{figure.width}" height="{figure.height}"></a>'
            f"<figcaption>{_text(figure.caption)} File: <a href=\"{file}\">{file}</a> "
            f"({figure.width}x{figure.height} px).</figcaption></figure>")


def render(title: str, subtitle: str, tables: Sequence[Table], figures: Sequence[Figure],
           skipped: Sequence[tuple[str, str]], notes: Sequence[str] = ()) -> str:
    """The whole page as a string: header, notes, tables, figures, then what was not drawn and why."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>",
    ]
    parts += [f'<p class="note">{_text(note)}</p>' for note in notes]
    parts += [_table(t) for t in tables if t.rows]
    parts += [_figure(f) for f in figures]
    if skipped:
        items = "".join(f"<li><b>{html.escape(name)}</b>: {_text(reason)}</li>" for name, reason in skipped)
        parts.append(f'<h2>Not drawn</h2><ul class="skipped">{items}</ul>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
