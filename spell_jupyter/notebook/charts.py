"""Small inline SVG line charts of a run's metrics (no plotting library needed in the kernel)."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 260, 90, 4


def line_chart(name: str, points: list[tuple[int, float]]) -> str:
    """An SVG chart of (index, value) points with the metric's name and last value."""
    numeric = [(i, v) for i, v in points if isinstance(v, int | float)]
    if not numeric:
        return ""
    xs = [i for i, _ in numeric]
    ys = [v for _, v in numeric]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    xspan = (x1 - x0) or 1
    yspan = (y1 - y0) or 1

    def at(i: float, v: float) -> str:
        x = PAD + (i - x0) / xspan * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - (v - y0) / yspan * (HEIGHT - 2 * PAD - 14)
        return f"{x:.1f},{y:.1f}"

    path = " ".join(at(i, v) for i, v in numeric)
    title = f"{escape(name)}: {ys[-1]:.6g} (index {xs[-1]}; min {y0:.4g}, max {y1:.4g})"
    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}" style="margin:2px 8px 2px 0;'
        'border:1px solid #ccc" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{PAD}" y="11" font-size="10" fill="currentColor">{title}</text>'
        f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{path}"/></svg>'
    )


def charts_html(series: dict[str, list[tuple[int, float]]]) -> str:
    return "".join(line_chart(name, points) for name, points in sorted(series.items()))
