"""The paper's claims and whether they hold on this run: one row per claim, with the paper's number (from
`universal_neurons.paper`), ours and the verdict, all read from the other chapters' executed notebooks of the same
run (their glued values, as `scripts/glue_values.py` reads them), never recomputed; and a link to the section of the
chapter that shows it."""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import paper
from ..config import load_profile
from ..publish import Chapter

TEXT_MIMES = ("text/markdown", "text/plain")
HOLDS, FAILS = "holds", "does not hold"
NOT_RUN = "not run"


# ---- reading an executed notebook -------------------------------------------------------------------------------
def glued(notebook: Path) -> dict[str, str]:
    """{name: value} of the glue outputs of one executed notebook, as scripts/glue_values.py reads them: the text
    of the Markdown or plain-text record ("<figure>" for a glued figure)."""
    out = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for o in cell.get("outputs", []):
            record = o.get("metadata", {}).get("scrapbook")
            if not record:
                continue
            prefix, data = record.get("mime_prefix", ""), o.get("data", {})
            mimes = {k.removeprefix(prefix): v for k, v in data.items()}
            if any(m.startswith("image/") for m in mimes):
                out[record["name"]] = "<figure>"
                continue
            mime = next((m for m in TEXT_MIMES if m in mimes), None)
            value = mimes[mime] if mime else "<no text value>"
            out[record["name"]] = "".join(value) if isinstance(value, list) else str(value)
    return out


def shown(raw: str, spec: str = "") -> str:
    """A glued value as the book shows it, `{glue:text}`key:spec`` (myst-nb's own formatting: the plain text read
    as a Python literal, so a string loses its quotes, then formatted with `spec`)."""
    from myst_nb.core.variables import format_plain_text

    return format_plain_text(raw, spec)


def _plain(md: str) -> str:
    """Markdown of a glued sentence as plain text (emphasis and code marks dropped)."""
    return re.sub(r"\*\*|`", "", md).strip()


def _cell_text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def displayed_table(notebook: Path, name: str) -> pd.DataFrame:
    """A chapter table as its page shows it: the HTML output of the code cell that displays `ch.tables[name]` or
    `publish.table(ch, name)` (bs4 reads the HTML; the values are the page's, as text)."""
    from bs4 import BeautifulSoup

    marks = (f'ch.tables["{name}"]', f"publish.table(ch, \"{name}\")")
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        if cell["cell_type"] != "code" or not any(m in _cell_text(cell) for m in marks):
            continue
        for o in cell.get("outputs", []):
            page = o.get("data", {}).get("text/html")
            if not page:
                continue
            table = BeautifulSoup("".join(page) if isinstance(page, list) else page, "html.parser").find("table")
            header = [th.get_text(strip=True) for th in table.find("thead").find_all("tr")[0].find_all("th")]
            rows = [[c.get_text(strip=True) for c in tr.find_all(["th", "td"])]
                    for tr in table.find("tbody").find_all("tr")]
            return pd.DataFrame(rows, columns=header[:len(rows[0])] if rows else header)
    raise KeyError(f"table {name}")


HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
ROLE = re.compile(r"\{[\w:-]+\}`([^`]*)`")


def heading_text(md: str) -> str | None:
    """The text Sphinx makes of a MyST heading (the text of its inline Markdown: code, emphasis and links as their
    text), or None when it pastes a glued value or holds a role (its text is not known from the source)."""
    from markdown_it import MarkdownIt

    if ROLE.search(md):
        return None
    tokens = MarkdownIt("commonmark").parseInline(md)[0].children or []
    return "".join(t.content for t in tokens if t.type in ("text", "code_inline")).strip()


def section_id(title: str) -> str:
    """The id Sphinx gives the section of a heading (docutils' make_id of its text)."""
    from docutils.nodes import make_id

    return make_id(title)


