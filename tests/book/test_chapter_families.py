"""The families chapter: its verdicts and sentences (each where the claim holds and where it does not), the family
counts and tables on hand-made rules, and its streamed pass on the smoke zoo against a direct numpy float64 VR,
mutual information and per-position mean computed from the model's own cache."""

import numpy as np
import pandas as pd
import pytest

from universal_neurons.core import paper
from universal_neurons.book.chapters import families as chapter


# ---- verdicts and sentences ------------------------------------------------------------------------------------
def _brute_members(vr, uni, let, kurt, cols):
    """The paper's threshold rules on a set of neurons, by plain loops."""
    out = set()
    for f in uni:
        hits = [c for c in cols if vr[f, c] > paper.UNIGRAM_VR]
        if len(hits) >= paper.UNIGRAM_MIN_NEURONS:
            out |= set(hits)
    for f in let:
        best = max(cols, key=lambda c: (-np.inf if np.isnan(vr[f, c]) else vr[f, c], -list(cols).index(c)))
        if vr[f, best] > paper.ALPHABET_VR:
            out.add(best)
    return out | {c for c in cols if kurt[c] < paper.POSITION_KURTOSIS}


def test_paper_members_against_loops():
    rng = np.random.default_rng(0)
    vr = rng.random((6, 40)) ** 3  # features 0-3 unigram, 4-5 letters
    vr[0, :5] = 0.9  # a unigram family on neurons 0-4
    vr[1, 7] = np.nan
    kurt = rng.uniform(1.0, 6.0, 40)
    for cols in ([0, 1, 2, 3, 4, 5], list(range(10, 30)), [39, 2, 7, 1]):
        got = chapter.paper_members(vr, [0, 1, 2, 3], [4, 5], kurt, cols)
        assert {c for c, m in zip(cols, got) if m} == _brute_members(vr, [0, 1, 2, 3], [4, 5], kurt, cols)
    counts = chapter.random_group_counts(vr, [0, 1, 2, 3], [4, 5], kurt, range(40), 6, n=50, seed=1)
    draws = np.random.default_rng(1)
    again = [len(_brute_members(vr, [0, 1, 2, 3], [4, 5], kurt, list(draws.choice(np.arange(40), 6, replace=False))))
             for _ in range(50)]
    assert list(counts) == again


def test_families_evidence():
    null = np.array([0] * 90 + [1] * 10)  # the 95% quantile: 1
    assert chapter.families_evidence(5, null, 36, "universal").verdict == "holds"
    assert chapter.families_evidence(2, null, 36, "universal").verdict == "direction only"  # short of 3 neurons
    assert chapter.families_evidence(1, null, 36, "universal").verdict == "does not hold"  # inside the band
    assert chapter.families_evidence(0, null, 36, "universal").verdict == "does not hold"
    ev = chapter.families_evidence(9, null, 40, "stand-in", "the compared group is a stand-in")
    assert ev.verdict == "not testable here" and "stand-in" in ev.rule


def test_explained_evidence_is_secondary_and_permuted():
    rng = np.random.default_rng(0)
    g = np.zeros(400, dtype=bool)
    g[:40] = True
    strong = np.where(g, rng.random(400) < 0.8, rng.random(400) < 0.1)
    ev = chapter.explained_evidence(strong, g, 0.2, n=200)
    assert ev.value == pytest.approx(strong[g].mean() - strong[~g].mean())
    assert ev.verdict == "direction only" and ev.magnitude is None  # never holds: the book's own threshold
    same = rng.random(400) < 0.3
    assert chapter.explained_evidence(same, g, 0.2, n=200).verdict == "does not hold"
    assert chapter.explained_evidence(same, np.zeros(400, bool), 0.2).verdict == "not testable here"


