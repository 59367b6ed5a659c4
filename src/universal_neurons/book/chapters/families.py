"""Neuron families (paper section 4.3, figures 4 and 15-21): the variance reduction (VR) of every neuron of the
reference by token, previous-token, unigram, context, position and syntax features, and the paper's family rules
applied to the compared group (universal neurons, or a stand-in)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from ... import data
from ...core import paper
from .. import plotting
from ...measures import families
from ...runs import properties
from .. import words
from ...config.profile import load_profile
from ...data.tokenizer import load_tokenizer
from ...models.loading import load_model
from ..publish import Chapter
from ...measures.verdicts import Evidence, glue_verdict, holds_here
from . import families_gallery
from ...runs import families_pass
from . import properties as properties_chapter
from ...runs.selection import compared_group
from ...runs.universality import ensure_results

FAMILIES = ["unigram", "alphabet", "previous", "syntax", "position"]
N_SHOWN = 4  # neurons drawn per family
CAPTIONS = {  # each figure's caption (the page pastes the figure and its caption, or a sentence when it is empty)
    "gallery": ("One example neuron per family (the paper's figure 1): a held-out window of about 30 tokens around "
                "its highest post-activation, each token coloured by the activation (boxed: the peak; grey: a token "
                "left out). A family with no neuron in the compared group shows a stand-in, the compared neuron of "
                "highest VR by a feature of its kind."),
    "unigram": ("The first neuron of each unigram family (at most four): its post-activation on held-out tokens where "
                "the family's string is absent (grey) or present (orange). A unigram neuron fires on its string and "
                "stays near zero elsewhere."),
    "alphabet": ("The alphabet neurons of highest VR (at most four): post-activation on tokens that are not (grey) or "
                "are (orange) their letter."),
    "previous": ("The previous-token neurons of highest VR (at most four): post-activation when the previous token "
                "lacks (grey) or has (orange) the feature."),
    "syntax": ("The syntax neurons of highest VR (at most four), on the Brown rows: post-activation on tokens "
                "without (grey) or with (orange) the part-of-speech tag."),
    "position": ("The position neurons with the highest mutual information between position and firing (at most four): "
                "mean post-activation at each position of the row, with a band of one standard deviation."),
}
FAMILY_WORDS = {"previous": "previous-token"}  # a family as the prose names it
EMPTY_TABLES = {
    "sources": "No explained neuron of the compared group has the source as its best feature, so there is no table.",
    "best": "No neuron of the compared group: no table.",
    **{fam: f"No neuron of the compared group is {words.with_article(FAMILY_WORDS.get(fam, fam))} neuron here, so there "
            "is no table." for fam in FAMILIES},
}


def absent_sentence(ch: Chapter, name: str) -> str | None:
    """Why figure `name` (a family, or "gallery") would show nothing, as the sentence the page shows instead; None
    when it has something to show."""
    if name == "gallery":
        return None if ch.data["gallery"] else "No family feature has a neuron to draw an example of, so there is no figure."
    if name == "position":
        return None if shown(ch.data["rules"], "position") else (
            f"No neuron of the compared group has kurtosis below {paper.POSITION_KURTOSIS}: there is no position "
            "neuron here, so there is no figure of them.")
    if ch.data["samples"].get(name):
        return None
    return (f"No neuron of the compared group is {words.with_article(FAMILY_WORDS.get(name, name))} neuron here, so "
            "there is no figure of them.")
gallery_figure = families_gallery.gallery_figure


N_NULL = 1000  # random groups (and label permutations) of the noise bands
NULL_QUANTILE = 0.95  # the noise band's edge


def paper_members(vr: np.ndarray, unigram_rows, letter_rows, kurt: np.ndarray, cols) -> np.ndarray:
    """Which neurons of `cols` (column indices of `vr` [features, neurons], also indices of `kurt` [neurons]) fall
    into a family by the paper's threshold rules applied to that set of neurons: a unigram feature (rows
    `unigram_rows`) with VR > paper.UNIGRAM_VR on at least paper.UNIGRAM_MIN_NEURONS of them, the best of them for a
    letter feature (rows `letter_rows`) with VR > paper.ALPHABET_VR, or kurtosis < paper.POSITION_KURTOSIS (bool
    [len(cols)]). The previous-token and syntax rules (a top 25, no threshold) place neurons in any set and are
    left out."""
    cols = np.asarray(cols, dtype=int)
    member = np.zeros(len(cols), dtype=bool)
    if len(unigram_rows):
        u = np.nan_to_num(vr[np.ix_(unigram_rows, cols)], nan=-np.inf) > paper.UNIGRAM_VR
        member |= u[u.sum(1) >= paper.UNIGRAM_MIN_NEURONS].any(0)
    if len(letter_rows):
        a = np.nan_to_num(vr[np.ix_(letter_rows, cols)], nan=-np.inf)
        keep = a.max(1) > paper.ALPHABET_VR
        member[a.argmax(1)[keep]] = True
    with np.errstate(invalid="ignore"):
        member |= np.asarray(kurt, dtype=float)[cols] < paper.POSITION_KURTOSIS
    return member


def random_group_counts(vr: np.ndarray, unigram_rows, letter_rows, kurt: np.ndarray, pool, size: int,
                        n: int = N_NULL, seed: int = 0) -> np.ndarray:
    """The number of paper-rule family members (`paper_members`) in `n` random groups of `size` neurons drawn
    without replacement from `pool` (flat indices): the noise band of the families claim."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(pool, dtype=int)
    return np.array([int(paper_members(vr, unigram_rows, letter_rows, kurt, rng.choice(pool, size, replace=False)).sum())
                     for _ in range(n)])


