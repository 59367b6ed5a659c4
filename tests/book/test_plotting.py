"""The book's plotting helpers: plain numbers on log axes, a series palette without look-alike neighbours."""

import matplotlib.colors as mcolors
import numpy as np
import pytest

from universal_neurons.book import plotting


@pytest.mark.parametrize("x, want", [(0.3, "0.3"), (2, "2"), (40, "40"), (1000, "1,000"), (12_000, "12K"),
                                     (1.2e6, "1.2M"), (2.1e11, "210B")])
def test_plain_number(x, want):
    assert plotting.plain_number(x) == want


def test_plain_log_labels_a_short_range_without_powers():
    fig, ax = plotting.subplots(1, 1, width=4)
    ax.plot([0, 1], [1.8, 3.4])
    ax.set_yscale("log")
    plotting.plain_log(ax, "y")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    assert labels and not any("times" in s or "^" in s or "10" in s and "$" in s for s in labels), labels
    assert set(labels) <= {"2", "3", "5", "1", "10"}, labels


def test_series_colours_differ():
    """The first six series colours are far apart in RGB (the palette's orange/vermilion/tan look-alikes are not
    among them)."""
    rgb = np.array([mcolors.to_rgb(plotting.series_colour(i)) for i in range(6)])
    d = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1))
    assert d[np.triu_indices(6, 1)].min() > 0.25