def test_source_table_and_sentence():
    best = pd.DataFrame({"neuron": ["L0.1", "L0.2", "L1.3", "L1.4"], "best feature": ["source:kjv", "letter:a",
                         "source:kjv", "source:austen"], "kind": ["context", "letter", "context", "context"],
                         "VR": [0.9, 0.5, 0.4, 0.1], "explained": [True, True, True, False]})
    src = chapter.source_table(best, [True, True, False, True])
    assert list(src["neuron"]) == ["L0.1", "L1.3"] and list(src["in the compared group"]) == [True, False]
    text = chapter.source_sentence(src, 2, 1, ["kjv", "austen", "sotu"])
    assert text.startswith("1 of the 2 explained neurons of the compared group has the text's source as its "
                           "best feature (kjv (1)), and 1 of the 1 explained other neurons.")
    assert "3 sources (kjv, austen, sotu)" in text


def test_alphabet_views():
    vr = pd.DataFrame([[0.5, 0.1], [0.2, 0.3]], index=["letter_token:a", "letter:a"], columns=[3, 260])
    t = chapter.alphabet_views(vr, ["letter_token:a"], ["letter:a"], 256).set_index("letter")
    assert t.loc["a", "reference: the token is the letter: neuron"] == "L0.3"
    assert t.loc["a", "book: starts with the letter: neuron"] == "L1.4"
    assert t.loc["a", f"reference: the token is the letter: above {paper.ALPHABET_VR}"]
    assert not t.loc["a", f"book: starts with the letter: above {paper.ALPHABET_VR}"]
    assert t.loc["b", "book: starts with the letter: neuron"] == "-"
    assert chapter.alphabet_views_sentence(3, 5, 20, 26).startswith("By the reference code's alphabet features")


def test_alphabet_sentence_more_and_fewer_than_the_paper():
    got, of = paper.ALPHABET_LETTERS
    assert "more than the paper's" in chapter.alphabet_sentence(26, 26)
    assert "fewer than the paper's" in chapter.alphabet_sentence(1, 26)
    assert "as many as" in chapter.alphabet_sentence(got, of)
    assert chapter.alphabet_sentence(3, 20).startswith("3 of the 20 letter features")
    assert chapter.alphabet_sentence(0, 0).startswith("no letter feature occurs here")


def test_syntax_sentence_with_and_without_brown():
    assert chapter.syntax_sentence(31, 96738).startswith("Syntax features are evaluated on the Brown corpus only: "
                                                         "its 31 held-out documents (96,738 tokens)")
    assert "no held-out Brown documents" in chapter.syntax_sentence(0, 0)


# ---- family counts and tables ----------------------------------------------------------------------------------
def _rules():
    return {"unigram": pd.DataFrame({"feature": ["unigram:the", "unigram:a"], "n_neurons": [3, 2],
                                     "neurons": [[5, 1, 300], [1, 7]]}),
            "alphabet": pd.DataFrame({"feature": ["letter:a", "letter:b"], "neuron": [9, 260], "vr": [0.4, 0.9]}),
            "previous": pd.DataFrame({"neuron": [3, 4, 5], "feature": ["prev:x"] * 3, "vr": [0.5, 0.25, 0.1]}),
            "syntax": pd.DataFrame(columns=["neuron", "feature", "vr"]),
            "position": pd.DataFrame({"neuron": [2, 8], "kurtosis": [1.5, 1.9], "mi": [0.3, 0.1]})}


def test_family_neurons_and_paper_table():
    r = _rules()
    assert chapter.family_neurons(r, "unigram") == [1, 5, 7, 300]
    assert chapter.family_neurons(r, "alphabet") == [9, 260]
    assert chapter.family_neurons(r, "previous", vr_min=0.2) == [3, 4]
    assert chapter.family_neurons(r, "previous") == [3, 4, 5]
    assert chapter.family_neurons(r, "syntax") == [] and chapter.family_neurons({}, "position") == []
    t = chapter.paper_table(r, 256, 2, 0.2).set_index("family")
    assert t["ours: neurons"].to_dict() == {"unigram": 4, "alphabet": 2, "previous": 2, "syntax": 0, "position": 2}
    assert t.loc["unigram", "ours: layers (of 2)"] == "layer 0: 3, layer 1: 1"
    assert t.loc["syntax", "ours: layers (of 2)"] == "none" and np.isnan(t.loc["syntax", "ours: depth"])
    assert t.loc["unigram", "ours: depth"] == 0.0 and t.loc["previous", "ours: depth"] == 0.0
    # the paper's side: GPT2-medium-a's layers as listed, depth = median layer / 23
    assert t.loc["unigram", "paper: layers (of 24)"] == "layer 0: 14, layer 1: 12, layer 2: 3, layer 10: 1"
    assert t.loc["syntax", "paper: depth"] == round(float(np.median(paper.FAMILY_LAYERS_MEDIUM["syntax"])) / 23, 2)
    assert f"{paper.ALPHABET_LETTERS[0]} of {paper.ALPHABET_LETTERS[1]}" in t.loc["alphabet", "paper's finding"]


