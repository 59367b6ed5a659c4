"""Prediction, suppression and partition neurons (paper section 5.1, figures 5, 6 and 22-24): the paper's rules on
the moments of c_v = cos(w_out, W_U[:, v]), by layer and model; its two claims about where they sit, judged on the
neurons that pass its rules against a binomial null, at half the lift its own published tables show; the percentile
curves of figure 6 as a description; and token-class ensembles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from scipy import stats

from ...measures import activation_stats, token_classes, weight_stats
from ...core import paper
from .. import plotting
from ...runs import properties
from ...measures import verdicts
from .. import words
from ...data.prepare import analysis_rows
from ...core.errors import UserError
from ...models.loading import load_model
from ...config.profile import load_profile
from ..publish import Chapter
from ...runs.selection import compared_group

KINDS = ["prediction", "suppression", "partition", "partition_scaled"]
QUANTILES = [5, 10, 50, 90, 95]  # percentiles of vocab_kurt and vocab_skew per layer (figure 6)
MIN_HIGH_KURT = 10  # fewer neurons above the kurtosis threshold: the top percent by vocab_kurt instead
MIN_CLASS_NEXT = 20  # a class rarer than this as a next token in the sample gets no ensemble row
KIND_COLORS = {"prediction": "C2", "suppression": "C3", "partition": "C0"}


def role_count(n: int, kind: str) -> str:
    """"3 neurons are prediction neurons", "1 neuron is a prediction neuron" (counts and articles in agreement)."""
    return (f"1 neuron is {words.with_article(kind)} neuron" if n == 1
            else f"{words.plural(n, 'neuron')} are {kind} neurons")


def scaled_partition_threshold(partition_var: float, d_model: int) -> float:
    """The partition threshold at the same multiple of 1/d_model (the variance of a random direction's cosines)
    as `partition_var` is for the model the paper set it on (GPT2-medium)."""
    return partition_var * paper.PARTITION_D_MODEL / d_model


def with_rules(table: pd.DataFrame, kurt_threshold: float, partition_var: float, d_model: int) -> pd.DataFrame:
    """`table` with a bool column per rule: prediction (vocab_kurt > kurt_threshold, vocab_skew > 0), suppression
    (the same with vocab_skew < 0), partition (vocab_var > partition_var) and partition_scaled (the scaled one)."""
    high = table["vocab_kurt"] > kurt_threshold
    return table.assign(prediction=high & (table["vocab_skew"] > 0), suppression=high & (table["vocab_skew"] < 0),
                        partition=table["vocab_var"] > partition_var,
                        partition_scaled=table["vocab_var"] > scaled_partition_threshold(partition_var, d_model))


def layer_bands(table: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, quantile): the mean, min and max over the models of each model's layer quantile of vocab_kurt
    and vocab_skew (columns (statistic, mean|min|max))."""
    per = (table.groupby(["model", "layer"])[["vocab_kurt", "vocab_skew"]].quantile([q / 100 for q in QUANTILES])
           .rename_axis(["model", "layer", "q"]).reset_index())
    return per.groupby(["layer", "q"])[["vocab_kurt", "vocab_skew"]].agg(["mean", "min", "max"])


MIN_ROLE = 10  # fewer neurons of the role over the models: its claim is not testable here
PAPER_SHARE = 0.5  # a claim holds at half the smallest lift over the null that the paper's published tables show


def lift(share: float, null: float) -> float:
    """How far a share rises above its null, as a part of the room above it: (share - null) / (1 - null)."""
    return (share - null) / (1 - null)


def role_shares(table: pd.DataFrame, n_layers: int, kurt_threshold: float) -> dict:
    """The two claims' counts over every model of `table` (columns model, layer, vocab_kurt, vocab_skew):
    prediction neurons (vocab_kurt > kurt_threshold, vocab_skew > 0), how many lie in the second half of the
    layers (layer >= n_layers // 2) and the share of all neurons there (the null); the high-kurtosis neurons of
    the last layer (either skew) and how many of them are suppression neurons (vocab_skew < 0)."""
    high = table["vocab_kurt"] > kurt_threshold
    pred = high & (table["vocab_skew"] > 0)
    late = table["layer"] >= n_layers // 2
    last = high & (table["layer"] == n_layers - 1) & (table["vocab_skew"] != 0)
    return {"n_pred": int(pred.sum()), "n_pred_late": int((pred & late).sum()), "null_late": float(late.mean()),
            "n_last_high": int(last.sum()), "n_last_supp": int((last & (table["vocab_skew"] < 0)).sum())}


def paper_shares(tables: dict | None = None, kurt_threshold: float = paper.VOCAB_KURT_THRESHOLD) -> pd.DataFrame:
    """The same counts in the paper's published tables of universal neurons (one row per model): the share of its
    prediction neurons in the second half of the layers against its universal neurons' share there, the share of
    suppression among its last layer's high-kurtosis neurons against one half, and the lift of each."""
    tables = paper.universal_tables() if tables is None else tables
    depth = paper.MODELS.set_index("model")["n_layer"].to_dict()
    rows = []
    for model, t in tables.items():
        c = role_shares(t, int(depth[model]), kurt_threshold)
        late, supp = c["n_pred_late"] / c["n_pred"], c["n_last_supp"] / c["n_last_high"]
        rows.append({"model": model, "prediction neurons": c["n_pred"], "share late": late,
                     "null late": c["null_late"], "lift late": lift(late, c["null_late"]),
                     "last-layer high-kurtosis": c["n_last_high"], "share suppression": supp,
                     "lift suppression": lift(supp, 0.5)})
    return pd.DataFrame(rows).set_index("model")


def _neurons(n: int) -> str:
    return f"{n:,} neuron{'' if n == 1 else 's'}"


def binomial_edge(n: int, null: float, alpha: float = verdicts.ALPHA) -> float:
    """The upper edge of the null band of a share of n: the (1 - alpha) quantile of Binomial(n, null), over n (a
    share above it has a one-sided binomial p below alpha)."""
    return float(stats.binom.ppf(1 - alpha, n, null) / n) if n else float("nan")


def late_evidence(c: dict, kurt_threshold: float, papers: pd.DataFrame) -> verdicts.Evidence:
    """Prediction neurons appear after mid-depth: the share of them in the second half of the layers, beyond the
    binomial band of the neurons' share there, at half the paper's smallest lift."""
    n, null = c["n_pred"], c["null_late"]
    worst = papers["lift late"].idxmin()
    w = papers.loc[worst]
    need = null + PAPER_SHARE * w["lift late"] * (1 - null)
    why = "" if n >= MIN_ROLE else (
        f"only {_neurons(n)} over the models {'passes' if n == 1 else 'pass'} the paper's prediction rule "
        f"(vocab_kurt > {kurt_threshold:g}, vocab_skew > 0), fewer than the {MIN_ROLE} a share needs")
    return verdicts.Evidence(
        f"share of the prediction neurons (vocab_kurt > {kurt_threshold:g}, vocab_skew > 0; {n} over the models) in "
        "the second half of the layers", c["n_pred_late"] / n if n else float("nan"), +1, need,
        f"our null {null:.2f} plus half the paper's smallest lift (share − null) / (1 − null), "
        f"{w['lift late']:.2f} in {worst}'s published universal neurons: {100 * w['share late']:.0f}% of its "
        f"prediction neurons in the second half against {100 * w['null late']:.0f}% of all of them",
        binomial_edge(n, null) if n else None,
        f"the 95th percentile of the share under Binomial({n}, {null:.2f}), the neurons' share of the second half",
        untestable=why)


def suppression_evidence(c: dict, kurt_threshold: float, papers: pd.DataFrame) -> verdicts.Evidence:
    """Suppression neurons dominate the last layers: the share of suppression among the last layer's
    high-kurtosis neurons, beyond the binomial band of one half, at half the paper's smallest lift."""
    n = c["n_last_high"]
    worst = papers["lift suppression"].idxmin()
    w = papers.loc[worst]
    need = 0.5 + PAPER_SHARE * w["lift suppression"] * 0.5
    why = "" if n >= MIN_ROLE else (
        f"only {_neurons(n)} of the last layer over the models {'has' if n == 1 else 'have'} vocab_kurt > "
        f"{kurt_threshold:g}, fewer than the {MIN_ROLE} a share needs")
    return verdicts.Evidence(
        f"share of suppression (vocab_skew < 0) among the last layer's neurons with vocab_kurt > {kurt_threshold:g} "
        f"({n} over the models)", c["n_last_supp"] / n if n else float("nan"), +1, need,
        f"one half plus half the paper's smallest lift (share − 0.5) / 0.5, {w['lift suppression']:.2f} in "
        f"{worst}'s published universal neurons: {100 * w['share suppression']:.0f}% of its last layer's are "
        "suppression",
        binomial_edge(n, 0.5) if n else None, f"the 95th percentile of the share under Binomial({n}, 0.5)",
        untestable=why)


def curves_sentence(p95_early: float, p95_late: float, p5_last: float, p95_last: float, kurt_threshold: float) -> str:
    """The percentile curves, described (they judge no claim)."""
    return (f"Averaged over the models, the 95th percentile of `vocab_kurt` is {p95_early:.2f} in the first half of "
            f"the layers and {p95_late:.2f} in the second (a Gaussian has kurtosis 3; the paper's rule asks for more "
            f"than {kurt_threshold:g}); in the last layer the 5th percentile of `vocab_skew` is {p5_last:.2f} and the "
            f"95th {p95_last:.2f}. These curves describe the layers' tails; the claims are judged on the neurons that "
            "pass the paper's rules.")


def examples_sentence(passes: dict[str, bool]) -> str:
    """Whether each kind's strongest example passes the paper's rule, as one sentence."""
    notes = [f"the {kind} example {'passes' if ok else 'does not pass'} the paper's rule"
             for kind, ok in passes.items()]
    return "; ".join(notes).capitalize() + "."


def high_kurtosis(late: pd.DataFrame, kurt_threshold: float, top_kurt_pct: float) -> tuple[pd.Series, str]:
    """The high-kurtosis neurons of the second-half layers: vocab_kurt above the threshold if at least
    MIN_HIGH_KURT pass, else each model's top percent by vocab_kurt; and a sentence saying which."""
    high = late["vocab_kurt"] > kurt_threshold
    if high.sum() >= MIN_HIGH_KURT:
        return high, (f"The {int(high.sum()):,} neurons of the second half of the layers (all models) with "
                      f"`vocab_kurt` above {kurt_threshold:g}.")
    cut = late.groupby("model")["vocab_kurt"].transform(lambda k: k.quantile(1 - top_kurt_pct / 100))
    top = late["vocab_kurt"] >= cut
    return top, (f"Only {int(high.sum())} neurons of the second half of the layers pass `vocab_kurt` > "
                 f"{kurt_threshold:g}, so this uses the top {top_kurt_pct:g}% by `vocab_kurt` of each model's "
                 f"second-half layers instead ({int(top.sum()):,} neurons, all models), as a description: they are "
                 "not prediction or suppression neurons by the paper's rule.")


def count_sentence(totals: pd.DataFrame, kurt_threshold: float) -> str:
    """The counts per layer (summed over models; columns prediction, suppression) in one sentence."""
    n_pred, n_supp = int(totals["prediction"].sum()), int(totals["suppression"].sum())
    head = (f"Over the models, {n_pred:,} neurons pass the paper's prediction rule and {n_supp:,} its suppression "
            f"rule (`vocab_kurt` > {kurt_threshold:g})")
    if not n_pred:
        return head + "."
    half = len(totals) // 2
    late_share = totals["prediction"].iloc[half:].sum() / n_pred
    return (f"{head}: {100 * late_share:.0f}% of the prediction neurons sit in the second half of the layers, and "
            f"the last layer has {int(totals['suppression'].iloc[-1])} suppression against "
            f"{int(totals['prediction'].iloc[-1])} prediction neurons.")


def universal_kurtosis_sentence(n_group: int, label: str, n_high: int, kurt_threshold: float) -> str:
    """How many of the compared group pass the kurtosis rule, beside the paper's count."""
    k, n = paper.HIGH_KURT_UNIVERSAL
    return (f"Among the {n_group} {label} neurons of the reference, {n_high} have `vocab_kurt` above "
            f"{kurt_threshold:g} (the paper: {k} of the {n:,} universal GPT2-medium neurons).")


def class_sentence(summary: pd.DataFrame, n_tokens: int) -> str:
    """Share of each ensemble's neurons that fire more before the class's tokens (summary: class, role,
    difference)."""
    if not len(summary):
        return "None of the token classes occurs often enough in this tokenizer and sample to build an ensemble."
    by_role = summary.groupby("role")["difference"].apply(lambda d: 100 * float((d > 0).mean()))
    return (f"Over {summary['class'].nunique()} classes and {n_tokens:,} held-out tokens, "
            f"{by_role.get('prediction', float('nan')):.0f}% of the prediction-ensemble neurons and "
            f"{by_role.get('suppression', float('nan')):.0f}% of the suppression-ensemble neurons fire more "
            "(higher mean post-activation) when the next token is in the class.")


def token_text(tokenizer, i: int) -> str:
    return repr(tokenizer.decode([int(i)])) if i < len(tokenizer) else f"<unused id {i}>"


def strongest_examples(model, ref: pd.DataFrame, n_tail: int) -> tuple[list, pd.DataFrame]:
    """The reference's strongest prediction (largest vocab_kurt, skew > 0), suppression (skew < 0) and partition
    (largest vocab_var) neurons: [(kind, row, c_v)] and a table of the tokens at both tails of c_v."""
    picks = {"prediction": ref[ref["vocab_skew"] > 0].nlargest(1, "vocab_kurt"),
             "suppression": ref[ref["vocab_skew"] < 0].nlargest(1, "vocab_kurt"),
             "partition": ref.nlargest(1, "vocab_var")}
    examples, tails = [], []
    for kind, r in picks.items():
        r = r.iloc[0]
        c = weight_stats.vocab_cosines(model, int(r["layer"]), [int(r["neuron"])])[0]
        order = np.argsort(c)
        examples.append((kind, r, c))
        tails.append({"kind": kind, "neuron": f"L{int(r['layer'])}.{int(r['neuron'])}",
                      "highest c_v": " ".join(token_text(model.tokenizer, i) for i in order[::-1][:n_tail]),
                      "lowest c_v": " ".join(token_text(model.tokenizer, i) for i in order[:n_tail])})
    return examples, pd.DataFrame(tails).set_index("kind")


def class_ensembles(model, classes, tokens, n_tokens: int, n_ensemble: int, batch_size: int, device):
    """Per class, the n_ensemble neurons with the highest (prediction) and lowest (suppression) class score and
    their post-activations on held-out tokens, split by whether the next token is in the class: (summary, long)."""
    summary, long = [], []
    if not classes:
        return pd.DataFrame(summary), pd.DataFrame(long)
    scores = token_classes.class_scores(model, classes)
    ens = [(name, role, int(scores.at[i, "layer"]), int(scores.at[i, "neuron"]), float(scores.at[i, name]))
           for name in classes for role, idx in (("prediction", scores[name].nlargest(n_ensemble).index),
                                                 ("suppression", scores[name].nsmallest(n_ensemble).index))
           for i in idx]
    pairs = sorted({(l, n) for _, _, l, n, _ in ens})
    acts, nxt = activation_stats.neuron_activations(model, tokens, pairs, n_tokens, batch_size, device)
    for name, role, l, n, score in ens:
        inside = classes[name][nxt]
        if inside.sum() < MIN_CLASS_NEXT:
            continue
        a = acts[:, pairs.index((l, n))]
        summary.append({"class": name, "role": role, "neuron": f"L{l}.{n}", "score": score,
                        "next in class": a[inside].mean(), "next not in class": a[~inside].mean(),
                        "class share of next tokens": inside.mean()})
        long.append(pd.DataFrame({"class": name, "neuron": f"L{l}.{n} ({role})", "activation": a,
                                  "next token": np.where(inside, "in class", "not in class")}))
    summary = pd.DataFrame(summary)
    if len(summary):
        summary["difference"] = summary["next in class"] - summary["next not in class"]
    return summary, (pd.concat(long, ignore_index=True) if long else pd.DataFrame(long))


def roles_table(late: verdicts.Evidence, supp: verdicts.Evidence, c: dict) -> pd.DataFrame:
    """The two claims' numbers: neurons counted, the share, the null band's edge, the share required, verdict."""
    rows = [("prediction neurons appear after mid-depth", c["n_pred"], c["n_pred_late"], late),
            ("suppression neurons dominate the last layers", c["n_last_high"], c["n_last_supp"], supp)]
    return pd.DataFrame([{"claim": claim, "neurons": n, "of the claimed kind": k, "share": ev.value,
                          "null band edge": np.nan if ev.noise is None else ev.noise, "required": ev.magnitude,
                          "verdict": ev.verdict}
                         for claim, n, k, ev in rows]).set_index("claim").round(3)


def _universal_md(prof, kurt_threshold: float) -> str:
    try:
        frame = properties.neuron_frame(prof)
        if "excess_corr" not in frame:
            return "No universality table for this profile yet: run the universality chapter first."
        live = frame[~frame["is_dead"]]
        group = compared_group(prof, live)
        n_high = int((live.loc[group.mask, "vocab_kurt"] > kurt_threshold).sum())
        return universal_kurtosis_sentence(int(group.mask.sum()), group.label, n_high, kurt_threshold)
    except UserError as e:
        return f"No universality table: {e}"


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The chapter's counts, verdicts, sentences and tables (neuron properties reused when cached)."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    b = prof.cfg["book"]
    kurt_threshold, partition_var = float(b["kurt_threshold"]), float(b["partition_var"])
    props = properties.compute_properties(prof, device=device, progress=False)
    model = load_model(props.info["models"][0], device=device, revision=prof.revision)
    n_layers, d_model, half = model.cfg.n_layers, model.cfg.d_model, model.cfg.n_layers // 2
    table = with_rules(props.table, kurt_threshold, partition_var, d_model)
    ref = table[table["model"] == props.info["reference"]].reset_index(drop=True)
    n_models = table["model"].nunique()
    glue = {"pred_n_models": n_models, "pred_d_model": d_model,
            "pred_scaled_var": scaled_partition_threshold(partition_var, d_model), "pred_random_var": 1 / d_model,
            "pred_kurt_max": float(table["vocab_kurt"].max())}
    for k in KINDS:
        glue[f"pred_n_{k}"], glue[f"pred_all_{k}"] = int(ref[k].sum()), int(table[k].sum())
        glue[f"pred_{k}_md"] = Markdown(role_count(int(ref[k].sum()), k))
    glue["pred_all_prediction_md"] = Markdown(words.counted(glue["pred_all_prediction"], "neuron", "passes", "pass"))
    examples, tails = strongest_examples(model, ref, int(b["n_tail"]))
    glue["pred_examples_md"] = Markdown(examples_sentence({kind: bool(r[kind]) for kind, r, _ in examples}))

    band = layer_bands(table)
    mean_q = band.xs("mean", axis=1, level=1)  # [(layer, q), statistic]
    p95 = mean_q["vocab_kurt"].xs(0.95, level="q")
    last = mean_q["vocab_skew"].xs(n_layers - 1, level="layer")
    glue.update(pred_p95_early=float(p95.iloc[:half].mean()), pred_p95_late=float(p95.iloc[half:].mean()),
                pred_skew_p5_last=float(last[0.05]), pred_skew_p95_last=float(last[0.95]))
    glue["pred_curves_md"] = Markdown(curves_sentence(glue["pred_p95_early"], glue["pred_p95_late"],
                                                      glue["pred_skew_p5_last"], glue["pred_skew_p95_last"],
                                                      kurt_threshold))
    counts_roles = role_shares(table, n_layers, kurt_threshold)
    papers = paper_shares()
    late_ev = late_evidence(counts_roles, kurt_threshold, papers)
    supp_ev = suppression_evidence(counts_roles, kurt_threshold, papers)
    verdicts.glue_verdict(glue, "pred_verdict_late", late_ev)
    verdicts.glue_verdict(glue, "pred_verdict_supp", supp_ev)
    glue.update({f"pred_{k}": v for k, v in counts_roles.items()})
    glue.update(pred_share_late=late_ev.value, pred_need_late=late_ev.magnitude, pred_edge_late=late_ev.noise,
                pred_share_supp=supp_ev.value, pred_need_supp=supp_ev.magnitude, pred_edge_supp=supp_ev.noise,
                pred_min_role=MIN_ROLE)
    glue["pred_holds_md"] = Markdown(verdicts.holds_here(
        [("prediction neurons appear after mid-depth", late_ev),
         ("suppression neurons dominate the last layers", supp_ev)],
        [count_sentence(table.groupby("layer")[KINDS].sum(), kurt_threshold),
         curves_sentence(glue["pred_p95_early"], glue["pred_p95_late"], glue["pred_skew_p5_last"],
                         glue["pred_skew_p95_last"], kurt_threshold)]))

    late = table[table["layer"] >= half]
    high, high_md = high_kurtosis(late, kurt_threshold, float(b["top_kurt_pct"]))
    selected = late[high]
    glue["pred_high_md"] = Markdown(high_md)
    glue["pred_high_neg_pct"] = 100 * float((selected["vocab_skew"] < 0).mean())

    counts = table.groupby(["model", "layer"])[KINDS].sum()
    agg = counts.groupby("layer").agg(["mean", "min", "max"])
    counts_table = pd.DataFrame({k: [f"{m:.1f} [{lo}-{hi}]" for m, lo, hi in agg[k].itertuples(index=False)]
                                 for k in KINDS}, index=agg.index)
    glue["pred_count_md"] = Markdown(count_sentence(counts.groupby("layer").sum(), kurt_threshold))
    glue["pred_uni_md"] = Markdown(_universal_md(prof, kurt_threshold))

    classes = token_classes.token_classes(model.tokenizer, model.cfg.d_vocab)
    n_tok = min(int(b["n_class_tokens"]), int(prof.cfg["analysis"]["n_tokens"]))
    summary, activations = class_ensembles(model, classes, analysis_rows(prof, progress=False).tokens, n_tok,
                                           int(b["n_ensemble"]), int(prof.cfg["analysis"]["batch_size"]), device)
    glue["pred_class_md"] = Markdown(class_sentence(summary, n_tok))
    glue["pred_classes"] = ", ".join(classes) if classes else "none"
    glue.update(pred_paper_kurt=paper.VOCAB_KURT_THRESHOLD, pred_paper_var=paper.PARTITION_VAR,
                pred_paper_d_model=paper.PARTITION_D_MODEL, pred_paper_random_var=1 / paper.PARTITION_D_MODEL,
                **{f"pred_paper_{k}_md": Markdown(n) for k, n in paper.EXAMPLE_NEURONS.items()})
    tables = {"tails": tails.style, "counts": counts_table, "classes": summary.round(4),
              "paper_shares": papers.round(3), "roles": roles_table(late_ev, supp_ev, counts_roles)}
    data = {"examples": examples, "band": band, "n_layers": n_layers, "n_models": n_models,
            "kurt_threshold": kurt_threshold, "selected": selected, "activations": activations}
    return Chapter("prediction", prof, glue=glue, tables=tables, data=data)


def examples_figure(ch: Chapter):
    """Figure 5: the distribution of c_v over the vocabulary for the strongest example of each kind."""
    fig, axes = plotting.subplots(1, 3, height=3.5, width=13)
    for ax, (kind, r, c) in zip(axes, ch.data["examples"]):
        ax.hist(c, bins=80, color=KIND_COLORS[kind], log=True)
        ax.set(xlabel="cos(w_out, W_U[:, v])", ylabel="tokens",
               title=f"{kind}: L{int(r['layer'])}.{int(r['neuron'])}\nkurt {r['vocab_kurt']:.1f}, skew "
                     f"{r['vocab_skew']:.2f}, var {r['vocab_var']:.4f}")
    return fig


def percentiles_figure(ch: Chapter):
    """Figure 6: per layer, percentiles of vocab_kurt and vocab_skew (mean over models, min-max band)."""
    band, n_layers, kurt_threshold = ch.data["band"], ch.data["n_layers"], ch.data["kurt_threshold"]
    fig, axes = plotting.subplots(1, 2, height=3.8)
    for ax, col in zip(axes, ["vocab_kurt", "vocab_skew"]):
        for j, q in enumerate(QUANTILES):
            b = band.xs(q / 100, level="q")[col]
            c = plotting.series_colour(j)
            ax.plot(b.index, b["mean"], marker="o", color=c, label=f"{q}th")
            ax.fill_between(b.index, b["min"], b["max"], color=c, alpha=0.2)
        ax.set(xlabel="layer", ylabel=col, title=f"{col} percentiles by layer ({ch.data['n_models']} models)",
               xticks=range(n_layers), yscale="log" if col == "vocab_kurt" else "linear")
        if col == "vocab_kurt":
            plotting.plain_log(ax, "y")
            ax.axhline(kurt_threshold, color="k", ls=":", lw=1, label=f"threshold {kurt_threshold:g}")
        else:
            ax.axhline(0, color="k", lw=0.8)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def skew_figure(ch: Chapter):
    """Figures 22-24: the skew of the high-kurtosis neurons of the second-half layers, per model."""
    sel = ch.data["selected"]
    fig, ax = plotting.subplots(height=3.5, width=6.5)
    bins = np.linspace(sel["vocab_skew"].min(), sel["vocab_skew"].max(), 31)
    for name, g in sel.groupby("model"):
        ax.hist(g["vocab_skew"], bins=bins, histtype="step", lw=1.5, label=name)
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="vocab_skew", ylabel="neurons", title="Skew of high-kurtosis neurons, second half of the layers")
    ax.legend(fontsize=7)
    return fig


def classes_figure(ch: Chapter):
    """Post-activations of each class's ensembles, split by whether the next token is in the class."""
    data = ch.data["activations"]
    shown = list(dict.fromkeys(data["class"])) if len(data) else []
    fig, axes = plotting.subplots(max(1, len(shown)), 1, height=2.6, squeeze=False)
    for ax, name in zip(axes[:, 0], shown):
        sns.boxplot(data=data[data["class"] == name], x="neuron", y="activation", hue="next token",
                    hue_order=["in class", "not in class"], showfliers=False, ax=ax, palette=["C1", "0.7"])
        ax.set(title=f"class {name}", xlabel="")
        ax.legend(fontsize=7)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no token class occurs often enough", ha="center", va="center")
        axes[0, 0].axis("off")
    return fig