def families_evidence(count: int, null: np.ndarray, n_group: int, group_label: str, untestable: str = "") -> Evidence:
    """The claim that universal neurons fall into families: the compared group's members of a family by the
    paper's rules, at least the paper's smallest family (a unigram feature on paper.UNIGRAM_MIN_NEURONS neurons)
    and above the `NULL_QUANTILE` quantile of the same count in random groups of the same size."""
    return Evidence(f"neurons of the {group_label} group ({n_group}) in a family by the paper's threshold rules",
                    float(count), +1, magnitude=float(paper.UNIGRAM_MIN_NEURONS),
                    magnitude_words=f"the paper's smallest family: a unigram feature on {paper.UNIGRAM_MIN_NEURONS} "
                                    "neurons", noise=float(np.quantile(null, NULL_QUANTILE)) if len(null) else None,
                    noise_words=f"the {NULL_QUANTILE:.0%} quantile of the same count in {len(null):,} random groups "
                                f"of {n_group} live neurons", untestable=untestable)


def explained_evidence(explained, in_group, vr_min: float, n: int = N_NULL, seed: int = 0) -> Evidence:
    """The book's secondary view: the share of the group whose best feature has VR above `vr_min` (the book's
    threshold) minus the rest's share, against the `NULL_QUANTILE` quantile of the same difference with the
    group's labels permuted over the neurons; no magnitude (the paper gives no share), so direction only at best."""
    e, g = np.asarray(explained, dtype=bool), np.asarray(in_group, dtype=bool)
    k, m = int(g.sum()), len(g)
    diff = lambda sel: e[sel].mean() - e[~sel].mean()  # noqa: E731
    if k == 0 or k == m:
        return Evidence("share explained, group minus rest", float("nan"), untestable="no group to compare")
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(n):
        sel = np.zeros(m, dtype=bool)
        sel[rng.choice(m, k, replace=False)] = True
        null.append(diff(sel))
    return Evidence(f"share of the group with a best feature of VR above {vr_min:g}, minus the rest's", float(diff(g)),
                    +1, magnitude=None, magnitude_words=f"the book's own threshold {vr_min:g}, not the paper's: a "
                    "secondary view, direction only at most",
                    noise=float(np.quantile(null, NULL_QUANTILE)),
                    noise_words=f"the {NULL_QUANTILE:.0%} quantile of the same difference with the group's labels "
                                f"permuted over the {m:,} live neurons ({n:,} permutations)")


def source_table(best: pd.DataFrame, in_group) -> pd.DataFrame:
    """The explained neurons (`best`: best_table rows) whose best feature is the text's source (kind "context"),
    with whether they are in the compared group."""
    src = best[best["explained"] & (best["kind"] == "context")].copy()
    src.insert(1, "in the compared group", np.asarray(in_group, dtype=bool)[src.index.to_numpy()])
    return src.drop(columns="explained").reset_index(drop=True)


