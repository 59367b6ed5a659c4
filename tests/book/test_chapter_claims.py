"""The claims page and the execution page on a folder of small hand-made executed notebooks (glue outputs written
as myst-nb writes them): the claims table's values are the chapters' glued values, a chapter that did not run gives
rows saying so, its links name the sections that show each claim; the execution table's wall times are papermill's.
Where the default run's executed notebooks exist, the claims table is checked on them too."""

import ast
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from universal_neurons.core import paper
from universal_neurons.measures import verdicts
from universal_neurons.book.chapters import claims
from universal_neurons.book.chapters import claims_control
from universal_neurons.book.chapters import execution
from universal_neurons.book.chapters import notebook_reading
from universal_neurons.config.profile import load_profile
from universal_neurons.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "application/papermill.record/"


def glue_output(name: str, value) -> dict:
    """One glue output as myst-nb writes it: text/plain is the value's repr; a Markdown value also has
    text/markdown (`("md", text)`)."""
    if isinstance(value, tuple) and value[0] == "md":
        data = {f"{PREFIX}text/markdown": value[1], f"{PREFIX}text/plain": "<IPython.core.display.Markdown object>"}
    else:
        data = {f"{PREFIX}text/plain": repr(value)}
    return {"data": data, "metadata": {"scrapbook": {"mime_prefix": PREFIX, "name": name}},
            "output_type": "display_data"}


def notebook(path: Path, markdown: list[str], glue: dict, tables: dict | None = None, duration: float = 1.0,
             start: str = "2026-12-01T10:00:00+00:00", params: dict | None = None) -> Path:
    """An executed notebook: Markdown cells, one code cell with the glue outputs, one cell per displayed table
    (`ch.tables["name"]`, its HTML output) and papermill's metadata."""
    cells = [{"cell_type": "markdown", "metadata": {}, "source": md} for md in markdown]
    cells.append({"cell_type": "code", "execution_count": 1, "metadata": {"tags": ["remove-cell"]},
                  "outputs": [glue_output(k, v) for k, v in glue.items()], "source": "publish.glue_all(ch)"})
    for name, df in (tables or {}).items():
        cells.append({"cell_type": "code", "execution_count": 2, "metadata": {"tags": ["hide-input"]},
                      "outputs": [{"data": {"text/html": df.to_html(), "text/plain": df.to_string()},
                                   "execution_count": 2, "metadata": {}, "output_type": "execute_result"}],
                      "source": f'ch.tables["{name}"]'})
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "papermill": {"duration": duration, "start_time": start, "end_time": start, "exception": None,
                          "parameters": params or {"profile": "smoke", "device": "cpu", "overrides": ""}}}
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))
    return path


