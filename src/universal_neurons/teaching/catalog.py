"""The exercises of teaching mode: each one's chapter, the function the learner writes, its objectives, difficulty
and the time it takes."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import UserError


@dataclass(frozen=True)
class Exercise:
    name: str
    chapter: str  # the chapter source holding its solution: notebooks/<chapter>.py
    function: str  # the function the learner writes
    title: str
    objectives: tuple[str, ...]
    difficulty: int  # 1 (a direct translation of a formula) to 3 (needs the library's internals)
    minutes: int  # the time a learner new to the topic needs, estimated


EXERCISES = {e.name: e for e in [
    Exercise("pearson", "universality", "streaming_pearson", "The streaming Pearson update",
             ("accumulate the sufficient statistics of a correlation over batches of tokens",
              "centre with the sums (Σab − ΣaΣb/n), not with a per-batch mean"), 1, 20),
    Exercise("excess", "universality", "excess_correlation", "The excess correlation over the baseline",
             ("match each reference neuron to its best partner neuron by the signed maximum correlation",
              "subtract the same statistic on the rotated baseline, averaged over partners (paper section 2)"), 1, 15),
    Exercise("ln_fold", "properties", "folded_w_in_norm", "A weight statistic with the LayerNorm folded in",
             ("see why a neuron's input weights are only comparable after folding the LayerNorm's scale into them",
              "fold and centre W_in as TransformerLens's fold_ln does, then take its norm per neuron"), 2, 20),
    Exercise("vr", "families", "variance_reduction", "The variance-reduction score of a feature",
             ("score how much a binary feature explains a neuron's activation (paper section 4.3)",
              "weight each group's variance by its share of the tokens"), 1, 15),
    Exercise("hook", "entropy", "run_with_fixed_activation", "The fixed-activation intervention",
             ("intervene on one neuron with a TransformerLens forward hook (paper section 5.2)",
              "leave the model as you found it: no hook may stay on it after the run"), 2, 20),
    Exercise("bos", "attention", "bos_score", "The BOS heuristic score of a neuron and a head",
             ("read a neuron's effect on a later head's attention to BOS from the weights alone (paper section 5.3)",
              "compose the unit output direction with W_Q and BOS's key, scaled as attention scores are"), 2, 20),
]}


def exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise UserError(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)}")
    return EXERCISES[name]