def sections(notebook: Path) -> list[dict]:
    """Every heading of a notebook's Markdown, in order: level, title (None if unknown), id (None if unknown or a
    repeated title, whose id Sphinx numbers) and (cell, offset) where it starts. Fenced blocks are skipped."""
    out, seen = [], set()
    for c, cell in enumerate(json.loads(Path(notebook).read_text())["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        fence, offset = None, 0
        for line in _cell_text(cell).splitlines(keepends=True):
            stripped = line.strip()
            if fence is None and stripped.startswith(("```", ":::")):
                fence = stripped[:3]
            elif fence is not None and stripped.startswith(fence):
                fence = None
            elif fence is None and (m := HEADING.match(stripped)):
                title = heading_text(m[2])
                sid = section_id(title) if title else None
                out.append({"level": len(m[1]), "title": title, "id": None if sid in seen else sid,
                            "at": (c, offset)})
                seen.add(sid)
            offset += len(line)
    return out


def where_shown(notebook: Path, mark: str) -> dict | None:
    """The section that shows `mark` (a glue key, found where a {glue:...} role pastes it; or any other text of the
    notebook, a figure's name or a table's cell): the first occurrence under a level-2 or deeper heading, else the
    first at all, and the heading above it. None when the mark is not in the notebook."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    role = re.compile(r"\{glue(?::\w+)?\}`" + re.escape(mark) + r"[`:]")
    hits = []
    for c, cell in enumerate(cells):
        text = _cell_text(cell)
        hits += [(c, m.start()) for m in (role.finditer(text) if cell["cell_type"] == "markdown" else ())]
        if not re.fullmatch(r"\w+", mark):
            hits += [(c, m.start()) for m in re.finditer(re.escape(mark), text)]
    heads = sections(notebook)
    titles = [h for h in heads if h["level"] == 1 and h["id"]]
    found = []
    for at in sorted(hits):
        above = [h for h in heads if h["at"] <= at]
        if above:  # a heading without a known id: the page's title instead
            found.append(above[-1] if above[-1]["id"] or not titles else titles[0])
    deep = [h for h in found if h["level"] >= 2 and h["id"]]
    top = [h for h in found if h["id"]]
    return (deep or top or [None])[0]


def page_title(notebook: Path) -> str | None:
    heads = [h for h in sections(notebook) if h["level"] == 1]
    return heads[0]["title"] if heads else None


# ---- the claims -------------------------------------------------------------------------------------------------
class Missing(KeyError):
    """A value the claim reads is not in the chapter's notebook."""


@dataclass
class Values:
    """What one chapter's executed notebook holds: its glued values (raw text) and, on demand, a displayed table.
    Every value a claim reads is recorded in `read` as (key, value as shown)."""

    notebook: Path
    glue: dict[str, str]
    read: list[tuple[str, str, str]] = field(default_factory=list)  # (source, key, value)

    def raw(self, key: str) -> str:
        if key not in self.glue:
            raise Missing(key)
        return self.glue[key]

    def text(self, key: str, spec: str = "") -> str:
        """The glued value `key` as the chapter's page shows it with `spec`."""
        value = shown(self.raw(key))
        if ("glue", key, value) not in self.read:
            self.read.append(("glue", key, value))
        return shown(self.raw(key), spec)

    def md(self, key: str) -> str:
        value = _plain(self.raw(key))
        if ("glue", key, value) not in self.read:
            self.read.append(("glue", key, value))
        return value

    def number(self, key: str) -> float:
        self.text(key)
        return float(shown(self.raw(key)))

    def table_cell(self, name: str, row: int, col: str) -> str:
        """A cell of a displayed table (`ch.tables[name]`), as text."""
        try:
            t = displayed_table(self.notebook, name)
            value = str(t[col].iloc[row])
        except (KeyError, IndexError, AttributeError) as e:
            raise Missing(f"{name}[{row}, {col}]") from e
        if ("table", f"{name}[{row}, {col}]", value) not in self.read:
            self.read.append(("table", f"{name}[{row}, {col}]", value))
        return value


@dataclass(frozen=True)
class Claim:
    """One claim of the paper. `paper`: its number, from universal_neurons.paper; `ours`: this run's, from the
    chapter's glued values; `verdict_key`: the chapter's own glued verdict, or `judge`: this page's verdict from the
    glued values (`judge_rule` says how); `where`: the glue key, figure or table whose section shows it."""

    chapter: str
    claim: str
    paper: Callable[[], str]
    ours: Callable[[Values], str]
    where: str
    verdict_key: str | None = None
    judge: Callable[[Values], str] | None = None
    judge_rule: str = ""


def _neuron(ln: tuple[int, int]) -> str:
    return f"L{ln[0]}.{ln[1]}"


def _paper_shares() -> str:
    return ", ".join(f"{100 * n / N:.2f}% ({m})" for m, (n, N) in paper.SHARES.items())


def _share_range() -> tuple[int, int]:
    """The paper's range of shares of universal neurons in whole percent (1-5%)."""
    shares = [100 * n / N for n, N in paper.SHARES.values()]
    return math.floor(min(shares)), math.ceil(max(shares))


def _judge_share(v: Values) -> str:
    t, share = v.number("threshold"), v.number("share_universal_pct")
    if t != paper.THRESHOLD:
        return f"not comparable (threshold {t:g}, the paper's is {paper.THRESHOLD:g})"
    lo, hi = _share_range()
    return HOLDS if lo <= share <= hi else FAILS


def _first_layer(v: Values) -> tuple[int, int]:
    """(universal, neurons) of layer 0, from the universality chapter's per-layer table at its threshold."""
    col = f"above_{v.text('threshold')}"
    return int(v.table_cell("per_layer", 0, col)), int(v.table_cell("per_layer", 0, "neurons"))


def _ours_layers(v: Values) -> str:
    n0, d0 = _first_layer(v)
    return (f"layer 0: {100 * n0 / d0:.2f}% ({n0:,} of {d0:,}) against {v.text('share_universal_pct', '.2f')}% of all "
            f"neurons (excess > {v.text('threshold')})")


def _judge_layers(v: Values) -> str:
    n0, d0 = _first_layer(v)
    if v.number("n_universal") == 0:
        return "not testable (no universal neuron)"
    return HOLDS if n0 / d0 > v.number("share_universal_pct") / 100 else FAILS


def _paper_layers() -> str:
    """Layer 0's share of universal neurons against the whole model's, per model of the published tables."""
    return "; ".join(f"layer 0: {100 * c[0] / paper.D_MLP[m]:.2f}% against "
                     f"{100 * paper.SHARES[m][0] / paper.SHARES[m][1]:.2f}% ({m})" for m, c in paper.PER_LAYER.items())


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
    Claim("universality", f"{_share_range()[0]}-{_share_range()[1]}% of the neurons are universal (excess "
          f"correlation above {paper.THRESHOLD:g}; section 4.1)",
          _paper_shares,
          lambda v: (f"{v.text('share_universal_pct', '.2f')}% ({v.text('n_universal', ',')} of "
                     f"{v.text('n_neurons', ',')} neurons, excess > {v.text('threshold')})"),
          where='ch.tables["paper_comparison"]', judge=_judge_share,
          judge_rule=(f"ours within the paper's range in whole percent ({_share_range()[0]}-{_share_range()[1]}%), at "
                      f"the paper's threshold of {paper.THRESHOLD:g}")),
    Claim("universality", "universal neurons are most common in the first layers (figure 2; the published tables)",
          _paper_layers, _ours_layers, where="fig-universality-per-layer", judge=_judge_layers,
          judge_rule="layer 0's share of universal neurons above the whole model's (the chapter's per-layer table)"),
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


def outcome(verdict: str) -> str:
    """The verdict's class: "holds", "partly" (in some models, or the right way without significance), "fails",
    or "open" (not run, not comparable, not testable, unknown)."""
    if verdict in (HOLDS, "holds in every model"):
        return "holds"
    if verdict.startswith("holds in ") or verdict.startswith("points the same way"):
        return "partly"
    return "fails" if verdict == FAILS else "open"


def claim_rows(folder: Path, claims=CLAIMS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims table (one row per claim) and every value it read (chapter, source, key, value as shown), from
    the executed notebooks `<folder>/<chapter>.ipynb`. A chapter without its notebook gives rows saying so."""
    folder = Path(folder)
    cache: dict[str, Values | None] = {}
    rows, read = [], []
    for i, c in enumerate(claims, 1):
        nb = folder / f"{c.chapter}.ipynb"
        if c.chapter not in cache:
            cache[c.chapter] = Values(nb, glued(nb)) if nb.is_file() else None
        v = cache[c.chapter]
        row = {"#": i, "chapter": c.chapter, "claim": c.claim, "the paper": c.paper()}
        if v is None:
            row |= {"this run": f"the {c.chapter} chapter did not run (no {nb.name} in the run folder)",
                    "holds here?": NOT_RUN, "verdict by": "", "section": "", "href": ""}
        else:
            before = len(v.read)
            try:
                ours = c.ours(v)
                if c.verdict_key:
                    verdict, by = v.text(c.verdict_key), "the chapter"
                else:
                    verdict, by = c.judge(v), "this page"
            except Missing as e:
                ours, verdict, by = f"{e.args[0]} is missing from {nb.name} (the chapter changed?)", "unknown", ""
            sec = where_shown(nb, c.where)
            if sec is None:
                heads = [h for h in sections(nb) if h["id"]]
                sec = heads[0] if heads else None
            title = (page_title(nb) or c.chapter).split(": ")[0]  # the title's head: "Universal neurons"
            name = title if sec is None or sec["level"] == 1 else f"{title} › {sec['title']}"
            row |= {"this run": ours, "holds here?": verdict, "verdict by": by, "section": name,
                    "href": f"{c.chapter}.html" + (f"#{sec['id']}" if sec else "")}
            read += [{"#": i, "chapter": c.chapter, "source": s, "key": k, "value": val}
                     for s, k, val in v.read[before:]]
        row["outcome"] = outcome(row["holds here?"])
        rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(read, columns=["#", "chapter", "source", "key", "value"])


def summary_sentence(table: pd.DataFrame) -> str:
    """How many claims hold, partly hold, fail or are open, and which chapters did not run."""
    n = table["outcome"].value_counts()
    missing = sorted(set(table.loc[table["holds here?"] == NOT_RUN, "chapter"]))

    def count(k: str, one: str, many: str) -> str:
        return f"{n.get(k, 0)} {one if n.get(k, 0) == 1 else many}"

    text = (f"Of the paper's {len(table)} claims checked here, **{count('holds', 'holds', 'hold')}** on this run, "
            f"{count('partly', 'holds', 'hold')} in part (in some models only, or the right way without "
            f"significance), {count('fails', 'does not hold', 'do not hold')} and "
            f"{count('open', 'cannot be judged', 'cannot be judged')}.")
    if missing:
        text += f" The {', '.join(missing)} chapter{'s' if len(missing) > 1 else ''} did not run in this run folder."
    return text


def rules_sentence(claims=CLAIMS) -> str:
    """The rules of the verdicts this page gives itself (claims whose chapter states none), by row number."""
    rules = [f"row {i}: {c.judge_rule}" for i, c in enumerate(claims, 1) if not c.verdict_key]
    return ("Where the chapter states no verdict, this page judges the chapter's values: " + "; ".join(rules) + "."
            if rules else "Every verdict is the chapter's own.")


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The claims table of a run, read from `<run folder>/notebooks/<chapter>.ipynb` (executed before this one).
    `device` is accepted for the notebooks' common parameters; nothing is computed here."""
    from IPython.display import Markdown

    prof = load_profile(profile, overrides)
    table, values = claim_rows(prof.notebooks_dir)
    n = table["outcome"].value_counts()
    glue = {"clm_run": prof.run_name, "clm_n_claims": len(table), "clm_n_hold": int(n.get("holds", 0)),
            "clm_n_partly": int(n.get("partly", 0)), "clm_n_fail": int(n.get("fails", 0)),
            "clm_n_open": int(n.get("open", 0)), "clm_n_chapters": int(table["chapter"].nunique()),
            "clm_summary_md": Markdown(summary_sentence(table)), "clm_rules_md": Markdown(rules_sentence())}
    return Chapter("claims", prof, glue=glue, tables={"claims": table, "values": values},
                   data={"folder": prof.notebooks_dir})


# ---- the page's table ---------------------------------------------------------------------------------------------
SHOWN = ["#", "claim", "the paper", "this run", "holds here?", "verdict by", "shown in"]
STYLE = "font-size: 0.85em"  # seven columns of sentences in the page's width


def table_html(table: pd.DataFrame) -> str:
    """The claims table as HTML (class dataframe, sortable like the book's other tables): every text escaped, the
    section a link to the chapter page (relative: the pages sit side by side in book/generated/)."""
    out = table.copy()
    out["shown in"] = [f'<a href="{html.escape(h)}">{html.escape(s)}</a>' if h else "" for s, h in
                       zip(out["section"], out["href"])]
    for col in ("claim", "the paper", "this run", "holds here?", "verdict by"):
        out[col] = out[col].map(lambda x: html.escape(str(x)))
    out["holds here?"] = [f'<span class="claim-{o}">{v}</span>' for v, o in zip(out["holds here?"], out["outcome"])]
    out = out[SHOWN]
    out.columns = [html.escape(c) for c in out.columns]
    page = out.to_html(escape=False, index=False, classes="claims", justify="left")
    return page.replace('<table border="1" class="dataframe claims">',
                        f'<table border="1" class="dataframe claims" style="{STYLE}">', 1)


def show(ch: Chapter):
    """The claims table for the page."""
    from IPython.display import HTML

    return HTML(table_html(ch.tables["claims"]))
