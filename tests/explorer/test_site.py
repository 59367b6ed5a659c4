"""Which neurons get an explorer page, and the records and pages of the smoke zoo: the compared group as the
chapters compare it, each one's twins from the universality table, a seeded contrast sample, links that resolve."""

import pytest

pytestmark = pytest.mark.slow


def test_selection_records_and_pages_on_the_smoke_zoo(smoke, smoke_zoo, one_thread, tmp_path):
    from universal_neurons.explorer import links as neuron_links
    from universal_neurons.explorer import site as neuron_site
    from universal_neurons.runs import neuron_tables
    from universal_neurons.runs.selection import compared_group
    from universal_neurons.runs.universality import ensure_results

    ensure_results(smoke)
    table = neuron_tables.load_results(smoke).neurons
    live = table[~table["is_dead"].astype(bool)].reset_index(drop=True)
    group = compared_group(smoke, live)
    sel = neuron_links.selection(smoke)
    names = list(sel)
    assert names[0] == "seed-0" and len(names) == len(smoke.seeds)
    ref = sel[names[0]]
    compared = sorted((l, n) for l, n, r in ref if r in ("universal", "top"))
    assert compared == sorted(zip(live.loc[group.mask, "layer"], live.loc[group.mask, "neuron"]))
    contrast = [(l, n) for l, n, r in ref if r == "contrast"]
    talk = set(neuron_links.discussed(smoke).get(names[0], {}))  # the chapters' neurons: a page each, by any role
    assert talk <= {(l, n) for l, n, _ in ref}
    assert len(contrast) == neuron_links.N_CONTRAST and not set(contrast) & set(compared)
    for k, m in enumerate(names[1:], 1):  # every compared neuron's best match in seed k has a page there
        want = {(int(r[f"max_sim_layer_p{k}"]), int(r[f"max_sim_neuron_p{k}"]))
                for _, r in table.iterrows() if (r["layer"], r["neuron"]) in set(compared)}
        assert {(l, n) for l, n, r in sel[m] if r == "twin"} == want
        assert {(l, n) for l, n, r in sel[m] if r == "discussed"} == set(neuron_links.discussed(smoke).get(m, {})) - want
    assert neuron_links.selection(smoke) == sel  # the contrast sample is seeded

    recs = neuron_site.records(smoke)
    assert len(recs) == sum(len(v) for v in sel.values())
    first = next(r for r in recs if r["role"] in ("universal", "top"))
    assert [t["model"] for t in first["twins"]] == names[1:] and first["row"]["excess_corr"] == pytest.approx(
        float(table[(table["layer"] == first["layer"]) & (table["neuron"] == first["neuron"])]["excess_corr"].iloc[0]))
    assert neuron_site.records(smoke) == recs  # cached

    made = neuron_site.build(smoke, tmp_path)
    assert made["pages"] == len(recs)
    site = tmp_path / smoke.run_name
    prefix = f"../../neurons/{smoke.run_name}/"  # the chapters' links, from book/generated/ two folders down
    links = neuron_links.links(smoke)
    assert set(links) == {f"L{l}.{n}" for l, n, _ in ref}
    for nid, href in links.items():
        assert href.startswith(prefix) and (site / href.removeprefix(prefix)).is_file(), (nid, href)


def test_discussed_reads_the_entropy_and_attention_tables(tmp_path):
    """The neurons the entropy chapter ran (not its random ones) and the neurons of the attention chapter's ablated
    pairs, per model, with where they are discussed; nothing when the tables are absent."""
    from types import SimpleNamespace

    import pandas as pd

    from universal_neurons.explorer import links as neuron_links

    prof = SimpleNamespace(tables_dir=str(tmp_path))
    assert neuron_links.discussed(prof) == {}
    pd.DataFrame({"condition": ["clean", "fixed", "clean", "clean", "clean"],
                  "model": ["seed-0", "seed-0", "seed-0", "seed-0", "seed-1"],
                  "role": ["entropy (paper's view)", "entropy (paper's view)", "anti-entropy", "random 0",
                           "entropy (paper's view)"],
                  "layer": [0, 0, 1, 0, 1], "neuron": [66, 66, 183, 138, 2]}).to_csv(tmp_path / "entropy_runs.csv")
    pd.DataFrame({"row": [0, 1, 0], "model": ["seed-0", "seed-0", "seed-1"],
                  "pair": ["L0.90 → L1.H1", "L0.66 → L1.H2", "L0.132 → L1.H0"]}).to_csv(
        tmp_path / "attention_ablations.csv", index=False)
    got = neuron_links.discussed(prof)
    assert got == {"seed-0": {(0, 66): "entropy chapter: entropy (paper's view); attention chapter: L0.66 → L1.H2",
                              (1, 183): "entropy chapter: anti-entropy", (0, 90): "attention chapter: L0.90 → L1.H1"},
                   "seed-1": {(1, 2): "entropy chapter: entropy (paper's view)",
                              (0, 132): "attention chapter: L0.132 → L1.H0"}}
