"""Charts drawn by the server as inline SVG: no script, no third-party library, readable
without colour (every bar has its number) and styled by admin.css through classes."""
from __future__ import annotations

from datetime import date
from typing import Iterable, Sequence

from markupsafe import Markup, escape


def _fmt(n: float) -> str:
    return f"{n:,.0f}".replace(",", "\u202f")


def _scale(peak: float) -> tuple[float, float]:
    """A round top for the axis and its step (1, 2 or 5 times a power of ten), at most ~5 lines."""
    if peak <= 0:
        return 4, 1
    raw = peak / 4
    magnitude = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return step * -(-peak // step), step


def columns(series: Sequence[tuple[date, int]], unit: str, *, title: str) -> Markup:
    """Vertical bars over time (returns per day, week or month)."""
    width, height, left, bottom, top = 720, 200, 44, 24, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak, step = _scale(max((v for _, v in series), default=0))
    n = max(len(series), 1)
    slot = plot_w / n
    bar = max(1.0, slot * 0.78)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for i in range(int(peak // step) + 1):
        value = step * i
        y = top + plot_h - plot_h * value / peak
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    every = max(1, round(n / 8))
    for i, (day, value) in enumerate(series):
        h = plot_h * value / peak
        x = left + i * slot + (slot - bar) / 2
        label = day.strftime("%b %Y") if unit == "month" else day.isoformat()
        parts.append(f'<rect class="col" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                     f"<title>{escape(label)}: {value}</title></rect>")
        if i % every == 0:
            tick = day.strftime("%b %Y") if unit == "month" else day.strftime("%d %b")
            parts.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                         f"{escape(tick)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def hbars(rows: Iterable[tuple], *, title: str, css: str = "col") -> Markup:
    """Horizontal bars with their label and number (reasons, products, handlers). A row is
    ``(label, value)`` or ``(label, value, tooltip)``."""
    rows = [(r[0], r[1], r[2] if len(r) > 2 else r[0]) for r in rows]
    row_h, label_w, width = 22, 190, 520
    height = max(row_h * len(rows), row_h)
    peak = max((v for _, v, _ in rows), default=0) or 1
    plot_w = width - label_w - 60
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for i, (label, value, tooltip) in enumerate(rows):
        y = i * row_h
        w = plot_w * value / peak
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(f'<text class="label" x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(short)}'
                     f"<title>{escape(tooltip)}</title></text>")
        parts.append(f'<rect class="{css}" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}">'
                     f"<title>{escape(tooltip)}: {value}</title></rect>")
        parts.append(f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 15}">{_fmt(value)}</text>')
    if not rows:
        parts.append('<text class="label" x="0" y="15">Nothing in this period.</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def split(parts_in: Iterable[tuple[str, int, str]], *, title: str) -> Markup:
    """One 100 % bar split into parts (the triage split), with a legend."""
    parts_in = list(parts_in)
    total = sum(v for _, v, _ in parts_in)
    width, height = 520, 56
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f"<title>{escape(title)}</title>"]
    x = 0.0
    if total == 0:
        out.append(f'<rect class="empty" x="0" y="0" width="{width}" height="22"/>')
    for label, value, css in parts_in:
        w = width * value / total if total else 0
        if w:
            out.append(f'<rect class="{css}" x="{x:.1f}" y="0" width="{w:.1f}" height="22">'
                       f"<title>{escape(label)}: {value}</title></rect>")
        x += w
    lx = 0
    for label, value, css in parts_in:
        share = f"{100 * value / total:.0f} %" if total else "—"
        text = f"{label} {_fmt(value)} ({share})"
        out.append(f'<rect class="{css}" x="{lx}" y="34" width="12" height="12"/>'
                   f'<text class="label" x="{lx + 16}" y="45">{escape(text)}</text>')
        lx += 18 + 7.5 * len(text)
    out.append("</svg>")
    return Markup("".join(out))
