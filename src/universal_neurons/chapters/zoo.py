"""The zoo (the paper's five seeds, section 3): the models the book studies, one per seed; their training
curves, held-out losses against the corpus's unigram entropy, and a few greedy continuations."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
from IPython.display import Markdown

from .. import UserError, load_model, load_profile, plotting, shipped
from .. import zoo as Z
from ..publish import Chapter

PROMPTS = ("The President said that", "And the LORD spake unto", "It is a truth universally")


def context_verdict(summary: pd.DataFrame) -> str:
    """Whether every member's held-out loss is below the unigram entropy (the loss of a context-free model)."""
    beats = bool((summary["heldout_loss"] < summary["unigram_entropy"]).all())
    return ("every member has learned to use context" if beats
            else "not every member does better than a model that ignores context")


def training_sentence(summary: pd.DataFrame, threads: int | None, shipped_from: dict | None = None) -> str:
    """How long each seed trained and how fast; `threads` None: checkpoints trained elsewhere; `shipped_from`
    (cpus, folder, created): a zoo trained once and shipped in the repository."""
    if threads is None:
        return "These checkpoints were trained elsewhere; this book only loads them."
    text = (f"Each seed trained for about {summary['train_seconds'].mean() / 60:.1f} minutes at about "
            f"{summary['tokens_per_s'].mean():,.0f} tokens per second, on {threads} thread(s), seeds side by "
            "side when the cores allow.")
    if shipped_from:
        text += (f" This zoo was trained once (on {', '.join(shipped_from['cpus'])}) and is shipped in the "
                 f"repository (`{shipped_from['folder']}`, {shipped_from['created']}): this book checked every "
                 "file against the sha256 in its manifest and trained nothing.")
    return text


def shipped_provenance(prof) -> dict | None:
    """Where and when a shipped zoo was trained (its manifest; its files are checked by `make zoo` and by
    every load), or None for a zoo trained here."""
    if not prof.uses_shipped:
        return None
    man = shipped.read_manifest(prof.shipped_dir)
    return {"cpus": sorted({man["seeds"][str(s)]["cpu"] for s in prof.seeds}), "folder": prof.cfg["shipped"],
            "created": man["created"]}


def greedy_samples(prof, device: str = "cpu", n_tokens: int = 24, prompts=PROMPTS) -> pd.DataFrame:
    """Greedy continuations of each prompt by each member (a member that cannot be loaded is skipped)."""
    rows = []
    for source in prof.members():
        try:
            model = load_model(source, device=device, revision=prof.revision)
        except UserError as e:
            warnings.warn(f"cannot load {source}: {e}", stacklevel=2)
            continue
        for p in prompts:
            out = model.generate(p, max_new_tokens=n_tokens, do_sample=False, verbose=False)
            rows.append({"model": Path(str(source)).name, "prompt": p, "continuation": out[len(p):]})
    return pd.DataFrame(rows, columns=["model", "prompt", "continuation"])


def compute(profile: str = "smoke", device: str = "cpu", overrides: str = "") -> Chapter:
    """Read the zoo's training logs (or, for real checkpoints, measure their held-out loss here) and sample
    book.n_sample_tokens greedy tokens per prompt from each member."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    if prof.is_zoo:
        summary, curves = Z.read_logs(prof)
        training = training_sentence(summary, prof.cfg["train"]["threads"], shipped_provenance(prof))
    else:
        summary, curves = Z.evaluate_members(prof, device=device), None
        training = training_sentence(summary, None)
    glue = {"n_seeds": len(summary), "heldout_mean": float(summary["heldout_loss"].mean()),
            "heldout_max": float(summary["heldout_loss"].max()),
            "unigram_entropy": float(summary["unigram_entropy"].iloc[0]),
            "n_params": int(summary["parameters"].iloc[0]), "context_verdict": context_verdict(summary),
            "training_md": Markdown(training)}
    samples = greedy_samples(prof, device, prof.cfg["book"]["n_sample_tokens"])
    return Chapter("zoo", prof, glue=glue, tables={"members": summary.round(3), "samples": samples},
                   data={"summary": summary, "curves": curves})


def training_figure(ch: Chapter):
    """Training loss (solid) and held-out loss (dashed) per seed against training tokens, with the unigram
    entropy (grey); for checkpoints trained elsewhere, a note that there are no curves."""
    curves, summary = ch.data["curves"], ch.data["summary"]
    fig, ax = plotting.subplots(1, 1, height=4.2, width=8.0)
    if curves is None:
        ax.axis("off")
        ax.text(0.5, 0.5, f"Profile {ch.profile.name!r} names real checkpoints, trained elsewhere: no training "
                "curves; their held-out loss is measured here.", ha="center", va="center", wrap=True)
        return fig
    for seed, c in curves.groupby("seed"):
        line, = ax.plot(c["tokens"], c["train_loss"], label=f"seed {seed}")
        ax.plot(c["tokens"], c["heldout_loss"], ls="--", color=line.get_color())
    ax.axhline(summary["unigram_entropy"].iloc[0], color="grey", lw=1, label="unigram entropy")
    ax.set(xlabel="training tokens", ylabel="loss (nats/token)", title=f"Zoo '{ch.profile.name}'")
    ax.legend(fontsize=8)
    return fig
