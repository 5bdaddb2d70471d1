"""One self-contained HTML report: every table and figure analyze.py wrote, in one file.

No external CSS, scripts or image files: figures are embedded (PNG as base64, else inline
SVG), so the report can be mailed or attached to an issue as it is.
"""
import base64
import html
import re

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
table { border-collapse: collapse; font-size: 0.78em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 2px 5px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
td:nth-child(-n+2), th:nth-child(-n+2) { text-align: left; }
.note { color: #555; font-size: 0.85em; max-width: 60em; }
.scroll { overflow-x: auto; }
figure { margin: 0.8em 0; } figure img, figure svg { max-width: 100%; height: auto; }
nav a { margin-right: 0.8em; }
"""


def html_table(header: list[str], rows: list[list[str]], bold: set[int] = frozenset()) -> str:
    """An HTML table from the same strings as the markdown one (bold: headline average columns)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = (f"<td><b>{html.escape(c)}</b></td>" if i in bold and c != "—" else f"<td>{html.escape(c)}</td>"
                 for i, c in enumerate(r))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure_html(images: dict[str, bytes], caption: str) -> str:
    """A figure from `plots.save` output: PNG as a data URI if present, else the SVG inline."""
    if "png" in images:
        data = base64.b64encode(images["png"]).decode("ascii")
        body = f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
    elif "svg" in images:
        body = re.sub(r"^.*?(<svg)", r"\1", images["svg"].decode("utf-8"), count=1, flags=re.S)
    else:
        return ""
    return f"<figure>{body}<figcaption class=\"note\">{html.escape(caption)}</figcaption></figure>"


class Report:
    """Sections appended in order, rendered once; `anchor` headings are linked from the top."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list = []
        self.toc: list[tuple[str, str]] = []

    def heading(self, text: str, level: int = 2) -> None:
        if level == 2:
            anchor = f"s{len(self.toc)}"
            self.toc.append((anchor, text))
            self.parts.append(f'<h2 id="{anchor}">{html.escape(text)}</h2>')
        else:
            self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def items(self, lines: list[str]) -> None:
        self.parts.append('<ul class="note">' + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")

    def table(self, header: list[str], rows: list[list[str]], bold: set[int] = frozenset()) -> None:
        self.parts.append(html_table(header, rows, bold))

    def figure(self, images, caption: str) -> None:
        """`images`: {format: bytes}, or a callable returning them (a figure still being drawn elsewhere)."""
        self.parts.append((images, caption))

    def render(self) -> str:
        parts = [p if isinstance(p, str) else figure_html(p[0]() if callable(p[0]) else p[0], p[1])
                 for p in self.parts]
        nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in self.toc)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
                f"<style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1><nav>{nav}</nav>"
                + "\n".join(parts) + "</body></html>\n")