R = "holds if x ≥ 1 (the paper) and above 0 (noise); ours 2"  # a rule as a chapter glues it
GLUE = {
    "universality": {"share_universal_pct": 1.26953125, "threshold": 0.5,
                     "layer0_share_pct": 0.78125, "layer0_n": 8, "layer0_neurons": 1024, "layer0_ratio": 0.6154,
                     "verdict_layers": "does not hold", "rule_layers": R},
    "robustness": {"rob_share": 1.26953125, "rob_boot_low": 1.17, "rob_boot_high": 1.42, "rob_n_universal": 26,
                   "rob_n_partners": 3, "rob_threshold": 0.5, "rob_verdict_share": "holds", "rob_rule_share": R,
                   "rob_conclusion_md": ("md", "**The book's reading.** The book adopts the paper's null.")},
    "properties": {"prop_label_md": ("md", "universal (excess > 0.5)"), "prop_n_group": 26,
                   **{f"prop_pct_{s}": 50.0 + i for i, (s, _) in enumerate(claims.PROPERTY_CLAIMS)},
                   **{f"prop_verdict_{s}": v for (s, _), v in zip(claims.PROPERTY_CLAIMS, [
                       "holds", "holds", "does not hold", "direction only", "holds", "holds"])},
                   **{f"prop_rule_{s}": R for s, _ in claims.PROPERTY_CLAIMS}},
    "families": {"fam_share_group": 0.8, "fam_share_rest": 0.1, "fam_label_md": ("md", "**universal** (excess > 0.5)"),
                 "fam_vr_min": 0.2, "fam_n_unigram": 0, "fam_n_alphabet": 1, "fam_n_previous": 2, "fam_n_syntax": 3,
                 "fam_n_position": 4, "fam_explained_verdict": "not testable here", "fam_explained_rule": R},
    "prediction": {"pred_p95_early": 3.3, "pred_p95_late": 3.9, "pred_n_models": 4,
                   "pred_verdict_late": "not testable here", "pred_rule_late": R,
                   "pred_skew_p5_last": -0.1, "pred_skew_p95_last": 0.5, "pred_verdict_supp": "not testable here",
                   "pred_rule_supp": R},
    "entropy": {"ent_neuron": "L1.805", "ent_d_entropy": -0.05, "ent_n_random": 20, "ent_band_max": 0.39,
                "ent_verdict_band": "does not hold", "ent_rule_band": R, "ent_d_scale": 0.45,
                "ent_verdict_together": "not testable here", "ent_rule_together": R,
                "ent_d_via_scale": 0.6, "ent_d_direct": -0.65, "ent_verdict_scale": "not testable here",
                "ent_rule_scale": R, "ent_anti_neuron": "L1.865", "ent_anti_cos": -0.66, "ent_anti_d_entropy": 0.94,
                "ent_verdict_anti": "not testable here", "ent_rule_anti": R},
    "attention": {"att_pair": "L0.235 → L1.H1", "att_r_bos": -0.89, "att_r_norm": 0.85, "att_n_deactivating": 3,
                  "att_n_ablated": 3, "att_verdict": "direction only", "att_rule": R, "att_median_ratio": 3.49,
                  "att_ratio_verdict": "direction only", "att_ratio_rule": R},
    "mysteries": {"mys_r_min": -0.16, "mys_r_max": -0.11, "mys_n_models": 4, "mys_cos_min": -0.77, "mys_cos_max": 0.59,
                  "mys_verdict_r": "direction only", "mys_rule_r": R, "mys_frequent_cos": 0.017,
                  "mys_frequent_pct": 5.0, "mys_rest_cos": 0.012, "mys_verdict_opposite": "does not hold",
                  "mys_rule_opposite": R},
}
# Each chapter's Markdown: its title, where its verdicts are pasted, and the sections the claims link to.
MARKDOWN = {
    "universality": ["# Universal neurons: which neurons recur across seeds\n\n{glue:text}`share_universal_pct:.2f`%",
                     "## Universal neurons per layer\n\n```{glue:figure} fig-universality-per-layer\n"
                     ":name: fig-universality-per-layer\n\n# not a heading: inside a fence\n```\n\n"
                     "{glue:text}`verdict_layers`",
                     "## Our numbers beside the *paper's*"],
    "robustness": ["# How robust is \"universal\"?\n\n**{glue:text}`rob_verdict_share`**"],
    "properties": ["# Properties of universal neurons\n\n{glue:text}`prop_n_group`",
                   "## The paper's claims, checked\n\n"
                   + "\n".join(f"- {w}: {{glue:text}}`prop_verdict_{s}`" for s, w in claims.PROPERTY_CLAIMS)],
    "families": ["# Neuron families\n\nthe claim {glue:text}`fam_explained_verdict` here"],
    "prediction": ["# Prediction, suppression and partition neurons\n\n{glue:text}`pred_verdict_late` and "
                   "{glue:text}`pred_verdict_supp`",
                   "## Percentiles by layer (paper figure 6)\n\n{glue:text}`pred_verdict_late` "
                   "{glue:text}`pred_verdict_supp`"],
    "entropy": ["# Entropy neurons\n\n{glue:text}`ent_verdict_band` {glue:text}`ent_verdict_together` "
                "{glue:text}`ent_verdict_scale` {glue:text}`ent_verdict_anti`",
                "## Total and direct effect\n\n```{glue:figure} fig-entropy-direct\n```"],
    "attention": ["# Attention-deactivation neurons\n\n{glue:text}`att_verdict`",
                  "## The beginning-of-text token's value\n\n(judged: {glue:text}`att_ratio_verdict`)"],
    "mysteries": ["# Mysteries\n\n{glue:text}`mys_verdict_r`",
                  "## Activation frequency and the input-output cosine (paper figure 9)\n\n"
                  "{glue:text}`mys_verdict_r` {glue:text}`mys_verdict_opposite`"],
}
UNTRAINED = {"universality": "not testable here", "robustness": "does not hold"}  # the control's verdicts, by chapter


