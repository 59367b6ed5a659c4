"""Figures in executed notebooks: shown as PNG whatever the matplotlib backend, then freed."""

import matplotlib.pyplot as plt


def show(fig) -> None:
    """Display `fig` as a PNG output of the current cell, then close it."""
    from IPython.display import display
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("png")
    fig.tight_layout()
    display(fig)
    plt.close(fig)
