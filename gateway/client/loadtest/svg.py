"""Small inline-SVG charts (lines and bars) for the HTML report: no scripts, no network, any browser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 40
COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"]


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]  # None: no value in that bucket (a gap, not a zero)


def _ticks(top: float, n: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) from 0 to just past `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def _label(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == 0 else f"{v:.2g}"


def _frame(title: str, x_label: str, y_label: str, x_max: float, y_max: float, css: str) -> tuple[list[str], float, float]:
    y_ticks = _ticks(y_max)
    y_top = max(y_ticks[-1], 1e-9)
    x_ticks = _ticks(x_max, 6)
    x_top = max(x_ticks[-1], 1e-9)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<svg class="chart {css}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{LEFT}" y="18" class="title">{escape(title)}</text>']
    for t in y_ticks:
        y = TOP + h - t / y_top * h
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_label(t)}</text>')
    for t in x_ticks:
        x = LEFT + t / x_top * w
        parts.append(f'<text x="{x:.1f}" y="{TOP + h + 16}" class="tick" text-anchor="middle">{_label(t)}</text>')
    parts.append(f'<text x="{LEFT + w / 2}" y="{HEIGHT - 4}" class="axis" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{TOP + h / 2}" class="axis" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + h / 2})">{escape(y_label)}</text>')
    return parts, x_top, y_top


def line_chart(title: str, series: list[Series], x_label: str, y_label: str,
               marks: Sequence[tuple[float, str]] = (), css: str = "") -> str:
    """Lines (with dots) for each series, a legend, and labelled vertical marks (e.g. the knee)."""
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for y in s.ys if y is not None]
    parts, x_top, y_top = _frame(title, x_label, y_label, max(xs, default=1.0), max(ys, default=1.0), css)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x: float, y: float) -> str:
        return f"{LEFT + x / x_top * w:.1f},{TOP + h - y / y_top * h:.1f}"

    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for x, y in zip(s.xs, s.ys, strict=False):
            if y is None:
                runs.append([])
            else:
                runs[-1].append(at(x, y))
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="series" points="{" ".join(run)}" fill="none" stroke="{colour}"/>')
            for point in run:
                cx, cy = point.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
        lx = WIDTH - RIGHT - (len(series) - i) * 100  # legend on the title row, right-aligned
        parts.append(f'<rect x="{lx}" y="9" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{lx + 14}" y="18" class="legend">{escape(s.name)}</text>')
    for x, label in marks:
        px = LEFT + x / x_top * w
        # Labels near the right edge go on the left of their line so they are not cut off.
        left = px > LEFT + 0.8 * w
        parts.append(f'<line class="mark" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{TOP + h}"/>'
                     f'<text x="{px - 4 if left else px + 4:.1f}" y="{TOP + 24}" class="mark-label" '
                     f'text-anchor="{"end" if left else "start"}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, edges: Sequence[float], counts: Sequence[int], x_label: str, y_label: str,
              css: str = "") -> str:
    """A histogram: one bar per bin between consecutive edges."""
    parts, x_top, y_top = _frame(title, x_label, y_label, edges[-1] if edges else 1.0,
                                 max(counts, default=1), css)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    for left, right, count in zip(edges, edges[1:], counts, strict=False):
        x = LEFT + left / x_top * w
        bar_w = max(1.0, (right - left) / x_top * w - 1)
        bar_h = count / y_top * h
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + h - bar_h:.1f}" width="{bar_w:.1f}" '
                     f'height="{bar_h:.1f}" fill="{COLOURS[0]}"><title>{_label(left)}-{_label(right)}: '
                     f'{count}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)
