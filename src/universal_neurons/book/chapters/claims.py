"""The paper's claims and whether they hold on this run: one row per claim, with the paper's number (from
`universal_neurons.core.paper`), ours, the rule that judged it and the verdict (`universal_neurons.measures.verdicts`), all read
from the other chapters' executed notebooks of the same run (their glued values), never recomputed; the verdict of
the same claim on untrained models of the same shape (the negative control, `claims_control`); and a link to the
section of the chapter that shows it."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ...core import paper
from ...measures import verdicts
from ...config.profile import load_profile
from ..publish import Chapter
from . import claims_control
from .notebook_reading import glued, page_title, plain, sections, shown, where_shown

NOT_RUN = "not run"


@dataclass
class Values:
    """One chapter's glued values (raw text, as `glued` reads them) and the notebook they come from (None for the
    shipped control's values). Every value a claim reads is recorded in `read` as (key, value as shown)."""

    glue: dict[str, str]
    notebook: Path | None = None
    read: list[tuple[str, str]] = field(default_factory=list)  # (key, value)

    def raw(self, key: str) -> str:
        if key not in self.glue:
            raise Missing(key)
        return self.glue[key]

    def text(self, key: str, spec: str = "") -> str:
        """The glued value `key` as the chapter's page shows it with `spec`."""
        value = shown(self.raw(key))
        if (key, value) not in self.read:
            self.read.append((key, value))
        return shown(self.raw(key), spec)

    def md(self, key: str) -> str:
        value = plain(self.raw(key))
        if (key, value) not in self.read:
            self.read.append((key, value))
        return value


@dataclass(frozen=True)
class Claim:
    """One claim of the paper. `paper`: its number, from universal_neurons.core.paper; `ours`: this run's, from the
    chapter's glued values; `verdict_key`: the chapter's glued verdict (its rule is glued under
    `verdicts.rule_key(verdict_key)`); `where`: the glue key, figure or table whose section shows it."""

    chapter: str
    claim: str
    paper: Callable[[], str]
    ours: Callable[[Values], str]
    where: str
    verdict_key: str

    @property
    def rule_key(self) -> str:
        return verdicts.rule_key(self.verdict_key)


class Missing(KeyError):
    """A value the claim reads is not in the chapter's notebook."""


def _neuron(ln: tuple[int, int]) -> str:
    return f"L{ln[0]}.{ln[1]}"


def _paper_shares() -> str:
    return ", ".join(f"{100 * n / N:.2f}% ({m}, {4 if m.startswith('GPT2') else 3} partners)"
                     for m, (n, N) in paper.SHARES.items())


def _paper_layers() -> str:
    """Layer 0's share of universal neurons against the whole model's, per model of the published tables."""
    enrich = paper.layer0_enrichment()
    return "; ".join(f"layer 0: {100 * c[0] / paper.D_MLP[m]:.2f}% against "
                     f"{100 * paper.SHARES[m][0] / paper.SHARES[m][1]:.2f}%, {enrich[m]:.2f}x ({m})"
                     for m, c in paper.PER_LAYER.items())


def _times(ratio: str) -> str:
    """A ratio as "1.74x", or "no ratio" when it is undefined (no universal neuron)."""
    return "no ratio" if ratio == "nan" else f"{ratio}x"


def _paper_means(stat: str) -> Callable[[], str]:
    def said() -> str:
        t = paper.PROPERTY_MEANS
        if f"{stat}_U" not in t.columns:
            return "figure 3 (no mean in the text)"
        return "means, universal / other: " + "; ".join(f"{r[f'{stat}_U']:g} / {r[f'{stat}_nonU']:g} ({m})"
                                                         for m, r in t.iterrows())
    return said


def _ours_property(stat: str) -> Callable[[Values], str]:
    return lambda v: (f"median percentile within the layer: {v.text(f'prop_pct_{stat}', '.0f')} "
                      f"({v.text('prop_n_group', ',')} neurons, {v.md('prop_label_md')})")


