"""A streamed level's example requests (StreamStats.examples) drawn as a timeline of their responses:
an inline SVG element for report.html, one row per request, a tick where each response that carried
outputs arrived and a taller one at its final response, on a time axis in ms from the request's start.

Inline SVG renders under the report's Content-Security-Policy, as the trace waterfall does
(loadgen.report.waterfall, whose axis steps it shares); presentation attributes only, no script.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from loadgen.report.waterfall import tick_step_us
from loadgen.stream_stats import StreamedRequest

# Geometry in SVG user units (px at 100%).
WIDTH = 1100
LABEL_X = 8
BARS_X = 220  # where the time axis starts
BARS_WIDTH = 840
ROW = 22
TICK = 11  # a response's tick
FINAL = 17  # the final response's, taller
TICK_WIDTH = 2.0
HEAD = 30
AXIS = 40
RESPONSE_COLOR = "#2ca02c"
FINAL_COLOR = "#1f2328"
SPAN_COLOR = "#d0d7de"


def _ms(us: float) -> str:
    return f"{us / 1e3:,.3f} ms"


def row_label(request: StreamedRequest) -> str:
    """A request's row: how many responses carried outputs, and its latency to the final one."""
    count = len(request.response_offsets_us)
    return f"{count} response{'' if count == 1 else 's'} in {request.latency_us / 1e3:,.1f} ms"


def response_timeline_svg(examples: Sequence[StreamedRequest], caption: str) -> str:
    """The requests as an <svg> element, fastest first: a row each, a <rect> per response, then one for the final."""
    requests = sorted(examples, key=lambda request: request.latency_us)
    top_us = max((max(request.latency_us, *request.response_offsets_us) for request in requests), default=0.0)
    step_us = tick_step_us(top_us)
    axis_us = max(step_us, math.ceil(top_us / step_us) * step_us)
    scale = BARS_WIDTH / axis_us  # units per µs
    bottom = HEAD + ROW * len(requests)
    height = bottom + AXIS
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(caption)}">',
             f'<text x="{LABEL_X}" y="{HEAD - 10}" font-size="14" font-weight="600">{escape(caption)}</text>']
    decimals = max(0, -math.floor(math.log10(step_us / 1e3)))
    for index in range(round(axis_us / step_us) + 1):
        x = BARS_X + index * step_us * scale
        parts.append(f'<line x1="{x:.1f}" y1="{HEAD - 4}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#eef1f4" stroke-width="1"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle" font-size="12">'
                     f"{index * step_us / 1e3:.{decimals}f}</text>")
    parts.append(f'<text x="{BARS_X + BARS_WIDTH / 2:.1f}" y="{bottom + 34}" text-anchor="middle" font-size="12">'
                 "ms since the request's start (its intended send time in open loop)</text>")
    for row, request in enumerate(requests):
        middle = HEAD + row * ROW + ROW / 2
        parts.append(f'<text class="row" x="{LABEL_X}" y="{middle + 4:.1f}" font-size="13">{escape(row_label(request))}</text>')
        end = BARS_X + request.latency_us * scale
        parts.append(f'<line x1="{BARS_X}" y1="{middle:.1f}" x2="{end:.1f}" y2="{middle:.1f}" stroke="{SPAN_COLOR}" stroke-width="3"/>')
        previous_us = 0.0
        for number, offset_us in enumerate(request.response_offsets_us, 1):
            gap = "first response" if number == 1 else f"{_ms(offset_us - previous_us)} after the one before"
            parts.append(_tick(offset_us * scale, middle, TICK, RESPONSE_COLOR, f"response {number}: {_ms(offset_us)} ({gap})"))
            previous_us = offset_us
        parts.append(_tick(request.latency_us * scale, middle, FINAL, FINAL_COLOR, f"final response: {_ms(request.latency_us)}"))
    parts.append("</svg>")
    return "".join(parts)


def _tick(x_offset: float, middle: float, height: int, color: str, title: str) -> str:
    """A tick centred on its time (a response at 0 still shows whole)."""
    x = BARS_X + x_offset - TICK_WIDTH / 2
    return (f'<rect x="{x:.2f}" y="{middle - height / 2:.1f}" width="{TICK_WIDTH}" height="{height}" fill="{color}">'
            f"<title>{escape(title)}</title></rect>")