def test_depth():
    assert chapter.depth([0, 0, 1], 2) == 0.0 and chapter.depth([3], 4) == 1.0 and chapter.depth([5], 1) == 5.0
    assert np.isnan(chapter.depth([], 3))


def test_kinds_table_and_dominant_sentence():
    best = pd.DataFrame({"neuron": ["L0.1", "L0.2", "L1.3", "L1.4", "L0.5"],
                         "kind": ["unigram", "case", "unigram", "previous", "syntax"],
                         "VR": [0.9, 0.6, 0.5, 0.3, 0.1], "explained": [True, True, True, True, False]})
    k = chapter.kinds_table(best, 2)
    assert list(k["family of the best feature"]) == ["unigram", "previous token", "token"]
    assert list(k["neurons"]) == [2, 1, 1] and k.loc[0, "layers (of 2)"] == "layer 0: 1, layer 1: 1"
    assert k.loc[0, "median VR"] == 0.7
    text = chapter.dominant_sentence(k, best, 2, top=2)
    assert "**unigram** (2 of 4)" in text and "the 2 best-explained lie in layer 0: 2 (of 2 layers)" in text
    assert "GPT2-medium-a" in text and "1,211" in text
    empty = chapter.kinds_table(best.assign(explained=False), 2)
    assert empty.empty and chapter.dominant_sentence(empty, best, 2).startswith("No compared neuron")
    assert chapter.kind_family("letter") == "alphabet" and chapter.kind_family("suffix") == "token"
    assert chapter.kind_family("letter_token") == "alphabet" and chapter.kind_family("context") == "context"


def test_shown_and_labelled():
    r = _rules()
    assert chapter.shown(r, "alphabet") == [(260, "letter:b", 0.9), (9, "letter:a", 0.4)]
    assert chapter.shown(r, "position", 1) == [(2, None, 0.3)]
    assert [s[:2] for s in chapter.shown(r, "unigram")] == [(5, "unigram:the"), (1, "unigram:a")]
    assert chapter.shown(r, "syntax") == []
    lab = chapter.labelled(r["unigram"], 256)
    assert list(lab["neurons"]) == ["L0.5 L0.1 L1.44", "L0.1 L0.7"]
    assert list(chapter.labelled(r["alphabet"], 256)["neuron"]) == ["L0.9", "L1.4"]


def test_best_table_matches_a_direct_lookup():
    rng = np.random.default_rng(0)
    d_mlp = 4
    vr = pd.DataFrame(rng.random((3, 8)), index=["a", "b", "c"])
    live = pd.DataFrame({"layer": [0, 1, 1], "neuron": [2, 0, 3], "excess_corr": [0.1, 0.2, 0.3]})
    from universal_neurons.measures import families

    t = chapter.best_table(families.best_features(vr), live, {"a": "x", "b": "y", "c": "z"}, d_mlp, 0.5)
    for _, row in t.iterrows():
        l, n = map(int, row["neuron"][1:].split("."))
        col = vr[l * d_mlp + n]
        assert row["best feature"] == col.idxmax() and row["VR"] == pytest.approx(col.max())
        assert row["explained"] == (col.max() > 0.5)
    assert list(t["VR"]) == sorted(t["VR"], reverse=True)


