"""Vintage curves as charts: ``curves_svg`` (inline in the console, no external assets: the
glyphs are drawn as paths) and ``curves_png`` (export), both with matplotlib on a ``Figure`` of
its own (Agg and SVG canvases; no pyplot, no display, safe in threads).

Chinese labels need a CJK family: Noto Sans CJK SC or WenQuanYi Micro Hei when installed,
else DejaVu Sans (the Chinese glyphs are then missing, the chart still renders).

matplotlib is imported when a chart is drawn, not with this module: every command and the
console import the reporting package, and matplotlib (with numpy) would add a second or more
to each start.
"""

import io
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from gateway.reporting.strata import Curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Micro Hei")
FALLBACK_FAMILY = "DejaVu Sans"
LABELS = {
    "en": ("Months on book", "Recovered share of placed balance", "Vintage curves"),
    "zh_CN": ("账龄月数 (自委案月起)", "累计回收率 (占委案金额)", "账龄回收曲线"),
}


@cache
def font_family() -> str:
    """The first CJK family installed, else the fallback."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in installed:
            return family
    return FALLBACK_FAMILY


def _figure(curves: Sequence[Curve], *, lang: str, title: str | None) -> "Figure":
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    xlabel, ylabel, default_title = LABELS.get(lang, LABELS["en"])
    family = font_family()
    fig = Figure(figsize=(7.5, 4.2), dpi=100)
    ax = fig.add_subplot()
    for curve in curves:
        if not curve.points:
            continue
        label = (
            curve.agency_id
            if len({c.currency for c in curves}) == 1
            else (f"{curve.agency_id} ({curve.currency})")
        )
        ax.plot(
            [m for m, _s, _p in curve.points],
            [s * 100 for _m, s, _p in curve.points],
            marker="o",
            markersize=3,
            label=label,
        )
    for text, setter in ((xlabel, ax.set_xlabel), (ylabel, ax.set_ylabel)):
        setter(text, fontfamily=family)
    ax.set_title(title or default_title, fontfamily=family)
    ax.yaxis.set_major_formatter("{x:.0f}%")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if any(c.points for c in curves):
        ax.legend(loc="upper left", prop={"family": family, "size": "small"})
    else:
        ax.text(0.5, 0.5, "-", transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    return fig


def curves_png(curves: Sequence[Curve], *, lang: str = "en", title: str | None = None) -> bytes:
    """The curves as a PNG (export)."""
    fig = _figure(curves, lang=lang, title=title)
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def curves_svg(curves: Sequence[Curve], *, lang: str = "en", title: str | None = None) -> str:
    """The curves as an SVG element to put inline in a page (no XML declaration, no
    doctype, no external reference)."""
    fig = _figure(curves, lang=lang, title=title)
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


__all__ = ["curves_png", "curves_svg", "font_family"]
