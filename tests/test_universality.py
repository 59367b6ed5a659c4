"""Universality: the correlation pass against independent numpy computations, resume, tiling, two gloo
processes, the cached profile run and its tables re-derived at another threshold from the saved maxima, the
untrained control and the threshold policy, and bad input. Runs on a tiny zoo trained here in a few seconds."""

import glob
import json
import shutil
import sysconfig
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import universal_neurons as un
from universal_neurons import UserError
from universal_neurons.neuron_tables import neuron_table
from universal_neurons.universality import correlate, rotation

N_TOKENS = 3000
MODEL = {"n_layer": 2, "d_model": 32, "d_mlp": 64, "n_head": 4, "n_ctx": 32}
TRAIN = {"seeds": [0, 1], "tokens": 30000, "batch_size": 16, "lr": 3e-3, "warmup_steps": 10, "weight_decay": 0.1,
         "checkpoint_every": 1000}
FAST = {"chunk_tokens": 512, "batch_rows": 16}


@dataclass
class Doc:
    source: str
    doc_id: str
    text: str


def _edit(src, dst, tokenizer_dir=None, fn=None):
    """Copy checkpoint `src` to `dst`, applying `fn(hf_model)` to its weights and optionally another tokenizer."""
    from transformers import GPT2LMHeadModel

    from universal_neurons.tokenizer import load_tokenizer

    hf = GPT2LMHeadModel.from_pretrained(src)
    if fn:
        with torch.no_grad():
            fn(hf)
    hf.save_pretrained(dst)
    load_tokenizer(tokenizer_dir or src).save_pretrained(dst)
    return dst


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A 2-seed zoo (2 layers x 64 neurons) laid out as profile 'tiny' under <root>/artifacts, its held-out
    rows, and edited copies of seed 0: neuron-permuted, with dead neurons, with NaN, with another tokenizer."""
    from universal_neurons.tokenizer import build_tokenizer, load_tokenizer
    from universal_neurons.tokens import TokenRows, build_rows
    from universal_neurons.zoo import train_seed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py"))[:60]
    docs = [Doc("py", f, open(f, errors="replace").read()) for f in files]
    tdir = build_tokenizer("bpe", root / "tok", (d.text for d in docs), 512)
    tok = load_tokenizer(tdir)
    train = build_rows(docs[10:], tok, 32, root / "data/train", {"t": 1}, progress=False)
    heldout = build_rows(docs[:10], tok, 32, root / "data/heldout", {"t": 1}, progress=False)
    zoo = root / "artifacts" / "tiny" / "zoo"
    few = TokenRows(heldout.tokens[:16], heldout.sources[:16], heldout.header)
    seeds = [train_seed(s, zoo / f"seed-{s}", train, few, MODEL, TRAIN, tdir, progress=False) for s in (0, 1)]
    perms = [np.random.default_rng(l).permutation(MODEL["d_mlp"]) for l in range(MODEL["n_layer"])]

    def permute(hf):  # new neuron j = old neuron perm[j]
        for blk, perm in zip(hf.transformer.h, perms):
            blk.mlp.c_fc.weight.copy_(blk.mlp.c_fc.weight[:, perm])
            blk.mlp.c_fc.bias.copy_(blk.mlp.c_fc.bias[perm])
            blk.mlp.c_proj.weight.copy_(blk.mlp.c_proj.weight[perm])

    def kill(layer, neuron):
        def fn(hf):  # pre-activation 0 on every token: gelu(0) = 0, zero variance
            hf.transformer.h[layer].mlp.c_fc.weight[:, neuron] = 0
            hf.transformer.h[layer].mlp.c_fc.bias[neuron] = 0
        return fn

    def poison(hf):
        hf.transformer.h[1].mlp.c_fc.bias[0] = float("nan")

    other_tok = build_tokenizer("bpe", root / "tok2", (d.text for d in docs[30:]), 400)
    torch.set_num_threads(threads)
    return {"root": root, "rows": heldout, "seeds": seeds, "perms": perms, "tok": tok,
            "perm": _edit(seeds[0], root / "perm", fn=permute),
            "dead_ref": _edit(seeds[0], root / "dead0", fn=kill(0, 5)),
            "dead_partner": _edit(seeds[1], root / "dead1", fn=kill(1, 3)),
            "nan": _edit(seeds[0], root / "nan", fn=poison),
            "other_tok": _edit(seeds[0], root / "othertok", tokenizer_dir=other_tok)}


@pytest.fixture(scope="session")
def models(tiny):
    cache = {}

    def get(name):
        if name not in cache:
            src = tiny["seeds"][int(name[-1])] if name.startswith("seed") else tiny[name]
            cache[name] = un.load_model(src)
        return cache[name]
    return get


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


def test_permuted_copy_finds_every_neuron_in_its_layer(tiny, models):
    with pytest.warns(UserWarning):
        tab = neuron_table(run(tiny, models, ["seed0", "perm"]))
    inv = np.concatenate([np.argsort(p) for p in tiny["perms"]])  # reference neuron i -> partner neuron
    np.testing.assert_allclose(tab["mean_corr"], 1.0, atol=1e-6)
    assert (tab["max_sim_layer_p1"] == tab["layer"]).all()
    assert (tab["max_sim_neuron_p1"] == inv).all()
    np.testing.assert_allclose(tab["excess_corr"], 1.0 - tab["baseline_p1"], atol=1e-6)


def test_dead_neurons_get_nan_on_the_reference_side_and_never_win_on_the_partner_side(tiny, models):
    tab = neuron_table(run(tiny, models, ["dead_ref", "dead_partner", "seed1"]))
    dead = (tab["layer"] == 0) & (tab["neuron"] == 5)
    assert tab["is_dead"].tolist() == dead.tolist()
    assert tab.loc[dead, ["max_corr", "mean_baseline", "excess_corr"]].isna().all(axis=None)
    assert not tab.loc[dead, "is_universal"].any()
    live = tab[~dead]
    assert live[["max_corr_p1", "baseline_p1", "excess_corr"]].notna().all(axis=None)
    assert not ((live["max_sim_layer_p1"] == 1) & (live["max_sim_neuron_p1"] == 3)).any()


def test_snapshots_equal_shorter_runs(tiny, models):
    res = run(tiny, models, ["seed0", "seed1"])
    assert res.snap_tokens[-1] == N_TOKENS and len(res.snap_tokens) == 5
    short = run(tiny, models, ["seed0", "seed1"], n_tokens=res.snap_tokens[1], fractions=(1.0,))
    np.testing.assert_allclose(res.real[1], short.real[-1], atol=1e-6)
    np.testing.assert_allclose(res.base[1], short.base[-1], atol=1e-6)


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

    from universal_neurons.tokens import open_rows

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    models = [un.load_model(s) for s in sources]
    res = correlate(models, open_rows(rows_prefix).tokens, N_TOKENS, names=["seed0", "seed1"], **FAST)
    if rank == 0:
        neuron_table(res).to_pickle(out)
    dist.destroy_process_group()


def test_two_gloo_processes_equal_one(tiny, models, tmp_path):
    single = neuron_table(run(tiny, models, ["seed0", "seed1"]))
    sources = [str(s) for s in tiny["seeds"]]
    torch.multiprocessing.spawn(_gloo_worker, args=(sources, str(tiny["root"] / "data/heldout"),
                                                    str(tmp_path / "init"), str(tmp_path / "t.pkl")), nprocs=2)
    import pandas as pd

    two = pd.read_pickle(tmp_path / "t.pkl")
    np.testing.assert_allclose(single.select_dtypes("float"), two.select_dtypes("float"), atol=1e-6)
    assert single.select_dtypes("int").equals(two.select_dtypes("int"))


ANALYSIS = {"reference_seed": 0, "n_tokens": N_TOKENS, "batch_size": 16, "partners": None, "baseline": "gaussian",
            "baseline_seed": 0, "control": True, "chunk_tokens": 1024, "max_accumulator_gb": 4.0}


@pytest.fixture
def tiny_profile(tiny, monkeypatch):
    """Profile 'tiny' (its zoo, its held-out rows) with every analysis key, in a fresh tables folder."""
    from universal_neurons import data
    from universal_neurons.config import Profile

    monkeypatch.setenv("UN_ARTIFACTS", str(tiny["root"] / "artifacts"))
    monkeypatch.setattr(data, "token_rows", lambda profile, split, progress=True: tiny["rows"])
    prof = Profile("tiny", {"train": {"seeds": [0, 1]}, "model": MODEL, "analysis": dict(ANALYSIS),
                            "book": {"threshold": 0.5}})
    shutil.rmtree(prof.tables_dir, ignore_errors=True)
    yield prof
    shutil.rmtree(prof.tables_dir, ignore_errors=True)


def test_profile_run_writes_tables_and_reuses_them(tiny, tiny_profile):
    from universal_neurons import universality

    prof = tiny_profile
    res = universality.run_universality(prof, progress=False)
    out = prof.tables_dir
    for f in ("neurons.csv", "layer_similarity.csv", "convergence.csv", "universality.json", "maxima.npz",
              "pass.json", "universality-pass.key.json", "universality-tables.key.json"):
        assert (out / f).is_file(), f
    assert len(res.neurons) == 128 and {"max_corr_p1", "baseline_p1", "max_sim_layer_p1", "excess_corr", "is_universal",
                                        "is_dead", "mean_baseline", "min_corr"} <= set(res.neurons.columns)
    assert res.info["n_tokens"] == N_TOKENS and res.info["baseline"]["seed"] == 0 and res.info["threshold"] == 0.5
    assert res.info["checkpoint_dirs"] == [str(s) for s in tiny["seeds"]]
    assert res.convergence["n_tokens"].iloc[-1] == N_TOKENS
    assert np.isclose(res.convergence["share_universal"].iloc[-1], res.neurons["is_universal"].mean())
    sim = res.layers.pivot(index="ref_layer", columns="partner_layer", values="argmax_share")
    np.testing.assert_allclose(sim.sum(1), 1.0)
    mtime = (out / "neurons.csv").stat().st_mtime_ns
    universality.run_universality(prof, progress=False)
    assert (out / "neurons.csv").stat().st_mtime_ns == mtime
    prof.cfg["analysis"]["baseline_seed"] = 1
    universality.run_universality(prof, progress=False)
    assert json.loads((out / "universality.json").read_text())["baseline"]["seed"] == 1
    assert not (out / ".partial").exists()


def test_another_threshold_rederives_the_tables_from_the_saved_maxima(tiny, tiny_profile, models, monkeypatch):
    """The pass is not run again (correlate fails if called); the tables equal a fresh pass's at that threshold,
    and the summary equals numpy's counts and quantiles over the live neurons."""
    import pandas as pd

    from universal_neurons import neuron_tables, universality
    from universal_neurons.data import analysis_rows

    prof = tiny_profile
    universality.run_universality(prof, progress=False)
    pass_mtime = (prof.tables_dir / "maxima.npz").stat().st_mtime_ns
    rows = analysis_rows(prof, progress=False).tokens  # the pass's rows: the held-out rows, shuffled
    fresh = correlate([models("seed0"), models("seed1")], rows, N_TOKENS, chunk_tokens=ANALYSIS["chunk_tokens"],
                      batch_rows=ANALYSIS["batch_size"])
    table = neuron_table(fresh, 0.05)

    def not_again(*a, **k):
        raise AssertionError("the pass ran again")

    monkeypatch.setattr(universality, "correlate", not_again)
    low = neuron_tables.load_results(prof, 0.05)
    again = universality.run_universality(prof, progress=False, threshold=0.05)
    assert (prof.tables_dir / "maxima.npz").stat().st_mtime_ns == pass_mtime
    pd.testing.assert_frame_equal(low.neurons, table, check_exact=False, atol=1e-12)
    pd.testing.assert_frame_equal(again.neurons, low.neurons)
    assert low.neurons["is_universal"].sum() > 0 and low.info["threshold"] == 0.05
    ex = low.neurons.loc[~low.neurons["is_dead"], "excess_corr"].to_numpy(np.float64)
    s = low.info["summary"]
    assert s["n_universal"] == int((ex > 0.05).sum()) and s["share_universal"] == pytest.approx((ex > 0.05).mean())
    for q in (50, 90, 99):
        assert s[f"excess_q{q}"] == pytest.approx(np.quantile(ex, q / 100), abs=1e-12)
    final = low.convergence.iloc[-1]
    assert final["n_universal"] == s["n_universal"] and final["excess_q99"] == pytest.approx(s["excess_q99"])
    back = neuron_tables.load_results(prof.tables_dir)  # a folder: the paper's threshold
    assert back.info["threshold"] == 0.5 and back.info["summary"]["n_universal"] == int((ex > 0.5).sum())


