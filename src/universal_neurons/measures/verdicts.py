"""The book's one verdict protocol. A claim of the paper is judged on one quantity of this run: its value (and,
where the book has one, its own uncertainty interval), the paper's value, a magnitude tied to the paper (its own
threshold, or a stated share of its effect) and the book's noise band for that quantity (random neurons, the
untrained control, a null distribution). The verdict is one of four:

- **holds**: the value lies beyond the noise band in the paper's direction and meets the magnitude;
- **direction only**: beyond the noise band in the paper's direction, magnitude short;
- **does not hold**: inside the noise band, or the other way;
- **not testable here**: the quantity does not exist at this scale (no neuron passes the paper's rule for the
  role, or too few to compare).

`Evidence.rule` prints the rule with its numbers, to stand beside the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOLDS = "holds"
DIRECTION = "direction only"
FAILS = "does not hold"
UNTESTABLE = "not testable here"
VERDICTS = (HOLDS, DIRECTION, FAILS, UNTESTABLE)
ALPHA = 0.05  # the family-wise significance level (Holm) of tests that share a question


def _num(x: float) -> str:
    """A number as the rules print it: 3 significant digits, no trailing noise."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)) or float(x).is_integer() and abs(x) >= 1:
        return f"{x:,.0f}"
    return f"{x:.3g}"


@dataclass(frozen=True)
class Evidence:
    """One claim's evidence. `value`: this run's quantity; `sign`: +1 if the paper's claim is that it is large,
    -1 small; `magnitude`: the least (sign +1) or greatest (sign -1) value that counts as the paper's size, with
    `magnitude_words` saying how it is tied to the paper; `noise`: the upper (sign +1) or lower (sign -1) edge of
    the book's noise band, with `noise_words`; `interval`: this run's own uncertainty interval of `value` (lo, hi),
    judged against the noise edge when given (its near end must clear it); `untestable`: why the quantity does not
    exist here (empty when it does); `p`: a p-value (already corrected) that must be below ALPHA to clear noise,
    with `p_words`."""

    quantity: str
    value: float
    sign: int = +1
    magnitude: float | None = None
    magnitude_words: str = ""
    noise: float | None = None
    noise_words: str = ""
    interval: tuple[float, float] | None = None
    untestable: str = ""
    p: float | None = None
    p_words: str = ""
    unit: str = ""

    def _beyond(self, x: float, edge: float) -> bool:
        return bool(x > edge) if self.sign > 0 else bool(x < edge)

    def clears_noise(self) -> bool:
        """The value (the near end of its interval) lies beyond the noise edge in the paper's direction, and the
        p-value (when given) is below ALPHA."""
        if self.value is None or math.isnan(float(self.value)):
            return False
        near = self.value
        if self.interval is not None:
            near = min(self.interval) if self.sign > 0 else max(self.interval)
        ok = True if self.noise is None else self._beyond(near, self.noise)
        if self.p is not None:
            ok = ok and not math.isnan(self.p) and self.p < ALPHA
        return ok

    def meets_magnitude(self) -> bool:
        if self.magnitude is None or self.value is None or math.isnan(float(self.value)):
            return False
        return bool(self.value >= self.magnitude) if self.sign > 0 else bool(self.value <= self.magnitude)

    @property
    def verdict(self) -> str:
        if self.untestable:
            return UNTESTABLE
        if not self.clears_noise():
            return FAILS
        return HOLDS if self.meets_magnitude() else DIRECTION

    def _with_unit(self, x) -> str:
        text = _num(x)
        return text if text == "n/a" else text + self.unit

    @property
    def rule(self) -> str:
        """The rule with its numbers, e.g. "holds if x ≥ 9.7 (half the paper's 19.4x) and above 1.12 (the untrained
        control); ours 3.49"."""
        ge, beyond = ("≥", "above") if self.sign > 0 else ("≤", "below")
        parts = []
        if self.magnitude is not None:
            parts.append(f"{self.quantity} {ge} {self._with_unit(self.magnitude)} ({self.magnitude_words})")
        else:
            parts.append(f"{self.quantity} of the paper's size ({self.magnitude_words or 'the paper gives none'})")
        near = "its interval " if self.interval is not None else ""
        if self.noise is not None:
            parts.append(f"{near}{beyond} {self._with_unit(self.noise)} ({self.noise_words})")
        if self.p is not None:
            parts.append(f"p < {ALPHA:g} ({self.p_words})")
        text = "holds if " + " and ".join(parts)
        if self.untestable:
            return f"{text}; not testable here: {self.untestable}"
        ours = f"ours {self._with_unit(self.value)}"
        if self.interval is not None:
            ours += f" [{_num(self.interval[0])}, {_num(self.interval[1])}]"
        if self.p is not None:
            ours += f", p = {self.p:.2g}"
        return f"{text}; {ours}"


