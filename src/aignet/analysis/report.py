"""A self-contained ``report.html``: key numbers, every figure embedded, the command used."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Figure:
    """A PNG with a heading and a caption."""

    title: str
    path: Path
    caption: str = ""


@dataclass
class Section:
    """A report section: a heading, HTML paragraphs/tables, figures."""

    title: str
    body: str = ""
    figures: Sequence[Figure] = ()


def table(rows: Sequence[tuple[str, str]], header: tuple[str, str] = ("", "")) -> str:
    """A two-column HTML table (values are escaped)."""
    head = f"<tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>" \
        if any(header) else ""
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return f"<table>{head}{body}</table>"


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(Path(fig.path).read_bytes()).decode()
    caption = f"<figcaption>{html.escape(fig.caption)}</figcaption>" if fig.caption else ""
    return (f'<figure id="{html.escape(Path(fig.path).stem)}"><h3>{html.escape(fig.title)}</h3>'
            f'<img alt="{html.escape(fig.title)}" src="data:image/png;base64,{data}">{caption}'
            "</figure>")


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;
padding:4px 10px;text-align:left}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}
code,pre{background:#f4f4f4;padding:2px 4px}figcaption{color:#555;font-size:90%}"""


def write_report(path: Path, title: str, command: str, sections: Sequence[Section]) -> Path:
    """Write the page; figures are embedded as base64 PNGs so the file stands alone."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>Produced by: <code>{html.escape(command)}</code></p>"]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>{section.body}")
        parts += [_figure_html(f) for f in section.figures]
        parts.append("</section>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path