def test_untrained_control_is_one_model_and_its_run_goes_into_tables_control(tiny, tiny_profile):
    from universal_neurons.control import CONTROL_SEED, control_threshold, run_control, untrained_control

    prof = tiny_profile
    path = untrained_control(prof)
    assert path == prof.root / "control" / f"untrained-seed-{CONTROL_SEED}" and (path / "config.json").is_file()
    assert untrained_control(prof) == path
    ctrl = run_control(prof, progress=False)
    assert (prof.tables_dir / "control" / "neurons.csv").is_file()
    assert ctrl.info["partners"] == [str(path)] and ctrl.info["reference"] == str(tiny["seeds"][0])
    live = ctrl.neurons.loc[~ctrl.neurons["is_dead"], "excess_corr"].to_numpy(np.float64)
    assert len(live) > 100 and control_threshold(ctrl.neurons) == pytest.approx(np.quantile(live, 0.999), abs=1e-12)


def test_tables_of_an_older_run_are_read_at_their_own_threshold_only(tmp_path):
    import pandas as pd

    from universal_neurons.neuron_tables import load_results

    for name in ("neurons", "layer_similarity", "convergence"):
        pd.DataFrame({"a": [1.0]}).to_csv(tmp_path / f"{name}.csv", index=False)
    (tmp_path / "universality.json").write_text(json.dumps({"threshold": 0.5, "summary": {}}))
    assert load_results(tmp_path, 0.5).info["threshold"] == 0.5
    with pytest.raises(UserError, match="without saving the pass") as e:
        load_results(tmp_path, 0.4)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="no universality results"):
        load_results(tmp_path / "nothing")