def write_run(folder: Path, glue: dict, start_minute: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, (name, g) in enumerate(glue.items()):
        notebook(folder / f"{name}.ipynb", MARKDOWN[name], g, duration=10.0 + k,
                 start=f"2026-12-01T10:{start_minute + k:02d}:00+00:00")
    return folder


def control_glue() -> dict:
    """The chapters' glue as an untrained run gives it: every verdict "does not hold" or "not testable here"."""
    out = {}
    for name, g in GLUE.items():
        out[name] = {k: (UNTRAINED.get(name, "does not hold") if "verdict" in k and not k.endswith("_md") else v)
                     for k, v in g.items()}
    return out


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run folder `smoke` under $UN_ARTIFACTS with the chapters' executed notebooks (no control run)."""
    monkeypatch.setenv("UN_ARTIFACTS", str(tmp_path))
    return write_run(tmp_path / "smoke" / "notebooks", GLUE)


def _glue_values_script():
    spec = importlib.util.spec_from_file_location("glue_values", ROOT / "scripts" / "glue_values.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _shown(value) -> str:
    """What the book shows of a hand-made glued value (its repr read back, a Markdown text as plain text)."""
    if isinstance(value, tuple):
        return value[1].replace("**", "")
    return str(ast.literal_eval(repr(value)))


def test_glued_reads_what_scripts_glue_values_reads(run):
    script = _glue_values_script()
    for nb in run.glob("*.ipynb"):
        assert notebook_reading.glued(nb) == script.glued(nb)
    assert notebook_reading.glued(run / "entropy.ipynb")["ent_verdict_band"] == "'does not hold'"
    assert notebook_reading.shown(notebook_reading.glued(run / "entropy.ipynb")["ent_verdict_band"]) == "does not hold"


def test_the_claims_chapters_are_the_controls():
    assert {c.chapter for c in claims.CLAIMS} == set(claims_control.CHAPTERS)
    assert len(claims.CLAIMS) == 19


def test_one_row_per_claim_with_the_glued_values_verdicts_and_rules(run):
    table, values = claims.claim_rows(run)
    assert len(table) == len(claims.CLAIMS) and list(table["#"]) == list(range(1, len(claims.CLAIMS) + 1))
    for claim, row in zip(claims.CLAIMS, table.to_dict("records")):
        assert row["verdict"] == _shown(GLUE[claim.chapter][claim.verdict_key])
        assert row["rule"] == R and row["control"] == claims.NOT_RUN
    for r in values.itertuples():
        assert r.value == _shown(GLUE[r.chapter][r.key]), (r.chapter, r.key)
    # every key of the hand-made chapters but the robustness conclusion is read by some claim
    read = set(zip(values["chapter"], values["key"]))
    assert {(c, k) for c, g in GLUE.items() for k in g} - read == {("robustness", "rob_conclusion_md")}


def test_ours_formats_the_glued_values_as_the_chapters_show_them(run):
    table, _ = claims.claim_rows(run)
    ours = dict(zip(table["#"], table["this run"]))
    assert ours[1] == "1.27% (95% bootstrap interval 1.17-1.42%; 26 neurons, 3 partners, excess > 0.5)"
    assert ours[2] == "layer 0: 0.78% (8 of 1,024) against 1.27% of all neurons, 0.62x (excess > 0.5)"
    assert "L1.805: -0.050 nats" in ours[12] and "0.390" in ours[12]
    assert ours[9].startswith("0.80 of the universal (excess > 0.5) neurons against 0.10")


def test_counts_every_verdict_separately(run):
    table, _ = claims.claim_rows(run)
    text = claims.summary_sentence(table)
    n = verdicts.count(table["verdict"])
    assert n == {verdicts.HOLDS: 5, verdicts.DIRECTION: 4, verdicts.FAILS: 4, verdicts.UNTESTABLE: 6}
    assert "5 hold, 4 direction only, 4 do not hold, 6 not testable here" in text
    assert "negative control (the same chapters on untrained models) was not run" in text


def test_a_verdict_outside_the_protocol_is_refused(run):
    g = dict(GLUE["attention"], att_ratio_verdict="holds in every model")
    notebook(run / "attention.ipynb", MARKDOWN["attention"], g)
    table, _ = claims.claim_rows(run)
    row = table[table["claim"].str.startswith("heads write little")].iloc[0]
    assert row["verdict"] == "unknown" and "a verdict of the book's protocol" in row["this run"]
    assert "could not be judged" in claims.summary_sentence(table)


def test_the_control_column_from_the_control_run_folder(run, tmp_path):
    control_run = claims_control.control_profile(load_profile("smoke")).notebooks_dir
    assert control_run.parent.name.startswith("smoke+") and control_run.parent.parent == tmp_path
    write_run(control_run, control_glue())
    control = claims_control.load(load_profile("smoke"))
    assert "computed in this build" in control.source
    table, _ = claims.claim_rows(run, control=control)
    assert (table["control"] != verdicts.HOLDS).all() and (table["control"] != claims.NOT_RUN).all()
    assert table.loc[1, "control"] == "not testable here"  # universality: no universal neuron
    text = claims.summary_sentence(table, control)
    assert "On untrained models of the same shape" in text and "0 hold" in text.split("On untrained")[1]
    ch = claims.compute("smoke")
    assert ch.glue["clm_n_control_hold"] == 0 and "untrained models" in ch.glue["clm_control_md"].data


def test_the_shipped_control_is_read_with_its_checksum(run, tmp_path, monkeypatch):
    control_run = claims_control.control_profile(load_profile("smoke")).notebooks_dir
    write_run(control_run, control_glue())
    monkeypatch.chdir(tmp_path)  # results/ of this folder
    path = claims_control.ship(load_profile("smoke"))
    assert path == tmp_path / "results" / "claims-control-smoke.json"
    record = json.loads(path.read_text())
    assert record["run"] == control_run.parent.name and record["code"] == claims_control.code_signature()
    import shutil

    shutil.rmtree(control_run)  # no control run here: the shipped one is read
    control = claims_control.load(load_profile("smoke"))
    assert control.source.startswith("shipped in results/claims-control-smoke.json") and control.current
    table, _ = claims.claim_rows(run, control=control)
    assert list(table["control"]) == [claims_control.shown(record["glue"][c.chapter][c.verdict_key]) for c in claims.CLAIMS]
    record["glue"]["entropy"]["ent_verdict_band"] = "'holds'"  # edited by hand: refused
    path.write_text(json.dumps(record))
    with pytest.raises(UserError, match="does not match its checksum"):
        claims_control.load(load_profile("smoke"))


def test_a_control_run_has_no_control_of_its_own(run):
    assert claims_control.control_profile(load_profile("smoke", "analysis.untrained=true")) is None


def test_a_chapter_that_did_not_run_gives_rows_saying_so(run):
    (run / "entropy.ipynb").unlink()
    table, values = claims.claim_rows(run)
    ent = table[table["chapter"] == "entropy"]
    assert len(ent) == 4 and (ent["verdict"] == claims.NOT_RUN).all() and (ent["href"] == "").all()
    assert ent["this run"].str.contains("did not run").all()
    assert "entropy" not in set(values["chapter"])
    assert len(table) == len(claims.CLAIMS)
    assert "The entropy chapter did not run" in claims.summary_sentence(table)


def test_a_missing_glued_value_is_named(run):
    g = {k: v for k, v in GLUE["attention"].items() if k != "att_median_ratio"}
    notebook(run / "attention.ipynb", MARKDOWN["attention"], g)
    table, _ = claims.claim_rows(run)
    row = table[table["this run"].str.contains("att_median_ratio")].iloc[0]
    assert row["verdict"] == "unknown" and "missing from attention.ipynb" in row["this run"]


def test_links_name_the_section_that_shows_each_claim(run):
    table, _ = claims.claim_rows(run)
    href = dict(zip(table["#"], table["href"]))
    assert href[1] == "robustness.html#how-robust-is-universal"
    assert href[2] == "universality.html#universal-neurons-per-layer"  # the verdict's section, not the fence's "#"
    assert all(href[i] == "properties.html#the-paper-s-claims-checked" for i in range(3, 9))
    assert href[9] == "families.html#neuron-families"  # pasted only under the title: the page's top
    assert href[10] == href[11] == "prediction.html#percentiles-by-layer-paper-figure-6"  # a section before the top
    assert href[14] == "entropy.html#total-and-direct-effect" and href[12] == "entropy.html#entropy-neurons"
    assert href[17] == "attention.html#the-beginning-of-text-token-s-value"
    sec = dict(zip(table["#"], table["section"]))
    assert sec[2] == "Universal neurons › Universal neurons per layer" and sec[9] == "Neuron families"


def test_headings_and_their_ids():
    assert notebook_reading.section_id(notebook_reading.heading_text("The paper's claims, checked")) == "the-paper-s-claims-checked"
    assert notebook_reading.heading_text("Skew of the `vocab_kurt` neurons [here](x.html) *now*") == \
        "Skew of the vocab_kurt neurons here now"
    assert notebook_reading.heading_text("{glue:text}`n` neurons") is None and notebook_reading.heading_text("{numref}`fig-x`") is None
    assert notebook_reading.section_id("Percentiles by layer (paper figure 6)") == "percentiles-by-layer-paper-figure-6"


def test_a_repeated_heading_gets_no_id(tmp_path):
    nb = notebook(tmp_path / "x.ipynb", ["# X\n\n## Notes\n\n{glue:text}`a`", "## Notes\n\n{glue:text}`b`"], {})
    assert [h["id"] for h in notebook_reading.sections(nb)] == ["x", "notes", None]
    assert notebook_reading.where_shown(nb, "b")["id"] == "x"  # Sphinx numbers the repeated id: the page's top instead
    assert notebook_reading.where_shown(nb, "a")["id"] == "notes" and notebook_reading.where_shown(nb, "nothing") is None


def test_table_html_escapes_text_and_links_the_sections(run):
    table, _ = claims.claim_rows(run)
    table.loc[0, "claim"] = "a <b>bold</b> & claim"
    page = claims.table_html(table)
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; claim" in page and "<b>" not in page
    link = "universality.html#universal-neurons-per-layer"
    assert f'<a href="{link}">Universal neurons › Universal neurons per layer</a>' in page
    assert page.count("<tr") == len(claims.CLAIMS) + 1 and 'class="dataframe claims"' in page
    assert '<span class="claim-holds">holds</span>' in page
    assert '<span class="claim-direction">direction only</span>' in page
    assert "<th>rule</th>" in page and "<th>control</th>" in page


def test_compute_reads_the_run_folder_of_the_profile(run):
    ch = claims.compute("smoke")
    assert ch.data["folder"] == run
    t = ch.tables["claims"]
    g = ch.glue
    assert g["clm_n_claims"] == len(claims.CLAIMS) == g["clm_n_hold"] + g["clm_n_direction"] + g["clm_n_fail"] + \
        g["clm_n_untestable"]
    assert g["clm_n_hold"] == int((t["verdict"] == "holds").sum()) == 5 and g["clm_run"] == "smoke"
    assert g["clm_n_direction"] == 4
    assert g["clm_n_chapters"] == len(GLUE)
    assert g["clm_finding_md"].data == "The book adopts the paper's null."


def test_the_claims_name_the_properties_chapters_claims():
    from universal_neurons.book.chapters.properties import CLAIMS

    assert [(s, w) for s, _, w in CLAIMS] == claims.PROPERTY_CLAIMS


def test_the_paper_column_comes_from_the_paper_module():
    said = {c.claim: c.paper() for c in claims.CLAIMS}
    assert "4.16% (GPT2-small-a, 4 partners)" in said[claims.CLAIMS[0].claim]
    assert "1.26% (Pythia-160m, 3 partners)" in said[claims.CLAIMS[0].claim]
    assert f"{paper.BOS_VALUE_RATIO:g} times" in said[claims.CLAIMS[16].claim]
    assert said[claims.CLAIMS[4].claim] == "figure 3 (no mean in the text)"  # "mean": no number in the paper's table
    # layer 0's enrichment, from the published per-layer counts and shares
    assert "1.74x (GPT2-small-a)" in said[claims.CLAIMS[1].claim] and "2.62x (GPT2-medium-a)" in said[claims.CLAIMS[1].claim]


# ---- the execution page ---------------------------------------------------------------------------------------
def test_the_span_runs_from_the_first_start_to_the_last_end(tmp_path):
    """Two notebooks side by side, 10:00:00-10:01:00 and 10:00:30-10:02:00 (UTC, one written at +01:00): 120 s from
    the first start to the last end, below their 150 s added up; the execution page itself is left out."""
    def run(name, start, end, duration):
        path = notebook(tmp_path / f"{name}.ipynb", ["# x"], {}, duration=duration, start=start)
        nb = json.loads(path.read_text())
        nb["metadata"]["papermill"]["end_time"] = end
        path.write_text(json.dumps(nb))

    run("zoo", "2026-12-01T10:00:00+00:00", "2026-12-01T10:01:00+00:00", 60.0)
    run("scale", "2026-12-01T11:00:30+01:00", "2026-12-01T10:02:00+00:00", 90.0)
    run("execution", "2026-12-01T09:00:00+00:00", "2026-12-01T12:00:00+00:00", 1.0)
    assert execution.span_seconds(tmp_path) == 120.0
    assert execution.timing_table(tmp_path)["seconds"].sum() == 150.0


def test_execution_times_are_papermills_durations(run):
    (run / "zoo.in.ipynb").write_text("{}")  # papermill's input and partial output are left out
    (run / "zoo.tmp.ipynb").write_text("{}")
    notebook(run / "execution.ipynb", ["# How"], {}, duration=99.0)  # the page itself, from an earlier build
    times = execution.timing_table(run)
    expected = {p.stem: json.loads(p.read_text())["metadata"]["papermill"]["duration"]
                for p in run.glob("*.ipynb") if "." not in p.stem and p.stem != "execution"}
    assert dict(times["seconds"]) == expected and len(times) == len(GLUE)
    assert list(times.index) == list(GLUE)  # the order they ran in
    assert (times["parameters"] == "device='cpu' overrides='' profile='smoke'").all() and not times["failed"].any()
    assert times.loc["universality", "started (UTC)"] == "2026-12-01 10:00:00"
    ch = execution.compute("smoke")
    assert dict(ch.tables["chapters"]["seconds"]) == expected
    assert ch.glue["exe_total_s"] == pytest.approx(sum(expected.values()))
    assert ch.glue["exe_n_chapters"] == len(GLUE) and ch.glue["exe_slowest"] == "mysteries"
    assert ch.glue["exe_span_min"] == len(GLUE) - 1  # the k-th notebook starts and ends at 10:k:00
    assert ch.tables["run"].loc["run folder", "value"] == str(run.parent)  # outside the working directory: absolute
    from universal_neurons.core.paths import shown

    assert shown(Path.cwd() / "artifacts" / "x") == str(Path("artifacts") / "x")  # inside it: relative


def test_execution_machine_and_versions(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t: avx\n")
    assert execution.cpu_model(tmp_path / "cpuinfo") == "Test CPU 9000"
    (tmp_path / "meminfo").write_text("MemTotal:       24576000 kB\nMemFree: 1 kB\n")
    assert execution.memory_gib(tmp_path / "meminfo") == pytest.approx(24576000 / 2**20)
    assert execution.memory_gib(tmp_path / "missing") is None
    v = execution.versions_table()
    for dist in ("torch", "transformer-lens", "numpy", "pandas", "jupyter-book", "myst-nb", "universal-neurons"):
        assert v.loc[dist, "version"] not in ("", "not installed"), dist
    assert execution.version("no-such-distribution-here") == "not installed"
    m = execution.machine_table()
    assert set(m.index) >= {"CPU", "cores", "memory", "GPU"}
