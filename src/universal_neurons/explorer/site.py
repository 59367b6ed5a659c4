"""The neuron explorer of a built book: which neurons get a page (the reference's compared group, their twins in
every other seed, a seeded sample of the rest for contrast), their records (`records.neuron_records`, cached in
the run folder), their labels from the other chapters' analyses, and the pages (`pages.write_site`) under
`_build/html/neurons/<run>/`. Chapter tables link neuron ids to these pages (`links.links`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import data
from ..config.profile import name_of
from ..core import cache
from ..core.atomic import write_text
from ..core.errors import UserError
from ..core.paths import project_dir, shown
from ..data.tokenizer import load_tokenizer
from ..measures import activations, attention, entropy, families
from ..models.loading import load_model, members_signature
from ..runs import families_pass, neuron_tables, properties
from ..runs.neuron_tables import twin
from ..runs.universality import ensure_results
from .links import discussed, selection
from .pages import write_site
from .records import neuron_records

VERSION = 1
SITE = Path("_build/html/neurons")  # under the project: the pages, one folder per run


def _load_line(source: str, layer: int, neuron: int) -> str:
    return (f"from universal_neurons import load_model; model = load_model({shown(source)!r}); "
            f"_, cache = model.run_with_cache(tokens); act = cache['blocks.{layer}.mlp.hook_post'][..., {neuron}]")


def _labels(prof, model, name: str, neurons, is_reference: bool) -> dict:
    """Per (layer, neuron): what the other analyses say of it (cheap ones computed here, the families pass only
    when a chapter already ran it)."""
    b = prof.cfg["book"]
    out = {ln: {} for ln in neurons}
    cands = entropy.candidates(model, n_null=min(int(b["null_dims"]), model.cfg.d_model)).set_index(["layer", "neuron"])
    scores = attention.bos_score_array(model, int(data.analysis_rows(prof, progress=False).header["bos_id"]))
    for l, n in neurons:
        if (l, n) in cands.index:
            out[(l, n)]["entropy rank (paper's view)"] = int(cands.loc[(l, n), "rank_paper"])
        if l < model.cfg.n_layers - 1:
            out[(l, n)]["best BOS score"] = round(float(np.nanmax(scores[l, n])), 4)
    if is_reference:
        frame = properties.neuron_frame(prof).set_index(["layer", "neuron"])
        kurt = float(b["kurt_threshold"])
        for l, n in neurons:
            r = frame.loc[(l, n)]
            if pd.notna(r.get("vocab_kurt")):
                out[(l, n)]["vocab class"] = ("prediction" if r["vocab_skew"] > 0 else "suppression") \
                    if r["vocab_kurt"] > kurt else "-"
        best = _family_best(prof, model)
        if best is not None:
            for l, n in neurons:
                f = best.loc[l * model.cfg.d_mlp + n]
                out[(l, n)] |= {"best feature": f["feature"], "VR": round(float(f["vr"]), 4)}
    return out


def _family_best(prof, model):
    """The best feature and VR of every reference neuron from the families chapter's pass, if it ran."""
    try:
        fp = families_pass.load_pass(prof.tables_dir)
    except UserError:
        return None
    return families.best_features(fp.vr)


def records(prof, device="cpu", progress: bool = False) -> list[dict]:
    """Every page's record (cached in the run folder's tables as explorer.json)."""
    ensure_results(prof, device=device)
    properties.compute_properties(prof, device=device, progress=False)  # the labels' vocabulary class (cached)
    sel = selection(prof)
    sources = dict(zip([name_of(s) for s in prof.members()], prof.members()))
    rows = data.analysis_rows(prof, progress=False)
    n_rows = max(1, min(len(rows.tokens), -(-int(prof.cfg["book"]["explorer_tokens"]) // rows.n_ctx)))
    folder, path = Path(prof.tables_dir), Path(prof.tables_dir) / "explorer.json"
    key = cache.make_key("explorer", version=VERSION, selection={m: [list(x) for x in v] for m, v in sel.items()},
                         weights=members_signature(prof),
                         rows=n_rows, data=rows.header["provenance"],
                         families=[[f.stat().st_size, f.stat().st_mtime_ns] for f in folder.glob("families.npz")],
                         discussed={m: sorted(f"{l}.{n}: {w}" for (l, n), w in d.items())
                                    for m, d in discussed(prof).items()})
    if cache.is_current(folder, key) and path.is_file():
        return json.loads(path.read_text())
    tok = load_tokenizer(data.tokenizer_dir(prof, progress=False))
    tokens = np.asarray(rows.tokens[:n_rows]).astype(np.int64)
    mask = ~np.isin(tokens, activations.dropped_ids(tok))
    decode = lambda i: tok.decode([int(i)])  # noqa: E731
    table = neuron_tables.load_results(prof).neurons
    ref = next(iter(sel))
    names = list(sel)
    talk = discussed(prof)
    out = []
    with cache.updating(folder, key):
        for k, (m, chosen) in enumerate(sel.items()):
            model = load_model(sources[m], device=device, revision=prof.revision)
            neurons = [(l, n) for l, n, _ in chosen]
            recs = neuron_records(model, tokens, mask, neurons, decode, sources=np.asarray(rows.sources[:n_rows]),
                                    source_names=rows.source_names, device=device, progress=progress)
            labels = _labels(prof, model, m, neurons, is_reference=k == 0)
            for (l, n), where in talk.get(m, {}).items():
                if (l, n) in labels:
                    labels[(l, n)]["discussed in"] = where
            back: dict = {}  # partner k's neuron -> the reference neurons whose twin it is, with their correlation
            for rl, rn, _ in (sel[ref] if k else []):
                tl, tn, r = twin(table, rl, rn, k)
                back.setdefault((tl, tn), []).append({"model": ref, "layer": rl, "neuron": rn, "correlation": r})
            for l, n, role in chosen:
                rec = recs[(l, n)] | {"model": m, "role": role, "labels": labels[(l, n)],
                                      "load": _load_line(sources[m], l, n), "twins": []}
                if k == 0:
                    row = table[(table["layer"] == l) & (table["neuron"] == n)].iloc[0]
                    rec["row"] = {c: _plain(row[c]) for c in ("excess_corr", "mean_corr", "mean_baseline",
                                                              "max_corr", "min_corr", "is_universal")}
                    if role not in ("contrast", "discussed"):  # their twins have no page
                        rec["twins"] = [dict(zip(("layer", "neuron", "correlation"), twin(table, l, n, j)), model=p)
                                        for j, p in enumerate(names[1:], 1)]
                else:
                    rec["row"] = {}
                    rec["twins"] = back.get((l, n), [])
                out.append(rec)
        write_text(path, json.dumps(out))
    return out


def _plain(x):
    """A pandas/numpy scalar as a JSON-able Python value."""
    return x.item() if hasattr(x, "item") else x


def build(prof, out_root=None, device="cpu", progress: bool = False) -> dict:
    """The records (cached) and the pages under `<out_root>/<run>/` (default `_build/html/neurons`)."""
    import shutil

    recs = records(prof, device=device, progress=progress)
    out = Path(out_root or project_dir() / SITE) / prof.run_name
    shutil.rmtree(out, ignore_errors=True)  # a build output: no page of an earlier selection stays
    return write_site(recs, out, profile=prof.run_name, title=f"Neuron explorer: {prof.run_name}")
