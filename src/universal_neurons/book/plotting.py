"""One plotting setup for every chapter: a seaborn theme, a colour-blind palette, PNG output."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are saved and glued, never shown in a window
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = "colorblind"
# The colour-blind palette in the order a figure's series take it: its orange and vermilion, and its orange and
# tan, look alike, so they are kept far apart (a figure with up to 6 series never shows two of them).
SERIES = ("#0173b2", "#de8f05", "#029e73", "#cc78bc", "#56b4e9", "#949494", "#d55e00", "#ece133", "#ca9161",
          "#fbafe4")
WIDE = 11.0  # inches: the width of a figure that spans the page (the book's text column is ~ 7.5 in at 100 dpi)


def setup() -> None:
    """The book's look: seaborn's ticks theme, the colour-blind palette, readable fonts, 110 dpi PNGs."""
    sns.set_theme(context="notebook", style="ticks", palette=PALETTE, font_scale=0.9,
                  rc={"figure.dpi": 110, "savefig.dpi": 110, "savefig.bbox": "tight", "axes.spines.top": False,
                      "axes.spines.right": False, "legend.frameon": False})


def subplots(nrows: int = 1, ncols: int = 1, height: float = 3.6, width: float = WIDE, **kw):
    """`plt.subplots` at the book's width (a single panel narrower), with the book's theme."""
    setup()
    return plt.subplots(nrows, ncols, figsize=(width, height * nrows), **kw)


def series_colour(i: int) -> str:
    """The colour of a figure's i-th series (SERIES, cycling)."""
    return SERIES[i % len(SERIES)]


def plain_number(x: float) -> str:
    """A tick value as a reader says it: 0.3, 2, 40, 1,000, then 12K, 1.2M, 210B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e4, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}" if unit != "K" else f"{x / 1e3:.3g}K"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:.3g}"


def plain_log(ax, which: str = "y") -> None:
    """Label a log axis with plain numbers (2, 3, 10, 1.2M) instead of 2x10^0: the same ticks as matplotlib
    would label (its choice of minor ticks on a short range), in words a reader reads."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def set_locs(self, locs=None):
            super().set_locs(locs)
            subs = getattr(self, "_sublabels", None)
            if subs is not None and len(subs) > 3:  # a short range labels every minor tick: keep 1, 2 and 5
                self._sublabels = {c for c in subs if round(c) in (1, 2, 5)}

        def __call__(self, x, pos=None):
            return plain_number(x) if super().__call__(x, pos) else ""

    axis = ax.yaxis if which == "y" else ax.xaxis
    base = getattr(axis.get_transform(), "base", 10)
    axis.set_major_formatter(Plain(base=base))
    axis.set_minor_formatter(Plain(base=base, labelOnlyBase=False))


setup()


def absent(message: str, height: float = 1.6):
    """A figure that says, in words, why its content could not be drawn in this run (no axes, no data)."""
    import textwrap

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(WIDE, height))
    fig.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 110)), ha="center", va="center", fontsize=11)
    return fig
