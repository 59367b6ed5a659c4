"""Universality, the pass: the correlations against independent numpy computations, resume, tiling, two gloo
processes, and bad input, on the tiny zoo (tiny_zoo.py); the paper's published tables."""

from pathlib import Path

import numpy as np
import pytest
import torch

import universal_neurons as un
from tiny_zoo import FAST, MODEL, N_TOKENS, models, tiny  # noqa: F401 (fixtures)
from universal_neurons import UserError
from universal_neurons.runs.neuron_tables import neuron_table
from universal_neurons.measures.maxima import correlate, rotation

pytestmark = pytest.mark.usefixtures("one_thread")


def run(tiny, models, names, n_tokens=N_TOKENS, **kw):
    return correlate([models(n) for n in names], tiny["rows"].tokens, n_tokens, names=names, **{**FAST, **kw})


def hf_activations(folder, tok, rows, n_tokens):
    """Independent: HF GPT2 forward hooks on each MLP's activation function, on the first n_tokens tokens
    that are not end-of-text nor whitespace-with-newline. float64 [n_tokens, n_layers * d_mlp]."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    texts = [tok.decode([i]) for i in range(len(tok))]
    bad = [i for i, t in enumerate(texts) if i == tok.eos_token_id or (not t.strip() and "\n" in t)]
    x = np.asarray(rows[:400], dtype=np.int64)
    keep = ~np.isin(x, bad)
    keep &= np.cumsum(keep.ravel()).reshape(keep.shape) <= n_tokens
    acts = {}
    hooks = [blk.mlp.act.register_forward_hook(lambda mod, i, o, l=l: acts.__setitem__(l, o))
             for l, blk in enumerate(hf.transformer.h)]
    with torch.no_grad():
        hf(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    assert keep.sum() == n_tokens
    return np.concatenate([acts[l][torch.from_numpy(keep)].double().numpy() for l in sorted(acts)], 1)


def np_corr(a, b):
    za, zb = (a - a.mean(0)) / a.std(0), (b - b.mean(0)) / b.std(0)
    return za.T @ zb / len(a)


def rotated(v, p, d, seed=0, kind="gaussian"):  # u = R v per layer
    return np.concatenate([v[:, l * d:(l + 1) * d] @ rotation(d, seed, p, l, kind).double().numpy().T
                           for l in range(v.shape[1] // d)], 1)


@pytest.mark.slow
def test_table_matches_independent_numpy_computation(tiny, models):
    with pytest.warns(UserWarning, match="perm correlates 1.0"):
        tab = neuron_table(run(tiny, models, ["seed0", "seed1", "perm"]))
    a, b, c = (hf_activations(f, tiny["tok"], tiny["rows"].tokens, N_TOKENS)
               for f in (tiny["seeds"][0], tiny["seeds"][1], tiny["perm"]))
    d = MODEL["d_mlp"]
    for p, partner in enumerate((b, c)):
        real, base = np_corr(a, partner), np_corr(a, rotated(partner, p, d))
        np.testing.assert_allclose(tab[f"max_corr_p{p + 1}"], real.max(1), atol=2e-4)
        np.testing.assert_allclose(tab[f"baseline_p{p + 1}"], base.max(1), atol=2e-4)
        clear = np.sort(real, 1)[:, -1] - np.sort(real, 1)[:, -2] > 1e-3
        assert (tab[f"max_sim_layer_p{p + 1}"][clear] == real.argmax(1)[clear] // d).all()
    assert tab["max_corr_p1"].mean() < 0.9  # an independently trained seed is no copy
    np.testing.assert_allclose(tab["excess_corr"], tab[["max_corr_p1", "max_corr_p2"]].mean(1)
                               - tab[["baseline_p1", "baseline_p2"]].mean(1), atol=1e-12)


@pytest.mark.slow
def test_self_correlates_one_and_its_rotation_is_low(tiny, models):
    with pytest.warns(UserWarning, match="correlates 1.0 with every live reference neuron"):
        gauss = neuron_table(run(tiny, models, ["seed0", "seed0"]))
    with pytest.warns(UserWarning):
        ortho = neuron_table(run(tiny, models, ["seed0", "seed0"], baseline="orthogonal"))
    np.testing.assert_allclose(gauss["max_corr"], 1.0, atol=1e-6)
    assert (gauss["max_sim_neuron_p1"] == gauss["neuron"]).all() and (gauss["max_sim_layer_p1"] == gauss["layer"]).all()
    for t in (gauss, ortho):
        assert t["max_baseline"].max() < 0.97 and t["mean_baseline"].mean() < 0.8
    r, q = rotation(64, 0, 0, 0).double(), rotation(64, 0, 0, 0, "orthogonal").double()
    np.testing.assert_allclose(r.norm(dim=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(q @ q.T, torch.eye(64, dtype=torch.float64), atol=1e-5)


@pytest.mark.slow
def test_permuted_copy_finds_every_neuron_in_its_layer(tiny, models):
    with pytest.warns(UserWarning):
        tab = neuron_table(run(tiny, models, ["seed0", "perm"]))
    inv = np.concatenate([np.argsort(p) for p in tiny["perms"]])  # reference neuron i -> partner neuron
    np.testing.assert_allclose(tab["mean_corr"], 1.0, atol=1e-6)
    assert (tab["max_sim_layer_p1"] == tab["layer"]).all()
    assert (tab["max_sim_neuron_p1"] == inv).all()
    np.testing.assert_allclose(tab["excess_corr"], 1.0 - tab["baseline_p1"], atol=1e-6)


@pytest.mark.slow
def test_dead_neurons_get_nan_on_the_reference_side_and_never_win_on_the_partner_side(tiny, models):
    tab = neuron_table(run(tiny, models, ["dead_ref", "dead_partner", "seed1"]))
    dead = (tab["layer"] == 0) & (tab["neuron"] == 5)
    assert tab["is_dead"].tolist() == dead.tolist()
    assert tab.loc[dead, ["max_corr", "mean_baseline", "excess_corr"]].isna().all(axis=None)
    assert not tab.loc[dead, "is_universal"].any()
    live = tab[~dead]
    assert live[["max_corr_p1", "baseline_p1", "excess_corr"]].notna().all(axis=None)
    assert not ((live["max_sim_layer_p1"] == 1) & (live["max_sim_neuron_p1"] == 3)).any()


@pytest.mark.slow
def test_snapshots_equal_shorter_runs(tiny, models):
    res = run(tiny, models, ["seed0", "seed1"])
    assert res.snap_tokens[-1] == N_TOKENS and len(res.snap_tokens) == 5
    short = run(tiny, models, ["seed0", "seed1"], n_tokens=res.snap_tokens[1], fractions=(1.0,))
    np.testing.assert_allclose(res.real[1], short.real[-1], atol=1e-6)
    np.testing.assert_allclose(res.base[1], short.base[-1], atol=1e-6)


@pytest.mark.slow
def test_resume_after_interruption_equals_one_pass(tiny, models, tmp_path):
    names = ["seed0", "seed1", "perm"]
    with pytest.warns(UserWarning):
        full = neuron_table(run(tiny, models, names))
    ck = tmp_path / "ck"
    assert run(tiny, models, names, checkpoint=ck, checkpoint_every=2, stop_after=3) is None
    assert (tmp_path / "ck.rank0-of1.pt").is_file()
    with pytest.warns(UserWarning):
        resumed = neuron_table(run(tiny, models, names, checkpoint=ck, checkpoint_every=2))
    assert resumed.equals(full)
    assert not (tmp_path / "ck.rank0-of1.pt").exists()


@pytest.mark.parametrize("budget, n_tiles", [
    (150.5 * (32 * 128 + 8 * 512), 2),  # 150 columns: two partner layers (of 64) per pass, every reference row
    (8 * 512 * 64 + 40 * (32 * 64 + 8 * 512), 16),  # under one layer: 40-row blocks x 4 partner layers
])
@pytest.mark.slow
def test_tiled_equals_untiled(tiny, models, budget, n_tiles):
    names = ["seed0", "seed1", "perm"]
    with pytest.warns(UserWarning):
        whole = run(tiny, models, names)
    with pytest.warns(UserWarning):
        tiled = run(tiny, models, names, max_accumulator_gb=budget / 1e9)
    assert whole.n_tiles == 1 and tiled.n_tiles == n_tiles  # 2 partners x 2 layers x 64 neurons; 128 rows
    a, b = neuron_table(whole), neuron_table(tiled)
    np.testing.assert_allclose(a.select_dtypes("float"), b.select_dtypes("float"), atol=1e-6)
    assert a.select_dtypes("int").equals(b.select_dtypes("int"))
    for x, y in zip(whole.layer_max, tiled.layer_max):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert whole.dead_partner_neurons == tiled.dead_partner_neurons


def _gloo_worker(rank, sources, rows_prefix, init_file, out):
    import torch.distributed as dist

    from universal_neurons.data.tokens import open_rows

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    models = [un.load_model(s) for s in sources]
    res = correlate(models, open_rows(rows_prefix).tokens, N_TOKENS, names=["seed0", "seed1"], **FAST)
    if rank == 0:
        neuron_table(res).to_pickle(out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_one(tiny, models, tmp_path):
    single = neuron_table(run(tiny, models, ["seed0", "seed1"]))
    sources = [str(s) for s in tiny["seeds"]]
    torch.multiprocessing.spawn(_gloo_worker, args=(sources, str(tiny["root"] / "data/heldout"),
                                                    str(tmp_path / "init"), str(tmp_path / "t.pkl")), nprocs=2)
    import pandas as pd

    two = pd.read_pickle(tmp_path / "t.pkl")
    np.testing.assert_allclose(single.select_dtypes("float"), two.select_dtypes("float"), atol=1e-6)
    assert single.select_dtypes("int").equals(two.select_dtypes("int"))


@pytest.mark.parametrize("names, n_tokens, message", [
    (["seed0", "other_tok"], N_TOKENS, "does not use the tokenizer of the reference"),
    (["seed0", "seed1"], 10**7, r"keeps only [\d,]+ tokens"),
    (["seed0", "nan"], N_TOKENS, r"nan: NaN or inf activation in layer 1, batch of held-out rows 0-\d+;"),
])
@pytest.mark.slow
def test_bad_input_fails_with_one_line(tiny, models, names, n_tokens, message):
    with pytest.raises(UserError, match=message) as e:
        run(tiny, models, names, n_tokens=n_tokens)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("device, message", [
    ("cuda", "torch sees no CUDA device here: use --device cpu"), ("gpu0", "unknown device 'gpu0'")])
def test_cli_refuses_a_device_it_cannot_use_before_any_work(capsys, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from universal_neurons.__main__ import main

    assert main(["zoo", "--profile", "smoke", "--device", device]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_algebraic_rotated_baseline_equals_rotating_the_activations():
    """The baseline from co-moments (cov(x, v) Rᵀ, R Σ_vv Rᵀ) against numpy float64 on explicitly rotated data."""
    from universal_neurons.measures.correlation import StreamingPearson
    from universal_neurons.measures.maxima import _baseline

    rng = np.random.default_rng(3)
    t, n_a, d = 4000, 24, 16
    x = rng.standard_normal((t, n_a)) * 2 + 300  # large means: the statistics must not cancel
    mix = rng.standard_normal((n_a, 2 * d))
    v = np.tanh(x @ mix / 20) + 0.5 * rng.standard_normal((t, 2 * d)) + 50
    v[:, d:] = 7.0  # the second partner layer is dead: its rotated neurons have no variance either
    acc = StreamingPearson(n_a, 2 * d)
    grams = [StreamingPearson(d, d), StreamingPearson(d, d)]
    for s in range(0, t, 1000):
        xs, vs = torch.from_numpy(x[s:s + 1000]).float(), torch.from_numpy(v[s:s + 1000]).float()
        acc.update(xs, vs)
        for g, l in zip(grams, (0, 1)):
            g.update(vs[:, l * d:(l + 1) * d], vs[:, l * d:(l + 1) * d])
    rots = [rotation(d, 0, 0, l) for l in (0, 1)]
    real, cm, norm_a = acc.correlation(), acc.comoment(), acc.norms()[0]
    base = [_baseline(cm[:, l * d:(l + 1) * d], norm_a, grams[l], rots[l]) for l in (0, 1)]
    xf, vf = x.astype(np.float32).astype(np.float64), v.astype(np.float32).astype(np.float64)  # what the engine saw
    np.testing.assert_allclose(real[:, :d].numpy(), np_corr(xf, vf[:, :d]), atol=1e-6)
    np.testing.assert_allclose(base[0].numpy(), np_corr(xf, vf[:, :d] @ rots[0].double().numpy().T), atol=1e-6)
    assert torch.isnan(base[1]).all() and torch.isnan(real[:, d:]).all()


def test_paper_tables_ship_in_the_package_and_match_the_papers_counts():
    """The published universal.csv files (paper_data/) hold exactly the paper's counts of universal neurons
    (paper.md section 2: 1,533, 1,211 and 465), all above its threshold of 0.5."""
    from universal_neurons.core import paper

    assert paper.folder().is_relative_to(Path(un.__file__).parent)
    tables = paper.universal_tables()
    assert {m: len(t) for m, t in tables.items()} == {"GPT2-small-a": 1533, "GPT2-medium-a": 1211, "Pythia-160m": 465}
    assert {m: n for m, (n, _) in paper.SHARES.items()} == {m: len(t) for m, t in tables.items()}
    for m, counts in paper.PER_LAYER.items():  # the per-layer counts quoted from figure 2 are the tables' own
        assert list(tables[m]["layer"].value_counts().sort_index()) == counts
    assert all((t["excess_corr"] > 0.5).all() for t in tables.values())


def test_a_flipped_byte_in_a_paper_table_fails_with_one_line(tmp_path):
    import shutil

    from universal_neurons.core import paper

    copy = tmp_path / "paper"
    shutil.copytree(paper.folder(), copy)
    target = copy / "pythia-160m" / "universal.csv"
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"pythia-160m/universal.csv is missing or differs from its checksum") as e:
        paper.universal_tables(copy)
    assert "\n" not in str(e.value) and "git checkout --" in str(e.value)