# The properties chapter's claims (its CLAIMS: statistic, claimed side of the layer's median, words).
PROPERTY_CLAIMS = [("l2_penalty", "large weight norm (L2 penalty)"), ("input_bias", "large negative input bias"),
                   ("mean", "negative pre-activation mean"), ("sparsity", "low activation frequency"),
                   ("skew", "high pre-activation skew"), ("kurt", "high pre-activation kurtosis")]

CLAIMS: list[Claim] = [
    Claim("robustness", f"1-5% of the neurons are universal (excess correlation above {paper.THRESHOLD:g}; "
          "section 4.1)", _paper_shares,
          lambda v: (f"{v.text('rob_share', '.2f')}% (95% bootstrap interval {v.text('rob_boot_low', '.2f')}-"
                     f"{v.text('rob_boot_high', '.2f')}%; {v.text('rob_n_universal', ',')} neurons, "
                     f"{v.text('rob_n_partners')} partners, excess > {v.text('rob_threshold')})"),
          where="rob_verdict_share", verdict_key="rob_verdict_share"),
    Claim("universality", "universal neurons are most common in the first layers (figure 2; the published tables)",
          _paper_layers,
          lambda v: (f"layer 0: {v.text('layer0_share_pct', '.2f')}% ({v.text('layer0_n', ',')} of "
                     f"{v.text('layer0_neurons', ',')}) against {v.text('share_universal_pct', '.2f')}% of all "
                     f"neurons, {_times(v.text('layer0_ratio', '.2f'))} (excess > {v.text('threshold')})"),
          where="verdict_layers", verdict_key="verdict_layers"),
    *[Claim("properties", f"universal neurons have {words} (section 4.2, figure 3)", _paper_means(stat),
            _ours_property(stat), where=f"prop_verdict_{stat}", verdict_key=f"prop_verdict_{stat}")
      for stat, words in PROPERTY_CLAIMS],
    Claim("families", "universal neurons fall into families, each explained by one feature of the token (section "
          "4.3, figure 4)",
          lambda: (f"unigram families (variance reduction above {paper.UNIGRAM_VR:g} on at least "
                   f"{paper.UNIGRAM_MIN_NEURONS} neurons); alphabet neurons for {paper.ALPHABET_LETTERS[0]} of "
                   f"{paper.ALPHABET_LETTERS[1]} letters (GPT2-medium-a); previous-token, syntax and position neurons"),
          lambda v: (f"{v.text('fam_share_group', '.2f')} of the {v.md('fam_label_md')} neurons against "
                     f"{v.text('fam_share_rest', '.2f')} of the rest have a feature with variance reduction above "
                     f"{v.text('fam_vr_min')}; families: {v.text('fam_n_unigram')} unigram, "
                     f"{v.text('fam_n_alphabet')} alphabet, {v.text('fam_n_previous')} previous-token, "
                     f"{v.text('fam_n_syntax')} syntax, {v.text('fam_n_position')} position"),
          where="fam_explained_verdict", verdict_key="fam_explained_verdict"),
    Claim("prediction", "prediction neurons (high vocabulary kurtosis) appear after mid-depth (section 5.1, figure 6)",
          lambda: (f"{paper.HIGH_KURT_UNIVERSAL[0]} of the {paper.HIGH_KURT_UNIVERSAL[1]:,} universal GPT2-medium-a "
                   f"neurons have vocab_kurt > {paper.VOCAB_KURT_THRESHOLD}, most in the last layers"),
          lambda v: (f"95th percentile of vocab_kurt {v.text('pred_p95_early', '.2f')} in the first half of the "
                     f"layers, {v.text('pred_p95_late', '.2f')} in the second ({v.text('pred_n_models')} models)"),
          where="pred_verdict_late", verdict_key="pred_verdict_late"),
    Claim("prediction", "suppression neurons (negative vocabulary skew) dominate the last layers (section 5.1, "
          "figure 6)",
          lambda: (f"figure 6; example: {paper.EXAMPLE_NEURONS['suppression']} of GPT2-medium-a suppresses the "
                   "open parenthesis"),
          lambda v: (f"vocab_skew in the last layer: 5th percentile {v.text('pred_skew_p5_last', '.2f')}, 95th "
                     f"{v.text('pred_skew_p95_last', '.2f')}"),
          where="pred_verdict_supp", verdict_key="pred_verdict_supp"),
    Claim("entropy", "an entropy neuron changes the entropy of the prediction more than random neurons do "
          "(section 5.2, figure 7)",
          lambda: (f"{_neuron(paper.ENTROPY_NEURONS['GPT2-medium-a'][0])} of GPT2-medium-a against "
                   f"{paper.ENTROPY_RANDOM} random neurons of the last two layers"),
          lambda v: (f"{v.text('ent_neuron')}: {v.text('ent_d_entropy', '.3f')} nats; the largest of "
                     f"{v.text('ent_n_random')} random neurons: {v.text('ent_band_max', '.3f')}"),
          where="ent_verdict_band", verdict_key="ent_verdict_band"),
    Claim("entropy", "its entropy and the final LayerNorm scale rise together (figure 7)",
          lambda: (f"figure 7b-c, the activation fixed at {paper.ENTROPY_VALUES[0]:g} to {paper.ENTROPY_VALUES[-1]:g}"),
          lambda v: (f"entropy {v.text('ent_d_entropy', '+.3f')} nats, LayerNorm scale "
                     f"{v.text('ent_d_scale', '+.3f')}"),
          where="ent_verdict_together", verdict_key="ent_verdict_together"),
    Claim("entropy", "its effect goes through the LayerNorm scale rather than directly onto the logits (section 5.2)",
          lambda: (f"no number (section 5.2); Stolfo et al.: the bottom {paper.NULL_DIMS_GPT2_SMALL} singular "
                   "directions of W_U in GPT-2 small"),
          lambda v: (f"through the scale {v.text('ent_d_via_scale', '+.3f')} nats, direct "
                     f"{v.text('ent_d_direct', '+.3f')}"),
          where="fig-entropy-direct", verdict_key="ent_verdict_scale"),
    Claim("entropy", "an anti-entropy partner moves the entropy the other way (section 5.2)",
          lambda: (f"{_neuron(paper.ENTROPY_NEURONS['GPT2-medium-a'][1])} of GPT2-medium-a, cosine of the output "
                   f"weights {paper.ENTROPY_ANTI_COS:g}"),
          lambda v: (f"{v.text('ent_anti_neuron')}: cosine {v.text('ent_anti_cos', '.3f')}, entropy "
                     f"{v.text('ent_anti_d_entropy', '+.3f')} nats"),
          where="ent_verdict_anti", verdict_key="ent_verdict_anti"),
    Claim("attention", "attention-deactivation neurons turn a later head towards the beginning-of-text token and "
          "shrink its output (section 5.3, figure 8)",
          lambda: (f"{paper.ATTENTION_EXAMPLE[0]} {_neuron(paper.ATTENTION_EXAMPLE[1])} → head "
                   f"L{paper.ATTENTION_EXAMPLE[2][0]}.H{paper.ATTENTION_EXAMPLE[2][1]}"),
          lambda v: (f"{v.text('att_pair')}: r(activation, change of BOS attention) {v.text('att_r_bos', '.3f')}, "
                     f"of the output norm {v.text('att_r_norm', '.3f')}; {v.text('att_n_deactivating')} of the "
                     f"{v.text('att_n_ablated')} strongest pairs"),
          where="att_verdict", verdict_key="att_verdict"),
    Claim("attention", "heads write little from the beginning-of-text token (section 5.3)",
          lambda: f"the median head's |W_O v_BOS| is {paper.BOS_VALUE_RATIO:g} times smaller than other tokens'",
          lambda v: f"{v.text('att_median_ratio', '.2f')} times smaller for the median head",
          where="att_ratio_verdict", verdict_key="att_ratio_verdict"),
    Claim("mysteries", "more frequent neurons have more opposed input and output weights (section 6, figure 9)",
          lambda: f"figure 9; the cosine saturates near ±{paper.IN_OUT_COS_SATURATION:g}",
          lambda v: (f"Pearson's r from {v.text('mys_r_min', '.2f')} to {v.text('mys_r_max', '.2f')} over "
                     f"{v.text('mys_n_models')} models; cosines from {v.text('mys_cos_min', '.2f')} to "
                     f"{v.text('mys_cos_max', '.2f')}"),
          where="mys_verdict_r", verdict_key="mys_verdict_r"),
    Claim("mysteries", "the most frequent neurons have input and output weights pointing in opposite directions "
          "(section 6, figure 9)",
          lambda: f"cosines near -{paper.IN_OUT_COS_SATURATION:g} (figure 9)",
          lambda v: (f"mean cosine {v.text('mys_frequent_cos', '.3f')} for the {v.text('mys_frequent_pct', 'g')}% "
                     f"most frequent, {v.text('mys_rest_cos', '.3f')} for the rest"),
          where="mys_verdict_opposite", verdict_key="mys_verdict_opposite"),
]


