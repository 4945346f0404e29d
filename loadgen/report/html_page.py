"""What the self-contained HTML pages share (report.html, tune.html): the page's frame, its CSS and
Content-Security-Policy, tables, figure formatting and plots embedded as data: URIs.

Every table cell and name is escaped here, so the pages pass plain text; the CSP forbids any fetch,
so a page opens offline and nothing in it can load or run anything.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from loadgen.report.base import Plot

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MISSING = "—"
WARN = "⚠ "
FAIL = "✗"
PASS = "✓"
FLAGS = (WARN, FAIL)  # a cell starting with one flags its row

CSS = """
body { margin: 0; background: #f6f7f9; color: #1f2328;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; min-height: 100vh; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 2px solid #d0d7de; font-size: 20px; }
h3 { margin: 20px 0 8px; font-size: 16px; }
.meta { color: #59636e; margin: 0 0 16px; }
.verdict { padding: 12px 16px; border-radius: 6px; border-left: 5px solid #1a7f37; background: #dafbe1; }
.verdict.warn { border-color: #bf8700; background: #fff8c5; }
.verdict.fail { border-color: #cf222e; background: #ffebe9; }
.verdict p { margin: 0; font-weight: 600; }
.verdict ul { margin: 6px 0 0; padding-left: 20px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 4px 0 12px; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 9px; border-bottom: 1px solid #e1e4e8; text-align: right; white-space: nowrap; }
th { background: #eef1f4; font-weight: 600; vertical-align: bottom; white-space: normal; }
th.t, td.t { text-align: left; }
td.t { white-space: normal; overflow-wrap: break-word; }
tbody tr:nth-child(even) { background: #f6f8fa; }
tbody tr.warn { background: #fff8c5; }
table.kv td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: #59636e; }
figure { margin: 16px 0 28px; }
figure h3 { margin-top: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
svg.waterfall, svg.timeline { display: block; max-width: 100%; height: auto; margin: 4px 0 12px; }
pre { background: #f6f8fa; padding: 12px; overflow-x: auto; font-size: 13px; border-radius: 6px; }
"""


def page(title: str, body: Iterable[str]) -> str:
    """The whole document: `title` is plain text, `body` the HTML parts of <main>, in order."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body><main>
{chr(10).join(body)}
</main></body>
</html>
"""


# Formatting: every figure may be null ("not measured"), shown as a dash, never as 0.

def num(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value:,.{digits}f}"


def percent(fraction: float | None, digits: int = 1) -> str:
    return MISSING if fraction is None else f"{fraction * 100:.{digits}f} %"


def when(iso: str | None) -> str:
    return MISSING if iso is None else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


@dataclass(frozen=True)
class Link:
    """A table cell that links elsewhere: `text` shown, `href` an already URL-quoted relative address."""

    text: str
    href: str


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: Collection[int] = (0,),
          css: str = "") -> str:
    """An HTML table; every header and cell is escaped here, so callers pass plain text (or a Link).

    The `text_columns` (indices) are left-aligned text (names, messages), the others right-aligned figures.
    """
    def tag(name: str, column: int, cell: str | Link) -> str:
        css = ' class="t"' if column in text_columns else ""
        inner = f'<a href="{escape(cell.href)}">{escape(cell.text)}</a>' if isinstance(cell, Link) else escape(cell)
        return f"<{name}{css}>{inner}</{name}>"

    lines = [f'<div class="scroll"><table class="{css}"><thead><tr>']
    lines += [tag("th", column, text) for column, text in enumerate(head)]
    lines.append("</tr></thead><tbody>")
    for row in rows:
        cells = [MISSING if cell is None else cell if isinstance(cell, Link) else str(cell) for cell in row]
        flagged = any(cell.startswith(FLAGS) for cell in cells if isinstance(cell, str))
        lines.append('<tr class="warn">' if flagged else "<tr>")
        lines += [tag("td", column, cell) for column, cell in enumerate(cells)]
        lines.append("</tr>")
    lines.append("</tbody></table></div>")
    return "".join(lines)


def plots_section(plots: Sequence[Plot]) -> str:
    figures = []
    for plot in plots:
        data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
        figures.append(f'<figure id="{escape(plot.name)}"><h3>{escape(plot.title)}</h3>'
                       f'<img alt="{escape(plot.title)}" src="data:image/png;base64,{data}"></figure>')
    return "<h2>Plots</h2>" + ("".join(figures) or "<p>No plots.</p>")


def model_configs(configs: dict, title: str = "Model configurations") -> str:
    """Each model's configuration as JSON, folded under its name."""
    sections = [f"<details><summary>{escape(name)}</summary>"
                f"<pre>{escape(json.dumps(config, indent=2))}</pre></details>" for name, config in configs.items()]
    return f"<h2>{escape(title)}</h2>" + ("".join(sections) or "<p>Not recorded.</p>")
