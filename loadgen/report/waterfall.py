"""A traced request's timeline (loadgen.timeline) drawn as a waterfall: an inline SVG element for
report.html, one row per span, bars placed by their start and end on a time axis in ms.

Inline SVG is part of the page, not a fetched image, so the report's Content-Security-Policy
(default-src 'none') lets it render; it uses presentation attributes only, no script and no link.
Every name is escaped: model names come from the server.
"""

from __future__ import annotations

import math
from html import escape

from loadgen.timeline import FRONTEND, TOTAL, RequestTimeline, TimelineSpan

# Geometry in SVG user units (px at 100%).
WIDTH = 1100
LABEL_X = 8
INDENT = 16
BARS_X = 320  # where the time axis starts
BARS_WIDTH = 640  # the rest, right of the bars, holds each span's duration
ROW = 20
BAR = 13
HEAD = 30  # the caption line above the rows
AXIS = 40  # the axis, its labels and its title below the rows
MAX_TICKS = 8
CHAR = 7.5  # a character's width at the labels' 13 px, about: a longer label is cut to fit left of the bars

# The stages keep the colours the plots give them (loadgen/report/plots.py).
COLORS = {
    FRONTEND: "#afb8c1",
    TOTAL: "#6e7781",
    "queue": "#ff7f0e",
    "compute_input": "#bcbd22",
    "compute_infer": "#2ca02c",
    "compute_output": "#17becf",
}


def tick_step_us(top_us: float) -> float:
    """The step between axis ticks: 1, 2 or 5 times a power of ten, at most MAX_TICKS steps to `top_us`."""
    if top_us <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(top_us / MAX_TICKS))
    return next(power * factor for factor in (1, 2, 5, 10) if top_us / (power * factor) <= MAX_TICKS)


def _ms(us: float) -> str:
    return f"{us / 1e3:,.3f} ms"


def _label(span: TimelineSpan) -> tuple[str, int]:
    """A row's text and indent: a model's name at its depth, its stages one step further in."""
    if span.part == FRONTEND:
        return "frontend (receive → send end)", 0
    if span.part == TOTAL:
        return str(span.model), span.depth
    return span.part, span.depth + 1


def _fit(text: str, width: float) -> str:
    """`text` cut to about `width` units (the bar's tooltip keeps the whole name)."""
    most = max(1, int(width / CHAR))
    return text if len(text) <= most else text[: most - 1] + "…"


def caption(timeline: RequestTimeline) -> str:
    """The client's latency beside the server's time, as the waterfall's first line says it."""
    text = f"client latency {_ms(timeline.latency_us)}"
    if timeline.server_us is not None:
        text += f", in the server {_ms(timeline.server_us)}, outside it {_ms(timeline.latency_us - timeline.server_us)}"
    return text


def waterfall_svg(timeline: RequestTimeline) -> str:
    """The request's spans as an <svg> element, one row each, in the timeline's order."""
    spans = timeline.spans
    top_us = max((span.end_us for span in spans), default=0.0)
    step_us = tick_step_us(top_us)
    axis_us = max(step_us, math.ceil(top_us / step_us) * step_us)
    scale = BARS_WIDTH / axis_us  # units per µs
    height = HEAD + ROW * len(spans) + AXIS
    bottom = HEAD + ROW * len(spans)
    parts = [f'<svg class="waterfall" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-label="{escape(f"Timeline of request {timeline.request_id}: {caption(timeline)}")}">',
             f'<text x="{LABEL_X}" y="{HEAD - 10}" font-size="14" font-weight="600">{escape(caption(timeline))}</text>']
    ticks = [i * step_us for i in range(round(axis_us / step_us) + 1)]
    decimals = max(0, -math.floor(math.log10(step_us / 1e3)))
    for tick in ticks:
        x = BARS_X + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{HEAD - 4}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#d0d7de" stroke-width="1"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle" font-size="12">{tick / 1e3:.{decimals}f}</text>')
    parts.append(f'<text x="{BARS_X + BARS_WIDTH / 2:.1f}" y="{bottom + 34}" text-anchor="middle" font-size="12">'
                 "ms since the server received the request</text>")
    for row, span in enumerate(spans):
        y = HEAD + row * ROW
        text, indent = _label(span)
        left = LABEL_X + INDENT * indent
        x = BARS_X + span.start_us * scale
        width = max(1.0, (span.end_us - span.start_us) * scale)  # a span under a unit still shows
        duration = _ms(span.end_us - span.start_us)
        where = f"{span.model} {span.part}" if span.model is not None else span.part
        weight = ' font-weight="600"' if span.part in (FRONTEND, TOTAL) else ""
        label = escape(_fit(text, BARS_X - 8 - left))
        parts.append(f'<text class="row" x="{left}" y="{y + BAR}" font-size="13"{weight}>{label}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{BAR}" fill="{COLORS[span.part]}">'
                     f'<title>{escape(f"{where}: {_ms(span.start_us)} to {_ms(span.end_us)} ({duration})")}</title></rect>')
        parts.append(f'<text x="{x + width + 4:.1f}" y="{y + BAR}" font-size="12" fill="#59636e">{escape(duration)}</text>')
    parts.append("</svg>")
    return "".join(parts)
