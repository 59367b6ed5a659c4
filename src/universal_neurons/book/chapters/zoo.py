"""The zoo (the paper's five seeds, section 3): the models the book studies, one per seed; their training
curves, held-out losses against the corpus's unigram entropy, and a few greedy continuations."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
from IPython.display import Markdown

import numpy as np

from ... import data
from ...core.errors import UserError
from ...data.corpus import read_manifest as read_corpus_manifest
from ...models.loading import load_model
from ...config.profile import load_profile
from ...core import paper
from .. import plotting
from ...config.recipe import read_manifest
from ...models import zoo
from ..publish import Chapter
from ...measures.verdicts import holds_here

PROMPTS = ("The President said that", "And the LORD spake unto", "It is a truth universally")

# GPT2-small, the paper's smallest model (Radford et al. 2019; the Stanford CRFM seeds share its configuration):
# depth and width from paper.MODELS; the rest is GPT-2's published configuration (config.json of `gpt2`:
# n_embd 768, n_head 12, n_positions 1024, vocab_size 50257; 124,439,808 parameters with the tied unembedding).
# Its training corpus is OpenWebText; its training tokens are paper.MODELS' estimate (the paper does not state them).
GPT2_SMALL = {"d_model": 768, "n_head": 12, "n_ctx": 1024, "vocab": 50257, "parameters": 124_439_808,
              "corpus": "OpenWebText (Stanford CRFM)"}


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
    man = read_manifest(prof.shipped_dir)
    return {"cpus": sorted({man["seeds"][str(s)]["cpu"] for s in prof.seeds}), "folder": prof.cfg["shipped"],
            "created": man["created"]}


def heldout_measures(summary: pd.DataFrame, curves: pd.DataFrame, eval_tokens: int, n_ctx: int,
                     heldout_rows: int) -> pd.DataFrame:
    """The two held-out losses of each member, side by side: the training curve's last point (measured during
    training on the first quarter of the evaluation rows) and the final held-out loss (all `eval_tokens`, once at
    the end), with how many tokens each read and whether the curve's last point is the final weights."""
    rows_final = min(heldout_rows, max(1, eval_tokens // n_ctx))
    rows_curve = min(heldout_rows, max(1, eval_tokens // 4 // n_ctx))  # as zoo.train_seed measures its curve
    out = []
    for _, m in summary.iterrows():
        last = curves[curves["seed"] == m["seed"]].sort_values("step").iloc[-1]
        out.append({"seed": m["seed"], "curve_step": int(last["step"]), "steps": int(m["steps"]),
                    "same_weights": int(last["step"]) == int(m["steps"]),
                    "curve_loss": float(last["heldout_loss"]), "curve_tokens": rows_curve * n_ctx,
                    "final_loss": float(m["heldout_loss"]), "final_tokens": rows_final * n_ctx})
    return pd.DataFrame(out)


def heldout_sentence(measures: pd.DataFrame, curve_sources: list[str]) -> str:
    """Which held-out loss is which, and why the two differ, from the measures (`curve_sources`: the corpus
    sources of the rows the curve reads)."""
    m = measures
    text = (f"Two held-out losses appear on this page. **The held-out loss** of the book (the table below, and "
            f"every later chapter) is measured once, on the final weights, over {int(m['final_tokens'].iloc[0]):,} "
            f"held-out tokens: {m['final_loss'].min():.3f}-{m['final_loss'].max():.3f} nats. The dashed training "
            f"curves are measured during training on the first {int(m['curve_tokens'].iloc[0]):,} of those tokens "
            f"(a quarter, to keep training fast) and end at {m['curve_loss'].min():.3f}-{m['curve_loss'].max():.3f} "
            "nats.")
    if not m["same_weights"].all() or m["curve_tokens"].iloc[0] == m["final_tokens"].iloc[0]:
        return text
    gap = (m["final_loss"] - m["curve_loss"]).to_numpy()
    which = "lower" if (gap > 0).all() else "higher" if (gap < 0).all() else "lower or higher by seed"
    text += (f" The curve's last point is the final weights, so the difference ({abs(gap).min():.3f}-"
             f"{abs(gap).max():.3f} nats, the curve {which}) is the text, not the model: held-out rows are stored in "
             "corpus order, source by source, and the first quarter")
    if len(curve_sources) == 1:
        return text + f" holds only {curve_sources[0]} text."
    return text + f" holds {', '.join(curve_sources[:-1])} and {curve_sources[-1]} text only."


def architecture_table(summary: pd.DataFrame, model: dict, vocab: int, corpus: dict | None) -> pd.DataFrame:
    """This zoo's architecture and training data beside GPT2-small's (the paper's smallest model); `corpus`
    (sources, train_tokens, tokens_per_seed) is None for checkpoints trained elsewhere."""
    g = paper.MODELS.set_index("model").loc["GPT2-small-a"]
    gpt2 = {"layers": int(g["n_layer"]), "d_model": GPT2_SMALL["d_model"], "d_mlp": int(g["d_mlp"]),
            "heads": GPT2_SMALL["n_head"], "n_ctx": GPT2_SMALL["n_ctx"], "vocabulary": GPT2_SMALL["vocab"],
            "neurons": int(g["n_layer"]) * int(g["d_mlp"]), "parameters": GPT2_SMALL["parameters"],
            "training corpus": GPT2_SMALL["corpus"], "training tokens per seed": f"~{g['tokens']:.2g} (estimate)",
            "tokens in the training split": "-", "epochs": "-"}
    ours = {"layers": model["n_layer"], "d_model": model["d_model"], "d_mlp": model["d_mlp"],
            "heads": model["n_head"], "n_ctx": model["n_ctx"], "vocabulary": vocab,
            "neurons": model["n_layer"] * model["d_mlp"], "parameters": int(summary["parameters"].iloc[0])}
    if corpus is None:
        ours |= {"training corpus": "trained elsewhere", "training tokens per seed": "-",
                 "tokens in the training split": "-", "epochs": "-"}
    else:
        ours |= {"training corpus": ", ".join(corpus["sources"]),
                 "training tokens per seed": corpus["tokens_per_seed"],
                 "tokens in the training split": corpus["train_tokens"],
                 "epochs": round(corpus["tokens_per_seed"] / corpus["train_tokens"], 2)}
    fmt = lambda v: f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)  # noqa: E731
    return pd.DataFrame({"this zoo": {k: fmt(v) for k, v in ours.items()},
                         "GPT2-small (the paper's)": {k: fmt(v) for k, v in gpt2.items()}}).rename_axis("")


def corpus_table(manifest: dict, train_counts: dict[str, int], heldout_counts: dict[str, int]) -> pd.DataFrame:
    """Per corpus source: where its text comes from (registry packages), its documents and its tokens in the
    training and held-out splits (tokens counted in the token rows, BOS included)."""
    rows = []
    for name, info in manifest["per_source"].items():
        pkgs = ", ".join(f"{p['name']} {p['version']} ({p['registry']})" for p in info.get("packages", []))
        rows.append({"source": name, "packages": pkgs or "-",
                     "training documents": info["train"]["documents"], "training tokens": train_counts.get(name, 0),
                     "held-out documents": info["heldout"]["documents"],
                     "held-out tokens": heldout_counts.get(name, 0)})
    return pd.DataFrame(rows)


def source_counts(rows) -> dict[str, int]:
    """Tokens per corpus source in a token dataset (every token of its rows, BOS included)."""
    counts = np.bincount(np.asarray(rows.sources).ravel(), minlength=len(rows.source_names))
    return {name: int(c) for name, c in zip(rows.source_names, counts)}


def models_sentence(arch: pd.DataFrame, corpus: dict | None) -> str:
    """The paragraph beside the architecture table: how this zoo's size and data compare with GPT2-small's."""
    if "this zoo" not in arch.columns:
        return ("This profile names checkpoints trained elsewhere; the table gives GPT2-small's size, the paper's "
                "smallest model, from the paper's data.")
    num = lambda col, row: int(str(arch.loc[row, col]).replace(",", ""))  # noqa: E731
    gpt2 = "GPT2-small (the paper's)"
    ratio = num(gpt2, "parameters") / num("this zoo", "parameters")
    size = (f"{ratio:,.0f} times fewer parameters than GPT2-small" if ratio > 1
            else f"{1 / ratio:,.1f} times GPT2-small's parameters")
    text = (f"This zoo's members have {size}, the paper's smallest model ({num('this zoo', 'neurons'):,} neurons "
            f"against {num(gpt2, 'neurons'):,}).")
    if corpus:
        text += (f" Each seed saw {corpus['tokens_per_seed']:,} tokens: "
                 f"{corpus['tokens_per_seed'] / corpus['train_tokens']:.2f} passes over the "
                 f"{corpus['train_tokens']:,} tokens of the training split, from {len(corpus['sources'])} sources "
                 f"({', '.join(corpus['sources'])}); GPT2-small's training tokens are an estimate (the paper does "
                 "not state them).")
    return text


def zoo_notes(summary: pd.DataFrame, verdict: str, untrained: bool = False) -> list[str]:
    """The chapter's closing sentences, from its numbers: the members' held-out loss, their spread across seeds,
    the unigram entropy and the context verdict."""
    loss, u = summary["heldout_loss"], float(summary["unigram_entropy"].iloc[0])
    who = "untrained stand-ins of the members (measured here)" if untrained else "members"
    notes = [f"The {len(summary)} {who} have a held-out loss of {loss.mean():.3f} nats on average "
             f"({loss.min():.3f}-{loss.max():.3f}: a spread of {loss.max() - loss.min():.3f} nats across seeds) "
             f"against a unigram entropy of {u:.3f}: {verdict}."]
    if len(summary) > 1:
        gap = u - float(loss.max())
        notes.append(f"The worst member is {abs(gap):.3f} nats {'below' if gap > 0 else 'above'} the unigram "
                     f"entropy, {abs(gap) / max(loss.max() - loss.min(), 1e-12):,.0f} times the spread across seeds."
                     if loss.max() > loss.min() else
                     "Every member has the same held-out loss to the precision shown.")
    return notes


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


def recipe_of(prof) -> tuple[dict, int]:
    """(model settings, vocabulary size) of a zoo: from its manifest when shipped, else from the profile."""
    if prof.uses_shipped:
        recipe = read_manifest(prof.shipped_dir)["recipe"]
        return recipe["model"], int(recipe["tokenizer"]["vocab_size"])
    return prof.cfg["model"], int(prof.cfg["tokenizer"]["vocab_size"])


def corpus_info(prof, tokens_per_seed: int) -> tuple[dict, pd.DataFrame, list[str], int]:
    """(summary for the architecture table, the per-source corpus table, the sources of the held-out rows the
    training curves read, held-out rows) from the corpus manifest and the token rows (built once, cached)."""
    train = data.token_rows(prof, "train", progress=False)
    heldout = data.token_rows(prof, "heldout", progress=False)
    manifest = read_corpus_manifest(data.corpus_dir(prof, progress=False))
    table = corpus_table(manifest, source_counts(train), source_counts(heldout))
    rows_curve = min(len(heldout), max(1, prof.cfg["train"]["eval_tokens"] // 4 // heldout.n_ctx))
    first = np.unique(np.asarray(heldout.sources[:rows_curve]))
    curve_sources = [heldout.source_names[i] for i in sorted(first)]
    info = {"sources": list(manifest["per_source"]), "train_tokens": int(train.tokens.size),
            "tokens_per_seed": int(tokens_per_seed)}
    return info, table, curve_sources, len(heldout)


def compute(profile: str = "smoke", device: str = "cpu", overrides: str = "") -> Chapter:
    """Read the zoo's training logs (or, for real checkpoints and for untrained stand-ins, measure their held-out
    loss here), describe the architecture and the corpus beside GPT2-small's, and sample book.n_sample_tokens
    greedy tokens per prompt from each member."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    glue, tables, measures = {}, {}, None
    if prof.is_zoo:
        summary, curves = zoo.read_logs(prof)
        training = training_sentence(summary, prof.cfg["train"]["threads"], shipped_provenance(prof))
        model, vocab = recipe_of(prof)
        info, tables["corpus"], curve_sources, heldout_rows = corpus_info(prof, int(summary["tokens"].iloc[0]))
        tables["architecture"] = architecture_table(summary, model, vocab, info)
        glue["zoo_models_md"] = Markdown(models_sentence(tables["architecture"], info))
        measures = heldout_measures(summary, curves, prof.cfg["train"]["eval_tokens"], model["n_ctx"], heldout_rows)
        glue |= {"zoo_heldout_md": Markdown(heldout_sentence(measures, curve_sources)),
                 "zoo_curve_tokens": int(measures["curve_tokens"].iloc[0]),
                 "zoo_eval_tokens": int(measures["final_tokens"].iloc[0]),
                 "zoo_curve_end_mean": float(measures["curve_loss"].mean()),
                 "zoo_train_tokens": info["train_tokens"], "zoo_tokens_per_seed": info["tokens_per_seed"],
                 "zoo_epochs": info["tokens_per_seed"] / info["train_tokens"],
                 "zoo_n_sources": len(info["sources"])}
    else:
        summary, curves = zoo.evaluate_members(prof, device, prof.cfg["book"]["loss_tokens"]), None
        training = training_sentence(summary, None)
        tables["architecture"] = paper.MODELS.set_index("model").loc[["GPT2-small-a"], ["n_layer", "d_mlp", "tokens"]]
        tables["corpus"] = pd.DataFrame({"source": ["(checkpoints trained elsewhere: not on this corpus)"]})
        glue["zoo_models_md"] = Markdown(models_sentence(tables["architecture"], None))
    studied = summary
    if prof.untrained:  # the negative control: the book studies fresh stand-ins of these members
        studied = zoo.evaluate_members(prof, device, prof.cfg["book"]["loss_tokens"])
        training += (" This run studies untrained stand-ins of these members (fresh initialisations of the same "
                     "shape and tokenizer): their held-out loss is measured here, below.")
        tables["untrained"] = studied.round(3)
    verdict = context_verdict(studied)
    glue |= {"n_seeds": len(studied), "heldout_mean": float(studied["heldout_loss"].mean()),
             "heldout_max": float(studied["heldout_loss"].max()),
             "heldout_min": float(studied["heldout_loss"].min()),
             "unigram_entropy": float(studied["unigram_entropy"].iloc[0]),
             "n_params": int(summary["parameters"].iloc[0]), "context_verdict": verdict,
             "training_md": Markdown(training),
             "zoo_holds_md": Markdown(holds_here([], zoo_notes(studied, verdict, prof.untrained)))}
    samples = greedy_samples(prof, device, prof.cfg["book"]["n_sample_tokens"])
    tables = {"members": summary.round(3), **tables, "samples": samples}
    return Chapter("zoo", prof, glue=glue, tables=tables,
                   data={"summary": summary, "curves": curves, "measures": measures})


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
    m = ch.data.get("measures")
    if m is not None:  # the book's held-out loss (all the evaluation tokens, final weights): one mark per seed
        ax.scatter(summary["tokens"], summary["heldout_loss"], marker="x", color="black", zorder=3,
                   label=f"held-out loss, all {int(m['final_tokens'].iloc[0]):,} tokens")
        ax.plot([], [], ls="--", color="grey", label=f"held-out, first {int(m['curve_tokens'].iloc[0]):,} tokens")
    ax.set(xlabel="training tokens", ylabel="loss (nats/token)", title=f"Zoo '{ch.profile.name}'")
    ax.legend(fontsize=8)
    return fig