def source_sentence(src: pd.DataFrame, n_expl_group: int, n_expl_rest: int, sources: list[str]) -> str:
    """How many explained neurons detect the text's source, in the group and among the rest, and which sources."""
    g = src[src["in the compared group"]]
    which = ", ".join(f"{f.split(':', 1)[1]} ({n})" for f, n in g["best feature"].value_counts().items())
    verb = "has" if len(g) == 1 else "have"
    lead = (f"{len(g)} of the {n_expl_group} explained neurons of the compared group {verb} the text's source as its "
            f"best feature{f' ({which})' if len(g) else ''}, and {len(src) - len(g)} of the {n_expl_rest} explained "
            "other neurons.")
    return (f"{lead} The held-out text here comes from {len(sources)} source{'s' if len(sources) != 1 else ''} "
            f"({', '.join(sources)}).")


def alphabet_sentence(n_letters: int, n_possible: int, paper_letters=paper.ALPHABET_LETTERS) -> str:
    """Our alphabet neurons (letters with one among the group) beside the paper's count in GPT2-medium."""
    got, of = paper_letters
    ours = f"{n_letters} of the {n_possible} letter features that occur here have" if n_possible else \
        "no letter feature occurs here, so no letter has"
    more = "more than" if n_possible and n_letters / n_possible > got / of else \
        ("as many as" if n_possible and n_letters / n_possible == got / of else "fewer than")
    return (f"{ours} an alphabet neuron among the compared group (best VR above {paper.ALPHABET_VR}): "
            f"{more} the paper's {got} of {of} letters in GPT2-medium, as a share.")


def alphabet_views_sentence(n_ref: int, n_book: int, n_ref_letters: int, n_book_letters: int) -> str:
    """The alphabet neurons by the reference code's features beside the book's."""
    return (f"By the reference code's alphabet features (the token is the letter itself, with or without a leading "
            f"space), {n_ref} of the {n_ref_letters} letters that occur here have an alphabet neuron in the compared "
            f"group; by the book's first-letter features (the token starts with the letter), {n_book} of "
            f"{n_book_letters}.")


def alphabet_views(vr_group: pd.DataFrame, ref: list[str], book: list[str], d_mlp: int) -> pd.DataFrame:
    """Per letter: the compared neuron of highest VR by the reference's feature (the letter token) and by the
    book's (starts with the letter), each with its VR and whether it passes paper.ALPHABET_VR."""
    rows = []
    for c in "abcdefghijklmnopqrstuvwxyz":
        row = {"letter": c}
        for side, f in (("reference: the token is the letter", f"letter_token:{c}"),
                        ("book: starts with the letter", f"letter:{c}")):
            col = vr_group.loc[f].dropna() if f in vr_group.index and f in (ref + book) else pd.Series(dtype=float)
            n = int(col.idxmax()) if len(col) else None
            row[f"{side}: neuron"] = f"L{n // d_mlp}.{n % d_mlp}" if n is not None else "-"
            row[f"{side}: VR"] = round(float(col.max()), 4) if len(col) else np.nan
            row[f"{side}: above {paper.ALPHABET_VR}"] = bool(len(col) and col.max() > paper.ALPHABET_VR)
        rows.append(row)
    return pd.DataFrame(rows)


def syntax_sentence(n_docs: int, n_tokens: int) -> str:
    """Where the syntax features come from, or why there are none."""
    if n_docs == 0 or n_tokens == 0:
        return ("This profile's corpus has no held-out Brown documents (the only source with gold part-of-speech "
                "tags here), so syntax features are skipped and the syntax family is empty.")
    return (f"Syntax features are evaluated on the Brown corpus only: its {n_docs} held-out documents "
            f"({n_tokens:,} tokens) carry gold part-of-speech tags; every other feature uses all held-out rows.")


def layers_text(layers) -> str:
    """"layer 0: 3, layer 1: 1" for the layers of a family's neurons, or "none"."""
    counts = pd.Series(list(layers), dtype=int).value_counts().sort_index()
    return ", ".join(f"layer {l}: {n}" for l, n in counts.items()) or "none"