# ---- the pass on the smoke zoo ---------------------------------------------------------------------------------
def _direct_vr(v, y):
    v, y = v.astype(np.float64), y.astype(bool)
    b = y.mean()
    return 1 - ((1 - b) * v[~y].var() + b * v[y].var()) / v.var()


@pytest.mark.slow
def test_pass_matches_numpy_on_the_smoke_zoo(smoke, smoke_zoo, one_thread):
    import torch

    from universal_neurons import data
    from universal_neurons.runs import families_pass
    from universal_neurons.models.loading import load_model
    from universal_neurons.data.tokenizer import load_tokenizer

    model = load_model(smoke.members()[0])
    tok = load_tokenizer(data.tokenizer_dir(smoke, progress=False))
    rows = data.analysis_rows(smoke, progress=False)
    vr, kinds, mi, mean, _, n, _ = families_pass._run_main(model, tok, rows, 4000, 16, "cpu")
    assert n == 4000
    plan = families_pass.main_plan(rows, tok, 4000)
    toks, mask = np.asarray(rows.tokens[:plan.n_rows]), plan.mask(0, plan.n_rows)
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.from_numpy(toks.astype(np.int64)))
    d = model.cfg.d_mlp
    fs = families_pass.MainFeatures(tok, model.cfg.d_vocab, rows, plan.n_rows)(0, toks)
    pos = np.tile(np.arange(toks.shape[1]), len(toks))[mask.ravel()]
    checked = [f for f in ["type:punctuation", "prev:type:alphabetic", f"source:{rows.source_names[0]}",
                           "position:8-15", "position:0-0"] if f in vr.index]
    assert len(checked) == 4  # position 0 holds the BOS token only: dropped, so that feature never occurs
    for feature in checked:
        y = fs.column(feature)[mask.ravel()]
        for l, j in [(0, 3), (1, 17), (1, d - 1)]:
            v = cache[f"blocks.{l}.mlp.hook_post"].numpy()[mask][:, j]
            assert vr.loc[feature, l * d + j] == pytest.approx(_direct_vr(v, y), abs=1e-6)
    assert kinds["prev:type:alphabetic"] == "previous" and kinds["type:punctuation"] == "type"
    for l, j in [(0, 5), (1, 40)]:
        pre = cache[f"blocks.{l}.mlp.hook_pre"].numpy()[mask][:, j] > 0
        p = pre.mean()
        terms = []
        for q in np.unique(pos):
            pq = pre[pos == q].mean()
            terms.append(sum(a * np.log(a / b) for a, b in ((pq, p), (1 - pq, 1 - p)) if a > 0))
        assert mi[l * d + j] == pytest.approx(np.mean(terms), abs=1e-9)
        post = cache[f"blocks.{l}.mlp.hook_post"].numpy()[mask][:, j]
        assert mean[3, l * d + j] == pytest.approx(post[pos == 3].astype(np.float64).mean(), abs=1e-6)


# ---- the figure-1 gallery --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, at, width", [(64, 0, 30), (64, 63, 30), (64, 31, 30), (10, 4, 30), (31, 30, 30),
                                          (64, 15, 31)])
def test_window_holds_the_peak_and_stays_in_the_row(n, at, width):
    from universal_neurons.book.chapters import families_gallery

    start, stop = families_gallery.window(n, at, width)
    assert 0 <= start <= at < stop <= n and stop - start == min(width, n)
    with pytest.raises(Exception, match="outside a row"):
        families_gallery.window(n, n, width)


def test_peak_on_a_small_array():
    from universal_neurons.book.chapters import families_gallery

    rng = np.random.default_rng(1)
    mask = rng.random((5, 40)) > 0.2
    where = np.argwhere(mask)
    acts = rng.random(len(where))
    full = np.full(mask.shape, np.nan)
    full[mask] = acts  # the same activations, laid out by (row, position)
    r, p = np.unravel_index(np.nanargmax(full), full.shape)
    row, start, stop, a = families_gallery.peak(acts, where, 40, width=12)
    assert (row, stop - start) == (r, 12) and start <= p < stop
    np.testing.assert_array_equal(a, full[r, start:stop])
    assert np.nanmax(a) == acts.max()