def holm(p) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN kept as NaN): the adjusted p-value of each test,
    to compare with the family-wise level."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    order = np.argsort(q)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * q[i]))
        adj[i] = running
    out[ok] = adj
    return out


def count(verdicts) -> dict[str, int]:
    """How many of each verdict, in the protocol's order."""
    verdicts = list(verdicts)
    return {v: sum(x == v for x in verdicts) for v in VERDICTS}


def summary(verdicts) -> str:
    """"3 hold, 2 direction only, 5 do not hold, 2 not testable here"."""
    n = count(verdicts)
    words = {HOLDS: ("holds", "hold"), DIRECTION: ("direction only", "direction only"),
             FAILS: ("does not hold", "do not hold"), UNTESTABLE: ("not testable here", "not testable here")}
    return ", ".join(f"{n[v]} {words[v][0] if n[v] == 1 else words[v][1]}" for v in VERDICTS)


def rule_key(verdict_key: str) -> str:
    """The glue key of a verdict's rule: `prop_verdict_kurt` -> `prop_rule_kurt`, `att_verdict` -> `att_rule`."""
    if "verdict" not in verdict_key:
        raise ValueError(f"{verdict_key!r} is not a verdict key (it must contain 'verdict')")
    return verdict_key.replace("verdict", "rule")


def glue_verdict(glue: dict, verdict_key: str, evidence: Evidence) -> str:
    """Put a claim's verdict and its printed rule into a chapter's glue (`verdict_key`, `rule_key(verdict_key)`);
    returns the verdict."""
    glue[verdict_key] = evidence.verdict
    glue[rule_key(verdict_key)] = evidence.rule
    return evidence.verdict


def holds_here(claims: list[tuple[str, Evidence]], notes: list[str] = ()) -> str:
    """A chapter's closing section: one line per claim (its verdict in bold, the claim, the rule with its numbers)
    and a count, then `notes` (sentences the chapter derived from its own numbers)."""
    if not claims:
        lines = ["This chapter judges none of the paper's claims."]
    else:
        verdicts = [e.verdict for _, e in claims]
        lines = [f"Of the {len(claims)} claim{'s' if len(claims) > 1 else ''} of the paper judged in this chapter: "
                 f"{summary(verdicts)}.", ""]
        lines += [f"- **{e.verdict}**: {claim}. Rule: {e.rule}." for claim, e in claims]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def prediction_bound(samples, level: float = 0.975) -> float:
    """The noise edge of a small sample of sizes from a null (e.g. |effects| of random neurons): the `level`
    one-sided prediction bound of one more draw, on the log scale (sizes are positive and skewed), Student-t with
    the sample's own spread; never below the sample's largest. NaN without two positive samples."""
    from scipy import stats

    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    if len(x) < 2:
        return float("nan")
    logs = np.log(x)
    n, m, sd = len(logs), logs.mean(), logs.std(ddof=1)
    return float(max(x.max(), np.exp(m + stats.t.ppf(level, n - 1) * sd * np.sqrt(1 + 1 / n))))