def _verdict(v: Values, c: Claim) -> tuple[str, str]:
    """(verdict, rule) of a claim from its chapter's values: the glued verdict and rule."""
    verdict = v.text(c.verdict_key)
    if verdict not in verdicts.VERDICTS:
        raise Missing(f"{c.verdict_key} (a verdict of the book's protocol, got {verdict!r})")
    return verdict, v.text(c.rule_key)


def claim_rows(folder: Path, claims=None, control: claims_control.Control | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims table (one row per claim) and every value it read (chapter, key, value as shown), from the executed
    notebooks `<folder>/<chapter>.ipynb`; `control`: the negative control's glued values, for its column. A chapter
    without its notebook gives rows saying so."""
    claims = CLAIMS if claims is None else claims
    folder = Path(folder)
    cache: dict[str, Values | None] = {}
    rows, read = [], []
    for i, c in enumerate(claims, 1):
        nb = folder / f"{c.chapter}.ipynb"
        if c.chapter not in cache:
            cache[c.chapter] = Values(glued(nb), nb) if nb.is_file() else None
        v = cache[c.chapter]
        row = {"#": i, "chapter": c.chapter, "claim": c.claim, "the paper": c.paper(),
               "control": control.verdict(c.chapter, c.verdict_key) if control is not None else NOT_RUN}
        if v is None:
            row |= {"this run": f"the {c.chapter} chapter did not run (no {nb.name} in the run folder)",
                    "rule": "", "verdict": NOT_RUN, "section": "", "href": ""}
        else:
            before = len(v.read)
            try:
                ours = c.ours(v)
                verdict, rule = _verdict(v, c)
            except Missing as e:
                ours, verdict, rule = f"{e.args[0]} is missing from {nb.name} (the chapter changed?)", "unknown", ""
            sec = where_shown(nb, c.where)
            if sec is None:
                heads = [h for h in sections(nb) if h["id"]]
                sec = heads[0] if heads else None
            title = (page_title(nb) or c.chapter).split(": ")[0]  # the title's head: "Universal neurons"
            name = title if sec is None or sec["level"] == 1 else f"{title} › {sec['title']}"
            row |= {"this run": ours, "rule": rule, "verdict": verdict, "section": name,
                    "href": f"{c.chapter}.html" + (f"#{sec['id']}" if sec else "")}
            read += [{"#": i, "chapter": c.chapter, "key": k, "value": val} for k, val in v.read[before:]]
        rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(read, columns=["#", "chapter", "key", "value"])


def summary_sentence(table: pd.DataFrame, control: claims_control.Control | None = None) -> str:
    """How many claims get each verdict on this run and on the negative control, and which chapters did not run."""
    n = len(table)
    text = f"Of the paper's {n} claims checked here, on this run: **{verdicts.summary(table['verdict'])}**"
    other = int((~table["verdict"].isin(verdicts.VERDICTS)).sum())
    if other:
        text += f", and {other} could not be judged (the chapter did not run or a value is missing)"
    text += "."
    if control is not None and (table["control"] != NOT_RUN).any():
        ran = table["control"] != NOT_RUN
        text += (f" On untrained models of the same shape (the negative control, {control.source}): "
                 f"{verdicts.summary(table.loc[ran, 'control'])}")
        text += "." if ran.all() else f" ({int((~ran).sum())} not run)."
    else:
        text += " The negative control (the same chapters on untrained models) was not run for this profile."
    missing = sorted(set(table.loc[table["verdict"] == NOT_RUN, "chapter"]))
    if missing:
        text += f" The {', '.join(missing)} chapter{'s' if len(missing) > 1 else ''} did not run in this run folder."
    return text


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The claims table of a run, read from `<run folder>/notebooks/<chapter>.ipynb` (executed before this one),
    with the negative control's column; `device` is accepted for the notebooks' common parameters."""
    from IPython.display import Markdown

    prof = load_profile(profile, overrides)
    control = claims_control.load(prof, {c.chapter for c in CLAIMS})
    table, values = claim_rows(prof.notebooks_dir, control=control)
    counts = verdicts.count(table["verdict"])
    glue = {"clm_run": prof.run_name, "clm_n_claims": len(table),
            **{f"clm_n_{k}": counts[v] for k, v in zip(("hold", "direction", "fail", "untestable"), verdicts.VERDICTS)},
            "clm_n_chapters": int(table["chapter"].nunique()),
            "clm_n_control_hold": int((table["control"] == verdicts.HOLDS).sum()),
            "clm_summary_md": Markdown(summary_sentence(table, control)),
            "clm_control_md": Markdown(claims_control.describe(control, prof)),
            "clm_finding_md": Markdown(_finding(prof.notebooks_dir))}
    return Chapter("claims", prof, glue=glue, tables={"claims": table, "values": values},
                   data={"folder": prof.notebooks_dir})


def _finding(folder: Path) -> str:
    """The book's own finding (the robustness chapter's conclusion), or why it is absent."""
    nb = Path(folder) / "robustness.ipynb"
    conclusion = glued(nb).get("rob_conclusion_md") if nb.is_file() else None
    if conclusion is None:
        return "The robustness chapter did not run in this run folder, so the book states no finding of its own here."
    return plain(conclusion).replace("The book's reading.", "").strip()


# ---- the page's table ---------------------------------------------------------------------------------------------
SHOWN = ["#", "claim", "the paper", "this run", "rule", "verdict", "control", "shown in"]
STYLE = "font-size: 0.8em"  # eight columns of sentences in the page's width


def _cls(verdict: str) -> str:
    return "claim-" + {verdicts.HOLDS: "holds", verdicts.DIRECTION: "direction", verdicts.FAILS: "fails",
                       verdicts.UNTESTABLE: "untestable"}.get(verdict, "open")


def table_html(table: pd.DataFrame) -> str:
    """The claims table as HTML (class dataframe, sortable like the book's other tables): every text escaped, the
    section a link to the chapter page (relative: the pages sit side by side in book/generated/)."""
    out = table.copy()
    out["shown in"] = [f'<a href="{html.escape(h)}">{html.escape(s)}</a>' if h else "" for s, h in
                       zip(out["section"], out["href"])]
    for col in ("claim", "the paper", "this run", "rule", "verdict", "control"):
        out[col] = out[col].map(lambda x: html.escape(str(x)))
    for col in ("verdict", "control"):
        out[col] = [f'<span class="{_cls(html.unescape(v))}">{v}</span>' for v in out[col]]
    out = out[SHOWN]
    out.columns = [html.escape(c) for c in out.columns]
    page = out.to_html(escape=False, index=False, classes="claims", justify="left")
    return page.replace('<table border="1" class="dataframe claims">',
                        f'<table border="1" class="dataframe claims" style="{STYLE}">', 1)


def show(ch: Chapter):
    """The claims table for the page."""
    from IPython.display import HTML

    return HTML(table_html(ch.tables["claims"]))
