"""One plotting setup for every chapter: a seaborn theme, a colour-blind palette, PNG output."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are saved and glued, never shown in a window
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = "colorblind"
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


setup()



def absent(message: str, height: float = 1.6):
    """A figure that says, in words, why its content could not be drawn in this run (no axes, no data)."""
    import textwrap

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(WIDE, height))
    fig.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 110)), ha="center", va="center", fontsize=11)
    return fig