def test_examples_pick_the_family_neuron_or_a_stand_in():
    from universal_neurons.book.chapters import families_gallery

    vr = pd.DataFrame([[0.1, 0.5, 0.2, 0.0], [0.3, 0.1, 0.9, 0.4], [0.2, 0.6, 0.1, 0.8]],
                      index=["letter_token:a", "letter_token:b", "prev:x"], columns=range(4))
    kinds = {"letter_token:a": "letter_token", "letter_token:b": "letter_token", "prev:x": "previous"}
    ex = families_gallery.examples({"alphabet": 1, "previous": None, "syntax": None}, vr, kinds, group=[0, 1, 2])
    assert [(e["family"], e["neuron"], e["stand_in"], e["feature"]) for e in ex] == \
        [("alphabet", 1, False, "letter_token:a"), ("previous", 0, True, "prev:x")]  # 1 is shown, 3 not compared
    assert ex[0]["vr"] == vr.loc["letter_token:a", 1] and ex[1]["vr"] == 0.2
    vr.loc["unigram:z"], kinds["unigram:z"] = [0.1, 0.2, 0.7, 0.0], "unigram"
    ex = families_gallery.examples({"alphabet": None, "unigram": None}, vr, kinds, group=[0, 1, 2])
    assert [(e["neuron"], e["feature"]) for e in ex] == [(2, "letter_token:b"), (1, "unigram:z")]  # 2 is shown already
    assert families_gallery.label(ex[1], 256) == "L0.1: unigram (family empty: stand-in), best feature unigram:z (VR 0.20)"
    ex = families_gallery.examples({"alphabet": None, "previous": 2}, vr, kinds, group=[0, 1, 2])
    assert [e["neuron"] for e in ex] == [1, 2]  # the stand-in avoids a family's own neuron shown later
    ex = families_gallery.examples({"previous": None}, vr, kinds, group=[0, 1, 2])
    assert families_gallery.label(ex[0], 256) == "L0.1: previous (family empty: stand-in), best feature prev:x (VR 0.60)"


def test_gallery_figure_has_one_row_per_example():
    from types import SimpleNamespace

    ex = [{"family": f, "neuron": 300 + k, "stand_in": k == 1, "feature": "letter:a", "vr": 0.5,
           "tokens": ["The", " cat", "\n", " $5", " sat"], "acts": np.array([0.1, 2.0, np.nan, -0.1, 0.4])}
          for k, f in enumerate(["unigram", "previous", "position"])]
    fig = chapter.gallery_figure(SimpleNamespace(data={"gallery": ex, "d_mlp": 256, "reference": "m"}))
    panels = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert [ax.get_title(loc="left")[:5] for ax in panels] == ["L1.44", "L1.45", "L1.46"]
    assert all(len(ax.texts) == 5 for ax in panels)
    assert len(fig.axes) == 2 * len(ex)  # a colour bar per row
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in panels:  # the tokens' boxes follow one another without overlapping
        boxes = [t.get_bbox_patch().get_window_extent(r) for t in ax.texts]
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]


def test_gallery_tokens_of_any_length_do_not_overlap():
    from types import SimpleNamespace

    toks = ["<|endoftext|>", " a", " supercalifragilistic", "\n", " x", " WWWWWWWW", "."] * 3
    ex = [{"family": "unigram", "neuron": 3, "stand_in": False, "feature": "f", "vr": 0.5, "tokens": toks,
           "acts": np.linspace(0, 1, len(toks))}]
    fig = chapter.gallery_figure(SimpleNamespace(data={"gallery": ex, "d_mlp": 256, "reference": "m"}))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax = next(ax for ax in fig.axes if ax.get_title(loc="left"))
    boxes = [t.get_bbox_patch().get_window_extent(r) for t in ax.texts]
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))


