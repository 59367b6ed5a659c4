"""Which neurons the book calls universal: the threshold policy (the paper's number, or the scale-aware one read
from the untrained control) and the group each chapter compares with the rest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core import paper
from ..core.errors import UserError

CONTROL_QUANTILE = 0.999  # the scale-aware threshold: this quantile of the excess against an untrained partner
def is_control(threshold) -> bool:
    """True for the threshold "control" (the scale-aware one), however it is capitalised or spaced."""
    return isinstance(threshold, str) and threshold.strip().lower() == "control"


def control_threshold(control: pd.DataFrame, quantile: float = CONTROL_QUANTILE) -> float:
    """The scale-aware threshold: the `quantile` of the live reference neurons' excess correlation against an
    untrained partner (`control`: that run's neuron table). Above it, a neuron correlates with its trained
    partners more than all but a (1 - quantile) share of neurons correlate with an untrained one."""
    ex = control.loc[~control["is_dead"].astype(bool), "excess_corr"].dropna()
    if ex.empty:
        raise UserError("the control table has no live neuron; rerun the universality chapter with "
                        "analysis.control=true")
    return float(ex.quantile(quantile))


def resolve_threshold(threshold, tables_dir) -> tuple[float, str]:
    """A chapter's `threshold` parameter as (value, words for the page): a number (the paper's is 0.5), or
    "control": the scale-aware threshold of this profile's untrained control (tables/control/neurons.csv,
    written by the universality chapter into `tables_dir`)."""
    if is_control(threshold):
        path = Path(tables_dir) / "control" / "neurons.csv"
        if not path.is_file():
            raise UserError(f"threshold 'control' needs the untrained control's table {path}; run the universality "
                            "chapter (analysis.control=true) for this profile first, or set a number")
        q = control_threshold(pd.read_csv(path))
        return q, (f"the scale-aware threshold of {q:.3f} (the untrained control's "
                   f"{100 * CONTROL_QUANTILE:g}th percentile)")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 1 or isinstance(threshold, bool):  # an excess correlation lies in [-2, 2]; NaN fails too
        raise UserError(f"threshold must be a number in (0, 1] (the paper's is {paper.THRESHOLD}) or 'control', "
                        f"got {threshold!r}")
    return value, f"the paper's threshold of {value:g}" if value == paper.THRESHOLD else f"the threshold of {value:g}"


def book_threshold(profile):
    """A profile's book.threshold as set (a number or "control"); the paper's when it has no book section."""
    return profile.cfg.get("book", {}).get("threshold", paper.THRESHOLD)


def universal_group(frame: pd.DataFrame, threshold: float, top_pct: float, min_count: int) -> tuple[pd.Series, str]:
    """The neurons compared with the rest: excess_corr > threshold if at least `min_count` pass, else the top
    `top_pct`% of live neurons by excess_corr (the settings book.threshold, book.top_pct, book.min_universal). Returns (bool Series over frame, a label for plots)."""
    live = ~frame["is_dead"].astype(bool) & frame["excess_corr"].notna()
    universal = live & (frame["excess_corr"] > threshold)
    if universal.sum() >= min_count:
        return universal, f"universal (excess > {threshold:g})"
    cut = frame.loc[live, "excess_corr"].quantile(1 - top_pct / 100)
    return live & (frame["excess_corr"] >= cut), f"top {top_pct:g}% by excess"


@dataclass
class Group:
    """The neurons compared with the rest: `mask` over the live neurons, its `label`, the threshold used (value
    and words) and how many live neurons pass it."""

    mask: pd.Series
    label: str
    threshold: float
    threshold_name: str
    n_universal: int

    @property
    def is_universal(self) -> bool:
        return self.label.startswith("universal")


def compared_group(prof, live: pd.DataFrame) -> Group:
    """The universal neurons of `live` (excess above book.threshold) if at least book.min_universal pass, else
    the top book.top_pct percent by excess correlation."""
    b = prof.cfg["book"]
    thr, thr_name = resolve_threshold(b["threshold"], prof.tables_dir)
    mask, label = universal_group(live, thr, float(b["top_pct"]), int(b["min_universal"]))
    return Group(mask, label, thr, thr_name, int((live["excess_corr"] > thr).sum()))


