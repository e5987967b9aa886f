"""Charts for bulletins, as SVG strings to inline into the HTML that WeasyPrint renders.

Text stays text (`svg.fonttype: none`): WeasyPrint draws it with the document's CJK font, and the
PDF's text can be searched and extracted. Figures are built with `Figure` and the SVG canvas, not
pyplot, so nothing is registered globally and a figure is garbage once its function returns; the
rc settings apply only inside `rc_context`. The output is deterministic (fixed hash salt, no
date), so a rerun over the same data gives the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# an A4 column (210 mm less 2 × 18 mm margins = 174 mm) fits a 16 × 6 cm chart with room to spare
WIDTH_CM = 16.0
HEIGHT_CM = 6.0
_CM = 1 / 2.54

CJK_FONTS = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC"]

_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "kaohe",
    "svg.id": None,
    "font.family": ["sans-serif"],
    "font.sans-serif": [*CJK_FONTS, "DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.unicode_minus": False,  # U+2212 is missing from some CJK fonts
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#333333",
    "axes.linewidth": 0.6,
    "grid.color": "#d0d0d0",
    "grid.linewidth": 0.5,
    "text.parse_math": False,  # names and titles are data: "$" is a dollar sign, not TeX
    "text.usetex": False,
    "path.simplify": True,
}

_BAR = "#8c1c13"
_LINE = "#1f3b73"


def _no_missing_fonts_warning() -> None:
    """Drop the fonts of the stack that are not installed, so matplotlib does not log a
    "findfont: not found" warning on every worker; the SVG still names the stack for WeasyPrint
    through the CSS font-family of the document."""
    from matplotlib import font_manager

    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    present = [name for name in CJK_FONTS if name in installed]
    _RC["font.sans-serif"] = [*present, "DejaVu Sans"] if present else [*CJK_FONTS, "DejaVu Sans"]


_no_missing_fonts_warning()


def _figure() -> tuple[Figure, Any]:
    """Fixed margins rather than a layout engine: constrained layout draws twice and doubles
    the time per chart; the margins leave room for 4-digit counts and one-line month labels."""
    fig = Figure(figsize=(WIDTH_CM * _CM, HEIGHT_CM * _CM), dpi=72)
    FigureCanvasSVG(fig)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.21, top=0.87)
    ax = fig.add_subplot()
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    return fig, ax


def _svg(fig: Figure) -> str:
    """The figure as an inline <svg> element: no XML declaration or doctype (they are not
    allowed inside HTML), no metadata block."""
    out = io.StringIO()
    fig.savefig(
        out,
        format="svg",
        metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
    )
    text = out.getvalue()
    start = text.index("<svg")
    return text[start:].strip() + "\n"


def _finite(values: Sequence[float | None]) -> list[float]:
    out = []
    for value in values:
        if value is None:
            continue
        number = float(value)
        if math.isfinite(number):
            out.append(number)
    return out


def distribution_svg(
    scores: Sequence[float],
    *,
    title: str,
    bins: int = 10,
    xlabel: str = "得分",
    ylabel: str = "人数",
) -> str:
    """A histogram of scores (missing and NaN scores are left out)."""
    data = _finite(scores)
    with matplotlib.rc_context(_RC):
        fig, ax = _figure()
        if data:
            low, high = min(data), max(data)
            if low == high:
                low, high = low - 0.5, high + 0.5
            ax.hist(data, bins=bins, range=(low, high), color=_BAR, edgecolor="white", lw=0.5)
        else:
            ax.text(0.5, 0.5, "暂无数据", ha="center", va="center", transform=ax.transAxes)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return _svg(fig)


def trend_svg(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    ylabel: str = "平均分",
) -> str:
    """A line over months (labels on x); a None value leaves a gap rather than a false zero."""
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels for {len(values)} values")
    ys = [math.nan if v is None else float(v) for v in values]
    with matplotlib.rc_context(_RC):
        fig, ax = _figure()
        xs = list(range(len(labels)))
        ax.plot(xs, ys, color=_LINE, lw=1.4, marker="o", ms=3.5)
        ax.set_xticks(xs, [str(label) for label in labels])
        if len(xs) == 1:
            ax.set_xlim(-0.5, 0.5)
        if not _finite(ys):
            ax.text(0.5, 0.5, "暂无数据", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        return _svg(fig)
