"""Small SVG charts drawn on the server: no script, no library, nothing from a CDN."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 480, 180, 28


def bar_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    color: str = "#2f6fdf",
    percent: bool = False,
) -> str:
    """Vertical bars, one per (label, value); scales to its container's width."""
    if not points:
        return ""
    top = max((v for _, v in points), default=0) or 1.0
    if percent:
        top = 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / len(points)
    bar = max(step * 0.7, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999" stroke-width="1"/>',
    ]
    label_every = max(1, len(points) // 8)
    for i, (label, value) in enumerate(points):
        h = inner_h * (value / top)
        x = PAD + i * step + (step - bar) / 2
        y = HEIGHT - PAD - h
        shown = f"{value:.0%}" if percent else f"{value:g}"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(label)}: {shown}</title></rect>"
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 8}" font-size="13" '
                f'text-anchor="middle">{escape(label[5:] if len(label) == 10 else label)}</text>'
            )
    parts.append(
        f'<text x="{PAD}" y="{PAD - 8}" font-size="13">'
        f"{'100%' if percent else f'{top:g}'}</text></svg>"
    )
    return "".join(parts)


def hbars(rows: Sequence[tuple[str, float]], *, title: str, color: str = "#2f6fdf") -> str:
    """Horizontal bars with their labels and values, for rankings and distributions."""
    if not rows:
        return ""
    top = max(v for _, v in rows) or 1.0
    width, label_w, line = 400, 170, 22
    height = line * len(rows) + 4
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(rows):
        y = i * line + 2
        w = (width - label_w - 40) * value / top
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="13">{escape(label[:24])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{line - 8}" fill="{color}"/>'
            f'<text x="{label_w + 6 + w:.1f}" y="{y + 15}" font-size="13">{value:g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
