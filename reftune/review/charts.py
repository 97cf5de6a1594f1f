"""Charts as inline SVG: these functions compute the shapes, a template macro draws them (so every
label goes through the template's escaping). No JavaScript chart library.

>>> chart = bar_chart("t", [Bar("a", 1.0, 3), Bar("b", 0.5, 1)], percent=True)
>>> [(bar.label, bar.height, bar.text) for bar in chart.bars]
[('a', 168.0, '100% (3)'), ('b', 84.0, '50% (1)')]
"""
from __future__ import annotations

from dataclasses import dataclass

from reftune.review.stats import Bar

WIDTH, HEIGHT = 560, 220
PLOT_TOP, PLOT_BOTTOM, PLOT_LEFT = 24, 192, 40  # pixels: room for the values above, labels below


@dataclass(frozen=True)
class SvgBar:
    x: float
    y: float
    width: float
    height: float
    label: str       # under the bar
    text: str        # above the bar
    tone: str = ""   # a CSS class suffix: "right", "wrong", ""


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: tuple[SvgBar, ...]
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = PLOT_BOTTOM


@dataclass(frozen=True)
class LineChart:
    title: str
    points: str                  # "x,y x,y ..." for <polyline>
    dots: tuple[tuple[float, float, str], ...]  # (x, y, tooltip)
    x_labels: tuple[tuple[float, str], ...]     # (x, text) under the axis
    y_top: str                   # the value at the top of the plot
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = PLOT_BOTTOM


def bar_chart(title: str, bars: list[Bar], percent: bool = False, tones: list[str] | None = None) -> BarChart:
    """Bars scaled to the largest value (to 1.0 for percentages)."""
    top = 1.0 if percent else max([bar.value for bar in bars] + [1e-9])
    slot = (WIDTH - PLOT_LEFT) / max(len(bars), 1)
    shapes = []
    for n, bar in enumerate(bars):
        height = round((PLOT_BOTTOM - PLOT_TOP) * bar.value / top, 1)
        text = f"{bar.value:.0%} ({bar.count})" if percent else f"{bar.count}"
        shapes.append(SvgBar(round(PLOT_LEFT + n * slot + slot * 0.1, 1), round(PLOT_BOTTOM - height, 1),
                             round(slot * 0.8, 1), height, bar.label, text, (tones or [""] * len(bars))[n]))
    return BarChart(title, tuple(shapes))


def paired_bar_chart(title: str, first: list[Bar], second: list[Bar], tones: tuple[str, str]) -> BarChart:
    """Two series on the same bins, side by side in each slot (right and wrong CoTs, say)."""
    merged = [bar for pair in zip(first, second) for bar in pair]
    chart = bar_chart(title, merged, tones=[tones[n % 2] for n in range(len(merged))])
    slot = (WIDTH - PLOT_LEFT) / max(len(first), 1)
    bars = tuple(SvgBar(round(PLOT_LEFT + (n // 2) * slot + slot * (0.05 + 0.45 * (n % 2)), 1), bar.y,
                        round(slot * 0.42, 1), bar.height, bar.label if n % 2 == 0 else "", bar.text, bar.tone)
                 for n, bar in enumerate(chart.bars))
    return BarChart(title, bars)


def line_chart(title: str, xs: list[float], ys: list[float], y_format: str = "{:.2f}") -> LineChart:
    """ys against xs, from 0 to the largest y."""
    if not xs:
        return LineChart(title, "", (), (), "")
    top = max(ys + [1e-9])
    span = (max(xs) - min(xs)) or 1.0
    def place(x: float, y: float) -> tuple[float, float]:
        return (round(PLOT_LEFT + (WIDTH - PLOT_LEFT - 20) * (x - min(xs)) / span, 1),
                round(PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * y / top, 1))
    placed = [place(x, y) for x, y in zip(xs, ys)]
    every = max(1, len(xs) // 8)
    return LineChart(title, " ".join(f"{px},{py}" for px, py in placed),
                     tuple((px, py, f"{x:g}: {y_format.format(y)}") for (px, py), x, y in zip(placed, xs, ys)),
                     tuple((px, f"{x:g}") for n, ((px, _), x) in enumerate(zip(placed, xs)) if n % every == 0),
                     y_format.format(top))