def test_torchrun_session_alone_keeps_the_device():
    from universal_neurons.universality import torchrun_session

    with torchrun_session(None, "cpu") as device:
        assert device == "cpu"


@pytest.mark.parametrize("names, n_tokens, message", [
    (["seed0", "other_tok"], N_TOKENS, "does not use the tokenizer of the reference"),
    (["seed0", "seed1"], 10**7, r"keeps only [\d,]+ tokens"),
    (["seed0", "nan"], N_TOKENS, r"nan: NaN or inf activation in layer 1, batch of held-out rows 0-\d+;"),
])
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


def test_scale_aware_threshold_is_the_controls_quantile_of_live_neurons(tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    from universal_neurons.control import CONTROL_QUANTILE, control_threshold, resolve_threshold

    rng = np.random.default_rng(0)
    ex = rng.normal(0.05, 0.03, 4000)
    dead = np.zeros(4000, bool)
    dead[:50] = True
    ex[:50] = np.nan
    ex[50:60] = 0.99  # live outliers count like any other neuron
    table = pd.DataFrame({"excess_corr": ex, "is_dead": dead})
    live = np.sort(ex[~dead])
    # independent: numpy's linear-interpolation quantile over the live neurons only
    assert control_threshold(table) == pytest.approx(float(np.quantile(live, CONTROL_QUANTILE)), abs=1e-12)

    profile = SimpleNamespace(tables_dir=tmp_path)
    with pytest.raises(UserError, match="control=True"):
        resolve_threshold("control", profile)
    (tmp_path / "control").mkdir()
    table.to_csv(tmp_path / "control" / "neurons.csv", index=False)
    value, words = resolve_threshold("control", profile)
    assert value == pytest.approx(float(np.quantile(live, CONTROL_QUANTILE)), abs=1e-9)
    assert "scale-aware" in words
    assert resolve_threshold(0.5, profile) == (0.5, "the paper's threshold of 0.5")
    assert resolve_threshold("0.3", profile)[0] == 0.3
    assert resolve_threshold(1, profile) == (1.0, "the threshold of 1")
    for bad in ("high", -1, 0, 2.0, float("nan"), None, True):
        with pytest.raises(UserError, match=r"threshold must be a number in \(0, 1\] \(the paper's is 0.5\) or 'control'"):
            resolve_threshold(bad, profile)


def test_algebraic_rotated_baseline_equals_rotating_the_activations():
    """The baseline from co-moments (cov(x, v) Rᵀ, R Σ_vv Rᵀ) against numpy float64 on explicitly rotated data."""
    from universal_neurons.correlation import StreamingPearson
    from universal_neurons.universality import _baseline

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
    from universal_neurons import paper

    assert paper.folder().is_relative_to(Path(un.__file__).parent)
    tables = paper.universal_tables()
    assert {m: len(t) for m, t in tables.items()} == {"GPT2-small-a": 1533, "GPT2-medium-a": 1211, "Pythia-160m": 465}
    assert {m: n for m, (n, _) in paper.SHARES.items()} == {m: len(t) for m, t in tables.items()}
    for m, counts in paper.PER_LAYER.items():  # the per-layer counts quoted from figure 2 are the tables' own
        assert list(tables[m]["layer"].value_counts().sort_index()) == counts
    assert all((t["excess_corr"] > 0.5).all() for t in tables.values())


def test_a_flipped_byte_in_a_paper_table_fails_with_one_line(tmp_path):
    import shutil

    from universal_neurons import paper

    copy = tmp_path / "paper"
    shutil.copytree(paper.folder(), copy)
    target = copy / "pythia-160m" / "universal.csv"
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"pythia-160m/universal.csv is missing or differs from its checksum") as e:
        paper.universal_tables(copy)
    assert "\n" not in str(e.value) and "git checkout --" in str(e.value)
