"""The untrained controls: the partner that gives the excess correlation's noise floor, and the negative
control's untrained members.

The control is an untrained model with the reference's config (a fixed init seed): correlating the reference
with it (`run_control`, into `tables/control`) gives the noise floor of the excess correlation, from which
`selection.control_threshold` takes the scale-aware threshold.
"""

from __future__ import annotations

from pathlib import Path

from ..config.sources import resolve_checkpoint
from ..core import paper
from ..core.atomic import atomic_dir
from ..data.tokenizer import load_tokenizer
from .selection import book_threshold, is_control
from .universality import run_universality

CONTROL_SEED = 12345  # the untrained control's init seed
UNTRAINED_SEED = 54321  # the negative control's members: this init seed plus the member's position


def _control_root(profile) -> Path:
    """Where a profile's untrained controls live: a sweep point's own `control_dir`, else `<root>/control`."""
    return Path(getattr(profile, "control_dir", None) or Path(profile.root) / "control")


def untrained_control(profile, seed: int = CONTROL_SEED) -> Path:
    """An untrained model with the reference's config (fixed init seed), saved once as a control partner."""
    return save_untrained(profile.members()[0], _control_root(profile) / f"untrained-seed-{seed}", seed,
                          profile.revision)


def save_untrained(source: str, out: Path, seed: int, revision=None) -> Path:
    """A fresh model with `source`'s config and tokenizer, initialised with `seed`, saved once into `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    ref = resolve_checkpoint(source, revision)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(ref), local_files_only=True))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        load_tokenizer(ref).save_pretrained(tmp)
    return out


def untrained_members(profile) -> list[Path]:
    """The negative control's members (analysis.untrained): for each member, a fresh model of its shape and
    tokenizer, initialised with UNTRAINED_SEED + its position (reference first), saved once in the run folder."""
    trained = profile.members(trained=True)
    return [save_untrained(src, Path(out), UNTRAINED_SEED + k, profile.revision)
            for k, (src, out) in enumerate(zip(trained, profile.members()))]


def run_with_control(profile, device="cpu", progress: bool = True) -> None:
    """The profile's universality pass and its untrained control's pass (what `run_control` reads), as one pass
    over the held-out tokens when both are due: the reference and the partners run once per chunk, the control
    beside them. Each pass is saved where, and as, it would be alone."""
    run_universality(profile, device=device, progress=progress, threshold=paper.THRESHOLD,
                     control=(str(untrained_control(profile)), Path(profile.tables_dir) / "control"))


def run_control(profile, device="cpu", progress: bool = True, *, reference=None, tables_dir=None,
                threshold=None):
    """The reference (the profile's, or `reference`) against the untrained control, into `<tables_dir>/control`
    (default the profile's tables folder), cached like `run_universality`; its tables at `threshold` (None: the
    profile's book.threshold), or at the paper's when that is "control" (the control's quantile needs them first)."""
    threshold = book_threshold(profile) if threshold is None else threshold
    threshold = paper.THRESHOLD if is_control(threshold) else threshold  # the control's own tables: a number
    return run_universality(profile, device=device, progress=progress, reference=reference,
                            partners=[str(untrained_control(profile))], threshold=threshold,
                            out_dir=Path(tables_dir or profile.tables_dir) / "control")