@pytest.mark.slow
def test_gallery_draws_the_syntax_example_on_brown_rows(smoke, smoke_zoo, one_thread):
    from universal_neurons import data
    from universal_neurons.runs import families_pass
    from universal_neurons.models.loading import load_model
    from universal_neurons.data.tokenizer import load_tokenizer

    model = load_model(smoke.members()[0])
    tok = load_tokenizer(data.tokenizer_dir(smoke, progress=False))
    rows = data.analysis_rows(smoke, progress=False)
    plan = families_pass.main_plan(rows, tok, 2000)
    brown = families_pass.brown_rows(smoke, tok, rows.n_ctx, 2000)
    assert brown[1] is not None, "the smoke corpus holds Brown documents"
    rules = {"syntax": pd.DataFrame({"neuron": [5], "feature": ["pos:NN"], "vr": [0.6]}),
             "previous": pd.DataFrame({"neuron": [7], "feature": ["prev:x"], "vr": [0.6]})}
    vr = pd.DataFrame({5: [0.6, 0.0], 7: [0.0, 0.6]}, index=["pos:NN", "prev:x"])
    kinds = {"pos:NN": "syntax", "prev:x": "previous"}
    made = chapter._gallery(model, tok, rows, plan, brown, rules, vr, kinds, [5, 7], 0.2, "cpu")
    assert [e["family"] for e in made] == ["previous", "syntax"]
    prev, syn = made
    assert syn.get("text") == "Brown" and "text" not in prev
    start = syn["start"]
    assert syn["tokens"] == [tok.decode([int(t)]) for t in brown[1][syn["row"], start:start + len(syn["tokens"])]]
    start = prev["start"]
    assert prev["tokens"] == [tok.decode([int(t)]) for t in rows.tokens[prev["row"]][start:start + len(prev["tokens"])]]
    from universal_neurons.book.chapters import families_gallery

    assert families_gallery.label(syn, model.cfg.d_mlp).endswith("(VR 0.60), on Brown text")


@pytest.mark.slow
def test_book_settings_reach_the_chapter(smoke, smoke_zoo, one_thread):
    """book.family_tokens, book.family_vr and book.top_pct, set as make book SET does, change the pass, the
    threshold and the compared group (own run folder), and every count follows them."""
    ch = chapter.compute("smoke", overrides="book.family_tokens=3000 book.family_vr=0.05 book.top_pct=5")
    g = ch.glue
    assert g["fam_n_tokens"] <= 3000 and g["fam_vr_min"] == 0.05
    assert "top 5% of neurons by excess correlation" in g["fam_group_md"].data
    best = ch.tables["best"]
    assert len(best) == g["fam_n_group"]
    assert g["fam_share_group"] == pytest.approx((best["VR"] > 0.05).mean())
    for fam in chapter.FAMILIES:
        assert g[f"fam_n_{fam}"] == len(chapter.family_neurons(ch.data["rules"], fam, 0.05))
    assert ch.tables["kinds"]["neurons"].sum() == (best["VR"] > 0.05).sum()
    assert "(of 24)" in " ".join(ch.tables["paper"].columns) and g["fam_dominant_md"].data


def test_empty_figures_and_tables_are_sentences_in_good_grammar():
    from types import SimpleNamespace

    ch = SimpleNamespace(data={"gallery": [], "samples": {"alphabet": [], "unigram": [(1, "f", 0.5, None, None)]},
                               "rules": {"position": pd.DataFrame(columns=["neuron", "feature", "score"])}})
    assert chapter.absent_sentence(ch, "alphabet") == ("No neuron of the compared group is an alphabet neuron here, "
                                                       "so there is no figure of them.")
    assert chapter.absent_sentence(ch, "unigram") is None
    assert chapter.absent_sentence(ch, "previous").startswith("No neuron of the compared group is a previous-token")
    assert "no figure" in chapter.absent_sentence(ch, "gallery")
    assert chapter.EMPTY_TABLES["alphabet"].startswith("No neuron of the compared group is an alphabet neuron")
    assert set(chapter.CAPTIONS) == {*chapter.FAMILIES, "gallery"}
    assert not any(" red" in c for c in chapter.CAPTIONS.values())  # the highlight colour is orange