def depth(layers, n_layers: int) -> float:
    """The median relative depth of a family's layers: 0 the first layer, 1 the last (NaN when empty)."""
    layers = list(layers)
    return float(np.median(layers) / max(n_layers - 1, 1)) if layers else float("nan")


def paper_table(rules: dict, d_mlp: int, n_layers: int, vr_min: float) -> pd.DataFrame:
    """Per family: the paper's rule and finding beside ours (neurons of the group, their layers and median relative
    depth); the paper's layers are GPT2-medium-a's, read in the reference repository's notebook outputs."""
    said = {"unigram": (f"a unigram feature with VR > {paper.UNIGRAM_VR} on at least {paper.UNIGRAM_MIN_NEURONS} "
                        "neurons", "unigram and duplicate-unigram families (figure 4); the 30 token-feature neurons "
                        "of highest VR"),
            "alphabet": (f"best neuron per letter-token feature (the token is the letter), VR > {paper.ALPHABET_VR}",
                         f"{paper.ALPHABET_LETTERS[0]} of {paper.ALPHABET_LETTERS[1]} letters have one in "
                         "GPT2-medium; the figure 4a examples"),
            "previous": (f"top {paper.TOP_PREVIOUS} neurons by VR of a previous-token feature",
                         "a family of its own; only the figure 4b example's layer is printed"),
            "syntax": (f"top {paper.TOP_SYNTAX} neurons by VR of a part-of-speech feature",
                       "spaCy tags on the Pile; its top 25"),
            "position": (f"universal neurons with kurtosis < {paper.POSITION_KURTOSIS}, ranked by MI(position, firing)",
                         "the universal neurons with kurtosis below 2")}
    n_paper = len(paper.PER_LAYER["GPT2-medium-a"])
    rows = []
    for fam in FAMILIES:
        neurons = family_neurons(rules, fam, vr_min)
        ours = [n // d_mlp for n in neurons]
        theirs = paper.FAMILY_LAYERS_MEDIUM[fam]
        rows.append({"family": fam, "paper's rule": said[fam][0], "paper's finding": said[fam][1],
                     f"paper: layers (of {n_paper})": layers_text(theirs),
                     "paper: depth": round(depth(theirs, n_paper), 2), "ours: neurons": len(neurons),
                     f"ours: layers (of {n_layers})": layers_text(ours), "ours: depth": round(depth(ours, n_layers), 2)})
    return pd.DataFrame(rows)


def kind_family(kind: str | None) -> str:
    """The family a best feature's kind points to: "token" for the properties of the token's own string."""
    return {"unigram": "unigram", "letter": "alphabet", "letter_token": "alphabet", "previous": "previous token", "context": "context",
            "position": "position", "syntax": "syntax"}.get(kind, "token" if kind else "none")


def kinds_table(best: pd.DataFrame, n_layers: int) -> pd.DataFrame:
    """Of the explained compared neurons (`best`: best_table rows with "explained"), how many have a best feature
    of each family, and in which layers; most first."""
    ex = best[best["explained"]].assign(family=lambda t: [kind_family(k) for k in t["kind"]],
                                        layer=lambda t: [int(n[1:].split(".")[0]) for n in t["neuron"]])
    rows = [{"family of the best feature": fam, "neurons": len(g), f"layers (of {n_layers})": layers_text(g["layer"]),
             "median VR": round(float(g["VR"].median()), 3)} for fam, g in ex.groupby("family")]
    cols = ["family of the best feature", "neurons", f"layers (of {n_layers})", "median VR"]
    return pd.DataFrame(rows, columns=cols).sort_values("neurons", ascending=False, ignore_index=True)


def dominant_sentence(kinds: pd.DataFrame, best: pd.DataFrame, n_layers: int, top: int = 10) -> str:
    """Which family of best feature dominates among the explained compared neurons, and where the best-explained
    ones lie, beside what the reference repository's outputs show for GPT2-medium-a."""
    n_paper = len(paper.PER_LAYER["GPT2-medium-a"])
    first = paper.PER_LAYER["GPT2-medium-a"][:len(paper.TOP_EXPLAINED_LAYERS)]
    theirs = (f"In GPT2-medium-a the 20 universal neurons of highest VR (0.89 to 0.99) are all unigram or other token "
              f"neurons of layers 0-1, the first {len(paper.TOP_EXPLAINED_LAYERS)} of {n_paper} layers (which hold {sum(first):,} of its "
              f"{paper.SHARES['GPT2-medium-a'][0]:,} universal neurons), and the syntax neurons spread over layers "
              f"{min(paper.FAMILY_LAYERS_MEDIUM['syntax'])}-{max(paper.FAMILY_LAYERS_MEDIUM['syntax'])} (the "
                "reference repository's notebook outputs).")
    if not len(kinds):
        return f"No compared neuron has a best feature with VR above the threshold here. {theirs}"
    lead = kinds.iloc[0]
    n_ex = int(kinds["neurons"].sum())
    head = best[best["explained"]].head(top)
    layers = layers_text(int(n[1:].split(".")[0]) for n in head["neuron"])
    return (f"Here the most common family of best feature among the {n_ex} explained compared neurons is "
            f"**{lead['family of the best feature']}** ({int(lead['neurons'])} of {n_ex}), and the "
            f"{len(head)} best-explained lie in {layers} (of {n_layers} layers). {theirs}")


def family_neurons(rules: dict, family: str, vr_min: float = 0.0) -> list[int]:
    """The distinct neurons a family rule picked (flat indices); of the top-n families (previous, syntax) only
    those whose VR also exceeds vr_min (a top 25 of a small group would otherwise hold every neuron)."""
    t = rules.get(family)
    if t is None or not len(t):
        return []
    if family == "unigram":
        return sorted({n for ns in t["neurons"] for n in ns})
    if family in ("previous", "syntax"):
        t = t[t["vr"] > vr_min]
    return sorted(set(int(n) for n in t["neuron"]))


def labelled(t: pd.DataFrame, d_mlp: int) -> pd.DataFrame:
    """A family table with its flat neuron indices written as "L<layer>.<neuron>"."""
    name = lambda n: f"L{int(n) // d_mlp}.{int(n) % d_mlp}"  # noqa: E731
    t = t.copy()
    if "neuron" in t:
        t["neuron"] = [name(n) for n in t["neuron"]]
    if "neurons" in t:
        t["neurons"] = [" ".join(map(name, ns)) for ns in t["neurons"]]
    return t


def shown(rules: dict, family: str, n: int = N_SHOWN) -> list[tuple[int, str | None, float]]:
    """(neuron, feature, score) of the first n neurons of a family's table (position: no feature, MI)."""
    t = rules.get(family)
    if t is None or not len(t):
        return []
    if family == "unigram":
        return [(int(r.neurons[0]), r.feature, np.nan) for r in t.head(n).itertuples()]
    if family == "alphabet":
        t = t.sort_values("vr", ascending=False)
    if family == "position":
        return [(int(r.neuron), None, float(r.mi)) for r in t.head(n).itertuples()]
    return [(int(r.neuron), r.feature, float(r.vr)) for r in t.head(n).itertuples()]


def best_table(best: pd.DataFrame, live: pd.DataFrame, kinds: dict, d_mlp: int, vr_min: float) -> pd.DataFrame:
    """Every compared neuron (rows of `live`) with its best feature, that feature's kind and VR, highest first."""
    flat = (live["layer"] * d_mlp + live["neuron"]).to_numpy()
    b = best.reindex(flat)
    out = pd.DataFrame({"neuron": [f"L{l}.{n}" for l, n in zip(live["layer"], live["neuron"])],
                        "excess_corr": live["excess_corr"].to_numpy(), "best feature": b["feature"].to_numpy(),
                        "kind": [kinds.get(f) for f in b["feature"]], "VR": b["vr"].to_numpy().astype(float)})
    out["explained"] = out["VR"] > vr_min
    return out.sort_values("VR", ascending=False, ignore_index=True)


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The chapter's pass (cached), family rules, verdicts, tables and the activations its figures draw."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    b = prof.cfg["book"]
    ensure_results(prof, device=device)
    properties.compute_properties(prof, device=device, progress=False)
    frame = properties.neuron_frame(prof)
    live = frame[~frame["is_dead"]].reset_index(drop=True)
    group = compared_group(prof, live)
    model = load_model(prof.members()[0], device=device, revision=prof.revision)
    tok = load_tokenizer(data.tokenizer_dir(prof, progress=False))
    fp = families_pass.family_pass(prof, model, tok, device=device)
    d_mlp = fp.info["d_mlp"]
    kinds = dict(fp.kinds)
    vr = fp.vr
    if fp.syntax_vr is not None:
        syn = fp.syntax_vr.loc[[f for f in fp.syntax_vr.index if f.startswith("pos:")]]
        kinds |= dict.fromkeys(syn.index, "syntax")
        vr = pd.concat([vr, syn])
    flat = (live["layer"] * d_mlp + live["neuron"]).to_numpy()
    gflat = flat[group.mask.to_numpy()]
    vr_group = vr[gflat]
    kurt = pd.Series(live.loc[group.mask, "kurt"].to_numpy(), index=gflat)
    names = {k: [f for f in vr.index if kinds[f] == k] for k in ("unigram", "previous", "syntax")}
    letters_ref = [f for f in vr.index if kinds[f] == "letter_token"]
    letters_book = [f for f in vr.index if kinds[f] == "letter"]
    rules = families.family_rules(vr_group, unigram=names["unigram"], previous=names["previous"], syntax=names["syntax"],
                            letters=letters_ref, kurtosis=kurt, mi=pd.Series(fp.mi, index=range(len(fp.mi))))
    alpha_book = families.alphabet_neurons(vr_group, letters_book)
    vr_min = float(b["family_vr"])
    table = best_table(families.best_features(vr), live, kinds, d_mlp, vr_min)
    in_group = table["neuron"].isin([f"L{n // d_mlp}.{n % d_mlp}" for n in gflat])
    share_g, share_r = float(table.loc[in_group, "explained"].mean()), float(table.loc[~in_group, "explained"].mean())

    # the paper's rules on the group, against random groups of the same size
    vr_np = vr.to_numpy(dtype=float)
    rows_of = {f: i for i, f in enumerate(vr.index)}
    uni_rows, let_rows = [rows_of[f] for f in names["unigram"]], [rows_of[f] for f in letters_ref]
    kurt_all = np.full(vr_np.shape[1], np.nan)
    kurt_all[flat] = live["kurt"].to_numpy(dtype=float)
    members = paper_members(vr_np, uni_rows, let_rows, kurt_all, gflat)
    null = random_group_counts(vr_np, uni_rows, let_rows, kurt_all, flat, len(gflat))
    stand_in = "" if group.is_universal else (
        f"the compared group is a stand-in ({group.label}): {group.n_universal:,} neurons pass "
        f"{group.threshold_name}, fewer than the {int(b['min_universal'])} the comparison needs, so there are no "
        "universal neurons to sort into families")
    ev_fam = families_evidence(int(members.sum()), null, len(gflat), "universal" if group.is_universal else "stand-in",
                               stand_in)
    ev_vr = explained_evidence(table["explained"].to_numpy(), in_group.to_numpy(), vr_min)
    src = source_table(table, in_group)
    n_letters = len(letters_ref)
    src_text = source_sentence(src, int(table.loc[in_group, "explained"].sum()), int(table.loc[~in_group, "explained"].sum()),
                               list(data.analysis_rows(prof, progress=False).source_names))
    glue = {"fam_n_group": len(gflat), "fam_n_neurons": len(live), "fam_label_md": Markdown(group.label),
            "fam_group_md": Markdown(properties_chapter.group_sentence(group, len(gflat), float(live.loc[group.mask, "excess_corr"].min()),
                                                       int(b["min_universal"]), float(b["top_pct"]))),
            "fam_n_tokens": int(fp.info["n_tokens"]), "fam_n_features": int(len(vr)), "fam_vr_min": vr_min,
            "fam_share_group": share_g, "fam_share_rest": share_r,
            "fam_n_unigram_families": int(len(rules["unigram"])),
            "fam_alphabet_md": Markdown(alphabet_sentence(len(rules["alphabet"]), n_letters)),
            "fam_alphabet_views_md": Markdown(alphabet_views_sentence(len(rules["alphabet"]), len(alpha_book),
                                                                      n_letters, len(letters_book))),
            "fam_syntax_md": Markdown(syntax_sentence(int(fp.info["n_brown_docs"]), int(fp.info["n_syntax_tokens"]))),
            "fam_paper_unigram_vr": paper.UNIGRAM_VR, "fam_paper_alphabet_vr": paper.ALPHABET_VR,
            "fam_paper_kurtosis": paper.POSITION_KURTOSIS, "fam_n_paper": int(members.sum()),
            "fam_paper_md": Markdown(f"{words.plural(int(members.sum()), 'neuron')} of the compared group "
                                     f"{words.verb(int(members.sum()), 'falls', 'fall')}"),
            "fam_null_q": ev_fam.noise, "fam_n_null": N_NULL, "fam_n_alphabet_book": len(alpha_book),
            "fam_n_source_group": int(src["in the compared group"].sum()), "fam_n_source": len(src),
            "fam_source_md": Markdown(src_text)}
    glue_verdict(glue, "fam_explained_verdict", ev_fam)
    glue_verdict(glue, "fam_vr_verdict", ev_vr)
    for fam in FAMILIES:
        glue[f"fam_n_{fam}"] = len(family_neurons(rules, fam, vr_min))
    glue["fam_holds_md"] = Markdown(holds_here(
        [("universal neurons fall into families, each explained by one feature (the paper's rules)", ev_fam)],
        [f"The book's secondary view, not a claim of the paper: **{ev_vr.verdict}** ({ev_vr.rule}).",
         src_text]))
    n_layers = int(model.cfg.n_layers)
    kinds_t = kinds_table(table[in_group], n_layers)
    glue["fam_dominant_md"] = Markdown(dominant_sentence(kinds_t, table[in_group], n_layers))
    tables = {"best": table[in_group].drop(columns="explained").reset_index(drop=True).round(4),
                "sources": src.round(4), "alphabet_views": alphabet_views(vr_group, letters_ref, letters_book, d_mlp),
                "paper": paper_table(rules, d_mlp, n_layers, vr_min), "kinds": kinds_t,
              **{fam: labelled(rules[fam], d_mlp).round(4) for fam in FAMILIES}}
    rows = data.analysis_rows(prof, progress=False)  # the figures' held-out rows: the pass's first tokens
    plan = families_pass.main_plan(rows, tok, int(b["family_tokens"]))
    brown = families_pass.brown_rows(prof, tok, rows.n_ctx, int(b["family_tokens"])) if fp.syntax_vr is not None else None
    ch_data = {"reference": fp.info["reference"], "d_mlp": d_mlp, "rules": rules, "pos_mean": fp.pos_mean,
               "pos_std": fp.pos_std, "samples": _samples(model, tok, rows, plan, brown, rules, device),
               "gallery": _gallery(model, tok, rows, plan, brown, rules, vr, kinds, gflat, vr_min, device)}
    return Chapter("families", prof, glue=glue, tables=tables, data=ch_data)


def _samples(model, tok, rows, plan, brown, rules, device) -> dict:
    """Per family: (neuron, feature, score, activations, feature values) of the neurons its figure draws, on the
    held-out `rows` of the pass's `plan` (syntax: on the Brown rows, `brown` = families_pass.brown_rows)."""
    picks = {fam: shown(rules, fam) for fam in FAMILIES if fam != "position"}
    out = {fam: [] for fam in picks}
    main = [(fam, p) for fam in ("unigram", "alphabet", "previous") for p in picks[fam]]
    if main:
        mask = plan.mask(0, plan.n_rows)
        acts, n_rows = families_pass.sample(model, rows.tokens[:plan.n_rows], mask, [p[0] for _, p in main], device=device)
        fs = families_pass.MainFeatures(tok, model.cfg.d_vocab, rows, plan.n_rows)(0, np.asarray(rows.tokens[:n_rows]))
        for j, (fam, (n, f, s)) in enumerate(main):
            out[fam].append((n, f, s, acts[:, j], fs.column(f)[mask[:n_rows].ravel()]))
    if picks["syntax"] and brown is not None and brown[1] is not None:
        tagged, toks, tags, mask = brown
        acts, n_rows = families_pass.sample(model, toks, mask, [p[0] for p in picks["syntax"]], device=device)
        fs = tagged.features(tags[:n_rows])
        for j, (n, f, s) in enumerate(picks["syntax"]):
            out["syntax"].append((n, f, s, acts[:, j], fs.column(f)[mask[:n_rows].ravel()]))
    return out


def _gallery(model, tok, rows, plan, brown, rules, vr, kinds, group, vr_min, device) -> list[dict]:
    """The figure-1 gallery: one example per family (a stand-in when empty) and its held-out text window; the
    syntax example on the Brown rows (`brown` = families_pass.brown_rows), whose tags define its feature."""
    picks = {fam: shown(rules, fam, 1)[0][0] if family_neurons(rules, fam, vr_min) else None for fam in FAMILIES}
    ex = families_gallery.examples(picks, vr, kinds, group)
    decode = lambda i: tok.decode([i])  # noqa: E731
    on_brown = [e for e in ex if e["family"] == "syntax"] if brown is not None and brown[1] is not None else []
    made = families_gallery.gallery(model, np.asarray(rows.tokens[:plan.n_rows]), plan.mask(0, plan.n_rows),
                     [e for e in ex if e not in on_brown], decode, families_pass.SAMPLE_TOKENS, device)
    if on_brown:
        made += [e | {"text": "Brown"} for e in families_gallery.gallery(model, brown[1], brown[3], on_brown, decode,
                                                            families_pass.SAMPLE_TOKENS, device)]
    order = [e["family"] for e in ex]
    return sorted(made, key=lambda e: order.index(e["family"]))


def family_figure(ch: Chapter, family: str):
    """The activations of a family's first neurons on held-out tokens, split by their feature (box plots)."""
    picks, d_mlp = ch.data["samples"].get(family, []), ch.data["d_mlp"]
    fig, axes = plotting.subplots(1, N_SHOWN, height=3.2, width=12, squeeze=False,
                                   layout="constrained")
    for ax, (n, f, s, act, y) in zip(axes.flat, picks):
        frame = pd.DataFrame({"activation": act, f: np.where(y, "true", "false")})
        sns.boxplot(data=frame, x=f, y="activation", order=["false", "true"], hue=f, palette=["0.75", "C3"],
                    showfliers=False, ax=ax, legend=False)
        ax.set_title(f"L{n // d_mlp}.{n % d_mlp}" + ("" if np.isnan(s) else f", VR {s:.2f}"), fontsize=9)
        ax.set_ylabel("post-activation" if ax is axes.flat[0] else "")
    for ax in list(axes.flat)[len(picks):]:
        ax.set_axis_off()
    if not picks:
        axes.flat[0].text(0, 0.5, f"No neuron of the compared group is {words.with_article(FAMILY_WORDS.get(family, family))} "
                          "neuron here.", fontsize=11)
    fig.suptitle(f"{ch.data['reference']}: {family} neurons, post-activation when the feature is false / true")
    return fig


def position_figure(ch: Chapter):
    """Mean ± std of the post-activation by position of the position neurons with the highest MI."""
    picks, d_mlp = shown(ch.data["rules"], "position"), ch.data["d_mlp"]
    fig, ax = plotting.subplots(height=3.6)
    x = np.arange(len(ch.data["pos_mean"]))
    for k, (n, _, mi) in enumerate(picks):
        m, s = ch.data["pos_mean"][:, n], ch.data["pos_std"][:, n]
        ax.plot(x, m, color=f"C{k}", label=f"L{n // d_mlp}.{n % d_mlp} (MI {mi:.3f} nats)")
        ax.fill_between(x, m - s, m + s, color=f"C{k}", alpha=0.2)
    if picks:
        ax.legend(fontsize=8)
    else:
        ax.text(0.02, 0.5, "No neuron of the compared group has kurtosis below "
                f"{paper.POSITION_KURTOSIS}: no position neuron here.", transform=ax.transAxes)
    ax.set(xlabel="position in the row", ylabel="post-activation (mean ± std)",
           title=f"{ch.data['reference']}: position neurons (highest mutual information with position)")
    return fig
